"""The view's file semantics (SPEC.md section 4.1, issue 10): inode numbers
stable across remounts (restic sees nothing changed), a node that answers
GETATTR until FORGET (fstat of an open backup after its deletion), one
content version per descriptor for generated files, ctl/log append-only by
offset (tail -f), and listings whose offsets name entries (a create during
a paced listing never hides an existing backup)."""

import ctypes
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import ROOT_FIXED, Mount, open_paths, sh, wait_past_second, wait_until

SKIP = ROOT_FIXED


def all_ok(m):
    names = [p.name for p in m.path.iterdir() if p.name not in SKIP]
    return names and all((m.path / n / "verify").read_text().startswith("ok") for n in names)


def inodes(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("ctl", "restore")]
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = os.lstat(p).st_ino
    return out


@pytest.fixture
def three(cli):
    for n in ("one", "two", "three"):
        cli.run("create", "--name", n)
    return cli


def test_inodes_stable_across_remount(three, live_db, store, tmp_path):
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        assert wait_until(lambda: all_ok(m), 30)
        before = inodes(m.path)
        out = sh(f"cd {m.path} && find . -path ./ctl -prune -o -path ./restore -prune -o -print0 "
                  "| xargs -0 stat -c '%n %i'").stdout
    finally:
        m.stop()
    assert len(set(before.values())) == len(before)
    # The same content, and then with the oldest backup gone: every file
    # that is still there keeps its number.
    three.run("delete", "one")
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        after = inodes(m.path)
        out2 = sh(f"cd {m.path} && find . -path ./ctl -prune -o -path ./restore -prune -o -print0 "
                  "| xargs -0 stat -c '%n %i'").stdout
    finally:
        m.stop()
    for k, v in after.items():
        if k in before:
            assert v == before[k], k
    assert set(out2.splitlines()) - {". 1"} <= set(out.splitlines())
    assert len(out2.splitlines()) >= 8
    assert "two/bri.db" in after and "two/verify" in after


INSPECTED = ("inspect/two", "inspect/two/schema.sql", "inspect/two/tables",
             "inspect/two/tables/videos.csv", "inspect/latest/tables/memory.csv",
             "diff/one..two", "diff/one..two/summary", "diff/one..latest/videos.csv",
             "at/2099-01-01", "inspect/README", "diff", "at")


def test_inspect_inodes_stable_across_remount(three, live_db, store, tmp_path):
    def numbers(order):
        m = Mount(live_db, store, tmp_path / "mnt").start()
        try:
            # Looked up in another order each time: a number is not the order
            # of the lookups, but what the name means.
            got = {p: os.lstat(m.path / p) for p in order}
            return {p: (st.st_ino, st.st_mtime, st.st_size) for p, st in got.items()}
        finally:
            m.stop()

    first = numbers(INSPECTED)
    again = numbers(tuple(reversed(INSPECTED)))
    assert again == first
    assert len({v[0] for v in first.values()}) == len(INSPECTED)
    # latest is three: the same files under both names.
    assert numbers(("inspect/three/tables/memory.csv",))["inspect/three/tables/memory.csv"] == \
        first["inspect/latest/tables/memory.csv"]
    # Another backup under the same name is another file, with another number.
    three.run("delete", "two")
    three.run("create", "--name", "two")
    other = numbers(("inspect/two/tables/videos.csv", "diff/one..two/summary"))
    assert other["inspect/two/tables/videos.csv"][0] != first["inspect/two/tables/videos.csv"][0]
    assert other["diff/one..two/summary"][0] != first["diff/one..two/summary"][0]


def test_restic_sees_nothing_changed_after_remount(three, live_db, store, tmp_path):
    repo = tmp_path / "restic-repo"
    env = dict(os.environ, RESTIC_PASSWORD="test", RESTIC_CACHE_DIR=str(tmp_path / "rc"))
    subprocess.run(["restic", "init", "-q", "--repo", str(repo)], env=env, check=True,
                   capture_output=True, timeout=120)

    def backup(m):
        p = subprocess.run(["restic", "backup", "--json", "--repo", str(repo), "--host", "t",
                            "--exclude", str(m.path / "ctl"), "--exclude",
                            str(m.path / "restore"), str(m.path)],
                           env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        summary = [json.loads(l) for l in p.stdout.splitlines()
                   if l.startswith("{") and '"summary"' in l]
        assert summary, p.stdout
        return summary[-1]

    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        assert wait_until(lambda: all_ok(m), 30)  # the background verifier is idle
        first = backup(m)
    finally:
        m.stop()
    assert first["files_new"] >= 9
    # Between the runs (a reboot, say) the oldest backup was deleted: the
    # others are still unchanged to restic.
    three.run("delete", "one")
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        assert wait_until(lambda: all_ok(m), 30)
        second = backup(m)
    finally:
        m.stop()
    assert second["files_changed"] == 0, second
    assert second["files_new"] == 0, second
    assert second["files_unmodified"] == first["files_new"] - 3, (first, second)


def test_open_backup_keeps_reading_after_delete(three, mounted):
    m = mounted
    path = m.path / "two" / "bri.db"
    size = os.stat(path).st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            sh(f"echo two > {m.path}/ctl/delete")
            assert not (m.path / "two").exists()
            data = os.read(fd, 4096)
            assert data.startswith(b"SQLite format 3\0")
            st = os.fstat(fd)
            assert st.st_size == size
            # A real sqlite3 reader of the deleted backup goes on reading.
            n = con.execute("select count(*) from videos").fetchone()[0]
            assert n > 0
            assert con.execute("pragma quick_check").fetchone()[0] == "ok"
        finally:
            con.close()
    finally:
        os.close(fd)


def test_generated_file_one_version_per_descriptor(three, mounted):
    m = mounted
    fd = os.open(m.path / "ctl" / "stats.json", os.O_RDONLY)
    try:
        st = os.fstat(fd)
        sh(f"echo four > {m.path}/ctl/create")
        # The stats changed; this descriptor keeps its version and its size.
        new = (m.path / "ctl" / "stats.json").read_bytes()
        assert os.stat(m.path / "ctl" / "stats.json").st_size == len(new)
        old = b""
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            old += b
        assert os.fstat(fd).st_size == st.st_size == len(old)
        assert old != new
        assert json.loads(old)["total_backups"] + 1 == json.loads(new)["total_backups"]
        assert os.stat(m.path / "ctl" / "stats.json").st_ino != st.st_ino
    finally:
        os.close(fd)


def test_tail_f_ctl_log_shows_new_lines(three, mounted):
    m = mounted
    p = subprocess.Popen(["tail", "-n", "0", "-s", "0.2", "-f", str(m.path / "ctl" / "log")],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        # tail has opened the file when its descriptor shows in /proc.
        assert wait_until(lambda: any(t.endswith("ctl/log") for t in open_paths(p.pid)), 10)
        sh(f"echo tailed_one > {m.path}/ctl/create")
        os.set_blocking(p.stdout.fileno(), False)
        seen = []

        def got():
            line = p.stdout.readline()
            if line:
                seen.append(line)
            return any("tailed_one" in l for l in seen)

        assert wait_until(got, 20), seen
    finally:
        p.kill()
        p.wait(timeout=10)


class Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte)]


