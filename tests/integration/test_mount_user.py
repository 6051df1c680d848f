"""The mount as an ordinary user: a non-root user who owns the database
mounts the view (through the setuid fusermount3, without allow_other) and
uses it with the same tools: ls -l, sqlite3, echo > ctl/create, mv into
restore/, refused writes. The tools run as that user through setpriv; root
itself cannot enter another user's FUSE mount without allow_other."""

import fcntl
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import Mount, copy_programs, make_sample_db, reachable_tmp, wait_until

T = 60

# The test's own user, one per run: concurrent suites never share or delete
# each other's user. Leftovers of runs that died are removed (their pid is gone).
USER_PREFIX = "bribfs"
USER = f"{USER_PREFIX}{os.getpid()}"

# /dev/fuse's mode is shared by every suite on the machine: a suite that needs
# it 0666 registers in FUSE_STATE under the flock of FUSE_LOCK; the first one
# in records the mode it found and makes it 0666, the last one out puts the
# recorded mode back. A suite that died is dropped from the list when the
# next one looks (its pid and start time no longer match a process); the
# mode recorded first stays until the last one out restores it.
FUSE_LOCK = Path("/run/lock/bri-tests-dev-fuse.lock")
FUSE_STATE = Path("/run/lock/bri-tests-dev-fuse.json")


def process_id(pid):
    """(pid, start time) of a live process, or None: a pid reused later does
    not look like the process that registered."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return [pid, int(stat.rsplit(")", 1)[1].split()[19])]


def drop_leftover_users():
    for pw in pwd.getpwall():
        name = pw.pw_name
        if name.startswith(USER_PREFIX) and name[len(USER_PREFIX):].isdigit() \
                and name != USER and process_id(int(name[len(USER_PREFIX):])) is None:
            subprocess.run(["userdel", name], capture_output=True, timeout=T)


def make_user():
    """Creates this run's user (again, if a dead run with our pid left it)."""
    drop_leftover_users()
    subprocess.run(["userdel", USER], capture_output=True, timeout=T)
    subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell",
                    "/usr/sbin/nologin", USER], check=True, timeout=T, capture_output=True)
    pw = pwd.getpwnam(USER)
    return pw.pw_uid, pw.pw_gid


