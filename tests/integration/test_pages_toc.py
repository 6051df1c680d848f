"""A pack's table of contents (src/core/pack_toc.c): every pack written
(create, and gc's rewrite after a delete) ends with one, readers index a
pack from it, and nothing depends on it being there or sound: a pack without
it (as every pack written before it) serves every backup byte for byte; a
damaged one is said in the log and the groups are read instead; scrub
reports one that disagrees with its groups, naming the pack. With it, a
damaged group header in the middle of a pack no longer hides the groups
after it (a scan stops at the damage): only the damaged group's pages fail.
Clear and encrypted page stores."""

import errno
import hashlib
import hmac
import json
import os
import re

import pytest

from conftest import Mount, backup_file
from test_cli import meta_of, sha256sum
from test_pages import grow_db
from test_pages_prefetch import a_and_b_mostly_changed, packs
from test_pages_readahead import direct_reads, exported

TOC_MAGIC = b"BRItoc01"
both_pages = pytest.mark.parametrize("store_format", ["pages", "pages-sealed"])


def toc_at(pack):
    """The offset of pack's TOC blob from its footer (checked), or None without one."""
    data = pack.read_bytes()
    if data[-16:-8] != TOC_MAGIC:
        return None
    off = int.from_bytes(data[-8:], "little")
    hdr = data[off:off + 32]
    assert hdr[:4] == b"BRIb" and hdr[5] == 3, (pack, off, hdr)
    assert off + 32 + int.from_bytes(hdr[24:28], "little") + 16 == len(data), pack
    return off


def strip_toc(pack):
    """Cuts pack's TOC and footer off: the pack as written before TOCs."""
    off = toc_at(pack)
    assert off is not None, pack
    os.truncate(pack, off)


def flip(path, at, mask=0x10):
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ mask]))


def three_backups(cli, live_db):
    """b1..b3 of a database grown by 4 MiB, rows changed between them: three packs."""
    import sqlite3
    grow_db(live_db, 4)
    con = sqlite3.connect(live_db)
    for i in (1, 2, 3):
        con.execute("update memory set content = content || ? where id % 5 = ?", (str(i), i))
        con.commit()
        cli.run("create", "--name", f"b{i}")
    con.close()


def read_all_through_the_mount(live_db, store, tmp_path, names):
    """Each backup's sha256 read through a fresh mount == the checksum of its metadata."""
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    try:
        for name in names:
            assert sha256sum(m.path / name / "bri.db") == \
                meta_of(backup_file(store, name))["checksum"], name
    finally:
        m.stop()


@both_pages
def test_every_pack_has_a_toc_and_a_pack_without_one_still_serves(cli, live_db, store,
                                                                  tmp_path):
    three_backups(cli, live_db)
    ps = sorted(store.glob("pack-*.pack"))
    assert len(ps) >= 3
    assert all(toc_at(p) for p in ps), [p.name for p in ps if not toc_at(p)]
    # The packs as written before TOCs: every backup still reads and verifies.
    for p in ps:
        strip_toc(p)
        assert toc_at(p) is None
    v = cli.run("-v", "verify")
    assert v.stdout.count(": ok") == 3, v.stdout + v.stderr
    assert "table of contents" not in v.stderr, v.stderr  # no TOC: nothing to warn about
    read_all_through_the_mount(live_db, store, tmp_path, ("b1", "b2", "b3"))
    s = cli.run("--json", "scrub")
    res = json.loads(s.stdout)
    assert res["pages_damaged"] == 0 and res["packs_damaged"] == 0 and not res["damage"], res


