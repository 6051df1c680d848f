"""Reliability of bri-backup under faults and concurrency (issue 4): kill -9
at every stage of a create and of a restore, a full disk, a steady writer on
the live database, readers and writers during a restore, a writer holding
the lock past the busy timeout, and several bri-backup processes on one
store at once. What must hold: a backup is complete and verifies, or it is
absent; no temporary file survives the next start; the live database is
untouched by a create and holds its old or its restored content, never a
mix. Also the helpers that test_reliability_*.py and test_hostile*.py
import. Every subprocess runs under a timeout; every tmpfs is unmounted."""

import contextlib
import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import BRI_BACKUP, Cli, make_sample_db, open_paths, wait_until

TIMEOUT = 120
SEED = int(os.environ.get("BRI_TEST_SEED", "0")) or random.SystemRandom().randrange(1, 1 << 30)
ROUNDS = int(os.environ.get("BRI_FAULT_ROUNDS", "12"))
TMP_RE = re.compile(r"^\..*\.tmp(-journal|-wal|-shm)?$")


# ---- helpers shared by the test_reliability_*.py and test_hostile*.py files ----

def make_big_db(path, blobs=16000, journal="wal"):
    """A live database of about blobs * 4 KB (64 MB by default): accounts
    (1000 rows, balance 100 each: the sum is the invariant), blobs (random
    data, so the copy takes time) and marker (one row naming the content).
    Checkpointed into one file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    try:
        con.execute(f"pragma journal_mode={journal}")
        con.executescript(f"""
            create table accounts(id integer primary key, balance integer not null);
            create table blobs(id integer primary key, data blob not null);
            create table marker(v text not null);
            insert into marker values ('B');
            with recursive n(i) as (select 1 union all select i + 1 from n where i < 1000)
              insert into accounts select i, 100 from n;
            with recursive n(i) as (select 1 union all select i + 1 from n where i < {blobs})
              insert into blobs select i, randomblob(4000) from n;
        """)
        con.commit()
        if journal == "wal":
            con.execute("pragma wal_checkpoint(truncate)")
    finally:
        con.close()
    return path


def balances(db, timeout=30):
    """The accounts' balances of a make_big_db database, in id order."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=timeout)
    try:
        return [r[0] for r in con.execute("select balance from accounts order by id")]
    finally:
        con.close()


def fingerprint(db, timeout=30):
    """What identifies a content of a make_big_db database, read in one
    transaction: per table count and sums, and the marker."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=timeout)
    try:
        con.execute("begin")
        fp = (
            con.execute("select count(*), total(balance) from accounts").fetchone(),
            con.execute("select count(*), total(id), total(length(data)) from blobs").fetchone(),
            tuple(r[0] for r in con.execute("select v from marker order by v")),
        )
        con.execute("commit")
        return fp
    finally:
        con.close()


def integrity(db, timeout=30):
    con = sqlite3.connect(db, timeout=timeout)
    try:
        return con.execute("pragma integrity_check").fetchone()[0]
    finally:
        con.close()


def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def backup_cmd(db, store, *args):
    return [str(BRI_BACKUP), "--db", str(db), "--backup-dir", str(store), *args]


def listed(cli):
    """Names of the backups bri-backup lists."""
    p = cli.run("--json", "list", timeout=60)
    return [b["name"] for b in json.loads(p.stdout)]


def temp_files(store):
    store = Path(store)
    if not store.exists():
        return []
    return sorted(n for n in os.listdir(store) if TMP_RE.match(n))


def orphans(store):
    """.meta / .verify files whose .db is missing."""
    store = Path(store)
    out = []
    for n in os.listdir(store):
        for suffix in (".db.meta", ".db.verify"):
            if n.endswith(suffix) and not n.startswith(".") and \
                    not (store / (n[: -len(suffix)] + ".db")).exists():
                out.append(n)
    return sorted(out)


def assert_store_sound(cli, names=None):
    """Every listed backup (or those of names) verifies, and every NAME.db in
    the folder is listed."""
    all_listed = listed(cli)
    on_disk = sorted(n[:-3] for n in os.listdir(cli.store)
                     if n.endswith(".db") and not n.startswith("."))
    assert sorted(all_listed) == on_disk
    todo = all_listed if names is None else [n for n in names if n in all_listed]
    if todo:
        p = cli.run("verify", *todo, check=False, timeout=300)
        assert p.returncode == 0, (todo, p.stdout, p.stderr)
    return all_listed


def sweep(cli):
    """A command that takes the store's lock (which sweeps leftovers)."""
    cli.run("cleanup", "--dry-run", timeout=60)


