"""Reliability and hostile input through the mount (issue 4): the daemon
killed (the mount answers ENOTCONN, never an empty listing; a remount serves
everything), killed in the middle of a ctl/create and of a restore by mv,
the daemon and bri-backup acting on one store at once, hostile names written
to ctl/create, and a hostile store seen through the mount. Every mount is
unmounted in a finally block; every subprocess runs under a timeout."""

import contextlib
import errno
import hashlib
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT_FIXED, BRI_BACKUP, BRI_BACKUPFS, Cli, Mount, PausePoints, make_sample_db, wait_until
from test_reliability import (SEED, assert_store_sound, file_sha, fingerprint, integrity,
                              listed, make_big_db, make_content_a, orphans, sweep, temp_files,
                              wait_stopped)

pytestmark = pytest.mark.skipif(not BRI_BACKUPFS.exists(), reason="bri-backupfs is not built")

TIMEOUT = 120
VALGRIND = "build-valgrind" in str(BRI_BACKUPFS)


def kill_daemon(m):
    """kill -9 of the daemon (stopped or not); the mount stays, dead."""
    if m.proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        m.proc.send_signal(signal.SIGKILL)
    m.proc.wait(timeout=30)


def assert_enotconn(path):
    with pytest.raises(OSError) as e:
        os.listdir(path)
    assert e.value.errno == errno.ENOTCONN, e.value