def getdents(fd, size):
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(size)
    n = libc.syscall(217, fd, buf, size)  # SYS_getdents64 on x86_64
    if n < 0:
        raise OSError(ctypes.get_errno(), "getdents64")
    names, pos = [], 0
    while pos < n:
        d = Dirent.from_buffer_copy(buf.raw[pos:pos + ctypes.sizeof(Dirent)])
        name = buf.raw[pos + 19:pos + d.d_reclen].split(b"\0", 1)[0].decode()
        names.append(name)
        pos += d.d_reclen
    return names


def test_create_during_paced_listing_hides_no_backup(cli, live_db, store, tmp_path):
    cli.run("create", "--name", "seed")
    db, meta = store / "seed.db", store / "seed.db.meta"
    for i in range(200):
        name = f"copy_{i:03d}"
        shutil.copyfile(db, store / f"{name}.db")
        shutil.copyfile(meta, store / f"{name}.db.meta")
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        before = set(os.listdir(m.path))
        fd = os.open(m.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            seen = getdents(fd, 512)
            made = 0
            while True:
                # Backups made (and listed first, newest first) mid-listing.
                if made < 5:
                    sh(f"echo mid_{made} > {m.path}/ctl/create")
                    made += 1
                chunk = getdents(fd, 512)
                if not chunk:
                    break
                seen += chunk
        finally:
            os.close(fd)
        missing = before - set(seen)
        assert not missing, sorted(missing)
        assert len(seen) == len(set(seen)), "an entry listed twice"
    finally:
        m.stop()


def test_verify_descriptor_keeps_its_version(three, mounted):
    m = mounted
    path = m.path / "two" / "verify"
    assert wait_until(lambda: path.read_text().startswith("ok"), 30)
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        old = path.read_bytes()
        # A new result (a new check time at least) is a new version. The
        # result's time has a resolution of one second: let it tick, else both
        # results may read alike (seen in CI, with the clock checked too early).
        wait_past_second(int(time.time()))
        sh(f"echo two > {m.path}/ctl/verify")
        # The write waits a bounded time for the kernel to drop its entry of
        # the old version (BFS_INVAL_WAIT_S); on a loaded machine the new one
        # may show a moment later.
        assert wait_until(lambda: os.stat(path).st_ino != st.st_ino, 30)
        assert path.read_bytes() != old
        new = path.read_bytes()
        assert os.stat(path).st_ino != st.st_ino
        assert os.stat(path).st_size == len(new)
        data = b""
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            data += b
        assert data == old
        assert os.fstat(fd).st_size == st.st_size == len(old)
    finally:
        os.close(fd)


def test_ctl_log_reads_once_after_the_ring_wraps(mounted):
    """More lines than the daemon keeps (500): cat shows each line once, and
    stat's size is what cat reads."""
    m = mounted
    # The daemon also logs to its stderr, a pipe of the fixture: drain it,
    # or 700 lines fill it and the daemon waits on the write.
    threading.Thread(target=m.proc.stderr.read, daemon=True).start()
    for i in range(700):
        fd = os.open(m.path / "ctl" / "create", os.O_WRONLY)
        try:
            os.write(fd, f"bad/{i:04d}\n".encode())
        except OSError:
            pass  # refused, and logged: what this test wants
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
    log = m.path / "ctl" / "log"
    data = log.read_bytes()
    lines = data.decode().splitlines()
    shown = [l for l in lines if "bad/" in l]
    assert shown and len(shown) == len(set(shown)), "a line shown twice"
    assert any("bad/0699" in l for l in shown)
    assert os.stat(log).st_size == len(data)