@contextlib.contextmanager
def tmpfs(path, size):
    """A tmpfs of size at path, always unmounted. Skips when mounting is not allowed."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                        str(path)], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield path
    finally:
        r = subprocess.run(["umount", str(path)], capture_output=True, timeout=30)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def holds_open(pid, path):
    """Whether process pid has path open."""
    return str(path) in open_paths(pid)


def kill_tree(p):
    with contextlib.suppress(ProcessLookupError):
        p.send_signal(signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(timeout=30)


# A separate Python process that writes the live database: transfers between
# accounts (the sum stays constant), each its own transaction. It prints
# 'ready' after its first commit, and a JSON summary when told to stop
# (SIGTERM) or when its time is up. Its optional third argument names a file
# where it keeps the count of its commits, for a test to wait on.
WRITER = textwrap.dedent("""
    import json, os, random, signal, sqlite3, sys, time
    db, seconds = sys.argv[1], float(sys.argv[2])
    count = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT, 0o644) if len(sys.argv) > 3 else -1
    stop = False
    def on_term(*a):
        global stop
        stop = True
    signal.signal(signal.SIGTERM, on_term)
    con = sqlite3.connect(db, timeout=60, isolation_level=None)
    n, errors, rng, end = 0, [], random.Random(1), time.monotonic() + seconds
    n_acc = con.execute("select count(*) from accounts").fetchone()[0]
    while not stop and time.monotonic() < end:
        a, b, x = rng.randrange(1, n_acc + 1), rng.randrange(1, n_acc + 1), rng.randrange(1, 9)
        try:
            con.execute("begin immediate")
            con.execute("update accounts set balance = balance - ? where id = ?", (x, a))
            con.execute("update accounts set balance = balance + ? where id = ?", (x, b))
            con.execute("commit")
            n += 1
            if count >= 0:
                os.pwrite(count, b"%12d" % n, 0)
            if n == 1:
                print("ready", flush=True)  # committing
        except sqlite3.Error as e:
            errors.append(repr(e))
            try:
                con.execute("rollback")
            except sqlite3.Error:
                pass
        time.sleep(0.001)  # the writer's pace
    con.close()
    print(json.dumps({"commits": n, "errors": errors[:20]}), flush=True)
""")

# A separate Python process that reads the live database in transactions and
# reports every distinct fingerprint it saw; 'ready' after its first read.
READER = textwrap.dedent("""
    import json, signal, sqlite3, sys, time
    db = sys.argv[1]
    stop = False
    def on_term(*a):
        global stop
        stop = True
    signal.signal(signal.SIGTERM, on_term)
    seen, errors, n = {}, [], 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60, isolation_level=None)
    while not stop:
        try:
            con.execute("begin")
            fp = (con.execute("select count(*), total(balance) from accounts").fetchone(),
                  con.execute("select count(*), total(id) from blobs").fetchone(),
                  [r[0] for r in con.execute("select v from marker order by v")])
            con.execute("commit")
            seen[json.dumps(fp)] = seen.get(json.dumps(fp), 0) + 1
            n += 1
            if n == 1:
                print("ready", flush=True)  # reading
        except sqlite3.Error as e:
            errors.append(repr(e))
            try:
                con.execute("rollback")
            except sqlite3.Error:
                pass
            time.sleep(0.01)
    con.close()
    print(json.dumps({"reads": n, "seen": seen, "errors": errors[:20]}), flush=True)