def write_ctl(path, data, timeout=TIMEOUT):
    """Writes data to a ctl file in a child process (so a hung request cannot
    hang the test); returns (ok, errno name or '')."""
    code = ("import os, sys\n"
            "data = bytes.fromhex(sys.argv[2])\n"
            "try:\n"
            "    fd = os.open(sys.argv[1], os.O_WRONLY)\n"
            "    try:\n"
            "        os.write(fd, data)\n"
            "    finally:\n"
            "        os.close(fd)\n"
            "except OSError as e:\n"
            "    import errno; print(errno.errorcode.get(e.errno, e.errno)); sys.exit(1)\n")
    p = subprocess.run(["python3", "-c", code, str(path), data.hex()], capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode == 0, p.stdout.strip()


# ---- the daemon dies ----

def test_killed_daemon_answers_enotconn_and_a_remount_serves_everything(cli, live_db, store,
                                                                          tmp_path):
    for i in range(3):
        cli.run("create", "--name", f"b{i}")
    shas = {f"b{i}": file_sha(store / f"b{i}.db") for i in range(3)}
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    try:
        assert {"b0", "b1", "b2"} <= set(os.listdir(m.path))
        kill_daemon(m)
        # Never an empty listing: every access fails with ENOTCONN.
        assert_enotconn(m.path)
        # (stat may still be answered from the kernel's attribute cache:
        # backup trees are immutable and cached; opens and listings are not.)
        assert_enotconn(m.path / "b0")
        for p in (m.path / "b0/bri.db", m.path / "b1/meta.json", m.path / "ctl/stats.json"):
            with pytest.raises(OSError) as e:
                with open(p, "rb") as f:
                    f.read(1)
            assert e.value.errno == errno.ENOTCONN, (p, e.value)
        ls = subprocess.run(["ls", str(m.path)], capture_output=True, text=True, timeout=30)
        assert ls.returncode != 0 and ls.stdout == ""
        dest = tmp_path / "offsite"
        dest.mkdir()
        (dest / "keep").write_text("x")
        r = subprocess.run(["rsync", "-a", "--delete", f"{m.path}/", f"{dest}/"],
                           capture_output=True, timeout=60)
        assert r.returncode != 0 and (dest / "keep").exists()
    finally:
        m.stop()
    # A new daemon serves everything again.
    m2 = Mount(live_db, store, tmp_path / "mnt")
    m2.start()
    try:
        assert {"b0", "b1", "b2"} <= set(os.listdir(m2.path))
        for n, sha in shas.items():
            assert file_sha(m2.path / n / "bri.db") == sha
    finally:
        m2.stop()


@pytest.fixture
def big_cli(tmp_path):
    db = make_big_db(tmp_path / "data" / "bri.db", blobs=6000)
    return Cli(db, tmp_path / "data" / "backups")


def test_daemon_killed_during_ctl_create(big_cli, tmp_path):
    cli = big_cli
    rng = random.Random(SEED + 7)
    before = (file_sha(cli.db), fingerprint(cli.db))
    rounds = 4
    for i in range(rounds):
        name = f"k{i}"
        m = Mount(cli.db, cli.store, tmp_path / "mnt")
        m.start()
        try:
            t = threading.Thread(target=write_ctl, args=(m.path / "ctl/create",
                                                        f"{name}\n".encode(), 60))
            t.start()
            time.sleep(rng.uniform(0, 0.4))
            kill_daemon(m)
            t.join(timeout=90)
            assert not t.is_alive()
        finally:
            m.stop()
        # Complete and verifying, or absent.
        names = assert_store_sound(cli, [name])
        if name not in names:
            assert not (cli.store / f"{name}.db").exists()
        assert (file_sha(cli.db), fingerprint(cli.db)) == before
        sweep(cli)
        assert temp_files(cli.store) == [] and orphans(cli.store) == []


def stage_seen(store, name, stage, size):
    """Whether the store shows stage of the create of name (as in test_reliability)."""
    try:
        files = os.listdir(store)
    except FileNotFoundError:
        return False
    tmp_db = [f for f in files if f.startswith(f".{name}.create.") and f.endswith(".tmp")]
    if stage == "copy-start":
        return bool(tmp_db)
    if stage == "copy-half":
        for f in tmp_db:
            with contextlib.suppress(FileNotFoundError):
                if os.path.getsize(store / f) > size // 2:
                    return True
        return False
    if stage == "between-renames":
        return f"{name}.db.meta" in files and f"{name}.db" not in files
    if stage == "published":
        return f"{name}.db" in files
    raise ValueError(stage)


@pytest.mark.parametrize("stage", ["copy-start", "copy-half", "between-renames", "published"])
def test_daemon_killed_at_each_stage_of_ctl_create(tmp_path, stage):
    db = make_big_db(tmp_path / "data" / "bri.db", blobs=12000)
    cli = Cli(db, tmp_path / "data" / "backups")
    size = os.path.getsize(db)
    before = (file_sha(db), fingerprint(db))
    caught = 0
    # The moment between the two renames is too short to catch by looking on a
    # busy machine: the daemon is held there by a pause point instead.
    pause = PausePoints(tmp_path / "pause-points") if stage == "between-renames" else None
    point = "plain-between-renames"

    def seen(name):
        if pause:
            return (pause.dir / f"{point}.reached").exists()
        return stage_seen(cli.store, name, stage, size)

    for i in range(2):
        name = f"s{i}"
        m = Mount(db, cli.store, tmp_path / "mnt", env=pause.env() if pause else None)
        if pause:
            pause.arm(point)
        m.start()
        hit = published = False
        t = threading.Thread(target=write_ctl, args=(m.path / "ctl/create",
                                                    f"{name}\n".encode(), 60))
        try:
            t.start()
            deadline = time.monotonic() + 60
            while t.is_alive() and time.monotonic() < deadline:
                if seen(name):
                    m.proc.send_signal(signal.SIGSTOP)
                    wait_stopped(m.proc.pid)
                    hit = True
                    break
            if hit:
                # Stopped mid-create, holding the lock: list shows no partial
                # backup. The stop lands a moment after the stage was seen,
                # so what counts is whether NAME.db existed when it stopped.
                published = (cli.store / f"{name}.db").exists()
                assert (name in listed(cli)) == published
        finally:
            # Never unmount a stopped daemon: unmount would wait on it forever.
            kill_daemon(m)
            if pause:
                pause.release(point)
            if t.is_alive():
                t.join(timeout=90)
            m.stop()
        assert not t.is_alive()
        caught += hit
        names = assert_store_sound(cli, [name])
        if hit:
            # The rename of NAME.db is the commit point.
            assert (name in names) == published, (stage, names)
            assert published or stage != "published"
        assert (file_sha(db), fingerprint(db)) == before
        sweep(cli)
        assert temp_files(cli.store) == [] and orphans(cli.store) == []
    assert caught >= 1, f"stage {stage} never caught"


def test_daemon_killed_during_restore_by_mv(tmp_path):
    rng = random.Random(SEED + 8)
    db = make_big_db(tmp_path / "data" / "bri.db", blobs=6000)
    cli = Cli(db, tmp_path / "data" / "backups")
    fp_b = fingerprint(db)
    cli.run("create", "--name", "good")
    for i in range(3):
        make_content_a(db)
        fp_a = fingerprint(db)
        known = set(listed(cli))
        m = Mount(db, cli.store, tmp_path / "mnt")
        m.start()
        try:
            p = subprocess.Popen(["mv", str(m.path / "good"), str(m.path / "restore") + "/"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0, 0.6))
            kill_daemon(m)
            p.wait(timeout=60)
        finally:
            m.stop()
        assert integrity(db) == "ok"
        assert fingerprint(db) in (fp_a, fp_b), f"round {i}: a mix"
        new = [n for n in listed(cli) if n not in known]
        assert_store_sound(cli, new)
        assert "good" in listed(cli)  # a restore never consumes a backup
        sweep(cli)
        assert temp_files(cli.store) == []


# ---- the daemon and bri-backup on one store ----

def test_daemon_and_cli_on_one_store_at_once(cli, live_db, store, tmp_path):
    from test_cli import age_backup
    for i in range(2):
        cli.run("create", "--name", f"old{i}")
        age_backup(store / f"old{i}.db", 90 + i)
    cli.run("create", "--name", "gone_cli")
    cli.run("create", "--name", "gone_ctl")
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    try:
        n = 2 if VALGRIND else 4
        results = {}
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            f"m{i}", write_ctl(m.path / "ctl/create", f"m{i}\n".encode())))
            for i in range(n)]
        threads.append(threading.Thread(target=lambda: results.__setitem__(
            "del", write_ctl(m.path / "ctl/delete", b"gone_ctl\n"))))
        procs = []
        base = ["--db", str(live_db), "--backup-dir", str(store)]
        for i in range(n):
            procs.append(subprocess.Popen([str(BRI_BACKUP), *base, "create", "--name", f"c{i}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True))
        procs.append(subprocess.Popen([str(BRI_BACKUP), *base, "delete", "gone_cli"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
        procs.append(subprocess.Popen([str(BRI_BACKUP), *base, "--keep-min", "0", "cleanup"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
        for t in threads:
            t.start()
        for p in procs:
            _, err = p.communicate(timeout=TIMEOUT)
            assert p.returncode == 0, err
        for t in threads:
            t.join(timeout=TIMEOUT)
            assert not t.is_alive()
        assert all(ok for ok, _ in results.values()), results
        expected = {f"m{i}" for i in range(n)} | {f"c{i}" for i in range(n)}
        names = set(assert_store_sound(cli))
        assert names == expected, names
        # The mount shows exactly the same backups, once the daemon has
        # looked at the store again (another process's changes reach it
        # then; the kernel keeps the listing until the daemon drops it).
        def shown():
            return {e for e in os.listdir(m.path) if e not in ROOT_FIXED}
        assert wait_until(lambda: shown() == expected, 30), shown()
    finally:
        m.stop()
    # Only once the daemon is gone: until then its background verifier may be
    # in the middle of writing a result (NAME.db.verify's temporary file).
    assert temp_files(store) == []


# ---- hostile input through the mount ----

HOSTILE = [b"..", b".", b"/", b"a/b", b"../x", b"a\x00b", b"\x00", b"a\nb\n", b"\n\n",
           b"x" * 10240 + b"\n", b"a" * 129 + b"\n", "bäckup\n".encode(), b"-rf\n", b"ctl\n",
           b"restore\n", b"latest\n", b" a\n", b"a b\n", b"a\tb\n", b"\xff\n", b"a\x1b[2Jb\n"]


def test_hostile_names_through_ctl_create(mounted, store, live_db):
    m = mounted
    cli = Cli(live_db, store)
    before = set(os.listdir(store)) if store.exists() else set()
    cases = list(HOSTILE)
    if not VALGRIND:
        cases += [bytes([b]) + b"\n" for b in range(1, 256) if b != ord("\n") and not (
            chr(b).isascii() and chr(b).isalnum())]
    for data in cases:
        ok, why = write_ctl(m.path / "ctl/create", data)
        assert not ok, data
        assert why in ("EINVAL", "ENAMETOOLONG", "EFBIG", "EEXIST"), (data, why)
    after = set(os.listdir(store)) if store.exists() else set()
    assert {n for n in after - before if n not in ("audit.jsonl", ".lock")} == set()
    # The daemon is alive and still works.
    assert os.path.isdir(m.path / "ctl")
    ok, why = write_ctl(m.path / "ctl/create", b"fine\n")
    assert ok, why
    assert listed(cli) == ["fine"]
    # The log names refusals without raw control characters.
    log = (m.path / "ctl/log").read_bytes()
    assert b"\x1b" not in log and b"\x00" not in log


def test_hostile_store_seen_through_the_mount(cli, live_db, store, tmp_path):
    secret = make_sample_db(tmp_path / "elsewhere" / "secret.db", rows=10)
    secret_sha = file_sha(secret)
    cli.run("create", "--name", "real")
    cli.run("create", "--name", "badmeta")
    (store / "badmeta.db.meta").write_text("{not json")
    os.symlink(secret, store / "evil.db")
    os.symlink("/etc/passwd", store / "passwd.db")
    os.symlink(secret, store / "real2.db.meta")
    (store / "dir.db").mkdir()
    os.mkfifo(store / "fifo.db")
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    try:
        shown = set(os.listdir(m.path))
        assert "evil" not in shown and "passwd" not in shown and "dir" not in shown \
            and "fifo" not in shown
        assert "real" in shown
        # A .db whose .meta does not parse is not a backup: no folder for it.
        assert "badmeta" not in shown
        for n in ("evil", "passwd", "dir", "fifo"):
            with pytest.raises(FileNotFoundError):
                os.stat(m.path / n)
        # Read everything the mount shows: nothing is the secret, nothing hangs.
        for dirpath, dirs, files in os.walk(m.path):
            for f in files:
                p = Path(dirpath) / f
                if p.parent.name == "ctl" or p.parent.name == "restore":
                    continue
                with contextlib.suppress(OSError):
                    data = p.read_bytes()
                    assert hashlib.sha256(data).hexdigest() != secret_sha, p
        # The verify of the broken one fails with a reason; the daemon lives on.
        ok, why = write_ctl(m.path / "ctl/verify", b"badmeta\n")
        assert not ok, why
        assert "not a backup" in (m.path / "ctl/log").read_text()
        assert not (store / "badmeta.db.verify").exists()
        assert os.path.isdir(m.path / "real")
    finally:
        m.stop()
    assert file_sha(secret) == secret_sha


# ---- a full disk and the umask, through the mount ----

def test_ctl_create_on_a_full_disk_fails_with_enospc_then_works(tmp_path):
    from test_reliability import tmpfs
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=12000)
    before = file_sha(db)
    with tmpfs(tmp_path / "small", "2m") as store:
        cli = Cli(db, store)
        m = Mount(db, store, tmp_path / "mnt")
        m.start()
        try:
            ok, why = write_ctl(m.path / "ctl/create", b"toobig\n")
            assert not ok and why == "ENOSPC", why
            assert "toobig" not in os.listdir(m.path)
            assert listed(cli) == [] and temp_files(store) == []
            assert "space" in (m.path / "ctl/log").read_text().lower()
            subprocess.run(["mount", "-o", "remount,size=64m", str(store)], check=True,
                           timeout=30)
            ok, why = write_ctl(m.path / "ctl/create", b"toobig\n")
            assert ok, why
            assert "toobig" in os.listdir(m.path)
        finally:
            m.stop()
        assert_store_sound(cli)
        assert temp_files(store) == []
    assert file_sha(db) == before


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_daemon_keeps_the_store_private_whatever_the_umask(live_db, store, tmp_path, umask):
    old = os.umask(umask)
    try:
        m = Mount(live_db, store, tmp_path / "mnt")
        m.start()
    finally:
        os.umask(old)
    try:
        for line in (b"u1\n", b"\n"):
            ok, why = write_ctl(m.path / "ctl/create", line)
            assert ok, why
        ok, why = write_ctl(m.path / "ctl/verify", b"u1\n")
        assert ok, why
        r = subprocess.run(["mv", str(m.path / "u1"), str(m.path / "restore") + "/"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == 0, r.stderr
    finally:
        m.stop()
    assert os.stat(store).st_mode & 0o777 == 0o700
    for n in os.listdir(store):
        mode = os.lstat(store / n).st_mode & 0o777
        assert mode == 0o600, (n, oct(mode))


# ---- open files the kernel never releases ----

def fuse_connections():
    """/sys/fs/fuse/connections, with fusectl mounted there when it is not
    (a system mount like any other; left in place)."""
    conns = Path("/sys/fs/fuse/connections")
    with open("/proc/self/mounts") as f:
        if not any(line.split()[1] == str(conns) for line in f):
            subprocess.run(["mount", "-t", "fusectl", "fusectl", str(conns)],
                           capture_output=True, timeout=30)
    return conns


def test_open_files_never_released_are_freed_at_exit(cli, live_db, store, tmp_path):
    """The kernel sends no RELEASE for a file still open when the connection
    ends (an abort; at unmount, a RELEASE still queued is dropped too): the
    daemon frees such handles itself when its loop ends. The ordinary build
    runs under valgrind here (no definite leak); the ASan build's
    LeakSanitizer and the valgrind stage's own memcheck see the same exit."""
    cli.run("create", "--name", "b")
    head = BRI_BACKUPFS.read_bytes()
    log = None
    program = BRI_BACKUPFS
    if not head.startswith(b"#!") and b"__asan_init" not in head:
        if not shutil.which("valgrind"):
            pytest.skip("valgrind is not installed")
        log = tmp_path / "valgrind.log"
        program = tmp_path / "bri-backupfs-valgrind"
        program.write_text(
            "#!/bin/sh\nexec valgrind --tool=memcheck --error-exitcode=99 --leak-check=full "
            "--show-leak-kinds=definite --errors-for-leak-kinds=definite "
            f"--log-file={log} {BRI_BACKUPFS} \"$@\"\n")
        program.chmod(0o755)
    conns = fuse_connections()
    m = Mount(live_db, store, tmp_path / "mnt", program=program)
    m.start()
    fds = []
    try:
        fds.append(os.open(m.path / "ctl/create", os.O_WRONLY))  # a ctl request's handle
        fds.append(os.open(m.path / "ctl/health", os.O_RDONLY))  # a rendered text
        fds.append(os.open(m.path / "b/bri.db", os.O_RDONLY))  # a store file's fd
        abort = conns / str(os.minor(os.stat(m.path).st_dev)) / "abort"
        abort.write_text("1")
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)  # ENOTCONN: no RELEASE reaches the daemon
        fds = []
        m.proc.wait(timeout=TIMEOUT)
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        m.stop()
    assert m.proc.returncode != 99, "valgrind reported errors"
    if log is not None:
        text = log.read_text()
        assert "ERROR SUMMARY: 0 errors" in text, text[-3000:]
