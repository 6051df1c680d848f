"""The store's lock and verification results (issue 9, items 6, 9, 11, 13).

A stopped lock holder: every wait for STORE/.lock ends after the busy
timeout with EBUSY and names the holder's pid, in the CLI and through the
mount, and the mount still unmounts. Verification results are tied to the
file they checked: a backup deleted and re-created during a verification
never shows the old result, and one removed during `verify` (all) is
skipped. Resource errors (too many open files) are never recorded as
failed verifications. Races are made deterministic with pause points."""

import errno
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import BRI_BACKUP, BRI_BACKUPFS, Mount, is_mounted, make_sample_db, wait_until


def start_cli(cli, *args, env=None):
    cmd = [str(BRI_BACKUP), "--db", str(cli.db), "--backup-dir", str(cli.store), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


class StoppedHolder:
    """A real `bri-backup create` stopped (SIGSTOP) while it holds the store's
    lock: it pauses at the pause point store_locked, right after taking the
    lock, is stopped there, and the point is released, so only SIGCONT lets
    it go on."""

    def __init__(self, cli, pause_points, name="held"):
        self.pp = pause_points
        pause_points.arm("store_locked")
        self.proc = start_cli(cli, "create", "--name", name, env=pause_points.env())
        self.stopped = False
        pause_points.wait_reached("store_locked")
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.stopped = True
        pause_points.release("store_locked")

    @property
    def pid(self):
        return self.proc.pid

    def resume(self):
        if self.stopped:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.stopped = False
        out, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, out, err


def busy_env(ms):
    return dict(os.environ, BRI_BUSY_TIMEOUT_MS=str(ms))


def test_a_stopped_lock_holder_makes_cli_operations_fail_with_its_pid(cli, store,
                                                                      pause_points):
    cli.run("create", "--name", "first")
    holder = StoppedHolder(cli, pause_points)
    try:
        assert (store / ".lock").read_text().strip() == str(holder.pid)
        for args in (["create", "--name", "second"], ["delete", "first"], ["cleanup"]):
            t0 = time.monotonic()
            p = cli.run(*args, check=False, env=busy_env(300), timeout=60)
            took = time.monotonic() - t0
            assert p.returncode == 1, (args, p.stdout, p.stderr)
            assert re.search(rf"\bprocess {holder.pid}\b", p.stderr), p.stderr
            assert "locked" in p.stderr
            assert 0.25 <= took < 20, f"{args} took {took:.2f} s with a 300 ms busy timeout"
        assert not (store / "second.db").exists()
        assert (store / "first.db").exists()
    finally:
        rc, out, err = holder.resume()
    assert rc == 0, err
    # Once the holder went on, everything works again; nobody is recorded.
    assert (store / "held.db").exists()
    assert (store / ".lock").read_text() == ""
    cli.run("create", "--name", "second", env=busy_env(300))
    cli.run("delete", "first", env=busy_env(300))


def write_request(path, text, limit=60):
    """Writes one request to a ctl file in a child process, so that a write
    that never returns (the defect) fails this test instead of hanging it.
    Returns (errno or 0, seconds taken)."""
    code = ("import os, sys\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
            "try:\n"
            "    os.write(fd, sys.argv[2].encode())\n"
            "    os.close(fd)\n"
            "except OSError as e:\n"
            "    sys.exit(e.errno)\n")
    t0 = time.monotonic()
    p = subprocess.Popen(["python3", "-c", code, str(path), text])
    try:
        rc = p.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"writing {text!r} to {path} did not return within {limit} s")
    return rc, time.monotonic() - t0


def test_a_stopped_lock_holder_makes_ctl_create_fail_with_ebusy(live_db, cli, store, tmp_path,
                                                                pause_points):
    mnt = tmp_path / "mnt"
    m = Mount(live_db, store, mnt, options=["busy_timeout=300", "scrub_interval=0"]).start()
    holder = None
    try:
        holder = StoppedHolder(cli, pause_points)
        rc, took = write_request(mnt / "ctl/create", "blocked\n")
        assert rc == errno.EBUSY, os.strerror(rc) if rc else "the write succeeded"
        assert took < 20, f"ctl/create took {took:.2f} s with a 300 ms busy timeout"
        log = (mnt / "ctl/log").read_text()
        assert re.search(rf"ctl/create 'blocked' failed: .*process {holder.pid}\b", log), log
        rc, _ = write_request(mnt / "ctl/delete", "held\n")
        assert rc in (errno.EBUSY, errno.ENOENT)
        # The mount still unmounts while the holder is stopped.
        r = subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        m.proc.wait(timeout=30)
        assert not is_mounted(mnt)
    finally:
        m.stop()
        if holder:
            rc, out, err = holder.resume()
    assert rc == 0, err
    # After SIGCONT everything works, through a new mount too.
    m = Mount(live_db, store, mnt, options=["busy_timeout=300", "scrub_interval=0"]).start()
    try:
        rc, _ = write_request(mnt / "ctl/create", "after\n")
        assert rc == 0
        assert (mnt / "after").is_dir() and (mnt / "held").is_dir()
    finally:
        m.stop()