""")


class Helper:
    """A Python helper process (WRITER, READER or any script) that prints
    'ready' when it runs and a JSON line at the end."""

    def __init__(self, script, *args):
        self.p = subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if line.strip() != "ready":
            err = self.p.stderr.read() if self.p.poll() is not None else ""
            kill_tree(self.p)
            raise AssertionError(f"helper did not start: {line!r} {err}")

    def finish(self, timeout=60):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(self.p)
            raise
        assert self.p.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])

    def kill(self):
        if self.p.poll() is None:
            kill_tree(self.p)


@pytest.fixture(scope="module")
def big_template(tmp_path_factory):
    return make_big_db(tmp_path_factory.mktemp("template") / "bri.db")


@pytest.fixture
def big(big_template, tmp_path):
    """A copy of the big live database, its store and a CLI on them."""
    db = tmp_path / "data" / "bri.db"
    db.parent.mkdir()
    subprocess.run(["cp", str(big_template), str(db)], check=True, timeout=60)
    return Cli(db, tmp_path / "data" / "backups")


def report_seed():
    print(f"random seed {SEED} (set BRI_TEST_SEED to repeat)")


# ---- kill -9 of create ----

def live_state(db):
    """The live database's file and content (its -wal is checkpointed: empty)."""
    from test_cli import content
    return file_sha(db), hashlib.sha256(repr(content(db)).encode()).hexdigest()


def check_after_kill(cli, name):
    """After a killed create of name: it is listed and verifies, or it is absent."""
    names = assert_store_sound(cli, [name])
    if name not in names:
        assert not (cli.store / f"{name}.db").exists()
    return name in names


def test_kill9_create_at_random_moments(big):
    report_seed()
    rng = random.Random(SEED)
    cli = big
    before = live_state(cli.db)
    t0 = time.monotonic()
    cli.run("create", "--name", "warmup")
    duration = time.monotonic() - t0
    outcomes = []
    for i in range(ROUNDS):
        name = f"k{i}"
        p = subprocess.Popen(backup_cmd(cli.db, cli.store, "create", "--name", name),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, duration * 1.3))
        kill_tree(p)
        outcomes.append(check_after_kill(cli, name))
        assert live_state(cli.db) == before
        # The next start sweeps what the dead process left.
        sweep(cli)
        assert temp_files(cli.store) == []
        assert orphans(cli.store) == []
    print("complete after kill:", outcomes)
    assert live_state(cli.db) == before
    assert_store_sound(cli)


