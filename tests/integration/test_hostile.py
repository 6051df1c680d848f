"""Hostile and broken input to bri-backup (issue 4): backup names of every
byte value, path tricks, control characters, huge and reserved names through
the CLI and the seed scripts; a store with malformed, truncated, huge or
missing metadata, files that are not databases, planted symlinks, hard
links, FIFOs and wrong modes; and the modes of everything the store holds
whatever the umask. What must hold: a clear refusal or a reported failure,
never a crash, never a write outside the store, never another file's bytes.
Every subprocess runs under a timeout."""

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import BRI_BACKUP, ROOT, Cli, make_sample_db
from test_reliability import assert_store_sound, file_sha, listed, temp_files

TIMEOUT = 60
ALLOWED_FIRST = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
ALLOWED = ALLOWED_FIRST | set(b"._-")


def run_bytes(args, env=None, timeout=TIMEOUT, umask=None):
    """A command with bytes arguments; returns (returncode, stdout, stderr) as text."""
    kw = {}
    if umask is not None:
        kw["preexec_fn"] = lambda: os.umask(umask)
    p = subprocess.run(args, capture_output=True, timeout=timeout, env=env, **kw)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def store_files(store):
    """Every file of the store but the audit log and the lock, with its content hash."""
    store = Path(store)
    if not store.exists():
        return None
    out = {}
    for n in sorted(os.listdir(store)):
        if n in ("audit.jsonl", ".lock", "restore_reports.jsonl"):
            continue
        p = store / n
        out[n] = file_sha(p) if p.is_file() and not p.is_symlink() else os.readlink(p) \
            if p.is_symlink() else "dir"
    return out


def check_audit(store):
    """The audit log, when there is one, is still one JSON object per line."""
    path = Path(store) / "audit.jsonl"
    if path.exists():
        with open(path, "rb") as f:
            for line in f:
                json.loads(line)


def refused(rc, out, err, what):
    assert rc in (1, 2), (what, rc, err)  # never a crash (negative: a signal)
    assert out == "", (what, out)
    assert "name" in err.lower() or "no backup" in err.lower(), (what, err)


# ---- names ----

BAD_NAMES = [
    b"", b".", b"..", b"/", b"a/b", b"../x", b"../../etc/passwd", b"/etc/passwd", b"x/..",
    b"\n", b"a\nb", b"a\rb", b"a\tb", b" a", b"a ", b"a b", b"a\x7fb", b"a\x1b[31mb",
    b"-rf", b"-", b"--", b"--help", b".hidden", b"_x", b"-x",
    b"ctl", b"restore", b"latest", b"inspect", b"diff", b"at", b"live", b"a..b", b"x..",
    "bäckup".encode(), "備份".encode(), "a\u202eb".encode(), b"\xff\xfe", b"a\xc0\xafb",
    b"a" * 129, b"a" * 256, b"a" * 4096, b"x" * 10240,
    b"a*", b"a?", b"a[1]", b"$(touch pwned)", b"`id`", b"a;b", b"a|b", b"a&b", b"a'b",
    b'a"b', b"a\\b", b"a:b", b"a,b", b"a=b", b"a%s%n", b"a{}",
]


def test_every_byte_value_in_a_name(cli, store):
    """Each byte alone and in the middle of a name: accepted exactly when the
    contract allows it, otherwise refused with nothing written."""
    accepted = []
    for b in range(1, 256):
        for name, ok in ((bytes([b]), b in ALLOWED_FIRST),
                         (b"a" + bytes([b]) + b"b", b in ALLOWED)):
            before = store_files(store)
            rc, out, err = run_bytes([str(BRI_BACKUP), "--db", str(cli.db), "--backup-dir",
                                      str(store), "create", "--name", name])
            if ok:
                assert rc == 0, (name, err)
                accepted.append(name.decode())
            else:
                refused(rc, out, err, name)
                assert store_files(store) == before, name
    assert sorted(listed(cli)) == sorted(accepted)
    check_audit(store)


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n[:20]))
def test_bad_names_are_refused_everywhere(cli, store, name):
    cli.run("create", "--name", "existing")
    before = store_files(store)
    base = [str(BRI_BACKUP), "--db", str(cli.db), "--backup-dir", str(store)]
    for args in (["create", "--name", name], [b"create", b"--name=" + name]):
        rc, out, err = run_bytes(base + args)
        refused(rc, out, err, args)
        assert store_files(store) == before
    # delete never removes anything for a bad name (and never outside the store).
    rc, out, err = run_bytes(base + ["delete", "--", name])
    assert rc in (1, 2), (name, err)
    assert store_files(store) == before
    # The seed script refuses it the same way.
    env = dict(os.environ, BRI_BACKUP=str(BRI_BACKUP), BRI_DB=str(cli.db),
               BRI_BACKUP_DIR=str(store))
    rc, out, err = run_bytes([str(ROOT / "scripts/backup_database"), "--name", name], env=env)
    assert rc in (1, 2), (name, err)
    assert store_files(store) == before
    assert cli.db.exists() and listed(cli) == ["existing"]
    check_audit(store)


