"""The page store's read-ahead through the mount (pages_read.c, ahead_get):
a sequential reader of a backup has a thread (or more, each a different
chunk: AHEAD_WORKERS) assembling the file ahead of it, in chunks of 1 MiB.
What must hold with it: a damaged group fails
exactly the reads that cover its pages, every other read returns the
backup's bytes; readers of two backups at once each get their own bytes; a
read of a chunk a thread is still assembling waits for it; a file released,
or a mount unmounted, while the read-ahead is assembling a chunk ends
cleanly."""

import contextlib
import errno
import hashlib
import hmac
import mmap
import os
import threading

import pytest

from conftest import Mount, all_formats, wait_until
from test_cli import sha256sum
from test_pages import grow_db
from test_reliability_mount import fuse_connections

READ = 64 << 10  # the smallest read that streams (STREAM_MIN)
POINT = "pages-ahead-fill"  # the read-ahead's threads, before each assembles a chunk
CHUNK2 = "pages-ahead-chunk-2"  # the one of them that assembles the file's third chunk
CHUNK = 1 << 20  # the read-ahead's chunk (AHEAD_CHUNK: a group of 4 KiB pages is less)


def exported(cli, name, tmp_path):
    """The backup's bytes as a plain file (bri-backup export)."""
    out = tmp_path / f"{name}.export.db"
    cli.run("export", name, str(out))
    return out.read_bytes()


def pack_groups(pack):
    """[(payload offset, payload length, ids)] of every group blob of an unsealed pack."""
    data = pack.read_bytes()
    off, out = 16, []
    while off + 32 <= len(data):
        h = data[off:off + 32]
        if h[:4] == b"BRIb" and h[5] == 3:
            break  # the pack's table of contents: the groups end here
        assert h[:4] == b"BRIb" and h[5] == 1 and h[7] == 0, h
        ids_len = int.from_bytes(h[16:20], "little")
        stored = int.from_bytes(h[24:28], "little")
        ids = data[off + 32:off + 32 + ids_len]
        out.append((off + 32 + ids_len, stored, {ids[i:i + 32] for i in range(0, ids_len, 32)}))
        off += 32 + ids_len + stored
    return out


def direct_reads(fd, start, size, length):
    """Reads fd (opened with O_DIRECT) from start to size in reads of length
    bytes (each read one FUSE request of exactly that range): [bytes or errno]."""
    buf = mmap.mmap(-1, length)  # page-aligned, as O_DIRECT wants
    out = []
    try:
        for off in range(start, size, length):
            try:
                n = os.preadv(fd, [buf], off)
                out.append(bytes(buf[:n]))
            except OSError as e:
                out.append(e.errno)
    finally:
        buf.close()
    return out


