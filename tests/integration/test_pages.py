"""The page store (SPEC.md section 5) where the common tests, parametrized
over both formats with both_formats, cannot reach: choosing the format
(init, the mount's -o store_format), refusing to change a store's format,
export NAME FILE, and the space the page store saves over a plain one."""

import errno
import json
import os
import re
import sqlite3
import subprocess

import pytest

from conftest import (BRI_BACKUP, Cli, Mount, backup_file, make_sample_db, open_paths,
                      sanitizer_preload, wait_until)
from test_cli import meta_of, sha256sum


def test_init_records_the_format_and_refuses_to_change_it(cli, store):
    cli.run("init", "--format", "pages")
    conf = json.loads((store / "store.json").read_text())
    assert conf["format"] == "pages" and conf["version"] == 1
    assert conf["hash"] == "hmac-sha256" and conf["compression"] == "zstd"
    assert (store / "pages.secret").stat().st_size == 32
    cli.run("init", "--format", "pages")  # already so: nothing changes
    p = cli.run("init", "--format", "plain", check=False)
    assert p.returncode == 1 and "already of format" in p.stderr


def test_init_pages_on_a_plain_store_with_backups_is_refused(cli, store):
    cli.run("create", "--name", "kept")
    before = sorted(os.listdir(store))
    p = cli.run("init", "--format", "pages", check=False)
    assert p.returncode == 1 and "migrate" in p.stderr
    assert sorted(os.listdir(store)) == before
    assert not (store / "store.json").exists()


def test_export_file_is_the_plain_database(cli, store, tmp_path):
    cli.run("init", "--format", "pages")
    cli.run("create", "--name", "b")
    out = tmp_path / "out.db"
    cli.run("export", "b", str(out))
    path = backup_file(store, "b")
    assert sha256sum(out) == meta_of(path)["checksum"]
    con = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
    assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
    con.close()
    p = cli.run("export", "b", str(out), check=False)  # never overwrites
    assert p.returncode == 1 and "exists" in p.stderr


def test_a_database_past_1_gib_is_backed_up_whole(tmp_path):
    # SQLite never writes the page holding its pending byte (offset 1 GiB):
    # the backup of any larger database has a page nobody wrote, kept as a
    # hole in the manifest. Verify, export and a cat through the mount all
    # serve it as zeros; before, the backup was created but failed every read
    # ("page 262145 ... is missing"). Zero-filled rows: quick to write, and
    # the page store keeps the repeated pages once.
    db, store = tmp_path / "big.db", tmp_path / "store"
    con = sqlite3.connect(db)
    con.execute("create table t(id integer primary key, b blob)")
    con.execute("insert into t(b) with recursive n(i) as (select 1 union all select i + 1 "
                "from n where i < 1030) select zeroblob(1048576) from n")
    con.commit()
    con.close()
    assert db.stat().st_size > (1 << 30) + 4096
    cli = Cli(db, store)
    cli.run("init", "--format", "pages")
    cli.run("create", "--name", "big", timeout=600)
    want = meta_of(backup_file(store, "big"))["checksum"]
    assert "ok" in cli.run("verify", "big", timeout=600).stdout
    out = tmp_path / "out.db"
    cli.run("export", "big", str(out), timeout=600)
    assert sha256sum(out) == want
    with open(out, "rb") as f:
        f.seek(1 << 30)
        assert f.read(4096) == bytes(4096)
    out.unlink()
    m = Mount(db, store, tmp_path / "mnt")
    m.start()
    try:
        assert sha256sum(m.path / "big" / db.name) == want
    finally:
        m.stop()


def test_mount_makes_a_new_store_a_page_store(live_db, store, tmp_path):
    m = Mount(live_db, store, tmp_path / "mnt", options=["store_format=pages"])
    m.start()
    try:
        assert json.loads((store / "store.json").read_text())["format"] == "pages"
        st = json.loads((m.path / "ctl" / "stats.json").read_text())
        assert st["format"] == "pages"
    finally:
        m.stop()
    # The CLI takes backups into it, and they verify.
    cli = Cli(live_db, store)
    cli.run("create", "--name", "after")
    assert "after: ok" in cli.run("verify", "after").stdout


