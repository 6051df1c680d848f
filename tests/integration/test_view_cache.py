"""The kernel's caches of the view (SPEC.md section 4.1, issue 10): every
backup's entries and attributes, `verify` included, are cached, so a
no-change `rsync -a MOUNT/ DEST/` re-run costs a handful of FUSE requests
(counted by the daemon: with $BRI_TEST_REQUESTS set, ctl/metrics shows
bri_fuse_requests_total), and a new
verification result is still seen at once (its entry is invalidated). The
entry invalidations wait for folder locks in the kernel, which a rename
into restore/ holds until it is answered: a killed `mv X restore/`, or a
daemon killed while answering one, must leave a mount that works (or, for
the daemon, one that is dead and can be remounted), never a hang."""

import contextlib
import datetime
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Cli, Mount, is_mounted, mount_field, sh, wait_past_second, wait_until


def requests(m):
    """The daemon's request counters, by kind."""
    text = (m.path / "ctl/metrics").read_text()
    return {k: int(v) for k, v in re.findall(r'bri_fuse_requests_total\{op="(\w+)"\} (\d+)', text)}


def counting(base=None):
    """The daemon's environment for counting its requests (test-only)."""
    return dict(os.environ if base is None else base, BRI_TEST_REQUESTS="1")


def made_since(before, m):
    after = requests(m)
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def fill_store(store, seed, count):
    """count copies of backup seed (plain files), each with a verification
    result that matches its own file, so the background verifier leaves them
    alone, named like automatic backups ten minutes apart."""
    data = (store / f"{seed}.db").read_bytes()
    meta = json.loads((store / f"{seed}.db.meta").read_text())
    verify = json.loads((store / f"{seed}.db.verify").read_text())
    end = datetime.datetime(2025, 10, 16, 14, 30)
    for i in range(count):
        t = end - datetime.timedelta(minutes=10 * i)
        name = "bri_backup_" + t.strftime("%Y%m%d_%H%M%S")
        (store / f"{name}.db").write_bytes(data)
        st = os.stat(store / f"{name}.db")
        verify["file"].update(dev=st.st_dev, ino=st.st_ino, size=st.st_size,
                              mtime_ns=st.st_mtime_ns)
        meta["backup_time"] = t.strftime("%Y-%m-%dT%H:%M:%S")
        (store / f"{name}.db.meta").write_text(json.dumps(meta))
        (store / f"{name}.db.verify").write_text(json.dumps(verify))


