"""bri-backup restore and verify: a restore seen by a connection that was
open before it, the refused restore of a damaged backup (nothing changes),
the safety backup's contents, restores from a path outside the store (with
and without .meta), the newest by default, a locked database, a missing
live database, and verify by name and by path."""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import all_formats, backup_file, both_formats, sidecar, table_counts
from test_cli import content, corrupt, create, listing, meta_of, names_in, sha256sum


def change_live(db, marker="changed", n=25):
    """Deletes some rows and adds n marked ones: content differs from any backup."""
    con = sqlite3.connect(db, timeout=30)
    con.execute("delete from memory where id % 3 = 0")
    con.executemany("insert into memory(video_id, role, content) values (2, 'user', ?)",
                    [(f"{marker} {i}",) for i in range(n)])
    con.execute("update videos set title = title || ' (edited)' where id < 5")
    con.commit()
    con.close()


def safety_backups(cli):
    return [b for b in json.loads(cli.run("--json", "list").stdout) if b["kind"] == "safety"]


# ---- restore ----

@both_formats
def test_restore_seen_by_a_connection_opened_before(cli, live_db):
    original = content(live_db)
    create(cli, "--name", "orig")
    change_live(live_db)
    reader = sqlite3.connect(live_db, timeout=30)
    try:
        n_before = reader.execute("select count(*) from memory").fetchone()[0]
        assert n_before != len(original["memory"])
        p = cli.run("restore", "orig")
        assert "orig" in p.stdout
        # The same connection, still open, sees the restored rows on its next query.
        assert reader.execute("select count(*) from memory").fetchone()[0] == \
            len(original["memory"])
        assert reader.execute(
            "select count(*) from memory where content like 'changed %'").fetchone()[0] == 0
    finally:
        reader.close()
    assert content(live_db) == original
    check = subprocess.run(["sqlite3", str(live_db), "pragma integrity_check"],
                           capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "ok"
    # A restore never consumes the backup.
    assert "orig" in names_in(cli)


def test_refused_restore_of_a_corrupted_backup(cli, live_db, store):
    path = create(cli, "--name", "damaged")
    change_live(live_db)
    before = content(live_db)
    corrupt(path)
    store_before = listing(store)
    p = cli.run("restore", "damaged", check=False)
    assert p.returncode == 1, p.stdout
    assert "verif" in p.stderr
    assert p.stdout == ""
    assert content(live_db) == before
    # No safety backup was made (or left): a failed verification changes nothing.
    assert safety_backups(cli) == []
    after = listing(store)
    after.pop("damaged.db.verify", None)
    store_before.pop("damaged.db.verify", None)
    assert after == store_before
    v = json.loads((store / "damaged.db.verify").read_text())
    assert v["status"] == "failed"


def test_refused_restore_of_a_truncated_backup_by_path(cli, live_db, tmp_path):
    path = create(cli, "--name", "cut")
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    shutil.copy(path, offsite / "cut.db")
    shutil.copy(f"{path}.meta", offsite / "cut.db.meta")
    with open(offsite / "cut.db", "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    change_live(live_db)
    before = content(live_db)
    p = cli.run("restore", str(offsite / "cut.db"), check=False)
    assert p.returncode == 1
    assert content(live_db) == before
    assert safety_backups(cli) == []


@all_formats
def test_safety_backup_holds_the_pre_restore_data(cli, live_db, store):
    create(cli, "--name", "base")
    change_live(live_db, marker="precious")
    pre = content(live_db)
    pre_counts = table_counts(live_db)
    p = cli.run("restore", "base")
    safety = safety_backups(cli)
    assert len(safety) == 1
    s = safety[0]
    assert re.fullmatch(r"pre_restore_safety_\d{8}_\d{6}(_\d+)?", s["name"])
    assert s["name"] in p.stdout
    spath = backup_file(store, s["name"])
    meta = meta_of(spath)
    assert meta["kind"] == "safety"
    assert meta["tables"] == pre_counts
    assert meta["checksum"] == sha256sum(spath)
    assert content(spath) == pre
    assert cli.run("verify", s["name"]).returncode == 0
    # And it restores: the data from before the restore is back.
    cli.run("restore", s["name"])
    assert content(live_db) == pre


@all_formats
def test_restore_newest_by_default(cli, live_db):
    create(cli, "--name", "older")
    con = sqlite3.connect(live_db)
    con.execute("insert into videos(title) values ('only in newer')")
    con.commit()
    con.close()
    newest = create(cli, "--name", "newer")
    expected = content(newest)
    change_live(live_db)
    p = cli.run("restore")
    assert "newer" in p.stdout
    assert content(live_db) == expected
    # A safety backup is not "the newest" to restore: newer is still chosen.
    change_live(live_db, marker="again")
    cli.run("restore")
    assert content(live_db) == expected


def test_restore_with_no_backups_fails(cli, live_db):
    before = content(live_db)
    p = cli.run("restore", check=False)
    assert p.returncode == 1 and p.stderr
    assert content(live_db) == before


@both_formats
def test_restore_unknown_name_fails(cli, live_db):
    create(cli, "--name", "exists")
    before = content(live_db)
    p = cli.run("restore", "nosuch", check=False)
    assert p.returncode == 1 and "nosuch" in p.stderr
    assert content(live_db) == before
    assert cli.run("restore", "bad name", check=False).returncode == 2


def test_restore_from_a_path_outside_the_store(cli, live_db, store, tmp_path):
    path = create(cli, "--name", "shipped")
    expected = content(path)
    offsite = tmp_path / "offsite copy"
    offsite.mkdir()
    shutil.copy(path, offsite / path.name)
    shutil.copy(f"{path}.meta", offsite / f"{path.name}.meta")
    cli.run("delete", "shipped")

    change_live(live_db)
    p = cli.run("restore", str(offsite / path.name))
    assert content(live_db) == expected
    assert len(safety_backups(cli)) == 1
    # Verification of a path records nothing beside it.
    assert sorted(os.listdir(offsite)) == ["shipped.db", "shipped.db.meta"]

    # Relative path, from the folder that holds it.
    change_live(live_db, marker="rel")
    p = subprocess.run([*cli_cmd(cli), "restore", "shipped.db"], cwd=offsite,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert content(live_db) == expected


def cli_cmd(cli):
    from conftest import BRI_BACKUP
    return [str(BRI_BACKUP), "--db", str(cli.db), "--backup-dir", str(cli.store)]


def test_restore_from_a_path_without_meta(cli, live_db, tmp_path):
    path = create(cli, "--name", "bare")
    expected = content(path)
    bare = tmp_path / "bare" / "copy.db"
    bare.parent.mkdir()
    shutil.copy(path, bare)
    change_live(live_db)
    before = content(live_db)

    # Without metadata the verification fails: nothing changes.
    p = cli.run("restore", str(bare), check=False)
    assert p.returncode == 1
    assert "meta" in p.stderr and "--no-verify" in p.stderr
    assert content(live_db) == before
    assert safety_backups(cli) == []

    p = cli.run("restore", "--no-verify", str(bare))
    assert content(live_db) == expected
    assert len(safety_backups(cli)) == 1
    assert os.listdir(bare.parent) == ["copy.db"]


def test_restore_by_path_into_the_store_is_the_backup(cli, live_db, store):
    path = create(cli, "--name", "inside")
    expected = content(path)
    change_live(live_db)
    # The seed's form: data/backups/NAME.db, relative to the project folder.
    p = subprocess.run([*cli_cmd(cli), "restore", "data/backups/inside.db"],
                       cwd=live_db.parent.parent, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert content(live_db) == expected
    # It was verified as the store's backup, so the result is recorded.
    assert json.loads((store / "inside.db.verify").read_text())["status"] == "ok"


def test_restore_into_a_missing_live_database(cli, live_db, tmp_path):
    path = create(cli, "--name", "seed")
    expected = content(path)
    fresh = tmp_path / "fresh" / "bri.db"
    fresh.parent.mkdir()
    p = subprocess.run([*cli_cmd(cli)[:1], "--db", str(fresh), "--backup-dir", str(cli.store),
                        "restore", "seed"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert content(fresh) == expected


@both_formats
def test_restore_waits_for_a_writer_then_fails_unchanged(cli, live_db):
    create(cli, "--name", "target")
    change_live(live_db)
    before = content(live_db)
    holder = sqlite3.connect(live_db, isolation_level=None, timeout=1)
    try:
        holder.execute("begin immediate")
        holder.execute("insert into videos(title) values ('uncommitted')")
        env = dict(os.environ, BRI_BUSY_TIMEOUT_MS="1500")
        t0 = time.monotonic()
        p = cli.run("restore", "target", check=False, env=env, timeout=60)
        elapsed = time.monotonic() - t0
        assert p.returncode == 1
        assert "locked" in p.stderr
        assert elapsed >= 1.0
        holder.execute("rollback")
    finally:
        holder.close()
    assert content(live_db) == before
    assert safety_backups(cli) == []


def test_restore_no_verify_of_a_damaged_backup_is_caught_or_harmless(cli, live_db):
    """Even unverified, a restore never leaves a broken live database: either
    quick_check refuses it, or the damage was harmless to SQLite."""
    path = create(cli, "--name", "flipped")
    corrupt(path, at=4096 + 200, n=200)
    cli.run("restore", "--no-verify", "flipped", check=False)
    check = subprocess.run(["sqlite3", str(live_db), "pragma quick_check"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0


# ---- verify ----

def test_verify_all_names_and_paths(cli, store, tmp_path):
    a = create(cli, "--name", "a")
    b = create(cli, "--name", "b")
    p = cli.run("verify")
    assert "a: ok" in p.stdout and "b: ok" in p.stdout
    for name in ("a", "b"):
        assert json.loads((store / f"{name}.db.verify").read_text())["status"] == "ok"

    corrupt(b)
    p = cli.run("verify", check=False)
    assert p.returncode == 1
    assert "b: failed" in p.stdout and "a: ok" in p.stdout
    assert cli.run("verify", "a").returncode == 0
    assert cli.run("verify", "b", check=False).returncode == 1
    assert cli.run("verify", "a.db").returncode == 0  # the seed's file name works too
    entries = {e["name"]: e for e in json.loads(cli.run("--json", "list").stdout)}
    assert entries["b"]["verify"] == "failed" and entries["a"]["verify"] == "ok"
    v = json.loads(cli.run("--json", "verify", "b", check=False).stdout)[0]
    assert v["status"] == "failed" and v["checksum_ok"] is False and v["reason"]

    # Unknown names fail; malformed ones are usage errors.
    p = cli.run("verify", "nosuch", check=False)
    assert p.returncode == 1 and "nosuch" in p.stderr
    assert cli.run("verify", "bad name", check=False).returncode == 2

    # A path outside the store: checked against PATH.meta, nothing recorded.
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(a, out / "a.db")
    shutil.copy(f"{a}.meta", out / "a.db.meta")
    shutil.copy(a, out / "nometa.db")
    p = cli.run("verify", str(out / "a.db"))
    assert "ok" in p.stdout
    p = cli.run("verify", str(out / "nometa.db"), check=False)
    assert p.returncode == 1 and "failed" in p.stdout and "meta" in p.stdout
    corrupt(out / "a.db")
    assert cli.run("verify", str(out / "a.db"), check=False).returncode == 1
    assert sorted(os.listdir(out)) == ["a.db", "a.db.meta", "nometa.db"]
    p = cli.run("verify", str(out / "missing.db"), check=False)
    assert p.returncode == 1


@both_formats
def test_verify_catches_count_mismatch(cli, store):
    path = create(cli, "--name", "counted")
    meta = meta_of(path)
    meta["tables"]["memory"] += 1
    sidecar(path, "meta").write_text(json.dumps(meta, indent=2))
    p = cli.run("verify", "counted", check=False)
    assert p.returncode == 1 and "failed" in p.stdout


@both_formats
def test_verify_empty_store(cli):
    p = cli.run("verify")
    assert p.returncode == 0
    assert json.loads(cli.run("--json", "verify").stdout) == []