def test_thirty_backups_with_one_percent_churn(tmp_path):
    """30 backups of a database with about 1 % of its pages changed between
    them: the page store keeps a small fraction of what plain keeps."""
    sizes = {}
    for fmt in ("plain", "pages"):
        db = make_sample_db(tmp_path / fmt / "bri.db", rows=20000)
        store = db.parent / "backups"
        cli = Cli(db, store)
        if fmt == "pages":
            cli.run("init", "--format", "pages")
        con = sqlite3.connect(db)
        pages = con.execute("pragma page_count").fetchone()[0]
        rows = con.execute("select max(id) from memory").fetchone()[0]
        for i in range(30):
            # ~1 % of the pages: UPDATEs spread over the table, and a few INSERTs.
            step = max(1, rows // max(1, pages // 100))
            con.execute(f"update memory set content = content || 'x' where id % {step} = {i % step}")
            con.execute("insert into memory(video_id, content) values (1, 'new ' || ?)", (i,))
            con.commit()
            cli.run("create", "--name", f"b{i:02d}")
        con.close()
        sizes[fmt] = sum(f.stat().st_size for f in store.iterdir() if f.is_file())
        assert cli.run("verify").returncode == 0
    ratio = sizes["pages"] / sizes["plain"]
    print(f"30 backups, ~1% churn: plain {sizes['plain']} B, pages {sizes['pages']} B, "
          f"ratio {ratio:.3f}")
    assert ratio < 0.2, sizes


def test_mount_serves_a_page_store_backup(live_db, store, tmp_path):
    """Through the mount NAME/bri.db is the plain database, assembled from
    pages: sha256sum equals the checksum, sqlite3 reads it."""
    cli = Cli(live_db, store)
    cli.run("init", "--format", "pages")
    cli.run("create", "--name", "served")
    checksum = meta_of(backup_file(store, "served"))["checksum"]
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    try:
        served = m.path / "served" / "bri.db"
        assert sha256sum(served) == checksum
        con = sqlite3.connect(f"file:{served}?mode=ro&immutable=1", uri=True)
        try:
            assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
            assert con.execute("select count(*) from memory").fetchone()[0] == 200
        finally:
            con.close()
        assert served.stat().st_size == meta_of(backup_file(store, "served"))["size_bytes"]
    finally:
        m.stop()


def kill_at(cli, pause_points, point, *args):
    """Runs bri-backup args, kill -9 once it reaches the pause point."""
    pause_points.arm(point)
    proc = subprocess.Popen([str(BRI_BACKUP), "--db", str(cli.db), "--backup-dir",
                             str(cli.store), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=pause_points.env())
    try:
        pause_points.wait_reached(point)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        pause_points.release(point)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)


@pytest.mark.parametrize("sealed", [False, True], ids=["clear", "encrypted"])
def test_kill_9_in_create_and_delete_leaves_every_backup_complete(cli, live_db, store,
                                                                  pause_points, sealed,
                                                                  tmp_path, monkeypatch):
    """kill -9 after a create's pack is published (before its manifest), and
    after a delete removed its manifest (before freeing pages): no partial
    backup is listed, every remaining one verifies, and the next delete
    frees the pages nothing uses. Also on an encrypted store ($BRI_KEY_FILE
    for every command of the test)."""
    if sealed:
        (tmp_path / "store.key").write_bytes(os.urandom(32))
        monkeypatch.setenv("BRI_KEY_FILE", str(tmp_path / "store.key"))
    cli.run("init", "--format", "pages")
    cli.run("create", "--name", "a")
    con = sqlite3.connect(live_db)
    con.execute("update memory set content = content || ' changed'")
    con.commit()
    con.close()
    before = set(store.glob("pack-*.pack"))
    kill_at(cli, pause_points, "pages-pack-published", "create", "--name", "killed")
    assert "killed" not in cli.run("list").stdout
    orphan = set(store.glob("pack-*.pack")) - before  # the killed create's pack stays
    assert len(orphan) == 1
    assert cli.run("verify").returncode == 0
    con = sqlite3.connect(live_db)  # other pages than the killed create's
    con.execute("update memory set content = content || ' again'")
    con.commit()
    con.close()
    cli.run("create", "--name", "b")
    cli.run("create", "--name", "c")
    kill_at(cli, pause_points, "pages-removed", "delete", "b")
    names = cli.run("list").stdout
    assert "b " not in names and "a " in names and "c " in names
    assert cli.run("verify").returncode == 0
    cli.run("delete", "a")  # frees a's pages and the killed create's
    assert cli.run("verify").returncode == 0
    assert not orphan & set(store.glob("pack-*.pack")), sorted(os.listdir(store))
    st = json.loads(cli.run("--json", "stats").stdout)
    assert st["stored_bytes"] < st["logical_bytes"]


def pack_fds(pid):
    """The daemon's descriptors of pack files: (target, deleted)."""
    return [t for t in open_paths(pid) if "/pack-" in t]


def test_mount_shares_pack_descriptors_between_open_files(live_db, store, tmp_path):
    """Files open through the mount share the store's packs: one descriptor
    per pack however many backups are open (each open file held one per pack
    before), and none of a pack a cleanup removed once its files close."""
    cli = Cli(live_db, store)
    cli.run("init", "--format", "pages")
    for i in range(4):
        con = sqlite3.connect(live_db)
        con.execute("update memory set content = content || ? where id % 3 = ?", (str(i), i % 3))
        con.commit()
        con.close()
        cli.run("create", "--name", f"b{i}")
    packs = len(list(store.glob("pack-*.pack")))
    assert packs >= 4
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    files = []
    try:
        for i in range(4):
            f = open(m.path / f"b{i}" / "bri.db", "rb")
            f.read(65536)
            files.append(f)
        fds = pack_fds(m.proc.pid)
        assert len(fds) <= packs, fds
        for f in files:
            f.close()
        files = []
        cli.run("delete", "b0")
        cli.run("delete", "b1")
        f = open(m.path / "b3" / "bri.db", "rb")
        files.append(f)
        assert sha256sum_fileobj(f) == meta_of(backup_file(store, "b3"))["checksum"]
        assert not [t for t in pack_fds(m.proc.pid) if t.endswith("(deleted)")]
    finally:
        for f in files:
            f.close()
        m.stop()


def sha256sum_fileobj(f):
    import hashlib
    f.seek(0)
    return hashlib.sha256(f.read()).hexdigest()


def test_create_over_a_damaged_pack_fails_and_publishes_nothing(cli, store):
    """A new backup whose pages the store already has in a damaged pack: its
    digest reads them back, fails, and no backup is published."""
    cli.run("init", "--format", "pages")
    cli.run("create", "--name", "a")
    pack = max(store.glob("pack-*.pack"), key=lambda f: f.stat().st_size)
    with open(pack, "r+b") as f:
        f.seek(pack.stat().st_size // 2)
        b = f.read(1)
        f.seek(pack.stat().st_size // 2)
        f.write(bytes([b[0] ^ 0x01]))
    p = cli.run("create", "--name", "b", check=False)
    assert p.returncode == 1, p.stderr
    assert "b" not in [x["name"] for x in json.loads(cli.run("--json", "list").stdout)]
    assert not (store / "b.manifest").exists()


# ---- reading speed without weaker checks (issue 11: verify through the
# bounded group cache, the mount's reads on the frame checksum) ----

def grow_db(live_db, mib):
    """About mib MiB more rows in live_db (random text: groups compress about 2:1)."""
    con = sqlite3.connect(live_db)
    con.execute("insert into memory(video_id, role, content) select 1, 'user', "
                "hex(randomblob(1500)) from (with recursive n(i) as (select 1 union all "
                f"select i + 1 from n where i < {mib * 350}) select i from n)")
    con.commit()
    con.execute("pragma wal_checkpoint(TRUNCATE)")
    con.close()


def first_group(pack):
    """(payload offset, payload length, page count) of the first group blob of pack."""
    with open(pack, "rb") as f:
        f.seek(16)
        hdr = f.read(32)
    npages = int.from_bytes(hdr[12:16], "little")
    stored = int.from_bytes(hdr[24:28], "little")
    assert hdr[:4] == b"BRIb" and hdr[5] == 1 and hdr[6] == 1, hdr  # a zstd group
    return 16 + 32 + npages * 32, stored, npages


def flip(path, at, mask):
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ mask]))


