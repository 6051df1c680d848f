"""bri-backup migrate --to plain|pages (SPEC.md section 5): a store
converted in place both ways, byte for byte (every checksum unchanged, the
bytes hashed again), pins kept; kill -9 at each stage (the pause points
between stages) leaves every backup complete and verifiable, and running
migrate again finishes the job, or with the other --to undoes it; refused
while another process holds the store's lock, and stopped by a damaged
backup before anything is switched. An encrypted store is decrypted
(--to plain), a store without encryption encrypted (--to pages --key-file),
and an encrypted one re-keyed (--new-key-file): the same kills at each stage,
with the key in force before and after the switch; a wrong or missing key
changes nothing."""

import fcntl
import hashlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import (BRI_BACKUP, audit_records, backup_file, both_formats, seal, sidecar,
                      sh, store_key, unseal, wait_until, write_sidecar)
from test_cli import meta_of, sha256sum

OTHER = {"plain": "pages", "pages": "plain"}
STAGES = ["migrate-converted-one", "migrate-converted", "migrate-switched",
          "migrate-purged-one"]


def fill(cli, live_db):
    """Three backups of a changing database (b1 pinned); their checksums."""
    con = sqlite3.connect(live_db)
    for i in (1, 2, 3):
        con.execute("update memory set content = content || ? where id % 7 = ?", (str(i), i))
        con.execute("insert into memory(video_id, content) values (1, ?)", (f"row {i}",))
        con.commit()
        cli.run("create", "--name", f"b{i}")
    con.close()
    cli.run("pin", "b1", "--reason", "keep")
    return {f"b{i}": meta_of(backup_file(cli.store, f"b{i}"))["checksum"] for i in (1, 2, 3)}


def format_of(store):
    f = store / "store.json"
    return json.loads(f.read_text())["format"] if f.exists() else "plain"


def listed(cli):
    return {b["name"]: b for b in json.loads(cli.run("--json", "list").stdout)}


