"""bri-backup create: the metadata (the seed's keys, types and values), the
backup's journal mode, online backups under a concurrent writer, rows that
live only in the -wal file, names (automatic, given, and every refused one
writing nothing), --verify and --cleanup, and the progress bar that appears
on a terminal only."""

import datetime
import json
import os
import pty
import re
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (BRI_BACKUP, all_formats, as_plain, backup_file, both_formats, make_sample_db,
                      read_sidecar, sidecar,
                      table_counts, wait_until)
from test_cli import TIME_RE, create, listing, meta_of, names_in, sha256sum

SEED_KEYS = ("backup_time", "source_db", "backup_path", "size_bytes", "size_mb", "checksum",
             "tables")


def journal_mode(db):
    out = subprocess.run(["sqlite3", str(db), "pragma journal_mode"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return out.strip()


def header_versions(db):
    """Bytes 18 and 19 of the SQLite header: 1/1 rollback journal, 2/2 WAL."""
    with open(db, "rb") as f:
        head = f.read(20)
    return head[18], head[19]


# ---- metadata ----

@all_formats
def test_metadata_keys_types_and_values(cli, live_db, store):
    before = datetime.datetime.now().replace(microsecond=0)
    path = create(cli)
    after = datetime.datetime.now()
    meta = meta_of(path)

    assert list(meta)[:len(SEED_KEYS)] == list(SEED_KEYS)
    assert meta["checksum"] == sha256sum(path)
    assert re.fullmatch(r"[0-9a-f]{64}", meta["checksum"])
    assert meta["tables"] == table_counts(live_db) == table_counts(path)
    assert meta["tables"] == {"videos": 42, "memory": 200, "video_context": 600}
    size = as_plain(path).stat().st_size  # the database as served
    assert type(meta["size_bytes"]) is int and meta["size_bytes"] == size
    assert type(meta["size_mb"]) is float
    assert meta["size_mb"] == pytest.approx(size / 2**20, abs=0.005)
    assert TIME_RE.match(meta["backup_time"])
    created = datetime.datetime.fromisoformat(meta["backup_time"])
    assert before <= created <= after  # local time, naive, as the seed compares it
    assert Path(meta["backup_path"]).resolve() == path
    assert Path(meta["source_db"]).resolve() == live_db.resolve()
    assert meta["kind"] == "auto"
    if "backup_time_utc" in meta:
        utc = datetime.datetime.fromisoformat(meta["backup_time_utc"].rstrip("Z"))
        local = created.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        assert utc == local

    # The automatic name: <stem>_backup_YYYYMMDD_HHMMSS of the backup's local time.
    m = re.fullmatch(r"bri_backup_(\d{8}_\d{6})(_\d+)?", path.stem)
    assert m, path.stem
    assert datetime.datetime.strptime(m.group(1), "%Y%m%d_%H%M%S") == created
    assert path.parent == store

    # Modes: backups and metadata 0600, the store 0700.
    assert path.stat().st_mode & 0o777 == 0o600
    assert sidecar(path, "meta").stat().st_mode & 0o777 == 0o600
    assert store.stat().st_mode & 0o777 == 0o700
    assert not [p for p in store.iterdir() if p.name.endswith(".tmp")]


@both_formats
def test_named_backup_and_automatic_names_never_collide(cli, store):
    named = create(cli, "--name", "before_update_v1.5")
    assert named == backup_file(store, "before_update_v1.5")
    assert meta_of(named)["kind"] == "named"
    paths = [create(cli) for _ in range(4)]  # within a second or two: _1, _2, ...
    assert len({p.name for p in paths}) == 4
    for p in paths:
        assert re.fullmatch(r"bri_backup_\d{8}_\d{6}(_\d+)?", p.stem)
    assert len(names_in(cli)) == 5


@all_formats
def test_create_verify_records_the_result(cli, store):
    p = cli.run("create", "--name", "checked", "--verify")
    assert p.stdout.strip() == str(backup_file(store, "checked"))
    v = json.loads(read_sidecar(backup_file(store, "checked"), "verify"))
    assert v["status"] == "ok"
    assert json.loads(cli.run("--json", "list").stdout)[0]["verify"] == "ok"


@both_formats
def test_create_cleanup_removes_only_expired(cli, store):
    from test_cli import age_backup
    olds = [create(cli, "--name", f"old{i}") for i in range(9)]
    for i, path in enumerate(olds):
        age_backup(path, 60, i * 60)
    p = cli.run("create", "--name", "fresh", "--cleanup")
    assert p.stdout.strip() == str(backup_file(store, "fresh"))
    # keep_min 7 counts the fresh one: six of the old ones stay, the three oldest go.
    assert sorted(names_in(cli)) == sorted(["fresh"] + [f"old{i}" for i in range(6)])
    assert "old8" in p.stderr


def test_audit_log_records_create(cli, store):
    create(cli, "--name", "audited")
    lines = [json.loads(x) for x in (store / "audit.jsonl").read_text().splitlines()]
    rec = [r for r in lines if r.get("name") == "audited"]
    assert rec and rec[-1]["operation"].startswith("create")
    assert rec[-1]["result"] in ("ok", 0)
    assert (store / "audit.jsonl").stat().st_mode & 0o777 == 0o600


# ---- journal mode ----

@pytest.mark.parametrize("live_mode", ["wal", "delete"])
def test_backup_journal_mode_is_delete(tmp_path, live_mode):
    db = make_sample_db(tmp_path / "data" / "bri.db")
    if live_mode == "delete":
        subprocess.run(["sqlite3", str(db), "pragma journal_mode=delete"], check=True,
                       capture_output=True, timeout=60)
    assert journal_mode(db) == live_mode
    p = subprocess.run([str(BRI_BACKUP), "--db", str(db), "create"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    path = Path(p.stdout.strip())
    assert header_versions(path) == (1, 1)
    assert journal_mode(path) == "delete"
    assert not Path(f"{path}-wal").exists()
    # Readable from read-only media: an immutable, read-only open with the sqlite3 shell.
    out = subprocess.run(["sqlite3", f"file:{path}?mode=ro&immutable=1",
                          "select count(*) from memory"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "200", out.stderr
    assert journal_mode(db) == live_mode  # the live database is not changed


# ---- online backup under a writer ----

WRITER = r"""
import random, sqlite3, sys, time, os
db, stop, mode = sys.argv[1], sys.argv[2], sys.argv[3]
con = sqlite3.connect(db, timeout=60, isolation_level=None)
n = 0
while not os.path.exists(stop):
    a, b = random.sample(range(1, 101), 2)
    amount = random.randint(1, 50)
    con.execute("begin immediate")
    con.execute("update accounts set balance = balance - ? where id = ?", (amount, a))
    con.execute("update accounts set balance = balance + ? where id = ?", (amount, b))
    con.execute("update counter set n = n + 1")
    con.execute("insert into journal(a, b, amount) values (?, ?, ?)", (a, b, amount))
    con.execute("commit")
    n += 1
    if mode == "delete":
        # A rollback-journal writer that never pauses starves every reader,
        # the backup included (SQLite's locks are not fair): breathe a little.
        time.sleep(0.002)
print(n)
"""


@pytest.mark.parametrize("live_mode", ["wal", "delete"])
def test_online_backup_while_a_writer_commits(tmp_path, live_mode):
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=2000)
    con = sqlite3.connect(db)
    con.execute(f"pragma journal_mode={live_mode}")
    con.execute("create table accounts (id integer primary key, balance integer not null)")
    con.executemany("insert into accounts values (?, 100)", [(i,) for i in range(1, 101)])
    con.execute("create table counter (n integer not null)")
    con.execute("insert into counter values (0)")
    con.execute("create table journal (id integer primary key, a, b, amount)")
    con.commit()
    con.close()

    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(stop), live_mode],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    paths = []

    def committed(path=db):
        c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return c.execute("select n from counter").fetchone()[0]
        finally:
            c.close()

    try:
        assert wait_until(lambda: committed() > 0, 30)  # the writer is committing
        for i in range(6):
            p = subprocess.run([str(BRI_BACKUP), "--db", str(db), "create", "--name",
                                f"during{i}"], capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            paths.append(Path(p.stdout.strip()))
            # The next backup is of a later state: the writer commits between them.
            n = committed(paths[-1])
            assert wait_until(lambda: committed() > n, 30)
        assert wait_until(lambda: committed() > 10, 30)
    finally:
        stop.touch()
        try:
            out, err = writer.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            writer.kill()
            out, err = writer.communicate(timeout=10)
    assert writer.returncode == 0, err
    assert int(out) > 10, "the writer made no progress during the backups"

    seen = set()
    for path in paths:
        b = sqlite3.connect(f"file:{as_plain(path)}?mode=ro", uri=True)
        try:
            assert b.execute("pragma integrity_check").fetchone()[0] == "ok"
            total, count = b.execute("select sum(balance), count(*) from accounts").fetchone()
            assert (total, count) == (10000, 100), path  # the invariant holds
            n = b.execute("select n from counter").fetchone()[0]
            assert b.execute("select count(*) from journal").fetchone()[0] == n
            seen.add(n)
        finally:
            b.close()
        meta = meta_of(path)
        assert meta["checksum"] == sha256sum(path)
        assert meta["tables"] == table_counts(path)
        assert header_versions(path) == (1, 1)
    assert len(seen) > 1, "every backup saw the same state: the writer was not running"
    # The live database is intact too.
    live = sqlite3.connect(db)
    assert live.execute("select sum(balance) from accounts").fetchone()[0] == 10000
    live.close()


@both_formats
def test_rows_only_in_the_wal_are_captured(cli, live_db):
    con = sqlite3.connect(live_db, isolation_level=None)
    try:
        assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
        con.execute("pragma wal_autocheckpoint=0")
        con.execute("begin")
        con.executemany("insert into memory(video_id, role, content) values (1, 'user', ?)",
                        [(f"wal-only {i}",) for i in range(500)])
        con.execute("commit")
        wal = Path(f"{live_db}-wal")
        assert wal.exists() and wal.stat().st_size > 0
        path = create(cli, "--name", "with_wal")
        # Still not checkpointed: the rows were read from the -wal.
        assert wal.stat().st_size > 0
    finally:
        con.close()
    b = sqlite3.connect(f"file:{as_plain(path)}?mode=ro", uri=True)
    try:
        n = b.execute("select count(*) from memory where content like 'wal-only %'").fetchone()[0]
    finally:
        b.close()
    assert n == 500
    assert meta_of(path)["tables"]["memory"] == 700


# ---- names ----

REFUSED = ["", "..", ".", "a/b", "/abs", " x", "x ", "-x", ".hidden", "_x", "ctl", "restore",
           "latest", "x" * 129, "a\nb", "a\tb", "with space", "ünïcödé", "名前", "a\x01b",
           "a*b", "a:b", "a\\b", "$(touch pwned)"]


@pytest.mark.parametrize("name", REFUSED, ids=[repr(n) for n in REFUSED])
def test_refused_names_write_nothing(cli, store, tmp_path, name):
    create(cli, "--name", "existing")
    before = listing(store)
    audit_before = (store / "audit.jsonl").read_bytes()
    p = cli.run("create", "--name", name, check=False, timeout=60)
    assert p.returncode in (1, 2), (name, p.returncode, p.stdout)
    assert p.stdout == ""
    assert "name" in p.stderr
    assert listing(store) == before
    assert (store / "audit.jsonl").read_bytes() == audit_before
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_refused_name_in_a_fresh_store_creates_no_store(cli, store):
    p = cli.run("create", "--name", "bad name", check=False)
    assert p.returncode == 2
    assert not store.exists()


@both_formats
def test_existing_name_is_refused_and_the_backup_kept(cli, store, live_db):
    path = create(cli, "--name", "keep")
    before = listing(store)
    con = sqlite3.connect(live_db)
    con.execute("delete from memory")
    con.commit()
    con.close()
    p = cli.run("create", "--name", "keep", check=False)
    assert p.returncode == 1
    assert "exists" in p.stderr
    assert listing(store) == before
    assert table_counts(path)["memory"] == 200


def test_longest_name_is_accepted(cli, store):
    name = "x" * 128
    assert create(cli, "--name", name) == store / f"{name}.db"
    assert create(cli, f"--name=a.b_c-D9") == store / "a.b_c-D9.db"


# ---- progress ----

def test_no_progress_when_stderr_is_not_a_terminal(cli):
    p = cli.run("create", "--name", "quiet", "--verify")
    assert "\r" not in p.stderr and "\033" not in p.stderr
    assert p.stdout.strip().endswith("quiet.db")


def test_progress_bar_on_a_terminal(tmp_path):
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=40000)
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([str(BRI_BACKUP), "--db", str(db), "create", "--verify"],
                             stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        slave = -1
        err = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                err += chunk
            elif p.poll() is not None:
                break
        out, _ = p.communicate(timeout=60)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert p.returncode == 0, err
    assert out.strip().endswith(".db") and "\r" not in out
    assert b"\r" in err, err
    # The bar is cleared when done: nothing but the verdict follows the last clear.
    assert b"\r\033[K" in err
    assert b"%" not in err.split(b"\r\033[K")[-1], err


# ---- concurrency and crashes ----

@both_formats
def test_concurrent_creates_all_complete_or_are_refused_cleanly(cli, store):
    procs = [subprocess.Popen([str(BRI_BACKUP), "--db", str(cli.db), "--backup-dir",
                               str(store), "create", *(["--name", "same"] if i % 2 else [])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(6)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        results.append((p.returncode, out.strip(), err))
    ok = [r for r in results if r[0] == 0]
    # Three automatic ones always succeed; of the three "same", exactly one.
    assert len(ok) == 4, results
    assert all(r[0] == 1 and "exists" in r[2] for r in results if r[0] != 0), results
    paths = [Path(r[1]) for r in ok]
    assert len(set(paths)) == 4
    assert sorted(names_in(cli)) == sorted(p.stem for p in paths)
    assert cli.run("verify").returncode == 0
    assert not [p for p in store.iterdir() if p.name.endswith(".tmp")]


@all_formats
def test_killed_create_leaves_no_backup_or_a_complete_one(tmp_path, store_format):
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=150000)
    store = tmp_path / "data" / "backups"
    base = [str(BRI_BACKUP), "--db", str(db)]
    if store_format == "pages-sealed":
        key = tmp_path / "store.key"
        key.write_bytes(os.urandom(32))
        base += ["--key-file", str(key)]
    if store_format != "plain":
        subprocess.run([*base, "init", "--format", "pages"], check=True, timeout=60)
    for delay in (0.05, 0.15, 0.3, 0.6):
        p = subprocess.Popen([*base, "create", "--name", f"k{int(delay * 100)}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.kill()
        p.wait(timeout=60)
        listed = json.loads(subprocess.run([*base, "--json", "list"], capture_output=True,
                                           text=True, timeout=60, check=True).stdout)
        for b in listed:  # whatever is listed is whole
            v = subprocess.run([*base, "verify", b["name"]], capture_output=True, text=True,
                               timeout=120)
            assert v.returncode == 0, (delay, v.stdout, v.stderr)
    # The next create sweeps what the killed ones left behind.
    p = subprocess.run([*base, "create", "--name", "after"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert not [x for x in store.iterdir() if x.name.endswith(".tmp")]
    assert journal_mode(db) == "wal"
    # Every backup still verifies, the one after the kills too.
    v = subprocess.run([*base, "verify"], capture_output=True, text=True, timeout=120)
    assert v.returncode == 0, v.stdout + v.stderr


def test_create_on_a_locked_database_fails_cleanly(cli, live_db, store):
    subprocess.run(["sqlite3", str(live_db), "pragma journal_mode=delete"], check=True,
                   capture_output=True, timeout=60)
    create(cli, "--name", "first")
    before = listing(store)
    holder = sqlite3.connect(live_db, isolation_level=None, timeout=1)
    try:
        holder.execute("begin exclusive")
        env = dict(os.environ, BRI_BUSY_TIMEOUT_MS="1000")
        p = cli.run("create", "--name", "blocked", check=False, env=env, timeout=60)
        assert p.returncode == 1, p.stdout
        assert "locked" in p.stderr
        assert p.stdout == ""
    finally:
        holder.execute("rollback")
        holder.close()
    assert listing(store) == before
    assert create(cli, "--name", "blocked").name == "blocked.db"