def rsync(src, dest):
    p = subprocess.run(["rsync", "-a", "-i", "--exclude", "ctl", "--exclude", "restore",
                        f"{src}/", f"{dest}/"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


def assert_no_change_rsyncs_are_cheap(m, dest):
    """Two no-change rsyncs of the mount in a row, the second counted, until
    two such pairs ran with the kernel's caches kept (another process's
    drop_caches makes the kernel look everything up again: FORGETs, then
    LOOKUPs; reading ctl/metrics makes a FORGET or two). Each counted run
    makes at most 40 requests, 8 of them LOOKUPs."""
    clean = []
    for attempt in range(30):
        s0 = requests(m)
        assert rsync(m.path, dest) == []
        s1 = requests(m)
        assert rsync(m.path, dest) == []
        s2 = requests(m)
        if s2["forget"] - s0["forget"] > 10 or s2["readdirplus"] - s0["readdirplus"] > 4:
            continue
        made = {k: s2[k] - s1[k] for k in s2 if s2[k] != s1[k]}
        assert sum(made.values()) <= 40, made
        assert made.get("lookup", 0) <= 8, made
        clean.append(made)
        if len(clean) == 2:
            break
    assert len(clean) == 2, "the kernel's caches were dropped in every run"


def test_no_change_rsync_of_1000_backups_makes_few_requests(live_db, store, tmp_path):
    cli = Cli(live_db, store)
    cli.run("create", "--name", "seed", "--verify")
    fill_store(store, "seed", 1000)
    m = Mount(live_db, store, tmp_path / "mnt", env=counting()).start()
    try:
        dest = tmp_path / "dest"
        rsync(m.path, dest)  # the copy
        # The copy's reads make the kernel ask once more for each file's
        # attributes (its atime); from then on nothing changed.
        rsync(m.path, dest)
        # A run counts when the kernel kept its caches through it and the
        # run before: a drop_caches by another process on a busy machine
        # drops the cached listings (the next run lists every folder again,
        # READDIRPLUS, and the one after asks for their attributes) or the
        # entries (FORGETs, then LOOKUPs). Reading ctl/metrics makes a FORGET
        # or two (its new version replaces the old). Two clean runs needed.
        # About a dozen, reading ctl/metrics included; before the verify
        # entries were cached, one LOOKUP per backup (1,000+).
        assert_no_change_rsyncs_are_cheap(m, dest)
    finally:
        m.stop()


def test_new_verify_result_is_seen_at_once_though_cached(live_db, store, tmp_path):
    cli = Cli(live_db, store)
    cli.run("create", "--name", "one", "--verify")
    m = Mount(live_db, store, tmp_path / "mnt", env=counting()).start()
    try:
        old = (m.path / "one/verify").read_text()
        ino = os.stat(m.path / "one/verify").st_ino
        checked = json.loads((store / "one.db.verify").read_text())["checked_epoch"]
        wait_past_second(checked)
        before = requests(m)
        reading = made_since(before, m)  # what reading ctl/metrics costs
        for attempt in range(20):  # cached: no lookup of verify (unless evicted meanwhile)
            before = requests(m)
            for _ in range(20):
                os.stat(m.path / "one/verify")
            made = made_since(before, m)
            if made.get("forget", 0) <= reading.get("forget", 0) + 2:
                break
        assert made.get("lookup", 0) <= reading["lookup"], (made, reading)
        sh(f"echo one > {m.path}/ctl/verify")
        st = os.stat(m.path / "one/verify")  # a stat, no open: the entry was dropped
        assert st.st_ino != ino
        new = (m.path / "one/verify").read_text()
        assert new != old and new.startswith("ok")
        assert st.st_size == len(new.encode())
    finally:
        m.stop()


def checks_file(tmp_path):
    f = tmp_path / "checks.sql"
    f.write_text("SELECT count(*) > 0 FROM videos; -- expect 1\n")
    return f


def lookups_of_20_stats(m, path):
    """LOOKUPs that 20 stats of path made, and what reading ctl/metrics
    alone makes, in a run where the kernel kept its caches."""
    before = requests(m)
    reading = made_since(before, m)  # what reading ctl/metrics costs
    for attempt in range(20):  # unless a drop_caches evicted entries meanwhile
        before = requests(m)
        for _ in range(20):
            os.stat(path)
        made = made_since(before, m)
        if made.get("forget", 0) <= reading.get("forget", 0) + 2:
            break
    return made.get("lookup", 0), reading.get("lookup", 0)


def test_new_rehearsal_outcome_is_seen_at_once_though_cached(live_db, store, tmp_path):
    """NAME/rehearsal (with -o checks=) is cached as verify is: its entry
    and attributes, and a new outcome is another inode whose entry the
    daemon invalidates before ctl/rehearse's write returns."""
    Cli(live_db, store).run("create", "--name", "one")
    m = Mount(live_db, store, tmp_path / "mnt", options=[f"checks={checks_file(tmp_path)}"],
              env=counting()).start()
    try:
        f = m.path / "one/rehearsal"
        assert f.read_text() == "never\n"
        ino = os.stat(f).st_ino
        made, reading = lookups_of_20_stats(m, f)
        assert made <= reading, (made, reading)  # before: one LOOKUP a stat
        sh(f"echo one > {m.path}/ctl/rehearse")
        st = os.stat(f)  # a stat, no open: the entry was dropped
        assert st.st_ino != ino
        text = f.read_text()
        assert text.startswith("ok "), text
        assert st.st_size == len(text.encode())
        with open(f, "rb") as fd:  # one descriptor, one version
            assert os.fstat(fd.fileno()).st_size == len(fd.read())
    finally:
        m.stop()


@pytest.fixture
def s3_remote(rgw, bucket):
    assert rgw.client().request("PUT", bucket).status == 200
    return f"s3://{bucket}/cache"


def test_new_offsite_state_is_seen_at_once_though_cached(live_db, store, tmp_path, rgw,
                                                         s3_remote, pause_points):
    """NAME/offsite (with -o offsite=) is cached: its entry and attributes;
    each push state (pending, uploaded) is another inode, whose entry the
    pusher invalidates as soon as the push is done."""
    Cli(live_db, store).run("create", "--name", "one")
    m = Mount(live_db, store, tmp_path / "mnt",
              options=[f"offsite={s3_remote}", f"endpoint={rgw.endpoint}"],
              env=counting(pause_points.env(rgw.env())))
    pause_points.arm("offsite-before-meta")
    pause_points.arm("offsite-shown")
    m.start()
    try:
        f = m.path / "one/offsite"
        # The push at start: one is pending (the backup is up, its metadata not yet).
        pause_points.wait_reached("offsite-before-meta")
        assert f.read_text() == "pending\n"
        ino = os.stat(f).st_ino
        made, reading = lookups_of_20_stats(m, f)
        assert made <= reading, (made, reading)  # before: one LOOKUP a stat
        pause_points.release("offsite-before-meta")
        pause_points.wait_reached("offsite-shown")  # the push is done
        st = os.stat(f)
        assert st.st_ino != ino
        text = f.read_text()
        assert text.startswith("uploaded "), text
        assert st.st_size == len(text.encode())
        with open(f, "rb") as fd:  # one descriptor, one version
            assert os.fstat(fd.fileno()).st_size == len(fd.read())
    finally:
        pause_points.release("offsite-before-meta")
        pause_points.release("offsite-shown")
        m.stop()


def test_no_change_rsync_with_rehearsal_and_offsite_files_makes_few_requests(
        live_db, store, tmp_path, rgw, s3_remote, pause_points):
    """With -o checks= and -o offsite=, every backup folder has `rehearsal`
    and `offsite` too: a no-change rsync still looks none of them up."""
    cli = Cli(live_db, store)
    cli.run("create", "--name", "seed", "--verify")
    fill_store(store, "seed", 200)
    m = Mount(live_db, store, tmp_path / "mnt",
              options=[f"checks={checks_file(tmp_path)}", f"offsite={s3_remote}",
                       f"endpoint={rgw.endpoint}"],
              env=counting(pause_points.env(rgw.env())))
    pause_points.arm("offsite-shown")
    m.start()
    try:
        for attempt in range(5):  # a push that failed on a busy machine is tried again
            pause_points.wait_reached("offsite-shown", timeout=240)
            states = [json.loads(f.read_text())["status"] for f in store.glob("*.db.offsite")]
            pause_points.release("offsite-shown")
            if len(states) == 201 and set(states) == {"uploaded"}:
                break  # every backup is up, and its offsite file says so
            pause_points.arm("offsite-shown")
        assert set(states) == {"uploaded"} and len(states) == 201, states
        dest = tmp_path / "dest"
        rsync(m.path, dest)
        rsync(m.path, dest)
        assert (dest / "seed/offsite").read_text().startswith("uploaded ")
        assert (dest / "seed/rehearsal").read_text() == "never\n"
        # before: two LOOKUPs a backup (400+)
        assert_no_change_rsyncs_are_cheap(m, dest)
    finally:
        pause_points.release("offsite-shown")
        m.stop()


def connection_of(mnt):
    """The FUSE connection number of the mount at mnt (/proc/self/mountinfo)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        f = line.split()
        if mount_field(f[4]) == str(mnt):
            return int(f[2].split(":")[1])
    return None


def abort_connection(conn):
    """Aborts a stuck FUSE connection (fusectl), so a failing test leaves no hang."""
    with contextlib.suppress(OSError):
        Path(f"/sys/fs/fuse/connections/{conn}/abort").write_text("1")


@pytest.fixture
def restoring(live_db, store, tmp_path, pause_points):
    """A mount whose `mv one restore/` is held at the pause point just before
    its reply: the restore is done, the kernel holds the root's, restore/'s
    and one/'s locks, and the entry invalidation of one/verify (ctl/verify
    made a new result meanwhile) waits to be sent."""
    cli = Cli(live_db, store)
    cli.run("create", "--name", "one", "--verify")
    m = Mount(live_db, store, tmp_path / "mnt", env=pause_points.env()).start()
    conn = connection_of(m.path)
    mv = None
    try:
        old = (m.path / "one/verify").read_text()  # the kernel knows one/verify
        # Opened now: a lookup in the root waits for the rename (SPEC 4.1).
        ctl = os.open(m.path / "ctl/verify", os.O_WRONLY)
        checked = json.loads((store / "one.db.verify").read_text())["checked_epoch"]
        wait_past_second(checked)
        pause_points.arm("restore_reply")
        mv = subprocess.Popen(["mv", str(m.path / "one"), str(m.path / "restore") + "/"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        pause_points.wait_reached("restore_reply")
        # A new result for one/verify: its entry invalidation waits for
        # one/'s lock, which the rename holds.
        os.write(ctl, b"one")
        os.close(ctl)
        assert json.loads((store / "one.db.verify").read_text())["checked_epoch"] > checked
        yield m, mv, old
    finally:
        pause_points.release("restore_reply")
        if mv is not None:
            try:
                mv.wait(timeout=30)
            except subprocess.TimeoutExpired:
                abort_connection(conn)
                mv.kill()
                mv.wait(timeout=30)
        if m.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.proc.wait(timeout=1)
        m.stop()


def test_mv_into_restore_killed_then_everything_works(restoring, tmp_path, pause_points):
    m, mv, old = restoring
    mv.send_signal(signal.SIGKILL)
    # The kernel keeps the killed mv's request until the daemon answers it.
    pause_points.release("restore_reply")
    mv.wait(timeout=30)
    names = os.listdir(m.path)
    assert "one" in names  # a restore never consumes a backup
    assert any(n.startswith("pre_restore_safety_") for n in names)
    assert "one.report" in os.listdir(m.path / "restore")
    # The new result is seen (its entry invalidation went out after the reply).
    assert wait_until(lambda: (m.path / "one/verify").read_text() != old, 10)
    text = (m.path / "one/verify").read_text()
    assert os.stat(m.path / "one/verify").st_size == len(text.encode())
    rsync(m.path, tmp_path / "dest")
    assert rsync(m.path, tmp_path / "dest") == []
    sh(f"ls -lR {m.path}/one {m.path}/restore")


def test_daemon_killed_while_answering_mv_into_restore_exits(restoring, live_db, store,
                                                               tmp_path):
    m, mv, _ = restoring
    m.proc.send_signal(signal.SIGKILL)
    # The daemon exits at once (no thread of it sleeps in the kernel waiting
    # for the folder locks the rename holds), which ends the rename.
    m.proc.wait(timeout=20)
    mv.wait(timeout=20)
    assert mv.returncode != 0
    m.stop()
    m2 = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        assert "one" in os.listdir(m2.path)
        (m2.path / "one/verify").read_text()
        rsync(m2.path, tmp_path / "dest")
    finally:
        m2.stop()


# A mount point that /proc/self/mountinfo writes escaped (a space as \040,
# a tab as \011): the watchdog must still find its mount.
AWKWARD_MOUNT = "mnt with space\tand tab \u00fcn\u00efc\u00f8d\u00e9 \u65e5\u672c"


@pytest.mark.parametrize("mount_name", ["mnt", AWKWARD_MOUNT], ids=["plain", "escaped"])
def test_daemon_killed_while_an_invalidation_waits_for_a_lookup_exits(live_db, store, tmp_path,
                                                                      pause_points, mount_name):
    """An entry invalidation of one/verify waits in the kernel for one/'s
    lock, held by a lookup in one/ that the daemon is answering; the daemon
    killed then still exits (its watchdog aborts the connection, which ends
    the lookup, which frees the lock, which wakes the notify thread), and
    after fusermount3 -u no dead mount stays behind, whatever the mount
    point's name."""
    cli = Cli(live_db, store)
    cli.run("create", "--name", "one", "--verify")
    m = Mount(live_db, store, tmp_path / mount_name, env=pause_points.env()).start()
    conn = connection_of(m.path)
    looker = None
    try:
        (m.path / "one/verify").read_text()
        ctl = os.open(m.path / "ctl/verify", os.O_WRONLY)
        checked = json.loads((store / "one.db.verify").read_text())["checked_epoch"]
        wait_past_second(checked)
        pause_points.arm("lookup_backup")
        looker = subprocess.Popen(["stat", str(m.path / "one/nosuch")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pause_points.wait_reached("lookup_backup")
        os.write(ctl, b"one")  # a new result: the invalidation waits for the lookup
        os.close(ctl)
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait(timeout=20)
        looker.wait(timeout=20)
    finally:
        pause_points.release("lookup_backup")
        if m.proc.poll() is None or (looker and looker.poll() is None):
            abort_connection(conn)
        if looker:
            looker.wait(timeout=30)
        m.stop()
    assert m.proc.returncode == -signal.SIGKILL
    assert "no watchdog" not in m.proc.stderr.read()
    assert not is_mounted(m.path)