def assert_complete(cli, sums):
    """Every backup is listed with its checksum, its bytes hash to it, and it verifies."""
    got = listed(cli)
    assert set(got) == set(sums), got.keys()
    for name, checksum in sums.items():
        assert got[name]["checksum"] == checksum
        assert sha256sum(backup_file(cli.store, name)) == checksum
    p = cli.run("verify", check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert [n for n, b in got.items() if b["pinned"]] == ["b1"]


def assert_only(store, fmt):
    """The store holds the files of fmt only, and no marker."""
    names = os.listdir(store)
    assert "migrate.json" not in names
    if fmt == "plain":
        assert not [n for n in names if n.endswith(".manifest") or n.startswith("pack-")
                    or n in ("pages.secret", "store.json")], names
    else:
        assert not [n for n in names if ".db" in n], names


def migrate(cli, to, **kw):
    return cli.run("migrate", "--to", to, **kw)


def kill_at(cli, pause_points, point, *args):
    """Runs bri-backup args and kills it (-9) once it reaches the pause point."""
    pause_points.arm(point)
    proc = subprocess.Popen([str(BRI_BACKUP), "--db", str(cli.db), "--backup-dir",
                             str(cli.store), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=pause_points.env())
    try:
        pause_points.wait_reached(point)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        pause_points.release(point)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)


@both_formats
def migrate_beside_a_mount(m, store, run_migrate):
    """Runs a migrate (run_migrate() gives its CompletedProcess) while mount m
    runs: a mount just started may hold the store's lock a moment (its start's
    own work), so a refusal for the lock is run again once it is free. Then
    the mount, opened before, creates nothing in the old form."""
    got = {}

    def run():
        got["p"] = run_migrate()
        return "locked" not in got["p"].stderr

    assert wait_until(run, 60)
    assert got["p"].returncode == 0, got["p"].stderr
    p = sh(f"echo late > {m.path}/ctl/create", check=False)
    assert p.returncode != 0
    assert not list(store.glob("late*")), os.listdir(store)


def test_migrate_converts_every_backup_byte_for_byte(cli, live_db, store, store_format):
    sums = fill(cli, live_db)
    to = OTHER[store_format]
    out = migrate(cli, to).stdout
    assert f"a {to} store; 3 backup(s) converted from {store_format}" in out
    assert format_of(store) == to
    assert_only(store, to)
    assert_complete(cli, sums)
    assert "already" in migrate(cli, to).stdout
    # New backups go into the new format, and back again loses nothing either.
    cli.run("create", "--name", "after")
    sums["after"] = meta_of(backup_file(store, "after"))["checksum"]
    migrate(cli, store_format)
    assert_only(store, store_format)
    assert_complete(cli, sums)


@both_formats
@pytest.mark.parametrize("stage", STAGES)
def test_migrate_killed_at_each_stage_loses_nothing(cli, live_db, store, store_format,
                                                    pause_points, stage):
    sums = fill(cli, live_db)
    to = OTHER[store_format]
    kill_at(cli, pause_points, stage, "migrate", "--to", to)
    switched = stage in ("migrate-switched", "migrate-purged-one")
    assert format_of(store) == (to if switched else store_format)
    assert (store / "migrate.json").exists()
    assert_complete(cli, sums)
    out = migrate(cli, to).stdout
    assert ("finished an interrupted migrate" in out) == switched, out
    assert format_of(store) == to
    assert_only(store, to)
    assert_complete(cli, sums)


@both_formats
def test_migrate_undone_before_the_switch(cli, live_db, store, store_format, pause_points):
    """Killed before the switch, migrate --to the old format removes the partial copy."""
    sums = fill(cli, live_db)
    kill_at(cli, pause_points, "migrate-converted", "migrate", "--to", OTHER[store_format])
    assert "finished an interrupted migrate" in migrate(cli, store_format).stdout
    assert_only(store, store_format)
    assert_complete(cli, sums)


def test_backup_deleted_between_runs_stays_deleted(cli, live_db, store, pause_points):
    """A backup deleted after a killed migrate is not brought back by the next run
    from the copy the killed run had made."""
    sums = fill(cli, live_db)
    kill_at(cli, pause_points, "migrate-converted", "migrate", "--to", "pages")
    cli.run("delete", "b3")
    assert (store / "b3.manifest").exists()  # the killed run's copy
    del sums["b3"]
    migrate(cli, "pages")
    assert_only(store, "pages")
    assert_complete(cli, sums)


@both_formats
def test_migrate_refused_while_the_store_is_locked(cli, live_db, store, store_format):
    sums = fill(cli, live_db)
    before = sorted(os.listdir(store))
    with open(store / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        p = migrate(cli, OTHER[store_format], check=False)
    assert p.returncode == 1 and "locked" in p.stderr, p.stderr
    assert sorted(os.listdir(store)) == before
    assert_complete(cli, sums)


def test_damaged_backup_stops_migrate_before_the_switch(cli, live_db, store):
    """A plain backup whose bytes no longer match its checksum is named, nothing
    is switched or lost; once it is deleted, migrate goes through."""
    sums = fill(cli, live_db)
    with open(store / "b2.db", "r+b") as f:
        f.seek(4096 + 100)
        byte = f.read(1)
        f.seek(4096 + 100)
        f.write(bytes([byte[0] ^ 0x01]))
    p = migrate(cli, "pages", check=False)
    assert p.returncode == 1 and "b2" in p.stderr and "checksum" in p.stderr, p.stderr
    assert format_of(store) == "plain"
    assert (store / "b2.db").exists()
    cli.run("delete", "b2")
    del sums["b2"]
    migrate(cli, "pages")
    assert_only(store, "pages")
    assert_complete(cli, sums)


def test_migrate_usage(cli):
    p = cli.run("migrate", check=False)
    assert p.returncode == 2 and "--to" in p.stderr
    p = cli.run("migrate", "--to", "tapes", check=False)
    assert p.returncode == 2


def test_mount_opened_before_migrate_writes_nothing_in_the_old_format(cli, live_db, store,
                                                                      tmp_path):
    """A mount started on a plain store that migrate then converts refuses to
    create (a plain .db in a page store would be invisible to it), and a
    restarted mount creates in the new format."""
    from conftest import Mount
    sums = fill(cli, live_db)
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    try:
        migrate_beside_a_mount(m, store, lambda: migrate(cli, "pages", check=False))
    finally:
        m.stop()
    assert_only(store, "pages")
    assert_complete(cli, sums)
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    try:
        sh(f"echo later > {m.path}/ctl/create")
        assert (store / "later.manifest").exists()
    finally:
        m.stop()


def test_migrate_out_of_space_loses_nothing_and_finishes_after(tmp_path):
    """A page store on a small file system has no room for its plain copies:
    migrate --to plain fails with a clear error, every backup is still there
    and verifies in the page store, and with room again a rerun finishes."""
    import subprocess as sp
    from conftest import Cli, make_sample_db
    from test_reliability import tmpfs
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=3000)
    with tmpfs(tmp_path / "small", "4m") as mnt:
        store = mnt / "backups"
        cli = Cli(db, store)
        cli.run("init", "--format", "pages")
        sums = fill(cli, db)
        used = sum(f.stat().st_size for f in store.iterdir())
        size = db.stat().st_size
        room = used + size + size // 2  # one plain copy fits, not three
        sp.run(["mount", "-o", f"remount,size={room}", str(mnt)], check=True, timeout=30)
        p = migrate(cli, "plain", check=False)
        assert p.returncode == 1 and "space" in p.stderr.lower(), p.stderr
        assert format_of(store) == "pages"
        assert_complete(cli, sums)
        sp.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True, timeout=30)
        migrate(cli, "plain")
        assert_only(store, "plain")
        assert_complete(cli, sums)


