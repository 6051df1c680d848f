"""A restore's safety backup and the commits around it (issue 9, item 3).

A writer records every commit it saw acknowledged; during and after a
restore each of them is in the safety backup or in the live database —
never in neither. The pause point restore_after_safety (after the safety
backup is taken, before the backup is copied in) makes the window wide and
certain: a commit tried there must either fail (the restore holds the write
lock) or land in the safety backup. Also: in WAL mode readers keep reading
while the restore holds the lock; in rollback-journal mode a reader sees the
old or the new content, never a mix.

And what a restore through the mount holds (item 7): echo X > ctl/restore
does not hold the root's lock (ls of the root finishes while it runs),
mv X restore/ does (ls waits, as the man page says), and a restore facing a
writer that holds the database gives up after about the busy timeout."""

import json
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from conftest import BRI_BACKUP, Cli, Mount, make_sample_db, wait_until
from test_cli import content

PROBE_ID = 10**9  # the id of the one commit tried at the pause point


def make_db(path, journal):
    """A sample database with an acks table, in the given journal mode."""
    make_sample_db(path, rows=3000)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("create table acks (id integer primary key, at real)")
    con.execute(f"pragma journal_mode={journal}")
    assert con.execute("pragma journal_mode").fetchone()[0] == journal
    con.close()


def cli_cmd(db, store, *args):
    return [str(BRI_BACKUP), "--db", str(db), "--backup-dir", str(store), *args]


def run_cli(db, store, *args, env=None):
    p = subprocess.run(cli_cmd(db, store, *args), capture_output=True, text=True, timeout=120,
                       env=env)
    assert p.returncode == 0, p.stderr
    return p


