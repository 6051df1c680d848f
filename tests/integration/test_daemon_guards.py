"""The daemon's guards (issue 9, items 5, 8, 12 and 13): a mount point over
its own store or database refused before mounting, ctl/ renderings shared and
bounded in memory, a store file changed in place noticed, a ctl handle that
got EFBIG refusing more, SIGHUP reopening -o log=, and a backup dated in the
future not stopping the schedule. Every mount is unmounted in a finally
block; every subprocess runs under a timeout."""

import errno
import hashlib
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BRI_BACKUPFS, Cli, Mount, both_formats, is_mounted, make_sample_db, wait_until

pytestmark = pytest.mark.skipif(not BRI_BACKUPFS.exists(), reason="bri-backupfs is not built")


# ---- item 5: a mount point the daemon would wait on ----

def refused_mount(db, mnt, store=None):
    """Starts the daemon at mnt, expecting a refusal before mounting. A mount
    that happens anyway (the unfixed daemon) is detached at once, before
    anything can look into it (a request would deadlock the daemon)."""
    opts = ["-o", f"backup_dir={store}"] if store else []
    proc = subprocess.Popen([str(BRI_BACKUPFS), "-f", *opts, str(db), str(mnt)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    mnt = Path(os.path.realpath(mnt))  # fusermount3 refuses to detach through a symlink
    try:
        wait_until(lambda: proc.poll() is not None or is_mounted(mnt), timeout=20)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True, timeout=30)
            proc.kill()
            proc.wait(timeout=30)
            pytest.fail(f"bri-backupfs mounted at {mnt}")
        rc = proc.wait(timeout=30)
        return rc, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True, timeout=30)


def mounted_anywhere_under(folder):
    folder = os.path.realpath(folder)
    with open("/proc/self/mounts") as f:
        return [l for l in f if l.split()[1].startswith(folder)]


def test_mount_on_the_default_store_is_refused(tmp_path):
    db = make_sample_db(tmp_path / "data" / "bri.db")
    (tmp_path / "data" / "backups").mkdir()
    rc, err = refused_mount(db, tmp_path / "data" / "backups")
    assert rc != 0
    assert "refusing to mount" in err and "is the store" in err, err
    assert not mounted_anywhere_under(tmp_path)


def test_mount_on_the_store_through_a_symlink_is_refused(tmp_path):
    db = make_sample_db(tmp_path / "data" / "bri.db")
    store = tmp_path / "store"
    store.mkdir()
    (tmp_path / "link").symlink_to(store)
    rc, err = refused_mount(db, tmp_path / "link", store)
    assert rc != 0 and "is the store" in err, err
    assert not mounted_anywhere_under(tmp_path)


def test_mount_inside_the_store_is_refused(tmp_path):
    db = make_sample_db(tmp_path / "data" / "bri.db")
    store = tmp_path / "store"
    (store / "sub").mkdir(parents=True)
    rc, err = refused_mount(db, store / "sub", store)
    assert rc != 0 and "is inside the store" in err, err
    assert not mounted_anywhere_under(tmp_path)


def test_mount_above_the_store_is_refused(tmp_path):
    db = make_sample_db(tmp_path / "data" / "bri.db")
    store = tmp_path / "other" / "deep" / "store"
    store.mkdir(parents=True)
    rc, err = refused_mount(db, tmp_path / "other", store)
    assert rc != 0 and "would cover the store" in err, err
    assert not mounted_anywhere_under(tmp_path)


def test_mount_above_the_database_is_refused(tmp_path):
    db = make_sample_db(tmp_path / "app" / "data" / "bri.db")
    store = tmp_path / "store"
    store.mkdir()
    for mnt in (tmp_path / "app" / "data", tmp_path / "app"):
        rc, err = refused_mount(db, mnt, store)
        assert rc != 0 and "would cover the live database's folder" in err, err
        assert not mounted_anywhere_under(tmp_path)


def test_mount_above_the_real_folder_of_a_symlinked_database_is_refused(tmp_path):
    real = make_sample_db(tmp_path / "real" / "bri.db")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "bri.db").symlink_to(real)
    store = tmp_path / "store"
    store.mkdir()
    rc, err = refused_mount(tmp_path / "app" / "bri.db", tmp_path / "real", store)
    # (A daemon that refuses a symlinked database outright is as good.)
    assert rc != 0 and ("would cover the live database's folder" in err
                        or "symbolic link" in err or "symlink" in err), err
    assert not mounted_anywhere_under(tmp_path)