# ---- Encryption: migrate decrypts, encrypts and re-keys (built beside, swapped in) ----
#
# Each conversion: (the store it starts as, the key options of the command,
# the store it ends as). A store is "plain", "pages" (no key), or
# ("sealed", KEY) for an encrypted page store whose key file is KEY ("k1":
# 32 random bytes; "k2": a passphrase).
KEY_CHANGES = {
    "decrypt": (("sealed", "k1"), ["--key-file", "k1", "migrate", "--to", "plain"], "plain"),
    "encrypt-plain": ("plain", ["--key-file", "k2", "migrate", "--to", "pages"],
                      ("sealed", "k2")),
    "encrypt-pages": ("pages", ["migrate", "--to", "pages", "--new-key-file", "k1"],
                      ("sealed", "k1")),
    "rekey": (("sealed", "k1"),
              ["--key-file", "k1", "migrate", "--to", "pages", "--new-key-file", "k2"],
              ("sealed", "k2")),
}


def key_files(tmp_path):
    k1, k2 = tmp_path / "k1", tmp_path / "k2"
    k1.write_bytes(os.urandom(32))
    k2.write_text("a passphrase for the re-keyed store\n")
    return {"k1": k1, "k2": k2}


def key_args(args, keys):
    return [str(keys[a]) if a in keys else a for a in args]


def use_store(monkeypatch, kind, keys):
    """$BRI_KEY_FILE as the store of kind needs it: every command, export and
    sidecar reader of the helpers above then opens it."""
    if isinstance(kind, tuple):
        monkeypatch.setenv("BRI_KEY_FILE", str(keys[kind[1]]))
    else:
        monkeypatch.delenv("BRI_KEY_FILE", raising=False)


def make_store(cli, kind, keys, monkeypatch):
    monkeypatch.delenv("BRI_KEY_FILE", raising=False)
    if kind == "pages":
        cli.run("init", "--format", "pages")
    elif isinstance(kind, tuple):
        cli.run("init", "--format", "pages", "--key-file", str(keys[kind[1]]))
    use_store(monkeypatch, kind, keys)


def assert_store_is(store, kind):
    conf = json.loads((store / "store.json").read_text()) if (store / "store.json").exists() \
        else None
    if kind == "plain":
        assert conf is None
    elif kind == "pages":
        assert conf["format"] == "pages" and conf["encryption"] == "none"
    else:
        assert conf["format"] == "pages" and conf["encryption"] == "aes-256-gcm"
        assert conf["key"] == ("raw" if kind[1] == "k1" else "passphrase")


def no_plaintext(*folders):
    """No file of the folders holds a database or its rows in the clear."""
    for folder in folders:
        for p in Path(folder).rglob("*"):
            if p.is_file():
                data = p.read_bytes()
                assert b"SQLite format 3" not in data and b"row 2" not in data, p


def write_store_file(store, name, data):
    """A store file as the store keeps it: sealed (bound to its name) when encrypted."""
    key = store_key(store)
    (store / name).write_bytes(data if key is None else seal(key, data, name.encode()))