class FuseForUsers:
    """The flock-guarded list of suites that need /dev/fuse 0666 (see above)."""

    def __init__(self):
        self.me = process_id(os.getpid())

    def _update(self, change):
        FUSE_LOCK.parent.mkdir(parents=True, exist_ok=True)
        with open(FUSE_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = json.loads(FUSE_STATE.read_text())
            except (OSError, ValueError):
                state = {"mode": None, "holders": []}
            state["holders"] = [h for h in state["holders"] if process_id(h[0]) == h]
            change(state)
            if state["holders"]:
                tmp = FUSE_STATE.with_suffix(".tmp")
                tmp.write_text(json.dumps(state))
                tmp.replace(FUSE_STATE)
            else:
                FUSE_STATE.unlink(missing_ok=True)

    def acquire(self):
        def add(state):
            mode = os.stat("/dev/fuse").st_mode & 0o777
            if state["mode"] is None:  # the first one in (or after holders that died)
                state["mode"] = mode
            if mode & 0o006 != 0o006:
                os.chmod("/dev/fuse", 0o666)
            state["holders"].append(self.me)
        self._update(add)

    def release(self):
        def remove(state):
            state["holders"] = [h for h in state["holders"] if h != self.me]
            if not state["holders"] and state["mode"] is not None:
                os.chmod("/dev/fuse", state["mode"])
        self._update(remove)


@pytest.fixture(scope="module")
def fuse_for_users():
    """/dev/fuse as Debian's udev rule makes it (0666): fusermount3 opens it
    with the calling user's rights, so without udev (containers) only root
    can mount. The mode found is restored when the last suite needing it
    is done (FuseForUsers)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create and become another user")
    f = FuseForUsers()
    f.acquire()
    try:
        yield
    finally:
        f.release()


@pytest.fixture
def user_env(fuse_for_users):
    """This run's user, and a folder of its own (0755, in a place it can reach)
    holding a database, a mountpoint and copies of the programs: the clone
    itself may sit where that user cannot go (a 0700 folder, root's home)."""
    uid, gid = make_user()
    base = Path(tempfile.mkdtemp(prefix="bri-user-", dir=reachable_tmp()))
    try:
        os.chmod(base, 0o755)
        copy_programs(base / "bin")
        db = make_sample_db(base / "data" / "bri.db")
        store = base / "data" / "backups"
        (base / "mnt").mkdir()
        subprocess.run(["chown", "-R", f"{uid}:{gid}", str(base / "data"), str(base / "mnt")],
                       check=True, timeout=T)
        yield uid, gid, base, db, store
    finally:
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run(["userdel", USER], capture_output=True, timeout=T)


def as_user(ids, cmd, check=True):
    uid, gid, base = ids
    p = subprocess.run(["setpriv", "--reuid", str(uid), "--regid", str(gid), "--clear-groups",
                        "--", "bash", "-c", cmd], capture_output=True, text=True, timeout=T,
                       cwd=base)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd!r} as {uid} exited {p.returncode}: {p.stderr}")
    return p


def test_user_mount_create_restore_and_refusals(user_env):
    uid, gid, base, db, store = user_env
    ids = (uid, gid, base)
    as_user(ids, f"{base}/bin/bri-backup --db {db} create --name first")
    m = Mount(db, store, base / "mnt", user=uid, group=gid, program=base / "bin/bri-backupfs",
              cwd=base).start()
    try:
        mnt = m.path
        out = as_user(ids, f"ls -ln {mnt}").stdout
        assert f" {uid} {uid} " in out and "first" in out
        out = as_user(ids, f"sqlite3 {mnt}/first/bri.db 'select count(*) from videos'").stdout
        assert out.strip() == "42"
        as_user(ids, f"echo by_user > {mnt}/ctl/create")
        assert (store / "by_user.db").stat().st_uid == uid
        p = as_user(ids, f"echo bad/name > {mnt}/ctl/create", check=False)
        assert p.returncode != 0
        as_user(ids, f"echo > {mnt}/ctl/create")
        # Refused writes: the kernel's permission checks and the daemon's.
        for cmd in (f"echo x > {mnt}/first/bri.db", f"rm -f {mnt}/first/bri.db",
                    f"touch {mnt}/first/new", f"mkdir {mnt}/d", f"chmod 777 {mnt}/first",
                    f"echo x > {mnt}/ctl/health"):
            assert as_user(ids, cmd, check=False).returncode != 0, cmd
        # mv into restore/: the backup directory is writable by its owner.
        con = sqlite3.connect(db)
        con.execute("delete from videos where id > 1")
        con.commit()
        con.close()
        as_user(ids, f"mv {mnt}/first {mnt}/restore/")
        out = as_user(ids, f"ls {mnt} {mnt}/restore").stdout
        assert "first.report" in out and "pre_restore_safety_" in out
        assert "first\n" in out
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        assert con.execute("select count(*) from videos").fetchone()[0] == 42
        con.close()
        as_user(ids, f"mv {mnt}/first {mnt}/restore/")  # again
        # An unreadable store fails the listing instead of showing it empty.
        os.chmod(store, 0o000)
        try:
            # What it showed before until the daemon looks again, never empty.
            seen = []

            def listing_fails():
                seen.append(as_user(ids, f"ls {mnt}", check=False))
                if seen[-1].returncode == 0:
                    assert "first" in seen[-1].stdout.split(), seen[-1].stdout
                return seen[-1].returncode != 0

            assert wait_until(listing_fails, 10)
            assert "Input/output error" in seen[-1].stderr, seen[-1].stderr
        finally:
            os.chmod(store, 0o700)
        assert wait_until(lambda: as_user(ids, f"ls {mnt}", check=False).returncode == 0, 10)
        assert "first" in as_user(ids, f"ls {mnt}").stdout.split()
        # Only the mounting user sees the mount (no allow_other).
        other = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534",
                                "--clear-groups", "--", "ls", str(mnt)],
                               capture_output=True, text=True, timeout=T)
        assert other.returncode != 0
    finally:
        m.stop()
    assert m.proc.returncode == 0