def test_mount_beside_the_store_in_the_database_folder_works(tmp_path):
    db = make_sample_db(tmp_path / "data" / "bri.db")
    store = tmp_path / "data" / "backups"
    Cli(db, store).run("create", "--name", "one")
    m = Mount(db, store, tmp_path / "data" / "mnt").start()
    try:
        assert "one" in os.listdir(m.path)
        assert (m / "one" / "bri.db").read_bytes() == (store / "one.db").read_bytes()
    finally:
        m.stop()


# ---- item 13: a ctl handle that got EFBIG or EINVAL is spent ----

@pytest.mark.parametrize("first", [[b"a" * 4000, b"b" * 200], [b"x\ny\n"]],
                         ids=["too-long", "two-lines"])
def test_a_refused_ctl_request_leaves_nothing_to_join_the_next_write(mounted, store, first):
    fd = os.open(mounted / "ctl" / "create", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as e:
            for chunk in first:
                os.write(fd, chunk)
        refused = e.value.errno
        # Each write is one request: 4000 bytes is a name too long (ENAMETOOLONG).
        assert refused in (27, 22, 36), e.value  # EFBIG, EINVAL, ENAMETOOLONG
        # The same handle: a later write must not start (or finish) a request.
        with pytest.raises(OSError) as e:
            os.write(fd, b"fresh\n")
        assert e.value.errno == refused
    finally:
        os.close(fd)
    assert not (store / "fresh.db").exists()
    assert "fresh" not in os.listdir(mounted.path)
    # A new open works.
    with open(mounted / "ctl" / "create", "w") as f:
        f.write("fresh\n")
    assert (store / "fresh.db").exists()


# ---- item 13: SIGHUP reopens -o log= (logrotate) and does not unmount ----
def test_sigterm_reaches_the_fuse_loop_not_our_own_threads(live_db, store, tmp_path):
    """The kernel gives a process signal to any thread not blocking it. One
    taken by the verifier or the SIGHUP thread sets libfuse's exit flag but
    does not wake the loop waiting in fuse_session_loop_mt: the daemon stays
    mounted until the next request. Our threads block every signal."""
    m = Mount(live_db, store, tmp_path / "mnt", ).start()
    try:
        task = Path(f"/proc/{m.proc.pid}/task")

        def threads():
            out = {}
            for t in task.iterdir():
                try:
                    status = (t / "status").read_text()
                except FileNotFoundError:
                    continue  # a thread that just ended
                fields = dict(line.split(":\t", 1) for line in status.splitlines()
                              if ":\t" in line)
                out[int(t.name)] = (fields["Name"].strip(), int(fields["SigBlk"], 16))
            return out

        assert wait_until(lambda: {"bri-verify", "bri-notify", "bri-sighup"} <=
                          {name for name, _ in threads().values()})
        term = 1 << (signal.SIGTERM - 1)
        ours = {tid: (n, blk) for tid, (n, blk) in threads().items()
                if tid != m.proc.pid and n.startswith("bri-")}
        assert all(blk & term for _, blk in ours.values()), ours
        assert not threads()[m.proc.pid][1] & term  # the loop's thread takes it
        m.proc.send_signal(signal.SIGTERM)
        m.proc.wait(timeout=60)
        assert not is_mounted(m.path)
    finally:
        m.stop()



def add_64_mib(live_db):
    """Makes the live database 64 MiB larger: a backup long enough to verify
    that it is stopped in the middle."""
    con = sqlite3.connect(live_db)
    con.execute("create table bulk(b)")
    con.execute("insert into bulk select randomblob(65536) from (with recursive n(i) as "
                "(select 1 union all select i + 1 from n where i < 1024) select i from n)")
    con.commit()
    con.close()


def verify_results(store):
    """Every verification result file of the store, by name, with its bytes."""
    return {f.name: f.read_bytes() for f in store.iterdir() if "verify" in f.name}


def audit_verifies(store):
    return [r for r in map(json.loads, (store / "audit.jsonl").read_text().splitlines())
            if r["operation"] == "verify"]


# A write to ctl/verify that ends in an error prints its errno; success prints "ok".
CTL_WRITER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
try:
    os.write(fd, sys.argv[2].encode() + b"\n")
    print("ok")
except OSError as e:
    print(e.errno)
"""


@both_formats
def test_sigterm_during_a_background_verification_unmounts_at_once(cli, live_db, store,
                                                                   tmp_path, pause_points):
    """SIGTERM while the background verifier checks a large backup: it stops
    between chunks and records nothing, so the daemon unmounts and exits
    without waiting for the verification's end (held at
    verify_before_persist: a verifier that ran on would stop there, and the
    daemon with it)."""
    add_64_mib(live_db)
    cli.run("create", "--name", "big")  # 64 MiB, not verified yet
    before = sorted(os.listdir(store))
    for point in ("verify_database_check", "verify_before_persist", "workers_stopping"):
        pause_points.arm(point)
    tmp = tmp_path / "tmpdir"  # verify leaves nothing here (nor anywhere in the store)
    tmp.mkdir()
    env = pause_points.env()
    env["TMPDIR"] = str(tmp)
    m = Mount(live_db, store, tmp_path / "mnt", env=env).start()
    try:
        pause_points.wait_reached("verify_database_check")  # the hash runs beside it
        m.proc.send_signal(signal.SIGTERM)
        pause_points.wait_reached("workers_stopping")  # the daemon is stopping
        pause_points.release("verify_database_check")
        pause_points.release("workers_stopping")
        assert m.proc.wait(timeout=30) == 0
        assert not is_mounted(m.path)
        assert not (pause_points.dir / "verify_before_persist.reached").exists()
    finally:
        m.stop()
    # No verification result, whole or half-written, and no temporary file.
    assert sorted(os.listdir(store)) == before
    assert os.listdir(tmp) == []
    # The audit log says the verification stopped, not a verdict.
    verifies = [r for r in map(json.loads, (store / "audit.jsonl").read_text().splitlines())
                if r["operation"] == "verify"]
    assert [(r["name"], r["result"] != "ok", "stopped" in r.get("detail", ""))
            for r in verifies] == [("big", True, True)], verifies


@both_formats
@pytest.mark.parametrize("ctl, request_, sig", [("verify", "big", signal.SIGTERM),
                                                ("verify", "all", signal.SIGINT),
                                                ("rehearse", "big", signal.SIGTERM),
                                                ("schedule", "", signal.SIGTERM)],
                         ids=["verify-sigterm", "verify-all-sigint", "rehearse-sigterm",
                              "scheduled-rehearsal-sigterm"])
def test_stop_signal_during_a_ctl_verify_or_rehearsal_unmounts_at_once(cli, live_db, store, tmp_path,
                                                          pause_points, ctl, request_, sig):
    """SIGTERM (or SIGINT) while a verification asked through ctl/verify (or
    the one a ctl/rehearse begins with) runs: it stops between chunks as the
    background verifier does, records no result (the backup's earlier one
    stays as it was; a rehearsal keeps no outcome), and the daemon exits and
    unmounts without waiting for its end. With "all", no later backup is
    begun either. A scheduled rehearsal (-o rehearse=, "schedule" here) stops
    the same way. Held at verify_database_check; a verification that ran on
    would pause at verify_before_persist (and the daemon with it)."""
    add_64_mib(live_db)
    cli.run("create", "--name", "big")
    cli.run("create", "--name", "big2")
    cli.run("verify", "big")
    cli.run("verify", "big2")
    before = sorted(os.listdir(store))
    results = verify_results(store)
    assert len(results) == 2, results
    audited = len(audit_verifies(store))
    for point in ("verify_database_check", "verify_before_persist"):
        pause_points.arm(point)
    tmp = tmp_path / "tmpdir"  # verify leaves nothing here (nor anywhere in the store)
    tmp.mkdir()
    env = pause_points.env()
    env["TMPDIR"] = str(tmp)
    # scrub_interval=0: the background verifier leaves verified backups alone.
    # A scheduled rehearsal is due at once: the store has none yet.
    options = ["scrub_interval=0"] + (["rehearse=daily"] if ctl == "schedule" else [])
    m = Mount(live_db, store, tmp_path / "mnt", options=options, env=env).start()
    writer = None
    try:
        if ctl != "schedule":
            writer = subprocess.Popen([sys.executable, "-c", CTL_WRITER,
                                       str(m / "ctl" / ctl), request_],
                                      stdout=subprocess.PIPE, text=True)
        pause_points.wait_reached("verify_database_check")
        m.proc.send_signal(sig)
        # The signal reached the daemon before the verification goes on.
        assert wait_until(lambda: "SigPnd:\t0000000000000000" in
                          Path(f"/proc/{m.proc.pid}/status").read_text() and
                          "ShdPnd:\t0000000000000000" in
                          Path(f"/proc/{m.proc.pid}/status").read_text(), 30)
        pause_points.release("verify_database_check")
        # Either the daemon exits, or (the fault) the verification ran on to its end.
        assert wait_until(lambda: m.proc.poll() is not None or
                          (pause_points.dir / "verify_before_persist.reached").exists(), 30)
        assert not (pause_points.dir / "verify_before_persist.reached").exists(), (
            "the verification ran on to its end after the stop signal")
        assert m.proc.wait(timeout=30) == 0
        assert not is_mounted(m.path)
        if writer:
            out, _ = writer.communicate(timeout=30)
            assert out.strip() == str(errno.ECANCELED), out
    finally:
        # The daemon first (its writer waits for it, SIGKILL or not).
        for point in ("verify_database_check", "verify_before_persist"):
            pause_points.release(point)
        m.stop()
        if writer and writer.poll() is None:
            writer.kill()
            writer.wait(timeout=30)
    # No new result, whole or half-written; the earlier ones are as they were.
    assert sorted(os.listdir(store)) == before
    assert verify_results(store) == results
    assert os.listdir(tmp) == []
    # One verification was stopped (with "all", none after it began).
    new = audit_verifies(store)[audited:]
    assert [(r["result"] != "ok", "stopped" in r.get("detail", "")) for r in new] == [
        (True, True)], new
    assert new[0]["name"] in ("big", "big2")
    rehearsals = [r for r in map(json.loads, (store / "audit.jsonl").read_text().splitlines())
                  if r["operation"] == "rehearse"]
    if ctl in ("rehearse", "schedule"):  # the newest good backup for the schedule
        assert [(r["name"], r["result"] != "ok", "stopped" in r.get("detail", ""))
                for r in rehearsals] == [("big" if request_ else "big2", True, True)], rehearsals
    else:
        assert rehearsals == []


def test_sighup_reopens_the_log_file_and_keeps_the_mount(live_db, store, tmp_path):
    log = tmp_path / "bri.log"
    m = Mount(live_db, store, tmp_path / "mnt", options=[f"log={log}"]).start()
    try:
        assert wait_until(lambda: log.exists() and "serving the backups" in log.read_text())
        log.rename(tmp_path / "bri.log.1")  # what logrotate does
        m.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: m.proc.poll() is not None or
                   (log.exists() and "log file reopened" in log.read_text()), timeout=30)
        assert m.proc.poll() is None and is_mounted(m.path), "SIGHUP ended the daemon"
        assert log.exists() and "log file reopened" in log.read_text()
        with open(m / "ctl" / "create", "w") as f:
            f.write("after_hup\n")
        assert wait_until(lambda: "after_hup" in log.read_text(), timeout=30)
        assert "after_hup" not in (tmp_path / "bri.log.1").read_text()
        assert "after_hup" in os.listdir(m.path)
        assert m.proc.poll() is None and is_mounted(m.path)
        # SIGTERM still unmounts.
        m.proc.send_signal(signal.SIGTERM)
        m.proc.wait(timeout=60)
        assert not is_mounted(m.path)
    finally:
        m.stop()


# ---- item 13: a backup dated in the future does not stop the schedule ----

def test_a_backup_dated_in_the_future_does_not_stop_the_schedule(cli, live_db, store, tmp_path):
    from test_mount_operations import auto_backups, backdate, keys
    cli.run("create")  # an automatic backup, as cron would make
    (future,) = auto_backups(store)
    backdate(store, future, -86400)  # dated tomorrow: the clock went back
    m = Mount(live_db, store, tmp_path / "mnt", options=["schedule=every=2s"]).start()
    try:
        # Runs go on from now: a new automatic backup, then another.
        assert wait_until(lambda: len(auto_backups(store)) >= 3, 30), auto_backups(store)
        sched = keys((m / "ctl" / "schedule").read_text())
        assert future in sched.get("warning", ""), sched
        assert not sched["last_run"].endswith(f"({future})"), sched
        log = (m / "ctl" / "log").read_text()
        assert f"backup {future} is dated in the future" in log
    finally:
        m.stop()


# ---- item 8: ctl/ renderings shared per content version, bounded, given back ----

OPENER = r"""
import os, resource, sys
path, n = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = n + 64
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
fds = [os.open(path, os.O_RDONLY) for _ in range(n)]
print("open", flush=True)
sys.stdin.readline()
for fd in fds:
    os.close(fd)