def read_store_file(store, name):
    key = store_key(store)
    data = (store / name).read_bytes()
    return data if key is None else unseal(key, data, name.encode())


def beside(store):
    return store.parent / f".{store.name}.migrate"


def run_env(extra=None):
    env = dict(os.environ)
    env.pop("BRI_KEY_FILE", None)  # the command's own key options only
    env.update(extra or {})
    return env


@pytest.mark.parametrize("change", sorted(KEY_CHANGES))
def test_key_change_converts_every_backup(cli, live_db, store, tmp_path, monkeypatch, change):
    start, args, end = KEY_CHANGES[change]
    keys = key_files(tmp_path)
    make_store(cli, start, keys, monkeypatch)
    sums = fill(cli, live_db)
    before = [r["operation"] for r in audit_records(store)]
    # The restore reports (the mount writes them) come along too, in the new form.
    reports = b'{"backup": "b1", "text": "restored"}\n'
    write_store_file(store, "restore_reports.jsonl", reports)
    # A file of no format's (the user's) stays in the store.
    (store / "notes.txt").write_text("mine\n")
    # b1 was pushed offsite: that copy keeps the old form and key (a warning says so).
    write_sidecar(backup_file(store, "b1"), "offsite", "uploaded 2026-01-01T00:00:00\n")
    p = cli.run(*key_args(args, keys), env=run_env())
    assert "3 backup(s) converted" in p.stdout, p.stdout
    assert ("NOT encrypted" in p.stderr) == (change == "decrypt"), p.stderr
    assert "pushed offsite" in p.stderr and "new --remote prefix" in p.stderr, p.stderr
    assert_store_is(store, end)
    assert not beside(store).exists()
    use_store(monkeypatch, end, keys)
    assert_only(store, "plain" if end == "plain" else "pages")
    assert_complete(cli, sums)
    # The audit log came along, in the new store's form, with the migrate at its end.
    after = [r["operation"] for r in audit_records(store)]
    assert after[:len(before)] == before and "migrate" in after[len(before):], after
    assert read_store_file(store, "restore_reports.jsonl") == reports
    assert (store / "notes.txt").read_text() == "mine\n"
    assert not sidecar(backup_file(store, "b1"), "offsite").exists()
    if isinstance(end, tuple):
        no_plaintext(store)
    if isinstance(start, tuple) and isinstance(end, tuple):
        # The old key opens the store no more.
        p = cli.run("list", check=False, env=run_env({"BRI_KEY_FILE": str(keys[start[1]])}))
        assert p.returncode != 0, p.stdout
    # Asked again for what it now is: nothing to do (the old key, given again, is wrong now).
    to = "plain" if end == "plain" else "pages"
    assert "already" in cli.run("migrate", "--to", to).stdout


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("change", sorted(KEY_CHANGES))
def test_key_change_killed_at_each_stage_loses_nothing(cli, live_db, store, tmp_path,
                                                       monkeypatch, pause_points, change,
                                                       stage):
    """kill -9 at each pause point: every backup verifies with the key the
    store.json in force says (the old one before the switch, the new one
    after), and the same command run again finishes."""
    start, args, end = KEY_CHANGES[change]
    keys = key_files(tmp_path)
    make_store(cli, start, keys, monkeypatch)
    sums = fill(cli, live_db)
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.delenv("BRI_KEY_FILE", raising=False)
    kill_at(cli, pause_points, stage, *key_args(args, keys))
    switched = stage in ("migrate-switched", "migrate-purged-one")
    assert_store_is(store, end if switched else start)
    assert (store / "migrate.json").exists()
    if isinstance(start, tuple) and isinstance(end, tuple):
        # Between two encrypted forms nothing is ever in the clear, on disk or in $TMPDIR.
        no_plaintext(store, beside(store), tmp)
    use_store(monkeypatch, end if switched else start, keys)
    assert_complete(cli, sums)
    if isinstance(start, tuple) and isinstance(end, tuple):
        # The key not in force does not open the store: the switch is the one step.
        other = keys[(start if switched else end)[1]]
        p = cli.run("list", check=False, env=run_env({"BRI_KEY_FILE": str(other)}))
        assert p.returncode != 0 and "does not open" in p.stderr, p.stderr
    p = cli.run(*key_args(args, keys), env=run_env())
    assert ("finished an interrupted migrate" in p.stdout) == switched, p.stdout
    assert_store_is(store, end)
    assert not beside(store).exists()
    use_store(monkeypatch, end, keys)
    assert_only(store, "plain" if end == "plain" else "pages")
    assert_complete(cli, sums)


