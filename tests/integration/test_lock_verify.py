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
