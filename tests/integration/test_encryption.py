"""An encrypted page store (SPEC.md section 5), where the common tests run on
"pages-sealed" (all_formats) cannot reach: what store.json records for a
raw key and for a passphrase, nothing of the database in the clear in the
store folder, a missing or wrong key refused by every command and by the
mount with the folder left byte for byte as it was, a key for a store that
is not encrypted refused, a flipped bit in a pack a failed verify naming the
backup and the page, and the mount serving an encrypted store's backups."""

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from conftest import BRI_BACKUP, Cli, Mount, audit_records, backup_file, python_env, read_sidecar, unseal
from test_cli import sha256sum


def raw_key(path):
    path.write_bytes(os.urandom(32))
    return path


def sealed_store(live_db, store, tmp_path):
    """A page store made with a raw key, one backup in it; (cli, key)."""
    key = raw_key(tmp_path / "store.key")
    cli = Cli(live_db, store)
    cli.run("init", "--format", "pages", "--key-file", str(key))
    cli.run("--key-file", str(key), "create", "--name", "daily", "--verify")
    return cli, key


def folder_bytes(store):
    """Every file of the store folder with its bytes, for "nothing changed"."""
    return {p.name: p.read_bytes() for p in sorted(store.iterdir()) if p.is_file()}


def test_store_json_records_the_key_kind_never_the_key(live_db, store, tmp_path):
    key = raw_key(tmp_path / "raw.key")
    p = Cli(live_db, store).run("init", "--format", "pages", "--key-file", str(key))
    assert p.stdout == f"{store}: a pages store (encrypted)\n"
    conf = json.loads((store / "store.json").read_text())
    assert conf["encryption"] == "aes-256-gcm" and conf["key"] == "raw"
    assert "kdf" not in conf and conf["key_check"]
    assert key.read_bytes().hex() not in (store / "store.json").read_text()
    # The page-id secret is sealed: 32 bytes plus the seal's 36.
    assert (store / "pages.secret").stat().st_size == 32 + 36

    # A passphrase of exactly 32 printable bytes is a passphrase, not a raw key.
    other = tmp_path / "other"
    phrase = tmp_path / "phrase"
    phrase.write_bytes(b"correct horse battery staple 32!")
    Cli(live_db, other).run("init", "--format", "pages", "--key-file", str(phrase))
    conf = json.loads((other / "store.json").read_text())
    assert conf["key"] == "passphrase"
    assert conf["kdf"]["name"] == "scrypt" and conf["kdf"]["n"] >= 16384
    assert conf["kdf"]["r"] == 8 and conf["kdf"]["p"] == 1 and len(conf["kdf"]["salt"]) == 32
    # The same passphrase with its line's newline opens it.
    phrase.write_bytes(b"correct horse battery staple 32!\n")
    cli = Cli(live_db, other)
    cli.run("--key-file", str(phrase), "create", "--name", "p")
    assert "p: ok" in cli.run("--key-file", str(phrase), "verify", "p").stdout
    # Another passphrase: scrypt of it fails the key check; refused, nothing written.
    before = folder_bytes(other)
    wrong = tmp_path / "wrong-phrase"
    wrong.write_text("correct horse battery staple 33!\n")
    p = cli.run("--key-file", str(wrong), "list", check=False)
    assert p.returncode == 1 and "does not open" in p.stderr
    assert folder_bytes(other) == before


def test_create_verify_restore_export_and_no_plaintext_in_the_folder(live_db, store, tmp_path):
    cli, key = sealed_store(live_db, store, tmp_path)
    k = ["--key-file", str(key)]
    meta = json.loads(read_sidecar(backup_file(store, "daily"), "meta", key))
    assert "daily: ok" in cli.run(*k, "verify", "daily").stdout
    out = tmp_path / "out.db"
    cli.run(*k, "export", "daily", str(out))
    assert sha256sum(out) == meta["checksum"]
    cli.run(*k, "pin", "daily", "--reason", "quarterly audit")
    assert "rehearsal of daily: ok" in cli.run(*k, "rehearse", "daily").stdout
    con = sqlite3.connect(live_db)
    con.execute("update memory set content = 'after the backup'")
    con.commit()
    con.close()
    # diff against the live database: its snapshot is taken outside the store.
    assert "memory: 200 changes" in cli.run(*k, "diff", "daily", "live").stdout
    cli.run(*k, "restore", "daily")
    con = sqlite3.connect(live_db)
    assert con.execute("select count(*) from memory where content = 'after the backup'"
                       ).fetchone()[0] == 0
    con.close()
    # What was written: packs, manifests, metas, verify results, a pin, a
    # rehearsal's outcome, a restore report, audit lines, the secret. None
    # holds a known plaintext.
    names = set(os.listdir(store))
    assert {"daily.manifest", "daily.meta", "daily.verify", "daily.pin", "daily.rehearsal",
            "audit.jsonl", "restore_reports.jsonl", "pages.secret"} <= names
    assert any(n.endswith(".pack") for n in names)
    known = [b"SQLite format 3", b"CREATE TABLE", b"videos", b"memory", b"video_context",
             b"checksum", b"integrity", b"quarterly audit", b"backup_time", b"restore",
             b"quick_check", b"rehears",
             meta["checksum"].encode(), b"message 1 "]
    for name, data in folder_bytes(store).items():
        if name == "store.json":
            continue
        for word in known:
            assert word not in data, f"{word!r} in the clear in {name}"
    # The audit log is still one record per line, each opened with the key.
    ops = [r["operation"] for r in audit_records(store, key)]
    assert ops[:1] == ["create"] and "restore" in ops and "pin" in ops
    # A sealed file renamed to another backup's name does not open.
    data = (store / "daily.meta").read_bytes()
    assert unseal(bytes(key.read_bytes()), data, b"daily.meta")
    with pytest.raises(ValueError):
        unseal(bytes(key.read_bytes()), data, b"other.meta")


