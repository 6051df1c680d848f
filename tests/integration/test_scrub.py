"""bri-backup scrub (SPEC.md section 5: scrub reads every pack): on a page
store every page of every pack is checked against its id and each damaged
page is named with the backup(s) and page number that use it; on a plain
store every backup's file is hashed against its checksum. One flipped bit is
caught, the backups it names fail verify, the others still pass, and the
words say what failed: a checksum, a page's id, or (encrypted page store)
the sealed data's authentication."""

import json
import sqlite3

from conftest import all_formats


def fill(cli, live_db):
    con = sqlite3.connect(live_db)
    for i in (1, 2, 3):
        con.execute("update memory set content = content || ? where id % 5 = ?", (str(i), i))
        con.commit()
        cli.run("create", "--name", f"b{i}")
    con.close()


def flip_bit(path, at):
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x10]))


@all_formats
def test_scrub_names_the_backups_and_pages_of_one_flipped_bit(cli, live_db, store, store_format):
    fill(cli, live_db)
    p = cli.run("scrub")
    assert "0 damaged" in p.stdout, p.stdout
    if store_format != "plain":
        pack = max(store.glob("pack-*.pack"), key=lambda f: f.stat().st_size)
        flip_bit(pack, pack.stat().st_size // 2)
    else:
        flip_bit(store / "b2.db", 5000)
    p = cli.run("--json", "scrub", check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    res = json.loads(p.stdout)
    assert res["format"] == store_format.split("-")[0] and res["backups_damaged"] >= 1
    named = {d["backup"] for d in res["damage"]}
    if store_format != "plain":
        assert res["pages_damaged"] >= 1 and res["packs"] >= 1
        used = [d for d in res["damage"] if d["backup"]]
        assert used and all(d["page"] >= 1 for d in used), res
        assert all(d["pack"] == pack.name for d in res["damage"] if "damaged" in d["problem"])
        text = cli.run("scrub", check=False).stdout
        d = res["damage"][0]
        assert f"{d['backup']}: page {d['page']} damaged" in text
    else:
        assert named == {"b2"}
    # What scrub names fails verify; the rest still verifies.
    # ... and says what happened: in a sealed store the GCM tag failed.
    said = {"plain": "checksum", "pages": "do not match its id",
            "pages-sealed": "failed authentication"}[store_format]
    for name in ("b1", "b2", "b3"):
        v = cli.run("verify", name, check=False)
        assert (v.returncode != 0) == (name in named), (name, named, v.stdout)
        out = v.stdout + v.stderr
        if name in named:
            assert said in out and ("match" in out) == (store_format != "pages-sealed"), out
            assert store_format == "plain" or f"backup {name}: page " in out, out