@both_pages
def test_a_damaged_toc_is_said_and_the_groups_are_read_instead(cli, live_db, store, tmp_path,
                                                               store_format):
    three_backups(cli, live_db)
    ps = sorted(store.glob("pack-*.pack"))
    for p in ps[1:]:  # a bit inside each TOC's records and ids
        off = toc_at(p)
        flip(p, off + 32 + (p.stat().st_size - off - 48) // 2)
        assert toc_at(p) == off  # the footer and the header still read
    off = toc_at(ps[0])
    flip(ps[0], off + 4, 0x02)  # the first one's header: its version
    v = cli.run("-v", "verify")
    assert v.stdout.count(": ok") == 3, v.stdout + v.stderr
    said = dict(re.findall(r"pack \S+/(pack-\w+\.pack): its table of contents is not used "
                           r"\(([^)]*)\)", v.stderr))
    assert set(said) == {p.name for p in ps}, v.stderr
    why = "its sealed data failed authentication" if store_format == "pages-sealed" else \
        "its checksum does not match"
    assert said == {p.name: why for p in ps[1:]} | {ps[0].name: "its header is damaged"}, said
    # The scan that reads the groups instead ends at the damaged TOC: no page is missing.
    assert "pages after the damage are missing" not in v.stderr, v.stderr
    read_all_through_the_mount(live_db, store, tmp_path, ("b1", "b2", "b3"))
    # scrub: the pages are sound, the TOCs are each the damage of their pack.
    s = cli.run("--json", "scrub", check=False)
    assert s.returncode == 1, s.stdout + s.stderr
    res = json.loads(s.stdout)
    assert res["pages_damaged"] == 0 and res["backups_damaged"] == 0, res
    assert res["packs_damaged"] == len(ps), res
    assert {d["pack"] for d in res["damage"]} == {p.name for p in ps}, res
    assert all(d["backup"] is None and "table of contents is damaged" in d["problem"]
               for d in res["damage"]), res
    text = cli.run("scrub", check=False).stdout
    assert f"{ps[0].name}: its table of contents is damaged" in text, text


def group_blobs(pack):
    """[(offset, blob length, ids or None when sealed)] of pack's groups, from their headers."""
    data = pack.read_bytes()
    end = toc_at(pack) or len(data)
    off, out = 16, []
    while off < end:
        h = data[off:off + 32]
        assert h[:4] == b"BRIb" and h[5] == 1, (off, h)
        ids_len = int.from_bytes(h[16:20], "little")
        stored = int.from_bytes(h[24:28], "little")
        ids = data[off + 32:off + 32 + ids_len]
        out.append((off, 32 + ids_len + stored,
                    None if h[7] else {ids[i:i + 32] for i in range(0, ids_len, 32)}))
        off += 32 + ids_len + stored
    return out


@both_pages
def test_a_damaged_group_header_hides_no_group_after_it(cli, live_db, store, tmp_path,
                                                        store_format):
    """The header of a group in the middle of a one-pack backup damaged: its
    pages fail (verify names the backup and one of them; through the mount
    exactly the reads covering them are I/O errors), every other page, the
    groups after it included, reads as the backup's. Before TOCs, the scan
    of the pack stopped at the damage and every page after it was missing."""
    grow_db(live_db, 4)
    cli.run("create", "--name", "a")
    good = exported(cli, "a", tmp_path)
    page_size = int.from_bytes(good[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    (pack,) = store.glob("pack-*.pack")
    gs = group_blobs(pack)
    assert len(gs) > 40, len(gs)
    at, _, damaged_ids = gs[len(gs) // 2]
    flip(pack, at, 0x01)  # "BRIb" no more: the header does not decode
    if damaged_ids is not None:
        secret = (store / "pages.secret").read_bytes()
        ids = [hmac.new(secret, good[i:i + page_size], hashlib.sha256).digest()
               for i in range(0, len(good), page_size)]
        bad_pages = {i for i, pid in enumerate(ids) if pid in damaged_ids}
        assert bad_pages and max(bad_pages) < len(ids) * 3 // 4, bad_pages

    v = cli.run("verify", "a", check=False)
    out = v.stdout + v.stderr
    assert v.returncode != 0 and "missing" not in out, out
    m = re.search(r"backup a: page (\d+) .*damaged", out)
    assert m, out
    if damaged_ids is not None:
        assert int(m.group(1)) - 1 in bad_pages, (m.group(1), sorted(bad_pages))

    read = 64 << 10
    mnt = Mount(live_db, store, tmp_path / "mnt")
    mnt.start()
    try:
        fd = os.open(mnt.path / "a" / "bri.db", os.O_RDONLY | os.O_DIRECT)
        try:
            got = direct_reads(fd, 0, len(good), read)
        finally:
            os.close(fd)
    finally:
        mnt.stop()
    failed = [i for i, g in enumerate(got) if not isinstance(g, bytes)]
    assert failed and all(got[i] in (errno.EIO, errno.EBADMSG) for i in failed), failed
    for i, g in enumerate(got):
        if isinstance(g, bytes):
            assert g == good[i * read:i * read + len(g)], f"read {i} has other bytes"
    if damaged_ids is not None:
        covering = {p * page_size // read for p in bad_pages}
        assert set(failed) == covering, (failed, sorted(covering))
    else:
        # A group holds at most 16 neighbouring pages: a read or two of 64 KiB.
        assert len(failed) <= 1 + (16 * page_size - 1) // read + 1, failed
    assert max(failed) < len(got) - 4, (failed, len(got))  # reads after it succeeded


@both_pages
def test_gc_rewrites_a_pack_with_a_toc(cli, live_db, store, tmp_path):
    """Every pack's TOC cut off, then a delete whose cleanup rewrites a's
    pack: the rewritten pack has a TOC again, the old ones are still read
    without one, and b verifies and reads as before."""
    first = a_and_b_mostly_changed(cli, live_db, store)
    want = meta_of(backup_file(store, "b"))["checksum"]
    before = packs(store)
    for p in store.glob("pack-*.pack"):
        strip_toc(p)
    cli.run("delete", "a")
    new = packs(store) - before
    assert not first & packs(store) and new, (first, before, packs(store))
    for n in new:
        assert toc_at(store / n), n
    for n in packs(store) - new:
        assert toc_at(store / n) is None, n
    assert "b: ok" in cli.run("verify", "b").stdout
    read_all_through_the_mount(live_db, store, tmp_path, ("b",))
    assert meta_of(backup_file(store, "b"))["checksum"] == want
    res = json.loads(cli.run("--json", "scrub").stdout)
    assert res["pages_damaged"] == 0 and res["packs_damaged"] == 0, res


def forge_toc_id(pack):
    """Changes the first id of pack's clear TOC and makes its checksum match
    again: a TOC that passes its own checks and disagrees with its groups."""
    data = bytearray(pack.read_bytes())
    off = toc_at(pack)
    hdr = bytes(data[off:off + 32])
    assert hdr[7] == 0, "sealed"
    raw = int.from_bytes(hdr[20:24], "little")
    body = off + 32
    data[body + 20] ^= 0xff  # the first record's first id
    data[body + raw - 32:body + raw] = hashlib.sha256(hdr + data[body:body + raw - 32]).digest()
    pack.write_bytes(bytes(data))


@pytest.mark.parametrize("store_format", ["pages"])
def test_scrub_reports_a_toc_that_disagrees_with_its_groups(cli, live_db, store):
    three_backups(cli, live_db)
    pack = max(store.glob("pack-*.pack"), key=lambda f: f.stat().st_size)
    good = pack.read_bytes()
    forge_toc_id(pack)
    s = cli.run("--json", "scrub", check=False)
    assert s.returncode == 1, s.stdout + s.stderr
    res = json.loads(s.stdout)
    assert res["packs_damaged"] == 1, res
    toc = [d for d in res["damage"] if "table of contents" in d["problem"]]
    assert [d["pack"] for d in toc] == [pack.name], res
    assert "its table of contents and its group here disagree" in toc[0]["problem"], toc
    assert "at byte 16)" in toc[0]["problem"], toc  # the first group
    text = cli.run("scrub", check=False).stdout
    assert "1 pack(s) with a damaged table of contents" in text, text
    # The footer's magic damaged: the TOC is still found by the scan, and named.
    pack.write_bytes(good)
    flip(pack, pack.stat().st_size - 16, 0x02)
    res = json.loads(cli.run("--json", "scrub", check=False).stdout)
    assert res["packs_damaged"] == 1 and res["pages_damaged"] == 0, res
    assert [d["pack"] for d in res["damage"]] == [pack.name], res
    assert "its footer is damaged" in res["damage"][0]["problem"], res
    assert cli.run("verify").returncode == 0  # read by its groups meanwhile


def test_migrate_to_pages_writes_packs_with_a_toc(cli, live_db, store, tmp_path):
    """A plain store migrated to a page store: its packs are written through
    the same writer, each with a TOC, and every backup reads as before."""
    three_backups(cli, live_db)
    sums = {n: meta_of(backup_file(store, n))["checksum"] for n in ("b1", "b2", "b3")}
    cli.run("migrate", "--to", "pages")
    ps = list(store.glob("pack-*.pack"))
    assert ps and all(toc_at(p) for p in ps), [p.name for p in ps]
    assert {n: meta_of(backup_file(store, n))["checksum"] for n in sums} == sums
    assert cli.run("verify").stdout.count(": ok") == 3
    read_all_through_the_mount(live_db, store, tmp_path, ("b1", "b2", "b3"))
