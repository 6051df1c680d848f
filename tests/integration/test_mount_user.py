"""The mount as an ordinary user: a non-root user who owns the database
mounts the view (through the setuid fusermount3, without allow_other) and
uses it with the same tools: ls -l, sqlite3, echo > ctl/create, mv into
restore/, refused writes. The tools run as that user through setpriv; root
itself cannot enter another user's FUSE mount without allow_other."""

import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BRI_BACKUP, Mount, make_sample_db

USER = "bribfs"
T = 60


def ensure_user():
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell",
                        "/usr/sbin/nologin", USER], check=True, timeout=T)
        pw = pwd.getpwnam(USER)
    return pw.pw_uid, pw.pw_gid


@pytest.fixture(scope="module")
def fuse_for_users():
    """/dev/fuse as Debian's udev rule makes it (0666): fusermount3 opens it
    with the calling user's rights, so without udev (containers) only root
    can mount. Restores the mode found afterwards."""
    mode = os.stat("/dev/fuse").st_mode & 0o777
    if mode & 0o006 != 0o006:
        os.chmod("/dev/fuse", 0o666)
    try:
        yield
    finally:
        if mode & 0o006 != 0o006:
            os.chmod("/dev/fuse", mode)


@pytest.fixture
def user_env(fuse_for_users):
    if os.geteuid() != 0:
        pytest.skip("needs root to create and become another user")
    uid, gid = ensure_user()
    if uid != gid:
        pytest.skip(f"user {USER} has uid {uid} but gid {gid}; Mount(user=) needs them equal")
    base = Path(tempfile.mkdtemp(prefix="bri-user-"))
    os.chmod(base, 0o755)
    db = make_sample_db(base / "data" / "bri.db")
    store = base / "data" / "backups"
    (base / "mnt").mkdir()
    subprocess.run(["chown", "-R", f"{uid}:{gid}", str(base)], check=True, timeout=T)
    try:
        yield uid, base, db, store
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_user(uid, cmd, check=True):
    p = subprocess.run(["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups",
                        "--", "bash", "-c", cmd], capture_output=True, text=True, timeout=T)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd!r} as {uid} exited {p.returncode}: {p.stderr}")
    return p


def test_user_mount_create_restore_and_refusals(user_env):
    uid, base, db, store = user_env
    as_user(uid, f"{BRI_BACKUP} --db {db} create --name first")
    m = Mount(db, store, base / "mnt", user=uid).start()
    try:
        mnt = m.path
        out = as_user(uid, f"ls -ln {mnt}").stdout
        assert f" {uid} {uid} " in out and "first" in out
        out = as_user(uid, f"sqlite3 {mnt}/first/bri.db 'select count(*) from videos'").stdout
        assert out.strip() == "42"
        as_user(uid, f"echo by_user > {mnt}/ctl/create")
        assert (store / "by_user.db").stat().st_uid == uid
        p = as_user(uid, f"echo bad/name > {mnt}/ctl/create", check=False)
        assert p.returncode != 0
        as_user(uid, f"echo > {mnt}/ctl/create")
        # Refused writes: the kernel's permission checks and the daemon's.
        for cmd in (f"echo x > {mnt}/first/bri.db", f"rm -f {mnt}/first/bri.db",
                    f"touch {mnt}/first/new", f"mkdir {mnt}/d", f"chmod 777 {mnt}/first",
                    f"echo x > {mnt}/ctl/health"):
            assert as_user(uid, cmd, check=False).returncode != 0, cmd
        # mv into restore/: the backup directory is writable by its owner.
        con = sqlite3.connect(db)
        con.execute("delete from videos where id > 1")
        con.commit()
        con.close()
        as_user(uid, f"mv {mnt}/first {mnt}/restore/")
        out = as_user(uid, f"ls {mnt} {mnt}/restore").stdout
        assert "first.report" in out and "pre_restore_safety_" in out
        assert "first\n" in out
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        assert con.execute("select count(*) from videos").fetchone()[0] == 42
        con.close()
        as_user(uid, f"mv {mnt}/first {mnt}/restore/")  # again
        # An unreadable store fails the listing instead of showing it empty.
        os.chmod(store, 0o000)
        try:
            time.sleep(0.6)
            p = as_user(uid, f"ls {mnt}", check=False)
            assert p.returncode != 0 and "Input/output error" in p.stderr, p.stderr
        finally:
            os.chmod(store, 0o700)
        time.sleep(0.6)
        assert "first" in as_user(uid, f"ls {mnt}").stdout.split()
        # Only the mounting user sees the mount (no allow_other).
        other = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534",
                                "--clear-groups", "--", "ls", str(mnt)],
                               capture_output=True, text=True, timeout=T)
        assert other.returncode != 0
    finally:
        m.stop()
    assert m.proc.returncode == 0
