"""A page store's first read through the mount (pack.c, pages_read.c): the
index is loaded by threads of its own while reads go on (a read of a page not
yet in it waits for them), and the read-ahead asks the kernel for the packs'
bytes of the next 16 MiB of the file (pages_db_prefetch). What must hold: a
backup whose pages sit in many packs reads as its export, past several
prefetch windows; a read goes on past what the paused loader has indexed
(each next page in the group after the one read before it); a read through
a cleanup that rewrites a pack gets its bytes, and so does a read that waits
for the index while a cleanup rewrites one of the listed packs; a file closed
while the index loads ends cleanly."""

import hashlib
import mmap
import os
import sqlite3
import threading

import pytest

from conftest import Mount
from test_pages import grow_db

POINT = "pages-load-pack"  # a loader's thread, before it loads a pack of its list


def churn(live_db, day, modulo):
    """Rewrites the rows whose id is day modulo modulo (same length, other bytes)."""
    con = sqlite3.connect(live_db)
    con.execute("update memory set content = lower(content) where id % ? = ?", (modulo, day))
    con.commit()
    con.execute("pragma wal_checkpoint(TRUNCATE)")
    con.close()


def exported_sha(cli, name, tmp_path):
    out = tmp_path / f"{name}.export.db"
    cli.run("export", name, str(out))
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.unlink()
    return digest


def read_sha(path, size=128 << 10):
    """sha256 of the file read from the start in reads of size bytes (they stream)."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(size):
            h.update(chunk)
    return h.hexdigest()


def packs(store):
    return {p.name for p in store.glob("pack-*.pack")}


@pytest.mark.parametrize("store_format", ["pages", "pages-sealed"])
def test_backups_with_churn_in_many_packs_read_as_their_exports(cli, live_db, store, tmp_path,
                                                                store_format):
    """Four daily backups of a 30 MiB database, each day a few percent of
    its rows rewritten: the latest one's pages are in four packs, scattered.
    Read through a fresh mount (the index loading, the read-ahead asking for
    the next 16 MiB again and again), each backup is its export's bytes, and
    so is a second read of the latest while the oldest is read."""
    grow_db(live_db, 30)
    cli.run("create", "--name", "d0")
    for day in range(1, 4):
        churn(live_db, day, 25)
        cli.run("create", "--name", f"d{day}")
    assert len(packs(store)) >= 4
    want = {f"d{d}": exported_sha(cli, f"d{d}", tmp_path) for d in range(4)}
    assert len(set(want.values())) == 4
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    try:
        for name in ("d3", "d1", "d0", "d2"):
            assert read_sha(m.path / name / "bri.db") == want[name], name
        got = {}
        threads = [threading.Thread(target=lambda n=n: got.update({n: read_sha(
            m.path / n / "bri.db", 256 << 10)})) for n in ("d3", "d0")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert got == {"d3": want["d3"], "d0": want["d0"]}
    finally:
        m.stop()


def a_and_b_mostly_changed(cli, live_db, store):
    """Backups a, then b with three quarters of a's rows rewritten: a delete
    of a leaves a's pack three quarters garbage (the cleanup rewrites it,
    b's pages of it into a new pack). Returns a's packs."""
    grow_db(live_db, 20)
    cli.run("create", "--name", "a")
    first = packs(store)
    con = sqlite3.connect(live_db)
    con.execute("update memory set content = lower(content) where id % 4 != 0")
    con.commit()
    con.execute("pragma wal_checkpoint(TRUNCATE)")
    con.close()
    cli.run("create", "--name", "b")
    return first


@pytest.mark.parametrize("store_format", ["pages"])
def test_a_read_goes_on_while_a_cleanup_rewrites_a_pack(cli, live_db, store, tmp_path):
    """b read through the mount, 4 MiB of it, then a deleted (the cleanup
    rewrites a's pack, the read-ahead asking the kernel for b's next groups
    all along), then the rest of b read through the same open file: its
    bytes are b's export's."""
    first = a_and_b_mostly_changed(cli, live_db, store)
    want = exported_sha(cli, "b", tmp_path)
    cli.run("verify")
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    try:
        h = hashlib.sha256()
        with open(m.path / "b" / "bri.db", "rb", buffering=0) as f:
            while f.tell() < (4 << 20):
                h.update(f.read(128 << 10))
            cli.run("delete", "a")
            assert not first & packs(store), "the cleanup did not rewrite a's pack"
            while chunk := f.read(128 << 10):
                h.update(chunk)
        assert h.hexdigest() == want
        assert read_sha(m.path / "b" / "bri.db") == want  # a fresh index of the new packs
    finally:
        m.stop()


@pytest.mark.parametrize("store_format", ["pages"])
def test_a_read_waits_for_the_index_and_finds_a_pack_a_cleanup_rewrote(cli, live_db, store,
                                                                      tmp_path, pause_points):
    """The index's loaders paused before their first pack (so the first read
    of b waits: nothing is in the index yet); meanwhile a delete of a leaves
    a's pack three quarters garbage, and the cleanup rewrites it (b's pages
    of it into a new pack, the old one removed). Released, the loaders skip
    the removed pack; the read finds those pages in the new one (a rescan
    after the load) and gets b's bytes."""
    first = a_and_b_mostly_changed(cli, live_db, store)
    want = exported_sha(cli, "b", tmp_path)
    cli.run("verify")  # the mount's verifier then leaves them alone: the read is the only one
    m = Mount(live_db, store, tmp_path / "mnt", env=pause_points.env())
    m.start()
    got, t = {}, None
    try:
        pause_points.arm(POINT)
        t = threading.Thread(target=lambda: got.update(sha=read_sha(m.path / "b" / "bri.db")))
        t.start()
        pause_points.wait_reached(POINT)
        cli.run("delete", "a")
        assert not first & packs(store), "the cleanup did not rewrite a's pack"
        assert t.is_alive()  # its first page is in no loaded pack yet
        pause_points.release(POINT)
        t.join(timeout=120)
        assert not t.is_alive()
        assert got.get("sha") == want
        assert read_sha(m.path / "b" / "bri.db") == want  # a fresh index of the new packs
    finally:
        pause_points.release(POINT)
        if t:
            t.join(timeout=120)
        m.stop()