print("closed", flush=True)
"""


def sanitizer_build():
    """True for a daemon built with ASan/UBSan (scripts/check sanitize): its
    allocator keeps freed memory in quarantine and pads every block, so its
    RSS measures the sanitizer, not us."""
    out = subprocess.run(["ldd", str(BRI_BACKUPFS)], capture_output=True, text=True).stdout
    return "libasan" in out or "libubsan" in out


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def many_backups(cli, store, n):
    """n backups: one made, the others copies under new names (cheap)."""
    cli.run("create", "--name", "seed")
    db, meta = store / "seed.db", store / "seed.db.meta"
    for i in range(1, n):
        shutil.copyfile(db, store / f"copy_{i:05d}.db")
        shutil.copyfile(meta, store / f"copy_{i:05d}.db.meta")


OPENS = 4000


@pytest.mark.parametrize("ctl", ["cleanup", "stats.json", "metrics"])
def test_4000_opens_of_a_ctl_file_share_one_rendering(cli, live_db, store, tmp_path, ctl):
    many_backups(cli, store, 600)
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        path = m / "ctl" / ctl
        size = len(path.read_bytes())
        rss0 = rss_kb(m.proc.pid)
        p = subprocess.Popen(["python3", "-c", OPENER, str(path), str(OPENS)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout.readline().strip() == "open", "the opener failed"
            held = rss_kb(m.proc.pid)
            p.stdin.write("\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == "closed"
            assert p.wait(timeout=120) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        print(f"ctl/{ctl}: {size} bytes, daemon RSS {rss0} kB, {held} kB with {OPENS} opens")
        assert len(path.read_bytes()) > 0 and m.proc.poll() is None
        if sanitizer_build():
            pytest.skip("the opens succeeded; the RSS bounds are not checked under a "
                        "sanitizer build (ASan's quarantine and redzones, not ours)")
        # One copy per content version, not one per open (4000 x size).
        assert held - rss0 < 64 * 1024, (ctl, size, rss0, held)
        # Given back after close.
        assert wait_until(lambda: rss_kb(m.proc.pid) - rss0 < 16 * 1024, timeout=30), \
            (ctl, size, rss0, held, rss_kb(m.proc.pid))
        assert len(path.read_bytes()) > 0
    finally:
        m.stop()


# ---- item 12: a store file changed in place ----

def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("rows", [2000, 20], ids=["bigger", "smaller"])
def test_a_store_file_changed_in_place_is_served_new(cli, live_db, store, tmp_path, rows):
    cli.run("create", "--name", "x")
    cli.run("verify", "x")  # long done: the mount's verifier has nothing to write
    # Another backup of another size.
    other = make_sample_db(tmp_path / "other" / "bri.db", rows=rows)
    Cli(other, tmp_path / "other" / "backups").run("create", "--name", "y")
    new = tmp_path / "other" / "backups" / "y.db"
    assert new.stat().st_size != (store / "x.db").stat().st_size
    # A store quiet for an hour: the daemon has no reason to rescan it (an
    # in-place cp changes no folder time).
    hour_ago = time.time() - 3600
    os.utime(store, (hour_ago, hour_ago))
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        old_sha = sha(store / "x.db")
        assert sha(m / "x" / "bri.db") == old_sha  # cached by the kernel now
        ino = (store / "x.db").stat().st_ino
        # What an admin does: cp rewrites the same inode.
        subprocess.run(["cp", str(new), str(store / "x.db")], check=True, timeout=60)
        assert (store / "x.db").stat().st_ino == ino
        want = sha(new)

        def served():
            p = subprocess.run(f"cat {m / 'x' / 'bri.db'} | sha256sum", shell=True,
                               capture_output=True, text=True, timeout=60)
            return p.stdout.split()[0] == want

        assert wait_until(served, timeout=20), "the mount kept serving the old bytes"
        assert os.stat(m / "x" / "bri.db").st_size == new.stat().st_size
    finally:
        m.stop()


def test_an_open_keeps_its_version_while_a_new_open_sees_the_new_one(mounted, cli):
    path = mounted / "ctl" / "stats.json"
    with open(path, "rb", buffering=0) as before:
        first = before.read(1 << 20)
        cli.run("create", "--name", "later")
        assert wait_until(lambda: "later" in os.listdir(mounted.path))
        with open(path, "rb", buffering=0) as after:
            new = after.read(1 << 20)
        assert new != first
        before.seek(0)
        assert before.read(1 << 20) == first  # its own version, unchanged