def test_missing_or_wrong_key_is_refused_and_nothing_is_written(live_db, store, tmp_path):
    cli, key = sealed_store(live_db, store, tmp_path)
    wrong = raw_key(tmp_path / "wrong.key")
    phrase = tmp_path / "phrase"
    phrase.write_text("not the key\n")
    before = folder_bytes(store)
    commands = [("list",), ("verify", "daily"), ("create", "--name", "more"),
                ("delete", "daily"), ("cleanup",), ("pin", "daily"), ("restore", "daily"),
                ("export", "daily", str(tmp_path / "x.db")), ("stats",), ("health",),
                ("init", "--format", "pages")]
    env = {k: v for k, v in os.environ.items() if k != "BRI_KEY_FILE"}
    for args in commands:
        p = cli.run(*args, check=False, env=env)
        assert p.returncode != 0 and "is encrypted" in p.stderr and "--key-file" in p.stderr, \
            (args, p.stderr)
        for bad in (wrong, phrase):
            p = cli.run("--key-file", str(bad), *args, check=False, env=env)
            assert p.returncode != 0 and "does not open" in p.stderr, (args, p.stderr)
        # $BRI_KEY_FILE is a key file too, and a wrong one is as wrong.
        p = cli.run(*args, check=False, env=dict(env, BRI_KEY_FILE=str(wrong)))
        assert p.returncode != 0 and "does not open" in p.stderr, (args, p.stderr)
    assert folder_bytes(store) == before
    assert not (tmp_path / "x.db").exists()
    # The mount: refused before it mounts, nothing written.
    for opts, why in (([], "is encrypted"), ([f"key_file={wrong}"], "does not open")):
        m = Mount(live_db, store, tmp_path / "mnt", options=opts, env=env)
        try:
            m.start()
            raise RuntimeError("mounted without the store's key")
        except AssertionError as e:  # exited before mounting, with its stderr
            assert why in str(e), str(e)
        finally:
            m.stop()
    assert folder_bytes(store) == before
    # The right key still opens it, by option or by $BRI_KEY_FILE.
    assert "daily" in cli.run("list", env=dict(env, BRI_KEY_FILE=str(key))).stdout


def test_a_key_for_a_store_without_encryption_is_refused(live_db, store, tmp_path):
    key = raw_key(tmp_path / "k")
    cli = Cli(live_db, store)
    cli.run("init", "--format", "pages")
    cli.run("create", "--name", "clear")
    before = folder_bytes(store)
    for args in (("list",), ("create", "--name", "x"), ("init", "--format", "pages")):
        p = cli.run("--key-file", str(key), *args, check=False)
        assert p.returncode == 1 and "not encrypted" in p.stderr, (args, p.stderr)
    assert folder_bytes(store) == before
    # A plain store: no backup is written in the clear with a key given.
    plain = Cli(live_db, tmp_path / "plain")
    p = plain.run("--key-file", str(key), "create", "--name", "x", check=False)
    assert p.returncode == 1 and "not encrypted" in p.stderr
    p = plain.run("--key-file", str(key), "init", "--format", "plain", check=False)
    assert p.returncode == 1 and "only a page store" in p.stderr
    assert not any(n.endswith(".db") for n in os.listdir(tmp_path / "plain"))