@pytest.mark.parametrize("store_format", ["pages"])
def test_a_file_closed_while_the_index_loads(cli, live_db, store, tmp_path, pause_points):
    """A backup opened and closed before any read, its index's loaders
    paused before their first pack: the release stops and joins them, the
    daemon goes on serving, and the backup read again is its bytes."""
    grow_db(live_db, 2)
    cli.run("create", "--name", "a")
    want = exported_sha(cli, "a", tmp_path)
    cli.run("verify", "a")  # the mount's verifier then leaves it alone
    m = Mount(live_db, store, tmp_path / "mnt", env=pause_points.env())
    m.start()
    try:
        pause_points.arm(POINT)
        f = open(m.path / "a" / "bri.db", "rb", buffering=0)
        pause_points.wait_reached(POINT)
        f.close()  # RELEASE: the daemon's release waits for the paused loaders
        pause_points.release(POINT)
        assert read_sha(m.path / "a" / "bri.db") == want
        assert (m.path / "ctl" / "health").read_text()
        assert m.proc.poll() is None
    finally:
        pause_points.release(POINT)
        m.stop()


@pytest.mark.parametrize("store_format", ["pages", "pages-sealed"])
def test_a_read_goes_on_past_what_the_loader_has_indexed(cli, live_db, store, tmp_path,
                                                         pause_points):
    """A backup whose pages are all in one pack, in their order (but page 1,
    which SQLite writes last): its loader paused after the first batch of
    the pack's pages it indexed (256 pages: 1 MiB), reads of 64 KiB from
    256 KiB to 6 MiB, each a page past the end of the one before (so no
    read-ahead: each read is the request's own, through one cursor), get
    the backup's bytes while the loader stays paused: each next page is
    found in the group that follows one read before it, in the pack."""
    grow_db(live_db, 8)
    cli.run("create", "--name", "a")
    assert len(packs(store)) == 1
    out = tmp_path / "a.export.db"
    cli.run("export", "a", str(out))
    data = out.read_bytes()
    page_size = int.from_bytes(data[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    assert page_size == 4096  # the batch (256 pages) holds the pages of the start
    pages = [data[i:i + page_size] for i in range(0, len(data), page_size)]
    assert len(set(pages)) == len(pages)  # no page stored once for two places
    offsets = range(256 << 10, 6 << 20, (64 << 10) + page_size)
    assert len(data) > offsets[-1] + (64 << 10)
    cli.run("verify", "a")  # the mount's verifier then leaves it alone: the read is the only one
    m = Mount(live_db, store, tmp_path / "mnt", env=pause_points.env())
    m.start()
    got, t = {}, None

    def read():
        fd = os.open(m.path / "a" / "bri.db", os.O_RDONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, 64 << 10)  # page-aligned, as O_DIRECT wants
        try:
            got["bad"] = [off for off in offsets if os.preadv(fd, [buf], off) != len(buf)
                          or buf[:] != data[off:off + len(buf)]]
        finally:
            buf.close()
            os.close(fd)

    try:
        pause_points.arm("pages-load-batch")
        t = threading.Thread(target=read)
        t.start()
        pause_points.wait_reached("pages-load-batch")
        t.join(timeout=30)
        assert not t.is_alive(), "the reads waited for the paused loader"
        assert (pause_points.dir / "pages-load-batch").exists()  # still paused
        assert got.get("bad") == []
    finally:
        pause_points.release("pages-load-batch")
        if t:
            t.join(timeout=120)
        m.stop()