def test_boundary_names_are_accepted(cli, store):
    for name in ("a" * 128, "A", "0", "a.b", "a_b", "a-b", "x.db", "a.tmp", "CTL", "Latest",
                 "restore1", "a.b.c", "inspect1", "9" * 20):
        cli.run("create", "--name", name)
    assert len(assert_store_sound(cli)) == 14


def test_existing_name_is_refused_and_kept(cli, store):
    cli.run("create", "--name", "one")
    before = store_files(store)
    p = cli.run("create", "--name", "one", check=False)
    assert p.returncode == 1 and "exists" in p.stderr, p.stderr
    assert store_files(store) == before


# ---- a broken or hostile store ----

def good_meta(cli, name):
    return json.loads((cli.store / f"{name}.db.meta").read_text())


def list_json(cli):
    p = cli.run("--json", "list", timeout=TIMEOUT)
    return {b["name"]: b for b in json.loads(p.stdout)}


def verify_fails(cli, name, *words):
    p = cli.run("verify", name, check=False, timeout=TIMEOUT)
    assert p.returncode == 1, (name, p.stdout, p.stderr)
    text = (p.stdout + p.stderr).lower()
    for w in words:
        assert w in text, (name, w, text)
    return text


def nothing_crashes(cli):
    """Every reading command runs to an exit status, none dies of a signal."""
    for args in (["list"], ["--json", "list"], ["stats"], ["--json", "stats"], ["health"],
                 ["verify"], ["cleanup", "--dry-run"]):
        p = cli.run(*args, check=False, timeout=TIMEOUT)
        assert p.returncode in (0, 1), (args, p.returncode, p.stderr)


META_CASES = {
    "not_json": b"this is not json",
    "empty": b"",
    "array": b"[1, 2, 3]",
    "null": b"null",
    "nul_byte": b'{"backup_time": "2025-10-16T14:30:00"\x00}',
    "deep": b"[" * 10000 + b"]" * 10000,
    "wrong_types": json.dumps({"backup_time": 5, "source_db": [], "backup_path": {},
                               "size_bytes": "big", "size_mb": "x", "checksum": 1,
                               "tables": []}).encode(),
    "missing_keys": b'{"backup_time": "2025-10-16T14:30:00"}',
    "bad_time": None,  # filled from a good meta below
    "bad_checksum": None,
    "negative_rows": None,
    "huge_numbers": None,
    "truncated": None,
    "trailing": None,
}