@pytest.mark.parametrize("change,undo", [
    ("decrypt", ["--key-file", "k1", "migrate", "--to", "pages"]),
    ("rekey", ["--key-file", "k1", "migrate", "--to", "pages"]),
    ("encrypt-plain", ["migrate", "--to", "plain"]),
])
def test_key_change_undone_before_the_switch(cli, live_db, store, tmp_path, monkeypatch,
                                             pause_points, change, undo):
    """Killed before the switch, asking for the store as it is removes the copy beside."""
    start, args, _ = KEY_CHANGES[change]
    keys = key_files(tmp_path)
    make_store(cli, start, keys, monkeypatch)
    sums = fill(cli, live_db)
    monkeypatch.delenv("BRI_KEY_FILE", raising=False)
    kill_at(cli, pause_points, "migrate-converted", *key_args(args, keys))
    assert beside(store).exists()
    p = cli.run(*key_args(undo, keys), env=run_env())
    assert "finished an interrupted migrate" in p.stdout, p.stdout
    assert not beside(store).exists() and not (store / "migrate.json").exists()
    assert_store_is(store, start)
    use_store(monkeypatch, start, keys)
    assert_complete(cli, sums)


def folder_state(store):
    """Every file of the store and of its parent folder's listing, for "nothing changed"."""
    return ({p.name: p.read_bytes() for p in sorted(store.iterdir()) if p.is_file()},
            sorted(os.listdir(store.parent)))


def test_wrong_or_missing_key_changes_nothing(cli, live_db, store, tmp_path, monkeypatch):
    keys = key_files(tmp_path)
    wrong = tmp_path / "wrong"
    wrong.write_bytes(os.urandom(32))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    make_store(cli, ("sealed", "k1"), keys, monkeypatch)
    sums = fill(cli, live_db)
    monkeypatch.delenv("BRI_KEY_FILE", raising=False)
    state = folder_state(store)
    for args, why in (
            (["migrate", "--to", "plain"], "is encrypted"),
            (["--key-file", str(wrong), "migrate", "--to", "plain"], "does not open"),
            (["--key-file", str(keys["k2"]), "migrate", "--to", "pages", "--new-key-file",
              str(keys["k1"])], "does not open"),
            (["--key-file", str(keys["k1"]), "migrate", "--to", "pages", "--new-key-file",
              str(tmp_path / "absent")], "absent"),
            (["--key-file", str(keys["k1"]), "migrate", "--to", "pages", "--new-key-file",
              str(empty)], "empty"),
            (["--key-file", str(keys["k1"]), "migrate", "--to", "plain", "--new-key-file",
              str(keys["k2"])], "--new-key-file")):
        p = cli.run(*args, check=False, env=run_env())
        assert p.returncode == 1 and why in p.stderr, (args, p.stderr)
        assert folder_state(store) == state, args
    use_store(monkeypatch, ("sealed", "k1"), keys)
    assert_complete(cli, sums)


def test_key_for_a_store_without_encryption_only_with_to_pages(cli, live_db, store, tmp_path):
    keys = key_files(tmp_path)
    sums = fill(cli, live_db)
    state = folder_state(store)
    for args in (["--key-file", str(keys["k1"]), "migrate", "--to", "plain"],
                 ["--key-file", str(keys["k1"]), "migrate", "--to", "pages",
                  "--new-key-file", str(keys["k2"])]):
        p = cli.run(*args, check=False, env=run_env())
        assert p.returncode == 1 and "not encrypted" in p.stderr, p.stderr
        assert folder_state(store) == state
    assert_complete(cli, sums)