def test_verify_reads_a_big_backup_in_bounded_memory_and_twice_at_once(cli, live_db, store):
    """verify of a page-store backup twenty times the store's cache of
    decompressed groups (pack.h, GROUP_CACHE_BYTES: 8 MiB): its peak memory
    stays well below the backup's size (the cache is bounded; nothing holds
    the backup whole, in memory or in a temporary file), and two verifies
    and a sha256sum through the mount at the same time all agree."""
    cli.run("init", "--format", "pages")
    grow_db(live_db, 160)
    cli.run("create", "--name", "big")
    size = meta_of(backup_file(store, "big"))["size_bytes"]
    assert size > 160 << 20
    p = subprocess.Popen(["/usr/bin/time", "-f", "%M", str(BRI_BACKUP), "--db", str(live_db),
                          "--backup-dir", str(store), "verify", "big"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, out + err
    peak_kib = int(err.strip().splitlines()[-1])
    # The bound is the ordinary build's: AddressSanitizer keeps freed memory
    # in quarantine (256 MiB) and adds shadow memory, so there the peak says
    # nothing about the reader's caches; the concurrent verifies still run.
    if not sanitizer_preload():
        assert peak_kib * 1024 < size // 2, (peak_kib, size)
    checksum = meta_of(backup_file(store, "big"))["checksum"]
    m = Mount(live_db, store, store.parent / "mnt")
    m.start()
    try:
        procs = [subprocess.Popen([str(BRI_BACKUP), "--db", str(live_db), "--backup-dir",
                                   str(store), "verify", "big"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        assert sha256sum(m.path / "big" / "bri.db") == checksum
        for q in procs:
            out, err = q.communicate(timeout=120)
            assert q.returncode == 0 and "big: ok" in out, out + err
    finally:
        m.stop()


def test_sqlite_readers_through_the_mount_and_a_verify_at_once_all_agree(cli, live_db, store):
    """Three sqlite3 processes run integrity_check and count rows of one
    page-store backup through the mount at the same time as the CLI verifies
    it: the daemon's threads and the verify read pages of a backup several
    times the store's cache of decompressed groups (8 MiB), meeting in it
    (small reads) and beside it (streaming reads); every answer is the
    backup's."""
    cli.run("init", "--format", "pages")
    grow_db(live_db, 40)
    cli.run("create", "--name", "big")
    con = sqlite3.connect(live_db)
    rows = con.execute("select count(*) from memory").fetchone()[0]
    con.close()
    m = Mount(live_db, store, store.parent / "mnt")
    m.start()
    try:
        uri = f"file:{m.path / 'big' / 'bri.db'}?mode=ro&immutable=1"
        readers = [subprocess.Popen(["sqlite3", uri, "pragma integrity_check;",
                                     "select count(*) from memory;"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(3)]
        v = cli.run("verify", "big", timeout=300)
        assert "big: ok" in v.stdout, v.stdout + v.stderr
        for q in readers:
            out, err = q.communicate(timeout=300)
            assert q.returncode == 0 and out.split() == ["ok", str(rows)], out + err
    finally:
        m.stop()


def test_a_flipped_bit_in_a_frame_fails_verify_by_page_and_is_never_served(cli, live_db,
                                                                           store, tmp_path):
    """One flipped bit in a zstd group's payload, or in its frame header's
    checksum flag (so that its checksum would not be checked): verify fails
    and names a page of the backup, and reading it through the mount is an
    I/O error, never other bytes."""
    cli.run("init", "--format", "pages")
    grow_db(live_db, 2)
    cli.run("create", "--name", "a")
    pack = max(store.glob("pack-*.pack"), key=lambda f: f.stat().st_size)
    at, stored, npages = first_group(pack)
    good = pack.read_bytes()
    for where, mask in ((at + stored // 2, 0x01), (at + 4, 0x04)):
        flip(pack, where, mask)
        v = cli.run("verify", "a", check=False)
        assert v.returncode != 0, v.stdout
        assert "backup a: page " in v.stdout + v.stderr and "damaged" in v.stdout + v.stderr, \
            v.stdout + v.stderr
        m = Mount(live_db, store, tmp_path / "mnt")
        m.start()
        try:
            with pytest.raises(OSError) as e:
                with open(m.path / "a" / "bri.db", "rb") as f:
                    while f.read(1 << 20):
                        pass
            assert e.value.errno in (errno.EIO, errno.EBADMSG)
        finally:
            m.stop()
        pack.write_bytes(good)
    assert cli.run("verify", "a").returncode == 0



def groups(pack):
    """(payload offset, payload length) of each group blob of pack, in order."""
    data = pack.read_bytes()
    at, out = 16, []
    while at < len(data):
        hdr = data[at:at + 32]
        assert hdr[:4] == b"BRIb" and hdr[4] == 1, (at, hdr)
        if hdr[5] == 3:
            break  # the pack's table of contents: the groups end here
        ids, stored = int.from_bytes(hdr[16:20], "little"), int.from_bytes(hdr[24:28], "little")
        if hdr[5] == 1:
            out.append((at + 32 + ids, stored))
        at += 32 + ids + stored
    return out


def test_a_damaged_group_anywhere_in_a_big_backup_fails_verify_by_page(cli, live_db, store):
    """verify's hash and SQLite's checks read the backup at once, the hash
    through its own cursor and SQLite through the store's shared cache of
    decompressed groups, whichever reaches a group first: a flipped bit in a group at the start, a
    quarter, the middle or the end of a backup of many chunks fails verify
    (never hangs it) and names the backup and a page there; each names a
    different page, and with the bit back it verifies."""
    cli.run("init", "--format", "pages")
    grow_db(live_db, 24)
    cli.run("create", "--name", "a")
    size = meta_of(backup_file(store, "a"))["size_bytes"]
    assert size > 16 << 20
    pack = max(store.glob("pack-*.pack"), key=lambda f: f.stat().st_size)
    good = pack.read_bytes()
    gs = groups(pack)
    assert len(gs) > 8, len(gs)
    named = []
    for i in (0, len(gs) // 4, len(gs) // 2, len(gs) - 1):
        at, stored = gs[i]
        flip(pack, at + stored // 2, 0x10)
        v = cli.run("verify", "a", check=False, timeout=300)
        out = v.stdout + v.stderr
        assert v.returncode != 0, out
        m = re.search(r"backup a: page (\d+) .*damaged", out)
        assert m, out
        assert 1 <= int(m.group(1)) <= size // 512, out
        named.append(int(m.group(1)))
        pack.write_bytes(good)
    assert len(set(named)) == 4, named
    assert cli.run("verify", "a").returncode == 0


def change_every_page(db, tag):
    """An UPDATE of every row: a create after it finds no page in the store."""
    con = sqlite3.connect(db)
    con.execute("update memory set content = content || ?", (tag,))
    con.commit()
    con.close()


def test_kill_9_while_the_store_worker_has_pages_queued_leaves_nothing(cli, live_db, store,
                                                                       pause_points):
    """kill -9 while a create's store worker holds its pack unpublished and
    SQLite's copy queues pages behind it: the backup is absent, the others
    verify, and the next create sweeps the unpublished pack."""
    cli.run("init", "--format", "pages")
    grow_db(live_db, 2)
    cli.run("create", "--name", "a")
    packs = set(store.glob("pack-*.pack"))
    change_every_page(live_db, " changed")
    kill_at(cli, pause_points, "pages-worker-queued", "create", "--name", "killed")
    assert "killed" not in cli.run("list").stdout
    assert not (store / "killed.manifest").exists() and not (store / "killed.meta").exists()
    assert set(store.glob("pack-*.pack")) == packs  # nothing published
    assert cli.run("verify").returncode == 0
    cli.run("create", "--name", "b")
    assert not [f.name for f in store.iterdir() if f.name.endswith(".tmp")]
    assert cli.run("verify").returncode == 0


@pytest.mark.parametrize("sealed", [False, True], ids=["clear", "encrypted"])
def test_full_disk_while_the_store_worker_writes_fails_the_create_cleanly(tmp_path,
                                                                         pause_points, sealed,
                                                                         monkeypatch):
    """The disk fills up while the store worker writes a create's pack (its
    first group written, the copy queueing pages): the create fails saying
    so, nothing of it is left or listed, the earlier backup verifies, and
    with room again the next create works."""
    from test_reliability import tmpfs
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=12000)
    if sealed:
        (tmp_path / "store.key").write_bytes(os.urandom(32))
        monkeypatch.setenv("BRI_KEY_FILE", str(tmp_path / "store.key"))
    with tmpfs(tmp_path / "small", "64m") as mnt:
        store = mnt / "backups"
        cli = Cli(db, store)
        cli.run("init", "--format", "pages")
        cli.run("create", "--name", "a")
        change_every_page(db, " changed")
        pause_points.arm("pages-worker-queued")
        proc = subprocess.Popen([str(BRI_BACKUP), "--db", str(db), "--backup-dir", str(store),
                                 "create", "--name", "full"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=pause_points.env())
        filler = mnt / "filler"
        try:
            pause_points.wait_reached("pages-worker-queued")
            with open(filler, "wb") as f:
                with pytest.raises(OSError) as e:
                    while True:
                        f.write(b"\0" * (1 << 20))
                        f.flush()
            assert e.value.errno == errno.ENOSPC
        finally:
            pause_points.release("pages-worker-queued")
            out, errout = proc.communicate(timeout=120)
        filler.unlink()
        assert proc.returncode == 1, (out, errout)
        assert "space" in errout.lower(), errout
        assert out == ""
        assert "full" not in cli.run("list").stdout
        assert not [f.name for f in store.iterdir()
                    if f.name.endswith(".tmp") or f.name.startswith("full.")]
        assert cli.run("verify").returncode == 0
        cli.run("create", "--name", "after")
        assert cli.run("verify").returncode == 0


@pytest.mark.parametrize("sealed", [False, True], ids=["clear", "encrypted"])
def test_create_reads_back_its_pages_only_once_its_groups_are_written(tmp_path, pause_points,
                                                                      sealed, monkeypatch):
    """A create's groups are sealed and written by a thread of the pack
    writer behind the store worker: with that thread held on the first
    group, the copy ends and the digest's read-back waits for the groups to
    be in the pack (it does not read them half written), and the backup is
    its database's (the digest taken then is the exported file's)."""
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=300)
    assert os.path.getsize(db) < 6 * 16 * 4096  # its groups fit the writer's stage (8)
    if sealed:
        (tmp_path / "store.key").write_bytes(os.urandom(32))
        monkeypatch.setenv("BRI_KEY_FILE", str(tmp_path / "store.key"))
    store = tmp_path / "backups"
    cli = Cli(db, store)
    cli.run("init", "--format", "pages")
    pause_points.arm("pages-stage-first-group")
    pause_points.arm("pages-wait-written")
    proc = subprocess.Popen([str(BRI_BACKUP), "--db", str(db), "--backup-dir", str(store),
                             "create", "--name", "held"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=pause_points.env())
    try:
        pause_points.wait_reached("pages-stage-first-group")
        pause_points.wait_reached("pages-wait-written")
        assert not list(store.glob("pack-*.pack"))
    finally:
        pause_points.release("pages-wait-written")
        pause_points.release("pages-stage-first-group")
        out, errout = proc.communicate(timeout=120)
    assert proc.returncode == 0, errout
    assert cli.run("verify", "held").returncode == 0
    cli.run("export", "held", str(tmp_path / "held.db"))
    assert sha256sum(tmp_path / "held.db") == meta_of(backup_file(store, "held"))["checksum"]
    con = sqlite3.connect(f"file:{tmp_path / 'held.db'}?mode=ro", uri=True)
    assert con.execute("select count(*) from sqlite_master").fetchone()[0] > 0
    con.close()


@pytest.mark.parametrize("sealed", [False, True], ids=["clear", "encrypted"])
def test_full_disk_at_every_point_of_a_page_store_create(tmp_path, sealed, monkeypatch):
    """The store's free space is set below, at and above what a create of a
    page store needs, so that the disk fills up while its pack's groups are
    sealed and written (behind the store worker: the first groups, the last
    ones, those still being written when the copy ends), its table of
    contents, manifest and metadata: each create fully succeeds, or fails
    saying the disk is full and leaves nothing of itself."""
    from test_reliability import tmpfs
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=12000)
    if sealed:
        (tmp_path / "store.key").write_bytes(os.urandom(32))
        monkeypatch.setenv("BRI_KEY_FILE", str(tmp_path / "store.key"))
    results = []
    with tmpfs(tmp_path / "small", "32m") as mnt:
        store = mnt / "backups"
        cli = Cli(db, store)
        cli.run("init", "--format", "pages")
        empty = {f.name for f in store.iterdir()}
        cli.run("create", "--name", "first")
        need = sum(f.stat().st_size for f in store.iterdir() if f.name not in empty)
        cli.run("delete", "first")
        assert not list(store.glob("pack-*.pack"))
        assert need > 1 << 20  # groups enough to fill the writer's stage several times
        filler = mnt / "filler"
        steps = [-need // 2, -need // 4, -need // 8, -65536, -16384, -8192, -4096, 0, 4096,
                 8192, 16384, 65536, 262144]
        for extra in steps:
            st = os.statvfs(mnt)
            fill = st.f_bavail * st.f_frsize - (need + extra)
            if fill <= 0:
                continue
            with open(filler, "wb") as f:
                f.write(b"\0" * fill)
            name = f"n{steps.index(extra)}"
            p = cli.run("create", "--name", name, check=False)
            filler.unlink()
            if p.returncode == 0:
                results.append("ok")
                assert cli.run("verify", name).returncode == 0
            else:
                results.append("full")
                assert p.returncode == 1, p.stderr
                assert "space" in p.stderr.lower(), p.stderr
                assert p.stdout == ""
                assert name not in cli.run("list").stdout
            assert not [f.name for f in store.iterdir()
                        if f.name.endswith(".tmp") or (p.returncode and f.name.startswith(name))]
            if p.returncode == 0:
                cli.run("delete", name)
            elif list(store.glob("pack-*.pack")):
                # Full at the manifest: its pack, published, names no backup's
                # pages. A backup and its delete free it (delete's gc).
                cli.run("create", "--name", "sweep")
                assert cli.run("verify", "sweep").returncode == 0
                cli.run("delete", "sweep")
            assert not list(store.glob("pack-*.pack"))
    print(results, "need", need)
    assert results[0] == "full" and results[-1] == "ok", results


@pytest.mark.parametrize("page_size", [512, 65536])
def test_create_of_the_smallest_and_largest_pages_is_the_database(tmp_path, page_size):
    """Databases of 512 B and 64 KiB pages (the store worker's queue then
    holds 8192 and 64 pages; the digest reads 1 MiB batches): the backup, as
    exported, is the database (its checksum, its rows), the second create
    after a change to a few rows too."""
    db = tmp_path / "data" / "bri.db"
    db.parent.mkdir()
    con = sqlite3.connect(db)
    con.execute(f"pragma page_size={page_size}")
    con.execute("pragma journal_mode=wal")
    con.execute("create table t(id integer primary key, v)")
    con.execute("insert into t(v) select hex(randomblob(700)) from (with recursive n(i) as "
                "(select 1 union all select i + 1 from n where i < 12000) select i from n)")
    con.commit()
    con.close()
    cli = Cli(db, tmp_path / "data" / "backups")
    cli.run("init", "--format", "pages")
    for name in ("a", "b"):
        cli.run("create", "--name", name)
        out = tmp_path / f"{name}.db"
        cli.run("export", name, str(out))
        assert sha256sum(out) == meta_of(backup_file(cli.store, name))["checksum"]
        got = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
        live = sqlite3.connect(db)
        try:
            assert got.execute("pragma page_size").fetchone()[0] == page_size
            assert got.execute("pragma integrity_check").fetchone()[0] == "ok"
            q = "select count(*), sum(length(v)), max(v) from t"
            assert got.execute(q).fetchone() == live.execute(q).fetchone()
            live.execute("update t set v = 'changed' where id % 500 = 0")
            live.commit()
        finally:
            got.close()
            live.close()
    assert cli.run("verify").returncode == 0


def test_creates_under_a_steady_writer_are_each_one_consistent_state(tmp_path):
    """A writer commits transfers between rows (the sum never changes) while
    page-store creates read the live database (through SQLite's memory map)
    and the store worker stores its pages: each backup, exported, holds the
    same sum and row count and passes integrity_check, and all verify."""
    import random
    import threading
    db = tmp_path / "data" / "bri.db"
    db.parent.mkdir()
    con = sqlite3.connect(db)
    con.execute("pragma journal_mode=wal")
    con.execute("create table acc(id integer primary key, bal, pad)")
    con.execute("insert into acc(bal, pad) select 100, hex(randomblob(600)) from (with recursive "
                "n(i) as (select 1 union all select i + 1 from n where i < 20000) select i from n)")
    con.commit()
    con.close()
    cli = Cli(db, tmp_path / "data" / "backups")
    cli.run("init", "--format", "pages")
    stop = threading.Event()
    commits = []

    def writer():
        c = sqlite3.connect(db, timeout=30)
        while not stop.is_set():
            a, b = random.randrange(1, 20001), random.randrange(1, 20001)
            c.execute("update acc set bal = bal - 1, pad = hex(randomblob(600)) where id = ?",
                      (a,))
            c.execute("update acc set bal = bal + 1 where id = ?", (b,))
            c.commit()
            commits.append(1)
        c.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        for i in range(4):
            n = len(commits)
            cli.run("create", "--name", f"w{i}")
            assert wait_until(lambda: len(commits) > n, 30)  # the writer went on
    finally:
        stop.set()
        t.join()
    for i in range(4):
        out = tmp_path / f"w{i}.db"
        cli.run("export", f"w{i}", str(out))
        got = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
        try:
            assert got.execute("select sum(bal), count(*) from acc").fetchone() == (2000000, 20000)
            assert got.execute("pragma integrity_check").fetchone()[0] == "ok"
        finally:
            got.close()
    assert cli.run("verify").returncode == 0