def broken_meta(kind, good):
    m = dict(good)
    if kind == "bad_time":
        m["backup_time"] = "yesterday"
    elif kind == "bad_checksum":
        m["checksum"] = "g" * 64
    elif kind == "negative_rows":
        m["tables"] = {k: -1 for k in m["tables"]}
    elif kind == "huge_numbers":
        m["size_bytes"] = 10 ** 30
        m["tables"] = {k: 10 ** 25 for k in m["tables"]}
    text = json.dumps(m, indent=2).encode()
    if kind == "truncated":
        return text[: len(text) // 2]
    if kind == "trailing":
        return text + b"\n{}"
    return text


@pytest.mark.parametrize("kind", sorted(META_CASES))
def test_malformed_meta_is_reported_not_fatal(cli, store, kind):
    cli.run("create", "--name", "good")
    cli.run("create", "--name", "bad")
    data = META_CASES[kind]
    if data is None:
        data = broken_meta(kind, good_meta(cli, "bad"))
    (store / "bad.db.meta").write_bytes(data)
    entries = list_json(cli)
    assert set(entries) == {"good", "bad"}
    if kind == "huge_numbers":
        # json-c clamps integers beyond int64 to INT64_MAX: no size or row
        # count matches it, so verification fails.
        verify_fails(cli, "bad", "size")
    else:
        assert entries["bad"].get("meta_error"), entries["bad"]
        verify_fails(cli, "bad", "meta")
    cli.run("verify", "good")
    nothing_crashes(cli)
    # A restore of it is refused after the failed verification, nothing changed.
    before = file_sha(cli.db)
    p = cli.run("restore", "bad", check=False)
    assert p.returncode == 1 and file_sha(cli.db) == before


def test_huge_meta_is_refused_unread(cli, store):
    cli.run("create", "--name", "huge")
    m = good_meta(cli, "huge")
    m["padding"] = "x" * (5 << 20)
    (store / "huge.db.meta").write_text(json.dumps(m))
    assert os.path.getsize(store / "huge.db.meta") > 4 << 20
    assert list_json(cli)["huge"].get("meta_error")
    verify_fails(cli, "huge", "meta")
    nothing_crashes(cli)


def test_missing_meta(cli, store):
    cli.run("create", "--name", "nometa")
    (store / "nometa.db.meta").unlink()
    assert list_json(cli)["nometa"].get("meta_error")
    verify_fails(cli, "nometa", "meta")
    nothing_crashes(cli)


def test_meta_that_is_a_directory_or_fifo(cli, store):
    cli.run("create", "--name", "dirmeta")
    cli.run("create", "--name", "fifometa")
    (store / "dirmeta.db.meta").unlink()
    (store / "dirmeta.db.meta").mkdir()
    (store / "fifometa.db.meta").unlink()
    os.mkfifo(store / "fifometa.db.meta")
    entries = list_json(cli)  # a FIFO must not block the listing
    assert entries["dirmeta"].get("meta_error") and entries["fifometa"].get("meta_error")
    verify_fails(cli, "dirmeta", "meta")
    verify_fails(cli, "fifometa", "meta")
    nothing_crashes(cli)


def test_db_that_is_not_sqlite(cli, store):
    cli.run("create", "--name", "notdb")
    junk = os.urandom(64 * 1024)
    (store / "notdb.db").write_bytes(junk)
    m = good_meta(cli, "notdb")
    import hashlib
    m["checksum"] = hashlib.sha256(junk).hexdigest()
    m["size_bytes"] = len(junk)
    (store / "notdb.db.meta").write_text(json.dumps(m))
    verify_fails(cli, "notdb")
    nothing_crashes(cli)
    before = file_sha(cli.db)
    p = cli.run("restore", "notdb", "--no-verify", check=False)
    assert p.returncode == 1, p.stderr
    assert file_sha(cli.db) == before


@pytest.mark.parametrize("keep", [0, 100, 4096, 8192])
def test_truncated_db(cli, store, keep):
    cli.run("create", "--name", "cut")
    os.truncate(store / "cut.db", keep)
    verify_fails(cli, "cut")
    nothing_crashes(cli)


def test_symlinked_db_is_not_listed_or_followed(cli, store, tmp_path):
    cli.run("create", "--name", "real")
    secret = make_sample_db(tmp_path / "elsewhere" / "secret.db", rows=10)
    secret_sha = file_sha(secret)
    os.symlink(secret, store / "evil.db")
    os.symlink("/etc/passwd", store / "passwd.db")
    os.symlink(store / "real.db", store / "alias.db")
    shutil.copy(store / "real.db.meta", store / "alias.db.meta")
    assert sorted(list_json(cli)) == ["real"]
    for name in ("evil", "passwd", "alias"):
        p = cli.run("verify", name, check=False)
        assert p.returncode == 1, (name, p.stdout)
        assert "no backup" in p.stderr.lower() or "not" in p.stderr.lower(), p.stderr
        p = cli.run("restore", name, check=False)
        assert p.returncode == 1, (name, p.stdout)
    # verify of everything does not touch them either.
    p = cli.run("verify", check=False)
    assert p.returncode == 0, p.stderr
    assert "evil" not in p.stdout and "passwd" not in p.stdout
    # delete of a planted link never removes its target.
    cli.run("delete", "evil", check=False)
    assert secret.exists() and file_sha(secret) == secret_sha
    assert Path("/etc/passwd").exists()
    nothing_crashes(cli)


def test_symlinked_sidecars_are_not_followed(cli, store, tmp_path):
    cli.run("create", "--name", "a")
    cli.run("create", "--name", "b")
    outside = tmp_path / "outside"
    outside.mkdir()
    # A valid meta and an "ok" verify result outside, linked in.
    shutil.copy(store / "a.db.meta", outside / "a.meta")
    (outside / "ok.verify").write_text(json.dumps({"status": "ok", "checked_at": "x"}))
    (store / "a.db.meta").unlink()
    os.symlink(outside / "a.meta", store / "a.db.meta")
    os.symlink(outside / "ok.verify", store / "b.db.verify")
    entries = list_json(cli)
    assert entries["a"].get("meta_error")
    assert entries["b"]["verify"] == "unverified"
    verify_fails(cli, "a", "meta")
    # Verifying b replaces the planted link, never writes through it.
    cli.run("verify", "b")
    assert json.loads((outside / "ok.verify").read_text())["checked_at"] == "x"
    nothing_crashes(cli)


def test_hard_link_planted_in_the_store(cli, store, tmp_path):
    secret = make_sample_db(tmp_path / "elsewhere" / "secret.db", rows=10)
    before = file_sha(secret)
    cli.run("create", "--name", "real")
    os.link(secret, store / "linked.db")
    entries = list_json(cli)
    assert set(entries) == {"real", "linked"}
    assert entries["linked"].get("meta_error")
    verify_fails(cli, "linked", "meta")
    p = cli.run("restore", "linked", check=False)
    assert p.returncode == 1
    # Without metadata it is not a backup: delete refuses it, the link stays.
    p = cli.run("delete", "linked", check=False)
    assert p.returncode == 1 and "not a backup" in p.stderr, p.stderr
    assert (store / "linked.db").exists()
    assert secret.exists() and file_sha(secret) == before
    nothing_crashes(cli)


def test_special_files_named_like_backups(cli, store):
    cli.run("create", "--name", "real")
    (store / "dir.db").mkdir()
    os.mkfifo(store / "fifo.db")
    (store / "fifo.db.meta").write_text("{}")
    assert sorted(list_json(cli)) == ["real"]
    for name in ("dir", "fifo"):
        p = cli.run("verify", name, check=False)
        assert p.returncode == 1, p.stdout
    nothing_crashes(cli)
    assert (store / "dir.db").is_dir() and stat.S_ISFIFO(os.lstat(store / "fifo.db").st_mode)


def test_wrong_modes_are_reported_or_tolerated(cli, store):
    cli.run("create", "--name", "m0")
    cli.run("create", "--name", "m1")
    os.chmod(store / "m0.db", 0o000)
    os.chmod(store / "m0.db.meta", 0o000)
    os.chmod(store / "m1.db", 0o666)
    os.chmod(store, 0o777)
    nothing_crashes(cli)
    assert sorted(list_json(cli)) == ["m0", "m1"]
    # Whoever reads them (root here) still verifies them; nothing else is changed.
    for n in ("m0", "m1"):
        p = cli.run("verify", n, check=False)
        assert p.returncode in (0, 1), p.stderr


def test_planted_lock_and_audit_symlinks_are_not_followed(cli, store, tmp_path):
    cli.run("create", "--name", "first")
    target = tmp_path / "target"
    target.write_text("precious\n")
    (store / "audit.jsonl").unlink()
    os.symlink(target, store / "audit.jsonl")
    p = cli.run("create", "--name", "second", check=False)
    assert p.returncode in (0, 1)
    (store / ".lock").unlink()
    os.symlink(target, store / ".lock")
    p = cli.run("create", "--name", "third", check=False)
    assert p.returncode in (0, 1), p.stderr
    p = cli.run("--retention-days", "0", "--keep-min", "0", "cleanup", check=False)
    assert p.returncode in (0, 1), p.stderr
    assert target.read_text() == "precious\n"


def test_garbage_audit_log_does_not_break_cleanup(cli, store):
    cli.run("create", "--name", "x")
    with open(store / "audit.jsonl", "ab") as f:
        f.write(os.urandom(4096) + b"\n" + b"{" * 5000 + b"\n" + b'{"time": 5}\n' +
                b'{"time": "2001-01-01T00:00:00"}\n' + b"no newline at the end")
    p = cli.run("cleanup", check=False)
    assert p.returncode == 0, p.stderr
    nothing_crashes(cli)


def test_temp_files_of_live_processes_survive_and_dead_ones_go(cli, store):
    cli.run("create", "--name", "x")
    mine = f".x.create.{os.getpid()}.AbCdEf.tmp"
    dead_pid = 4194304 + 7  # above pid_max: never alive
    dead = f".x.create.{dead_pid}.AbCdEf.tmp"
    odd = [".x.create.0.AbCdEf.tmp", ".x.create.-5.AbCdEf.tmp", ".x.tmp", "..tmp",
           f".x.create.{dead_pid}.AbCdEf.tmp-wal"]
    for n in [mine, dead] + odd:
        (store / n).write_text("partial")
    cli.run("cleanup", "--dry-run")
    left = set(os.listdir(store))
    assert mine in left
    assert dead not in left and f".x.create.{dead_pid}.AbCdEf.tmp-wal" not in left
    assert sorted(listed(cli)) == ["x"]
    for n in [mine] + odd:
        if (store / n).exists():
            (store / n).unlink()


# ---- permissions whatever the umask ----

def modes(store):
    out = {}
    for n in os.listdir(store):
        out[n] = stat.S_IMODE(os.lstat(Path(store) / n).st_mode)
    return out


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_store_and_files_are_private_whatever_the_umask(tmp_path, umask):
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=50)
    store = tmp_path / "data" / "deep" / "backups"
    base = [str(BRI_BACKUP), "--db", str(db), "--backup-dir", str(store)]
    for args in (["create", "--name", "one", "--verify"], ["create"],
                 ["restore", "one"], ["verify"], ["cleanup"], ["delete", "one"],
                 ["create", "--name", "two", "--verify", "--cleanup"]):
        rc, out, err = run_bytes(base + args, umask=umask)
        assert rc == 0, (args, err)
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
    m = modes(store)
    assert m, m
    for n, mode in m.items():
        assert mode == 0o600, (oct(umask), n, oct(mode))
    assert temp_files(store) == []