def test_a_flipped_bit_in_a_pack_fails_verify_naming_backup_and_page(live_db, store,
                                                                     tmp_path):
    cli, key = sealed_store(live_db, store, tmp_path)
    assert cli.run("--key-file", str(key), "scrub").returncode == 0
    pack = next(p for p in store.iterdir() if p.suffix == ".pack")
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x08
    pack.write_bytes(bytes(data))
    p = cli.run("--key-file", str(key), "verify", "daily", check=False)
    assert p.returncode == 1
    out = p.stdout + p.stderr
    assert "backup daily" in out and "page " in out, out
    p = cli.run("--key-file", str(key), "scrub", check=False)  # scrub reads every pack
    assert p.returncode == 1 and pack.name in p.stdout + p.stderr
    data[len(data) // 2] ^= 0x08
    pack.write_bytes(bytes(data))
    assert "daily: ok" in cli.run("--key-file", str(key), "verify", "daily").stdout


def test_mount_serves_an_encrypted_store_and_makes_a_new_one(live_db, store, tmp_path):
    key = raw_key(tmp_path / "k")
    m = Mount(live_db, store, tmp_path / "mnt",
              options=["store_format=pages", f"key_file={key}"])
    m.start()
    try:
        conf = json.loads((store / "store.json").read_text())
        assert conf["format"] == "pages" and conf["encryption"] == "aes-256-gcm"
        (m.path / "ctl" / "create").write_text("served\n")
        served = m.path / "served" / "bri.db"
        meta = json.loads((m.path / "served" / "meta.json").read_text())
        assert hashlib.sha256(served.read_bytes()).hexdigest() == meta["checksum"]
        assert served.stat().st_size == meta["size_bytes"]
        con = sqlite3.connect(f"file:{served}?mode=ro&immutable=1", uri=True)
        try:
            assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
            assert con.execute("select count(*) from memory").fetchone()[0] == 200
        finally:
            con.close()
        # ctl/log reads the sealed audit log; inspect/ reads the backup's pages.
        assert "create served" in (m.path / "ctl" / "log").read_text()
        schema = (m.path / "inspect" / "served" / "schema.sql").read_text()
        assert "CREATE TABLE" in schema and "memory" in schema
    finally:
        m.stop()
    assert b"checksum" not in (store / "served.meta").read_bytes()


def test_python_module_takes_the_key_from_bri_key_file(live_db, store, tmp_path):
    """The Python module opens stores through the core: $BRI_KEY_FILE is its key."""
    cli, key = sealed_store(live_db, store, tmp_path)
    code = textwrap.dedent("""
        from bri_backup import DatabaseBackup
        m = DatabaseBackup()
        m.create_backup("from_python")
        print(m.verify_backup("daily"), m.verify_backup("from_python"),
              sorted(b["name"] for b in m.list_backups()))
    """)
    project = live_db.parent.parent
    p = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                       text=True, timeout=120, env=python_env(BRI_KEY_FILE=str(key)))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "True", "['daily',", "'from_python']"]
    env = {k: v for k, v in python_env().items() if k != "BRI_KEY_FILE"}
    p = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                       text=True, timeout=120, env=env)
    assert p.returncode != 0 and "is encrypted" in p.stderr


def open_files(pid):
    """What the descriptors of process pid name (/proc/PID/fd)."""
    names = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            names.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass  # closed meanwhile
    return names


def test_verify_of_a_page_store_makes_no_temporary_file(live_db, store, tmp_path,
                                                         pause_points):
    """A page store's verify reads the backup from its packs through the
    store's cache of decompressed groups, bounded whatever the backup's size:
    it keeps no copy of the backup in a temporary file (which for an
    encrypted store would be the backup in the clear, and for any store
    needs temporary space the backup's size). Held at verify_read_done (every
    byte read, the backup still open), the verify holds no temporary file,
    named in $TMPDIR or unnamed (deleted); encrypted and not. (Before, a
    store without a key had one there: verify's spill.)"""
    plain_pages = tmp_path / "unsealed"
    Cli(live_db, plain_pages).run("init", "--format", "pages")
    Cli(live_db, plain_pages).run("create", "--name", "daily")
    cli, key = sealed_store(live_db, store, tmp_path)
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    reached = pause_points.dir / "verify_read_done.reached"
    for folder, extra in ((plain_pages, []), (store, ["--key-file", str(key)])):
        reached.unlink(missing_ok=True)
        pause_points.arm("verify_read_done")
        env = pause_points.env()
        env["TMPDIR"] = str(tmp)
        p = subprocess.Popen([str(BRI_BACKUP), "--db", str(live_db), "--backup-dir", str(folder)]
                             + extra + ["verify", "daily"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            pause_points.wait_reached("verify_read_done")
            files = open_files(p.pid)
        finally:
            pause_points.release("verify_read_done")
            out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "daily: ok" in out, out + err
        assert any(f.endswith(".pack") for f in files), files  # the backup, still open
        assert not [f for f in files if f.endswith(" (deleted)") or f.startswith(str(tmp))], \
            files
        assert os.listdir(tmp) == []