def ids_in(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return {r[0] for r in con.execute("select id from acks")}
    finally:
        con.close()


def safety_backups(db, store):
    out = run_cli(db, store, "--json", "list").stdout
    return [b for b in json.loads(out) if b["kind"] == "safety"]


class Writer(threading.Thread):
    """Inserts increasing ids as fast as it can, one commit each; records an
    id in acked only after its commit returned. A commit that fails is not
    acknowledged (SQLite rolled it back) and is tried again."""

    def __init__(self, db):
        super().__init__(daemon=True)
        self.db = db
        self.acked = []
        self.attempts = 0
        self.errors = 0
        self.stop = threading.Event()

    def run(self):
        con = sqlite3.connect(self.db, timeout=0.05, isolation_level=None,
                              check_same_thread=False)
        try:
            next_id = 1_000_000
            while not self.stop.is_set():
                self.attempts += 1
                try:
                    con.execute("insert into acks(id, at) values (?, ?)", (next_id, time.time()))
                except sqlite3.IntegrityError:
                    next_id += 1  # an earlier try did commit after all: never acknowledged
                    continue
                except sqlite3.OperationalError:
                    self.errors += 1
                    continue
                self.acked.append(next_id)
                next_id += 1
        finally:
            con.close()


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_no_acknowledged_commit_is_in_neither(tmp_path, pause_points, journal):
    db, store = tmp_path / "data" / "bri.db", tmp_path / "data" / "backups"
    make_db(db, journal)
    run_cli(db, store, "create", "--name", "target")
    writer = Writer(db)
    writer.start()
    restore = None
    try:
        assert wait_until(lambda: len(writer.acked) >= 20, 30), "the writer never committed"
        pause_points.arm("restore_after_safety")
        env = pause_points.env()
        env["BRI_BUSY_TIMEOUT_MS"] = "120000"  # wait for the writer, never give up
        restore = subprocess.Popen(cli_cmd(db, store, "restore", "target"), env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pause_points.wait_reached("restore_after_safety")
        # The window between the safety backup and the restore: a commit
        # tried here must not be acknowledged and then lost.
        probe = sqlite3.connect(db, timeout=0.3, isolation_level=None)
        try:
            probe.execute("insert into acks(id, at) values (?, ?)", (PROBE_ID, time.time()))
            probe_acked = True
        except sqlite3.OperationalError as e:
            assert "locked" in str(e), e
            probe_acked = False
        finally:
            probe.close()
        if probe_acked:
            writer.acked.append(PROBE_ID)
        tried = writer.attempts
        assert wait_until(lambda: writer.attempts >= tried + 3, 30)  # it keeps trying
        pause_points.release("restore_after_safety")
        out, errs = restore.communicate(timeout=120)
        assert restore.returncode == 0, errs
        after = len(writer.acked)
        assert wait_until(lambda: len(writer.acked) >= after + 20, 30), \
            "the writer never committed after the restore"
    finally:
        pause_points.release("restore_after_safety")
        if restore and restore.poll() is None:
            restore.kill()
            restore.wait()
        writer.stop.set()
        writer.join(30)
    safety = safety_backups(db, store)
    assert len(safety) == 1, safety
    safety_db = store / (safety[0]["name"] + ".db")
    in_safety, in_live = ids_in(safety_db), ids_in(db)
    lost = [i for i in writer.acked if i not in in_safety and i not in in_live]
    assert lost == [], f"{len(lost)} acknowledged commits are in neither: {lost[:20]}"
    # The safety backup is a complete backup: it verifies, its meta counts its rows.
    meta = json.loads((store / (safety[0]["name"] + ".db.meta")).read_text())
    assert meta["kind"] == "safety"
    assert meta["tables"]["acks"] == len(in_safety)
    run_cli(db, store, "verify", safety[0]["name"])
    with open(safety_db, "rb") as f:
        header = f.read(20)
    assert header[18:20] == b"\x01\x01"  # journal mode DELETE, readable from read-only media


def test_wal_readers_keep_reading_during_the_restore(tmp_path, pause_points):
    db, store = tmp_path / "data" / "bri.db", tmp_path / "data" / "backups"
    make_db(db, "wal")
    run_cli(db, store, "create", "--name", "target")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("insert into acks(id) values (1)")
    con.close()
    pause_points.arm("restore_after_safety")
    restore = subprocess.Popen(cli_cmd(db, store, "restore", "target"),
                               env=pause_points.env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        pause_points.wait_reached("restore_after_safety")
        reader = sqlite3.connect(db, timeout=1)
        try:
            # While the restore holds the write lock, a reader reads the old content.
            assert reader.execute("select count(*) from acks").fetchone()[0] == 1
            assert reader.execute("select count(*) from memory").fetchone()[0] == 3000
        finally:
            reader.close()
        pause_points.release("restore_after_safety")
        out, errs = restore.communicate(timeout=120)
        assert restore.returncode == 0, errs
    finally:
        pause_points.release("restore_after_safety")
        if restore.poll() is None:
            restore.kill()
            restore.wait()
    assert ids_in(db) == set()


def fingerprint(con):
    """One read transaction over several tables (one statement)."""
    return con.execute("select (select count(*) from acks), (select max(id) from acks), "
                       "(select count(*) from memory), (select sum(length(content)) from memory)"
                       ).fetchone()


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_readers_see_old_or_new_content_only(tmp_path, pause_points, journal):
    db, store = tmp_path / "data" / "bri.db", tmp_path / "data" / "backups"
    make_db(db, journal)
    run_cli(db, store, "create", "--name", "target")
    con = sqlite3.connect(db, isolation_level=None)
    new = fingerprint(con)
    con.execute("insert into acks(id) values (1), (2), (3)")
    con.execute("delete from memory where id % 2 = 0")
    old = fingerprint(con)
    con.close()
    assert old != new
    seen, busy, stop = [], [0], threading.Event()

    def read():
        r = sqlite3.connect(db, timeout=0.05, isolation_level=None, check_same_thread=False)
        try:
            while not stop.is_set():
                try:
                    seen.append(fingerprint(r))
                except sqlite3.OperationalError as e:
                    assert "locked" in str(e), e
                    busy[0] += 1
        finally:
            r.close()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    pause_points.arm("restore_after_safety")
    restore = subprocess.Popen(cli_cmd(db, store, "restore", "target"),
                               env=pause_points.env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        pause_points.wait_reached("restore_after_safety")
        n = len(seen) + busy[0]
        assert wait_until(lambda: len(seen) + busy[0] >= n + 3, 30)
        pause_points.release("restore_after_safety")
        out, errs = restore.communicate(timeout=120)
        assert restore.returncode == 0, errs
        n = len(seen)
        assert wait_until(lambda: len(seen) >= n + 3, 30)
    finally:
        pause_points.release("restore_after_safety")
        if restore.poll() is None:
            restore.kill()
            restore.wait()
        stop.set()
        reader.join(30)
    assert set(seen) <= {old, new}, set(seen) - {old, new}
    assert seen[0] == old and seen[-1] == new


# ---- issue 9, item 7: what a restore through the mount holds, and for how long ----

def start_mount(live_db, store, path, pause_points, monkeypatch, options=()):
    """A mount whose daemon stops at armed pause points."""
    monkeypatch.setenv("BRI_TEST_PAUSE_DIR", str(pause_points.dir))
    return Mount(live_db, store, path, options=options).start()


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_ls_of_the_root_during_a_ctl_restore(live_db, store, tmp_path, pause_points,
                                             monkeypatch):
    """echo X > ctl/restore holds no lock of the root: while the restore is
    stopped midway, ls of the mount's root finishes."""
    Cli(live_db, store).run("create", "--name", "target")
    mnt = start_mount(live_db, store, tmp_path / "mnt", pause_points, monkeypatch)
    req = ls = None
    try:
        pause_points.arm("restore_after_safety")
        req = subprocess.Popen(["bash", "-c", f"echo target > {mnt.path}/ctl/restore"],
                               stderr=subprocess.PIPE, text=True)
        pause_points.wait_reached("restore_after_safety")
        ls = subprocess.Popen(["ls", "-la", str(mnt.path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        finished = wait_until(lambda: ls.poll() is not None, 30)
        still_paused = req.poll() is None
        assert finished, "ls of the root waited for the restore"
        assert still_paused, "the restore was not stopped while ls ran"
        out = ls.stdout.read()
        assert ls.returncode == 0 and "target" in out, out
        pause_points.release("restore_after_safety")
        assert req.wait(timeout=120) == 0, req.stderr.read()
    finally:
        pause_points.release("restore_after_safety")
        for p in (req, ls):
            if p and p.poll() is None:
                p.kill()
                p.wait(timeout=60)
        mnt.stop()


def test_ls_of_the_root_waits_during_an_mv_restore(live_db, store, tmp_path, pause_points,
                                                   monkeypatch):
    """What the man page says: the kernel holds the root's rename lock for
    the whole mv into restore/, so ls of the root waits until it ends."""
    Cli(live_db, store).run("create", "--name", "target")
    mnt = start_mount(live_db, store, tmp_path / "mnt", pause_points, monkeypatch)
    req = ls = None
    try:
        pause_points.arm("restore_after_safety")
        req = subprocess.Popen(["mv", f"{mnt.path}/target", f"{mnt.path}/restore/"],
                               stderr=subprocess.PIPE, text=True)
        pause_points.wait_reached("restore_after_safety")
        ls = subprocess.Popen(["ls", "-la", str(mnt.path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        # Asleep in the kernel, waiting for the root's lock.
        assert wait_until(lambda: proc_state(ls.pid) == "D", 30), proc_state(ls.pid)
        assert req.poll() is None
        pause_points.release("restore_after_safety")
        assert req.wait(timeout=120) == 0, req.stderr.read()
        assert ls.wait(timeout=60) == 0
        assert "target" in ls.stdout.read()
    finally:
        pause_points.release("restore_after_safety")
        for p in (req, ls):
            if p and p.poll() is None:
                p.kill()
                p.wait(timeout=60)
        mnt.stop()


HOLD = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("begin " + sys.argv[2])
con.execute("insert into memory(video_id, role, content) values (1, 'user', 'uncommitted')")
print("holding", flush=True)
sys.stdin.read()
con.execute("rollback")
"""


@pytest.mark.parametrize("journal,mode", [("wal", "immediate"), ("delete", "exclusive")])
def test_ctl_restore_waits_for_a_writer_for_the_busy_timeout(live_db, store, tmp_path,
                                                              pause_points, monkeypatch,
                                                              journal, mode):
    """With a writer holding the live database, echo X > ctl/restore fails
    after about the mount's busy timeout with "database is locked", and
    nothing changed."""
    busy_ms = 3000
    sqlite3.connect(live_db).execute(f"pragma journal_mode={journal}").fetchone()
    Cli(live_db, store).run("create", "--name", "target")
    con = sqlite3.connect(live_db)
    con.execute("delete from memory where id % 2 = 0")
    con.commit()
    con.close()
    before = content(live_db)
    store_before = sorted(p.name for p in store.iterdir() if not p.name.endswith(".verify"))
    mnt = start_mount(live_db, store, tmp_path / "mnt", pause_points, monkeypatch,
                      options=[f"busy_timeout={busy_ms}"])
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(live_db), mode],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        t0 = time.monotonic()
        p = subprocess.run(["bash", "-c", f"echo target > {mnt.path}/ctl/restore"],
                           capture_output=True, text=True, timeout=busy_ms / 1000 + 60)
        took = time.monotonic() - t0
        assert p.returncode != 0
        assert "busy" in p.stderr.lower(), p.stderr
        assert busy_ms / 1000 * 0.9 <= took < busy_ms / 1000 + 20, took
        print(f"restore against a held lock ({journal}, busy_timeout {busy_ms} ms): "
              f"failed after {took:.2f} s")
        log = (mnt.path / "ctl/log").read_text()
        assert "database is locked" in log, log[-2000:]
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
        mnt.stop()
    assert content(live_db) == before
    # The failed restore's report is kept (restore_reports.jsonl); nothing else is new.
    after = sorted(p.name for p in store.iterdir() if not p.name.endswith(".verify") and
                   p.name != "restore_reports.jsonl")
    assert after == store_before