@pytest.mark.parametrize("store_format", ["pages"])
def test_readahead_across_a_damaged_group_fails_exactly_its_reads(cli, live_db, store,
                                                                  tmp_path, pause_points):
    """A bit flipped in the group holding the page in the middle of the
    backup: with the read-ahead running (its thread reached its first chunk),
    a sequential reader gets an I/O error for exactly the reads that cover a
    page of that group, the backup's own bytes for every other read (before
    and after it), and the log names the backup and a page of the group."""
    grow_db(live_db, 4)
    cli.run("create", "--name", "a")
    good = exported(cli, "a", tmp_path)
    page_size = int.from_bytes(good[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    secret = (store / "pages.secret").read_bytes()
    assert len(secret) == 32
    ids = [hmac.new(secret, good[i:i + page_size], hashlib.sha256).digest()
           for i in range(0, len(good), page_size)]
    middle = ids[len(ids) // 2]
    pack, (at, stored, damaged_ids) = next(
        (p, g) for p in store.glob("pack-*.pack") for g in pack_groups(p) if middle in g[2])
    with open(pack, "r+b") as f:
        f.seek(at + stored // 2)
        b = f.read(1)
        f.seek(at + stored // 2)
        f.write(bytes([b[0] ^ 0x10]))
    bad_pages = {i for i, pid in enumerate(ids) if pid in damaged_ids}
    assert bad_pages and len(bad_pages) < len(ids) // 4

    m = Mount(live_db, store, tmp_path / "mnt", env=pause_points.env())
    m.start()
    fd = None
    try:
        # The first read, the read-ahead's thread seen at its first chunk;
        # then the rest of the file through the same open file.
        fd, first = paused_reader(m, pause_points)
        pause_points.release(POINT)
        assert first == good[:READ]
        got = [first] + direct_reads(fd, READ, len(good), READ)
        per_read = READ // page_size
        for i, r in enumerate(got):
            pages = set(range(i * per_read, (i + 1) * per_read))
            if pages & bad_pages:
                assert r in (errno.EIO, errno.EBADMSG), (i, r if isinstance(r, int) else "bytes")
            else:
                assert r == good[i * READ:(i + 1) * READ], i
        log = (m.path / "ctl" / "log").read_text()
        named = [p for p in bad_pages if f"backup a: page {p + 1} " in log]
        assert named, log[-2000:]
    finally:
        pause_points.release(POINT)
        if fd is not None:
            os.close(fd)
        m.stop()


@all_formats
def test_readers_of_two_backups_at_once_each_get_their_bytes(cli, live_db, store, tmp_path,
                                                            store_format):
    """Two backups that differ, read by five sequential readers at once
    (three of a, two of b: one more than the four read-aheads a daemon
    runs, so one reads without): every reader's bytes are its backup's."""
    if store_format == "plain":
        pytest.skip("the read-ahead is the page store's")
    grow_db(live_db, 3)
    cli.run("create", "--name", "a")
    grow_db(live_db, 1)
    cli.run("create", "--name", "b")
    want = {n: hashlib.sha256(exported(cli, n, tmp_path)).hexdigest() for n in ("a", "b")}
    assert want["a"] != want["b"]
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    try:
        got, errors = {}, []

        def read(key, name):
            try:
                h = hashlib.sha256()
                with open(m.path / name / "bri.db", "rb", buffering=0) as f:
                    while chunk := f.read(256 << 10):
                        h.update(chunk)
                got[key] = (name, h.hexdigest())
            except OSError as e:
                errors.append(e)

        threads = [threading.Thread(target=read, args=(f"{n}{i}", n))
                   for n, k in (("a", 3), ("b", 2)) for i in range(k)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors and len(got) == 5, (errors, got)
        for name, digest in got.values():
            assert digest == want[name], name
        for name in ("a", "b"):  # and once more, each alone
            assert sha256sum(m.path / name / "bri.db") == want[name]
    finally:
        m.stop()


def paused_reader(m, pause_points, point=POINT):
    """Opens a's bri.db of mount m with O_DIRECT and reads its first READ
    bytes in a thread, the file kept open until a read-ahead thread has
    reached point (where it pauses): (the fd, the bytes read)."""
    pause_points.arm(point)
    fd = os.open(m.path / "a" / "bri.db", os.O_RDONLY | os.O_DIRECT)
    got = {}
    t = threading.Thread(target=lambda: got.update(r=direct_reads(fd, 0, READ, READ)))
    t.start()
    pause_points.wait_reached(point)
    t.join(timeout=60)
    assert not t.is_alive()
    return fd, got["r"][0]


@pytest.mark.parametrize("store_format", ["pages"])
@pytest.mark.parametrize("point", [POINT, CHUNK2], ids=["first-chunk", "third-chunk"])
def test_release_while_the_readahead_assembles_a_chunk(cli, live_db, store, tmp_path,
                                                       pause_points, point):
    """The file is closed while the read-ahead is in the middle of a chunk
    (its first, or the file's third after two assembled): the release waits
    for that chunk and stops the threads; the daemon goes on serving, the
    same backup read again is its bytes."""
    grow_db(live_db, 4)
    cli.run("create", "--name", "a")
    want = hashlib.sha256(exported(cli, "a", tmp_path)).hexdigest()
    m = Mount(live_db, store, tmp_path / "mnt", env=pause_points.env())
    m.start()
    try:
        fd, _ = paused_reader(m, pause_points, point)
        os.close(fd)  # RELEASE: the daemon's release waits for the paused thread
        pause_points.release(point)
        assert sha256sum(m.path / "a" / "bri.db") == want
        assert (m.path / "ctl" / "health").read_text()
        assert m.proc.poll() is None
    finally:
        pause_points.release(point)
        m.stop()


@pytest.mark.parametrize("store_format", ["pages", "pages-sealed"])
def test_a_read_of_a_chunk_still_being_assembled_waits_for_it(cli, live_db, store, tmp_path,
                                                              pause_points):
    """The read-ahead thread that took the file's third chunk paused before
    assembling it: a sequential reader gets the file's first two chunks
    meanwhile; it stops at the third, answered with nothing of it until the
    thread is let go; then every read is the backup's bytes (an encrypted
    store too)."""
    grow_db(live_db, 6)
    cli.run("create", "--name", "a")
    good = exported(cli, "a", tmp_path)
    assert len(good) > 5 * CHUNK
    m = Mount(live_db, store, tmp_path / "mnt", env=pause_points.env())
    m.start()
    fd = None
    got = []

    def read_rest():
        buf = mmap.mmap(-1, READ)
        try:
            for off in range(READ, len(good), READ):
                n = os.preadv(fd, [buf], off)
                got.append(bytes(buf[:n]))
        except OSError as e:
            got.append(e.errno)
        finally:
            buf.close()

    try:
        fd, first = paused_reader(m, pause_points, CHUNK2)
        assert first == good[:READ]
        t = threading.Thread(target=read_rest)
        t.start()
        before = 2 * CHUNK // READ - 1  # the reads of the first two chunks after the first
        assert wait_until(lambda: len(got) >= before, timeout=60), len(got)
        assert not wait_until(lambda: len(got) > before, timeout=1), len(got)
        pause_points.release(CHUNK2)
        t.join(timeout=120)
        assert not t.is_alive()
        bad = [i for i, r in enumerate(got) if r != good[(i + 1) * READ:(i + 2) * READ]]
        assert not bad and len(got) == (len(good) - 1) // READ, bad[:5]
    finally:
        pause_points.release(CHUNK2)
        if fd is not None:
            os.close(fd)
        m.stop()


@pytest.mark.parametrize("store_format", ["pages"])
def test_unmount_while_the_readahead_assembles_a_chunk(cli, live_db, store, tmp_path,
                                                       pause_points):
    """The connection ends (an abort: no RELEASE comes for the open file)
    while the read-ahead's thread is in the middle of a chunk: the daemon
    frees the open file at exit, stopping and joining that thread, and exits."""
    grow_db(live_db, 2)
    cli.run("create", "--name", "a")
    conns = fuse_connections()
    m = Mount(live_db, store, tmp_path / "mnt", env=pause_points.env())
    m.start()
    fd = None
    try:
        fd, _ = paused_reader(m, pause_points)
        abort = conns / str(os.minor(os.stat(m.path).st_dev)) / "abort"
        abort.write_text("1")
        with contextlib.suppress(OSError):
            os.close(fd)  # ENOTCONN: no RELEASE reaches the daemon
        fd = None
        # The daemon's exit waits for the paused thread's chunk.
        assert not wait_until(lambda: m.proc.poll() is not None, timeout=1)
        pause_points.release(POINT)
        m.proc.wait(timeout=60)
    finally:
        pause_points.release(POINT)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        m.stop()
    assert m.proc.returncode == 0, m.proc.stderr.read()[-3000:]