def wait_stopped(pid, timeout=10):
    """Waits until every thread of pid has stopped: SIGSTOP is delivered
    asynchronously, and a process checked before it stops may still publish."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            states = [Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()[0]
                      for t in os.listdir(f"/proc/{pid}/task")]
        except (FileNotFoundError, ProcessLookupError):
            if not Path(f"/proc/{pid}").exists():
                return  # the process is gone
            continue  # a thread ended while it was listed: look again
        if all(st in ("T", "t", "Z", "X") for st in states):
            return
        time.sleep(0.002)
    raise AssertionError(f"process {pid} did not stop within {timeout} s")


def kill_at_stage(cli, name, stage, deadline_s=60):
    """Starts a create of name and SIGSTOPs it as soon as the store shows
    stage; checks that list does not show a partial backup while it is
    stopped, then SIGKILLs it. Returns whether the stage was caught and
    whether NAME.db was published when it stopped."""
    store = cli.store
    p = subprocess.Popen(backup_cmd(cli.db, store, "create", "--name", name),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caught = False
    deadline = time.monotonic() + deadline_s
    size = os.path.getsize(cli.db)
    try:
        while p.poll() is None and time.monotonic() < deadline:
            try:
                files = os.listdir(store)
            except FileNotFoundError:
                continue
            tmp_db = [f for f in files if f.startswith(f".{name}.create.") and f.endswith(".tmp")]
            if stage == "copy-start":
                hit = bool(tmp_db)
            elif stage == "copy-half":
                hit = False
                for f in tmp_db:
                    with contextlib.suppress(FileNotFoundError):
                        hit = hit or os.path.getsize(store / f) > size // 2
            elif stage == "meta-tmp":
                hit = any(f.startswith(f".{name}.db.meta.write.") for f in files)
            elif stage == "between-renames":
                hit = f"{name}.db.meta" in files and f"{name}.db" not in files
            elif stage == "published":
                hit = f"{name}.db" in files
            else:
                raise ValueError(stage)
            if hit:
                p.send_signal(signal.SIGSTOP)
                wait_stopped(p.pid)
                caught = True
                break
        published = False
        if caught:
            # While it is stopped (holding the lock), list never shows a partial
            # backup. The stop lands a moment after the stage was seen, so what
            # counts is whether NAME.db existed when it stopped.
            published = (store / f"{name}.db").exists()
            assert (name in listed(cli)) == published
            assert published or stage != "published"
    finally:
        kill_tree(p)
    return caught, published


@pytest.mark.parametrize("stage", ["copy-start", "copy-half", "meta-tmp", "between-renames",
                                   "published"])
def test_kill9_create_at_each_stage(big, stage):
    cli = big
    before = live_state(cli.db)
    caught = 0
    for i in range(3):
        name = f"s{i}"
        hit, published = kill_at_stage(cli, name, stage)
        caught += hit
        present = check_after_kill(cli, name)
        if hit:
            # Publishing NAME.db is the commit point: before it no backup,
            # after it a whole one.
            assert present == published, (stage, present)
        assert live_state(cli.db) == before
        sweep(cli)
        assert temp_files(cli.store) == []
        assert orphans(cli.store) == []
    assert caught >= 1, f"stage {stage} was never caught"
    # After all that, a create works and verifies.
    cli.run("create", "--name", "after", "--verify")
    assert_store_sound(cli)


# ---- kill -9 of restore ----

def make_content_a(db):
    """Turns content B of a make_big_db database into content A (idempotent):
    other rows, other sums, marker A."""
    con = sqlite3.connect(db, timeout=60)
    try:
        if con.execute("select v from marker").fetchone()[0] == "A":
            return
        con.execute("delete from blobs where id % 3 = 0")
        con.execute("update accounts set balance = balance + 1 where id <= 10")
        con.execute("update marker set v = 'A'")
        con.commit()
    finally:
        con.close()


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_kill9_restore_leaves_old_or_new_content(tmp_path, journal):
    report_seed()
    rng = random.Random(SEED + 1)
    db = make_big_db(tmp_path / "data" / "bri.db", blobs=8000, journal=journal)
    cli = Cli(db, tmp_path / "data" / "backups")
    fp_b = fingerprint(db)
    cli.run("create", "--name", "good")
    make_content_a(db)
    fp_a = fingerprint(db)
    assert fp_a != fp_b
    t0 = time.monotonic()
    cli.run("restore", "good")
    duration = time.monotonic() - t0
    assert fingerprint(db) == fp_b
    seen = {"A": 0, "B": 0}
    verified = set(listed(cli))
    for i in range(ROUNDS):
        make_content_a(db)
        args = ["restore", "good"] + (["--no-verify"] if i % 2 else [])
        p = subprocess.Popen(backup_cmd(db, cli.store, *args), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, duration * 1.3))
        kill_tree(p)
        # The next opener recovers the journal; the content is whole.
        assert integrity(db) == "ok"
        fp = fingerprint(db)
        assert fp in (fp_a, fp_b), f"round {i}: a mix of old and new content: {fp}"
        seen["A" if fp == fp_a else "B"] += 1
        # A listed safety backup is complete.
        names = listed(cli)
        new = [n for n in names if n not in verified]
        assert_store_sound(cli, new)
        for n in new:
            if n.startswith("pre_restore_safety"):
                cli.run("delete", n)
        verified = set(listed(cli))
        sweep(cli)
        assert temp_files(cli.store) == []
    print("contents after kill:", seen)
    # And a restore still works afterwards.
    make_content_a(db)
    cli.run("restore", "good")
    assert fingerprint(db) == fp_b and integrity(db) == "ok"


# ---- a full disk ----

def test_full_disk_fails_cleanly_then_works(tmp_path):
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=12000)
    assert os.path.getsize(db) > 2 * 1024 * 1024
    before = live_state(db)
    with tmpfs(tmp_path / "small", "2m") as store:
        cli = Cli(db, store)
        p = cli.run("create", "--name", "toobig", check=False)
        assert p.returncode == 1, (p.stdout, p.stderr)
        assert "space" in p.stderr.lower(), p.stderr
        assert p.stdout == ""
        assert listed(cli) == []
        assert not (store / "toobig.db").exists() and not (store / "toobig.db.meta").exists()
        assert temp_files(store) == []
        assert live_state(db) == before
        # A second failure the same way, with an automatic name.
        p = cli.run("create", check=False)
        assert p.returncode == 1 and "space" in p.stderr.lower(), p.stderr
        assert temp_files(store) == [] and listed(cli) == []
        # Space frees up: the next create works.
        subprocess.run(["mount", "-o", "remount,size=64m", str(store)], check=True, timeout=30)
        cli.run("create", "--name", "toobig", "--verify")
        assert listed(cli) == ["toobig"]
        assert_store_sound(cli)
        assert temp_files(store) == []
    assert live_state(db) == before


def test_full_disk_at_every_point_of_a_create(tmp_path):
    """The store's free space is set just below, at and above what a backup
    needs, in 4 KiB steps, so that the disk fills up during the copy, the
    metadata, the publication: each create fully succeeds or fails cleanly."""
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=1500)
    size = os.path.getsize(db)
    before = live_state(db)
    results = []
    with tmpfs(tmp_path / "small", "16m") as mnt:
        store = mnt / "backups"
        cli = Cli(db, store)
        cli.run("create", "--name", "first")
        need = sum(os.path.getsize(store / f) for f in os.listdir(store))
        cli.run("delete", "first")
        (store / "audit.jsonl").unlink()
        filler = mnt / "filler"
        for extra in list(range(-24 * 1024, 48 * 1024, 4096)) + [96 * 1024, 192 * 1024]:
            with contextlib.suppress(FileNotFoundError):
                filler.unlink()
            st = os.statvfs(mnt)
            free = st.f_bavail * st.f_frsize
            fill = free - (need + extra)
            if fill <= 0:
                continue
            with open(filler, "wb") as f:
                f.write(b"\0" * fill)
            name = f"n{extra + 24 * 1024}"
            p = cli.run("create", "--name", name, check=False)
            filler.unlink()
            if p.returncode == 0:
                results.append("ok")
                assert p.stdout.strip() == str(store / f"{name}.db")
            else:
                results.append("full")
                assert p.returncode == 1, p.stderr
                assert "space" in p.stderr.lower(), p.stderr
                assert not (store / f"{name}.db").exists()
            assert temp_files(store) == [], p.stderr
            assert orphans(store) == []
            assert_store_sound(cli)
            for n in listed(cli):
                cli.run("delete", n)
    print(results, "need", need, "db", size)
    assert "full" in results and "ok" in results
    assert live_state(db) == before


# ---- a steady writer ----

@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_backups_under_a_steady_writer_keep_the_invariant(tmp_path, journal):
    db = make_big_db(tmp_path / "data" / "bri.db", blobs=4000, journal=journal)
    cli = Cli(db, tmp_path / "data" / "backups")
    total = fingerprint(db)[0]
    count = tmp_path / "commits"
    writer = Helper(WRITER, db, 60, count)  # committing
    try:
        names = []
        for i in range(6):
            p = cli.run("create", "--name", f"w{i}", timeout=120)
            names.append(f"w{i}")
        assert wait_until(lambda: int(count.read_bytes() or 0) > 50, 60)
        result = writer.finish()
    finally:
        writer.kill()
    assert result["errors"] == [], result
    assert result["commits"] > 50, result
    for n in names:
        b = cli.store / f"{n}.db"
        assert fingerprint(b)[0] == total, n  # same rows, same sum
        assert integrity(b) == "ok"
    p = cli.run("verify", *names, timeout=300)
    assert fingerprint(db)[0] == total


# ---- restore under concurrent readers and writers ----

def accounts_db_b_and_a(tmp_path, journal):
    """A live database and a backup 'good' of it with a distinct content."""
    db = make_big_db(tmp_path / "data" / "bri.db", blobs=6000, journal=journal)
    cli = Cli(db, tmp_path / "data" / "backups")
    cli.run("create", "--name", "good")
    make_content_a(db)
    return cli


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_restore_under_readers_and_a_writer(tmp_path, journal):
    cli = accounts_db_b_and_a(tmp_path, journal)
    fp_a = fingerprint(cli.db)
    readers = [Helper(READER, cli.db) for _ in range(2)]
    writer = Helper(WRITER, cli.db, 60)  # readers reading, the writer committing
    try:
        cli.run("restore", "good", timeout=120)
        # The writer goes on committing on the restored content: wait until
        # one of its transfers has changed the restored balances.
        restored = balances(cli.store / "good.db")
        assert wait_until(lambda: balances(cli.db) != restored, 60)
        wres = writer.finish()
        rres = [r.finish() for r in readers]
    finally:
        writer.kill()
        for r in readers:
            r.kill()
    assert wres["errors"] == [], wres
    assert wres["commits"] > 0
    allowed_a = json.dumps([list(fp_a[0]), [fp_a[1][0], fp_a[1][1]], list(fp_a[2])])
    b = cli.store / "good.db"
    fp_b = fingerprint(b)
    allowed_b = json.dumps([list(fp_b[0]), [fp_b[1][0], fp_b[1][1]], list(fp_b[2])])
    for r in rres:
        assert r["errors"] == [], r
        assert set(r["seen"]) <= {allowed_a, allowed_b}, r["seen"]
        assert r["reads"] > 0
    # The writer's transfers kept the sum of the restored content.
    assert fingerprint(cli.db)[0] == fp_b[0]
    assert fingerprint(cli.db)[1:] == fp_b[1:]
    assert integrity(cli.db) == "ok"


HOLD_LOCK = textwrap.dedent("""
    import sqlite3, sys, time
    con = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
    con.execute("begin " + sys.argv[2])
    con.execute("update marker set v = v")
    print("ready", flush=True)
    time.sleep(float(sys.argv[3]))
    con.execute("rollback")
    con.close()
    print("{}", flush=True)