def test_unprivileged_user_gets_a_clear_refusal(tmp_path):
    if os.getuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to act as another user")
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=50)
    cli = Cli(db, tmp_path / "data" / "backups")
    cli.run("create", "--name", "root_only")
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "data", 0o755)
    nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--"]
    base = [str(BRI_BACKUP), "--db", str(db), "--backup-dir", str(cli.store)]
    before = store_files(cli.store)
    for args in (["create", "--name", "intruder"], ["list"], ["verify", "root_only"],
                 ["delete", "root_only"], ["restore", "root_only"], ["cleanup"]):
        rc, out, err = run_bytes(nobody + base + args)
        assert rc == 1, (args, rc, out, err)
        assert err.strip(), args
        assert "permission denied" in err.lower() or "cannot" in err.lower(), (args, err)
    assert store_files(cli.store) == before


# ---- hostile paths to verify and restore ----

def test_verify_and_restore_of_hostile_paths(cli, store, tmp_path):
    cli.run("create", "--name", "one")
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    (tmp_path / "dir.db").mkdir()
    text = tmp_path / "text.db"
    text.write_text("not a database\n")
    (tmp_path / "empty.db").write_bytes(b"")
    (tmp_path / "text.db.meta").write_text("{}")
    before = file_sha(cli.db)
    env = dict(os.environ, BRI_BACKUP=str(BRI_BACKUP), BRI_DB=str(cli.db),
               BRI_BACKUP_DIR=str(store))
    for path in (fifo, tmp_path / "dir.db", text, "/dev/zero", "/dev/null", "/etc/passwd",
                 "/proc/self/status", tmp_path / "empty.db", tmp_path / "missing.db",
                 tmp_path):
        # verify never hangs on a FIFO or a device and never passes.
        p = cli.run("verify", str(path), check=False, timeout=30)
        assert p.returncode == 1, (path, p.stdout, p.stderr)
        # A zero-length file (empty.db, /proc/self/status) is an empty
        # database to SQLite: refused too, even with --no-verify.
        for args in (["restore", str(path)], ["restore", "--no-verify", str(path)]):
            p = cli.run(*args, check=False, timeout=30)
            assert p.returncode == 1, (args, p.stdout, p.stderr)
            assert p.stderr.strip()
        rc, out, err = run_bytes([str(ROOT / "scripts/restore_database"), "--no-verify",
                                  str(path)], env=env, timeout=30)
        assert rc == 1, (path, out, err)
        assert file_sha(cli.db) == before, path
    # Nothing was added to the store: no safety backup for a refused restore.
    assert listed(cli) == ["one"]
    assert temp_files(store) == []


def test_refused_names_are_shown_without_control_characters(cli, store):
    """A name carrying a terminal escape sequence or a forged line is refused,
    and the message shows it defanged: no ESC, no newline from the name."""
    name = "a\x1b[31mRED\nbri-backup: forged line"
    p = cli.run("create", "--name", name, check=False)
    assert p.returncode == 2
    assert "\x1b" not in p.stderr
    assert "forged line" not in p.stderr.split("\n", 1)[1]
    assert "a?[31mRED?bri-backup: forged line" in p.stderr.splitlines()[0]
    assert not store.exists() or not list(store.glob("*.db"))
