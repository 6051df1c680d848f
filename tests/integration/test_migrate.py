"""bri-backup migrate --to plain|pages (SPEC.md section 5): a store
converted in place both ways, byte for byte (every checksum unchanged, the
bytes hashed again), pins kept; kill -9 at each stage (the pause points
between stages) leaves every backup complete and verifiable, and running
migrate again finishes the job, or with the other --to undoes it; refused
while another process holds the store's lock, and stopped by a damaged
backup before anything is switched."""

import fcntl
import json
import os
import sqlite3
import subprocess

import pytest

from conftest import BRI_BACKUP, backup_file, both_formats
from test_cli import meta_of, sha256sum

OTHER = {"plain": "pages", "pages": "plain"}
STAGES = ["migrate-converted-one", "migrate-converted", "migrate-switched",
          "migrate-purged-one"]


def fill(cli, live_db):
    """Three backups of a changing database (b1 pinned); their checksums."""
    con = sqlite3.connect(live_db)
    for i in (1, 2, 3):
        con.execute("update memory set content = content || ? where id % 7 = ?", (str(i), i))
        con.execute("insert into memory(video_id, content) values (1, ?)", (f"row {i}",))
        con.commit()
        cli.run("create", "--name", f"b{i}")
    con.close()
    cli.run("pin", "b1", "--reason", "keep")
    return {f"b{i}": meta_of(backup_file(cli.store, f"b{i}"))["checksum"] for i in (1, 2, 3)}


def format_of(store):
    f = store / "store.json"
    return json.loads(f.read_text())["format"] if f.exists() else "plain"


def listed(cli):
    return {b["name"]: b for b in json.loads(cli.run("--json", "list").stdout)}