""")


@pytest.mark.parametrize("journal,mode", [("wal", "immediate"), ("delete", "immediate"),
                                          ("delete", "exclusive")])
def test_restore_fails_cleanly_when_a_writer_holds_the_lock(tmp_path, journal, mode):
    cli = accounts_db_b_and_a(tmp_path, journal)
    fp_a = fingerprint(cli.db)
    before = sorted(listed(cli))
    env = dict(os.environ, BRI_BUSY_TIMEOUT_MS="1000")
    holder = Helper(HOLD_LOCK, cli.db, mode, 20)
    try:
        t0 = time.monotonic()
        p = cli.run("restore", "good", check=False, env=env, timeout=60)
        took = time.monotonic() - t0
    finally:
        holder.kill()
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "database is locked" in p.stderr, p.stderr
    assert took < 15, took
    assert fingerprint(cli.db) == fp_a
    assert integrity(cli.db) == "ok"
    assert sorted(listed(cli)) == before
    assert temp_files(cli.store) == []


# ---- several bri-backup processes on one store ----

def test_parallel_creates_all_land(cli, store):
    procs = [subprocess.Popen(backup_cmd(cli.db, store, "create", "--name", f"p{i}"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(8)]
    # And 4 with automatic names, which must not collide.
    procs += [subprocess.Popen(backup_cmd(cli.db, store, "create"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, err
        outs.append(out.strip())
    assert len(set(outs)) == 12
    names = assert_store_sound(cli)
    assert len(names) == 12
    assert {f"p{i}" for i in range(8)} <= set(names)
    assert temp_files(store) == []


def test_parallel_create_same_name_one_wins(cli, store):
    procs = [subprocess.Popen(backup_cmd(cli.db, store, "create", "--name", "same"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    codes = []
    for p in procs:
        out, err = p.communicate(timeout=TIMEOUT)
        codes.append(p.returncode)
        if p.returncode:
            assert "exists" in err, err
    assert codes.count(0) == 1, codes
    assert assert_store_sound(cli) == ["same"]


def test_parallel_create_cleanup_delete(cli, store):
    from test_cli import age_backup
    for i in range(4):
        cli.run("create", "--name", f"old{i}")
        age_backup(store / f"old{i}.db", 60 + i)
    for i in range(3):
        cli.run("create", "--name", f"del{i}")
    cli.run("create", "--name", "keep")
    cmds = [["create", "--name", f"c{i}"] for i in range(6)]
    cmds += [["--retention-days", "30", "--keep-min", "0", "cleanup"]] * 2
    cmds += [["delete", f"del{i}"] for i in range(3)]
    cmds += [["list"], ["stats"]]
    random.Random(SEED).shuffle(cmds)
    procs = [subprocess.Popen(backup_cmd(cli.db, store, *c), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in cmds]
    for c, p in zip(cmds, procs):
        out, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, (c, err)
    names = assert_store_sound(cli)
    assert sorted(names) == sorted([f"c{i}" for i in range(6)] + ["keep"])
    assert temp_files(store) == [] and orphans(store) == []
    # The audit log is whole: one JSON object per line.
    with open(store / "audit.jsonl") as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) >= 6 + 3 + 4


def test_concurrent_verify_and_create_under_stop_and_continue(big):
    """A create SIGSTOPped while it holds the lock blocks other creates (they
    wait, they do not fail or corrupt), and all complete once it continues."""
    cli = big
    p = subprocess.Popen(backup_cmd(cli.db, cli.store, "create", "--name", "first"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                f.startswith(".first.create.") for f in
                (os.listdir(cli.store) if cli.store.exists() else [])):
            time.sleep(0.001)
        p.send_signal(signal.SIGSTOP)
        others = [subprocess.Popen(backup_cmd(cli.db, cli.store, "create", "--name", f"o{i}"),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                  for i in range(3)]
        # Each has the store's lock file open (it is waiting for the lock, or
        # about to): then none of them may finish while first holds it.
        assert wait_until(lambda: all(holds_open(o.pid, cli.store / ".lock") for o in others),
                          30)
        assert all(o.poll() is None for o in others), "creates did not wait for the lock"
        # Reading commands do not wait for the lock.
        assert "first" not in listed(cli)
        p.send_signal(signal.SIGCONT)
        assert p.wait(timeout=TIMEOUT) == 0
        for o in others:
            _, err = o.communicate(timeout=TIMEOUT)
            assert o.returncode == 0, err
    finally:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGCONT)
        kill_tree(p)
    assert sorted(assert_store_sound(cli)) == ["first", "o0", "o1", "o2"]