def test_key_change_refused_while_the_store_is_locked(cli, live_db, store, tmp_path,
                                                      monkeypatch):
    keys = key_files(tmp_path)
    make_store(cli, ("sealed", "k1"), keys, monkeypatch)
    sums = fill(cli, live_db)
    before = sorted(os.listdir(store.parent))
    with open(store / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        p = cli.run(*key_args(KEY_CHANGES["rekey"][1], keys), check=False, env=run_env())
    assert p.returncode == 1 and "locked" in p.stderr, p.stderr
    assert sorted(os.listdir(store.parent)) == before
    assert not (store / "migrate.json").exists()
    assert_complete(cli, sums)


def test_mount_opens_the_rekeyed_store_with_the_new_key(cli, live_db, store, tmp_path,
                                                        monkeypatch):
    """A mount with the old key, running while the store is re-keyed, writes
    nothing (its folder was swapped away); restarted, the old key is refused
    and the new one serves every backup byte for byte and creates sealed."""
    from conftest import Mount
    keys = key_files(tmp_path)
    make_store(cli, ("sealed", "k1"), keys, monkeypatch)
    sums = fill(cli, live_db)
    monkeypatch.delenv("BRI_KEY_FILE", raising=False)
    m = Mount(live_db, store, tmp_path / "mnt", options=[f"key_file={keys['k1']}"])
    m.start()
    try:
        migrate_beside_a_mount(m, store, lambda: cli.run(*key_args(KEY_CHANGES["rekey"][1], keys),
                                                         check=False, env=run_env()))
    finally:
        m.stop()
    m = Mount(live_db, store, tmp_path / "mnt", options=[f"key_file={keys['k1']}"])
    with pytest.raises(AssertionError):
        m.start()  # the old key opens it no more
    m.stop()
    m = Mount(live_db, store, tmp_path / "mnt", options=[f"key_file={keys['k2']}"])
    m.start()
    try:
        for name, checksum in sums.items():
            served = (m.path / name / "bri.db").read_bytes()
            assert hashlib.sha256(served).hexdigest() == checksum
        (m.path / "ctl" / "create").write_text("mounted\n")
        assert (store / "mounted.manifest").exists()
    finally:
        m.stop()
    no_plaintext(store)


def test_store_folder_that_is_a_mount_point_is_refused(tmp_path, monkeypatch):
    """Built beside and swapped: a store folder that is a file system's root cannot
    be swapped; refused, nothing changed."""
    from conftest import Cli, make_sample_db
    from test_reliability import tmpfs
    keys = key_files(tmp_path)
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=50)
    with tmpfs(tmp_path / "data" / "backups", "16m") as store:
        cli = Cli(db, store)
        make_store(cli, ("sealed", "k1"), keys, monkeypatch)
        sums = fill(cli, db)
        state = folder_state(store)
        p = cli.run(*key_args(KEY_CHANGES["rekey"][1], keys), check=False, env=run_env())
        assert p.returncode == 1 and "mount point" in p.stderr, p.stderr
        assert folder_state(store) == state
        assert_complete(cli, sums)


def test_decrypt_out_of_space_loses_nothing_and_finishes_after(tmp_path, monkeypatch):
    """An encrypted page store on a small file system has no room for its plain
    copies: migrate --to plain fails with a clear error, every backup still
    verifies with the key, and with room again the same command finishes."""
    import subprocess as sp
    from conftest import Cli, make_sample_db
    from test_reliability import tmpfs
    keys = key_files(tmp_path)
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=3000)
    with tmpfs(tmp_path / "small", "4m") as mnt:
        store = mnt / "backups"
        cli = Cli(db, store)
        make_store(cli, ("sealed", "k1"), keys, monkeypatch)
        sums = fill(cli, db)
        used = sum(f.stat().st_size for f in store.iterdir())
        size = db.stat().st_size
        room = used + size + size // 2  # one plain copy fits, not three
        sp.run(["mount", "-o", f"remount,size={room}", str(mnt)], check=True, timeout=30)
        args = key_args(KEY_CHANGES["decrypt"][1], keys)
        p = cli.run(*args, check=False, env=run_env())
        assert p.returncode == 1 and "space" in p.stderr.lower(), p.stderr
        assert_store_is(store, ("sealed", "k1"))
        assert_complete(cli, sums)
        sp.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True, timeout=30)
        cli.run(*args, env=run_env())
        assert not beside(store).exists()
        use_store(monkeypatch, "plain", keys)
        assert_only(store, "plain")
        assert_complete(cli, sums)