def flip_bytes(path):
    """Damages a file in place in its second half (keeps its size)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2 + 100)
        data = f.read(64)
        f.seek(size // 2 + 100)
        f.write(bytes(b ^ 0xFF for b in data))


def listed_verify(cli, name):
    entries = json.loads(cli.run("--json", "list").stdout)
    (entry,) = [e for e in entries if e["name"] == name]
    return entry["verify"]


def test_a_backup_replaced_during_its_verification_never_gets_the_old_result(
        cli, live_db, store, pause_points):
    cli.run("create", "--name", "x")
    pause_points.arm("verify_before_persist")
    v = start_cli(cli, "verify", "x", env=pause_points.env())
    try:
        pause_points.wait_reached("verify_before_persist")
        # The old x checked ok; now x is deleted and made again, damaged.
        cli.run("delete", "x")
        sh_sql(live_db, "INSERT INTO videos(title) VALUES ('after the first x')")
        cli.run("create", "--name", "x")
        flip_bytes(store / "x.db")
    finally:
        pause_points.release("verify_before_persist")
    out, err = v.communicate(timeout=120)
    assert v.returncode == 1, (out, err)
    assert "replaced" in err and "discarded" in err, err
    # The new, damaged x is not shown ok: never verified yet.
    assert listed_verify(cli, "x") == "unverified"
    if (store / "x.db.verify").exists():
        assert json.loads((store / "x.db.verify").read_text())["status"] != "ok"
    # Verifying it finds the damage.
    p = cli.run("verify", "x", check=False)
    assert p.returncode == 1 and "failed" in p.stdout, (p.stdout, p.stderr)
    assert listed_verify(cli, "x") == "failed"


def sh_sql(db, sql):
    import sqlite3
    con = sqlite3.connect(db)
    try:
        con.execute(sql)
        con.commit()
    finally:
        con.close()


def test_verify_all_skips_backups_removed_after_the_listing(cli, store, pause_points):
    for name in ("a", "b", "c"):
        cli.run("create", "--name", name)
    # Removed between the listing and its verification.
    pause_points.arm("verify_all_listed")
    v = start_cli(cli, "verify", env=pause_points.env())
    try:
        pause_points.wait_reached("verify_all_listed")
        cli.run("delete", "b")
    finally:
        pause_points.release("verify_all_listed")
    out, err = v.communicate(timeout=120)
    assert v.returncode == 0, (out, err)
    assert re.search(r"^b: skipped: removed", out, re.M), out
    assert re.search(r"^a: ok", out, re.M) and re.search(r"^c: ok", out, re.M), out
    # Removed while it was being verified (the newest, c, comes first).
    pause_points.arm("verify_before_persist")
    v = start_cli(cli, "--json", "verify", env=pause_points.env())
    try:
        pause_points.wait_reached("verify_before_persist")
        cli.run("delete", "c")
    finally:
        pause_points.release("verify_before_persist")
    out, err = v.communicate(timeout=120)
    assert v.returncode == 0, (out, err)
    results = {r["name"]: r["status"] for r in json.loads(out)}
    assert results == {"a": "ok", "c": "skipped"}, out
    assert not (store / "c.db.verify").exists()


class LimitedMount(Mount):
    """A Mount whose daemon starts under `prlimit --nofile=SOFT:HARD`."""

    def __init__(self, *a, nofile, env=None, **kw):
        super().__init__(*a, **kw)
        self.nofile = nofile
        self.env = env

    def start(self):
        from conftest import wait_for_mount
        self.path.mkdir(parents=True, exist_ok=True)
        opts = ["backup_dir=" + str(self.store), *self.options]
        cmd = ["prlimit", f"--nofile={self.nofile}", "--", str(BRI_BACKUPFS), "-f", "-o",
               ",".join(opts), str(self.db), str(self.path)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=self.env)
        try:
            wait_for_mount(self.proc, self.path)
        except BaseException:
            self.stop()
            raise
        return self


def nofile_limits(pid):
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open files limit")


def test_the_daemon_raises_its_open_files_limit(live_db, store, tmp_path):
    m = LimitedMount(live_db, store, tmp_path / "mnt", nofile="64:4096",
                     options=["scrub_interval=0"]).start()
    try:
        assert nofile_limits(m.proc.pid) == (4096, 4096)
    finally:
        m.stop()


def daemon_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_out_of_descriptors_no_good_backup_is_recorded_as_failed(cli, live_db, store,
                                                                tmp_path, pause_points):
    cli.run("create", "--name", "b00")
    for i in range(1, 30):  # the same bytes and metadata: all good
        for suffix in (".db", ".db.meta"):
            (store / f"b{i:02}{suffix}").write_bytes((store / f"b00{suffix}").read_bytes())
    log = tmp_path / "daemon.log"
    # The background verifier waits at its pause point until the test has
    # taken every descriptor of the daemon (hard limit 40) but one.
    pause_points.arm("background_verify")
    m = LimitedMount(live_db, store, tmp_path / "mnt", nofile="40:40",
                     options=["scrub_interval=2s", f"log={log}"], env=pause_points.env())
    m.start()
    try:
        check_no_failed_verdict_out_of_descriptors(m, store, log, pause_points)
        # With descriptors back, every one of them is verified ok (retried after 2 s).
        def all_ok():
            return all((m.path / f"b{i:02}" / "verify").read_text().startswith("ok")
                       for i in range(30))
        assert wait_until(all_ok, 120, 0.2)
    finally:
        m.stop()


def check_no_failed_verdict_out_of_descriptors(m, store, log, pause_points):
    held = []
    try:
        pause_points.wait_reached("background_verify")
        while True:  # one daemon descriptor per open backup file
            try:
                held.append(open(m.path / "b00" / "bri.db", "rb"))
            except OSError as e:
                assert e.errno == errno.EMFILE, e
                break
        assert 20 < len(held) < 40, len(held)
        assert daemon_fds(m.proc.pid) == 40
        held.pop().close()
        assert wait_until(lambda: daemon_fds(m.proc.pid) == 39, 10)
        pause_points.release("background_verify")
        # The verifier runs into the limit ...
        pattern = re.compile(r"background verification of \S+.*[Tt]oo many open files")
        assert wait_until(lambda: log.exists() and pattern.search(log.read_text()), 60, 0.1), \
            log.read_text() if log.exists() else "no log"
        # ... and records no verdict for it.
        for f in store.glob("*.db.verify"):
            assert json.loads(f.read_text())["status"] == "ok", (f.name, f.read_text())
        for i in range(30):
            assert not (m.path / f"b{i:02}" / "verify").read_text().startswith("failed"), i
    finally:
        pause_points.release("background_verify")
        for f in held:
            f.close()


WRITE_CODE = ("import os, sys\n"
              "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
              "try:\n"
              "    os.write(fd, sys.argv[2].encode())\n"
              "    os.close(fd)\n"
              "except OSError as e:\n"
              "    sys.exit(e.errno)\n")


def test_a_sixth_concurrent_request_is_refused_at_once_with_a_clear_reason(
        live_db, cli, store, tmp_path, pause_points):
    """Writes to one ctl file are serialised by the kernel (they queue, never
    refused); requests to different ctl files, and restore/, meet in the
    daemon: one runs, four wait, the sixth is refused with EBUSY at once."""
    for name in ("v", "d", "rs", "six"):
        cli.run("create", "--name", name)
    cli.run("verify")  # the background verifier has nothing to do: it takes no turn
    mnt = tmp_path / "mnt"
    m = Mount(live_db, store, mnt, options=["busy_timeout=60000", "scrub_interval=0"]).start()
    holder, writers = None, []
    try:
        # The first request runs and waits for the store's lock, held by a
        # stopped bri-backup; the next four wait for it.
        holder = StoppedHolder(cli, pause_points)
        for ctl, line in (("create", "r1"), ("verify", "v"), ("cleanup", "now"),
                          ("delete", "d"), ("restore", "rs")):
            w = subprocess.Popen(["python3", "-c", WRITE_CODE, str(mnt / "ctl" / ctl),
                                  line + "\n"])
            try:
                rc = w.wait(timeout=1)  # it waits (the daemon has it after this long)
                raise AssertionError(f"ctl/{ctl} returned at once: "
                                     f"{os.strerror(rc) if rc else 'success'}")
            except subprocess.TimeoutExpired:
                writers.append(w)
        t0 = time.monotonic()
        p = subprocess.run(["mv", str(mnt / "six"), str(mnt / "restore") + "/"],
                           capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
        assert p.returncode != 0 and "busy" in p.stderr, p.stderr
        assert took < 10, f"the refusal took {took:.2f} s"
        log = (mnt / "ctl/log").read_text()
        assert re.search(r"request refused with EBUSY .*one operation at a time.* 4 requests "
                         r"already wait", log), log
    finally:
        if holder:
            rc, out, err = holder.resume()
        results = [w.wait(timeout=120) for w in writers]
        m.stop()
    assert rc == 0, err
    assert results == [0] * 5, results
    assert (store / "r1.db").exists() and not (store / "d.db").exists()