def assert_complete(cli, sums):
    """Every backup is listed with its checksum, its bytes hash to it, and it verifies."""
    got = listed(cli)
    assert set(got) == set(sums), got.keys()
    for name, checksum in sums.items():
        assert got[name]["checksum"] == checksum
        assert sha256sum(backup_file(cli.store, name)) == checksum
    p = cli.run("verify", check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert [n for n, b in got.items() if b["pinned"]] == ["b1"]


def assert_only(store, fmt):
    """The store holds the files of fmt only, and no marker."""
    names = os.listdir(store)
    assert "migrate.json" not in names
    if fmt == "plain":
        assert not [n for n in names if n.endswith(".manifest") or n.startswith("pack-")
                    or n in ("pages.secret", "store.json")], names
    else:
        assert not [n for n in names if ".db" in n], names


def migrate(cli, to, **kw):
    return cli.run("migrate", "--to", to, **kw)


def kill_at(cli, pause_points, point, *args):
    """Runs bri-backup args and kills it (-9) once it reaches the pause point."""
    pause_points.arm(point)
    proc = subprocess.Popen([str(BRI_BACKUP), "--db", str(cli.db), "--backup-dir",
                             str(cli.store), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=pause_points.env())
    try:
        pause_points.wait_reached(point)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        pause_points.release(point)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)


@both_formats
def test_migrate_converts_every_backup_byte_for_byte(cli, live_db, store, store_format):
    sums = fill(cli, live_db)
    to = OTHER[store_format]
    out = migrate(cli, to).stdout
    assert f"a {to} store; 3 backup(s) converted from {store_format}" in out
    assert format_of(store) == to
    assert_only(store, to)
    assert_complete(cli, sums)
    assert "already" in migrate(cli, to).stdout
    # New backups go into the new format, and back again loses nothing either.
    cli.run("create", "--name", "after")
    sums["after"] = meta_of(backup_file(store, "after"))["checksum"]
    migrate(cli, store_format)
    assert_only(store, store_format)
    assert_complete(cli, sums)


@both_formats
@pytest.mark.parametrize("stage", STAGES)
def test_migrate_killed_at_each_stage_loses_nothing(cli, live_db, store, store_format,
                                                    pause_points, stage):
    sums = fill(cli, live_db)
    to = OTHER[store_format]
    kill_at(cli, pause_points, stage, "migrate", "--to", to)
    switched = stage in ("migrate-switched", "migrate-purged-one")
    assert format_of(store) == (to if switched else store_format)
    assert (store / "migrate.json").exists()
    assert_complete(cli, sums)
    out = migrate(cli, to).stdout
    assert ("finished an interrupted migrate" in out) == switched, out
    assert format_of(store) == to
    assert_only(store, to)
    assert_complete(cli, sums)


@both_formats
def test_migrate_undone_before_the_switch(cli, live_db, store, store_format, pause_points):
    """Killed before the switch, migrate --to the old format removes the partial copy."""
    sums = fill(cli, live_db)
    kill_at(cli, pause_points, "migrate-converted", "migrate", "--to", OTHER[store_format])
    assert "finished an interrupted migrate" in migrate(cli, store_format).stdout
    assert_only(store, store_format)
    assert_complete(cli, sums)


def test_backup_deleted_between_runs_stays_deleted(cli, live_db, store, pause_points):
    """A backup deleted after a killed migrate is not brought back by the next run
    from the copy the killed run had made."""
    sums = fill(cli, live_db)
    kill_at(cli, pause_points, "migrate-converted", "migrate", "--to", "pages")
    cli.run("delete", "b3")
    assert (store / "b3.manifest").exists()  # the killed run's copy
    del sums["b3"]
    migrate(cli, "pages")
    assert_only(store, "pages")
    assert_complete(cli, sums)


@both_formats
def test_migrate_refused_while_the_store_is_locked(cli, live_db, store, store_format):
    sums = fill(cli, live_db)
    before = sorted(os.listdir(store))
    with open(store / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        p = migrate(cli, OTHER[store_format], check=False)
    assert p.returncode == 1 and "locked" in p.stderr, p.stderr
    assert sorted(os.listdir(store)) == before
    assert_complete(cli, sums)


def test_damaged_backup_stops_migrate_before_the_switch(cli, live_db, store):
    """A plain backup whose bytes no longer match its checksum is named, nothing
    is switched or lost; once it is deleted, migrate goes through."""
    sums = fill(cli, live_db)
    with open(store / "b2.db", "r+b") as f:
        f.seek(4096 + 100)
        byte = f.read(1)
        f.seek(4096 + 100)
        f.write(bytes([byte[0] ^ 0x01]))
    p = migrate(cli, "pages", check=False)
    assert p.returncode == 1 and "b2" in p.stderr and "checksum" in p.stderr, p.stderr
    assert format_of(store) == "plain"
    assert (store / "b2.db").exists()
    cli.run("delete", "b2")
    del sums["b2"]
    migrate(cli, "pages")
    assert_only(store, "pages")
    assert_complete(cli, sums)


def test_migrate_usage(cli):
    p = cli.run("migrate", check=False)
    assert p.returncode == 2 and "--to" in p.stderr
    p = cli.run("migrate", "--to", "tapes", check=False)
    assert p.returncode == 2


def test_mount_opened_before_migrate_writes_nothing_in_the_old_format(cli, live_db, store,
                                                                      tmp_path):
    """A mount started on a plain store that migrate then converts refuses to
    create (a plain .db in a page store would be invisible to it), and a
    restarted mount creates in the new format."""
    from conftest import Mount, sh
    sums = fill(cli, live_db)
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    try:
        migrate(cli, "pages")
        p = sh(f"echo late > {m.path}/ctl/create", check=False)
        assert p.returncode != 0
        assert not list(store.glob("late*")), os.listdir(store)
    finally:
        m.stop()
    assert_only(store, "pages")
    assert_complete(cli, sums)
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    try:
        sh(f"echo later > {m.path}/ctl/create")
        assert (store / "later.manifest").exists()
    finally:
        m.stop()


def test_migrate_out_of_space_loses_nothing_and_finishes_after(tmp_path):
    """A page store on a small file system has no room for its plain copies:
    migrate --to plain fails with a clear error, every backup is still there
    and verifies in the page store, and with room again a rerun finishes."""
    import subprocess as sp
    from conftest import Cli, make_sample_db
    from test_reliability import tmpfs
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=3000)
    with tmpfs(tmp_path / "small", "4m") as mnt:
        store = mnt / "backups"
        cli = Cli(db, store)
        cli.run("init", "--format", "pages")
        sums = fill(cli, db)
        used = sum(f.stat().st_size for f in store.iterdir())
        size = db.stat().st_size
        room = used + size + size // 2  # one plain copy fits, not three
        sp.run(["mount", "-o", f"remount,size={room}", str(mnt)], check=True, timeout=30)
        p = migrate(cli, "plain", check=False)
        assert p.returncode == 1 and "space" in p.stderr.lower(), p.stderr
        assert format_of(store) == "pages"
        assert_complete(cli, sums)
        sp.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True, timeout=30)
        migrate(cli, "plain")
        assert_only(store, "plain")
        assert_complete(cli, sums)
