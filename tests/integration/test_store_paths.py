"""Where the live database and the store are (issue 9 items 1, 2 and 10),
through the real CLI and a real mount: a live database path or a store
folder that is a symbolic link is refused unless --follow-symlink
(-o follow_symlink), and nothing is written through the link; metrics
--output never writes through a symlink; a store that is the database's
own folder is refused unless --force (-o force); a store folder replaced
while in use (mv store store.old; mkdir store) makes create fail with a
clear error and leaves no temporary file in either folder."""

import hashlib
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import (BRI_BACKUP, BRI_BACKUPFS, Mount, is_mounted, make_sample_db,
                      table_counts, unmount, wait_until)

TIMEOUT = 120


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def files_under(root):
    """Every path under root (symlinks as links, not followed) -> its sha256 or
    'dir'/'link'. The store's .lock is only there or not: it holds its
    holder's pid while locked, which is bookkeeping, not a write of data."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath, d)
            out[str(p)] = "link" if p.is_symlink() else "dir"
        for f in filenames:
            p = Path(dirpath, f)
            if p.is_symlink():
                out[str(p)] = "link:" + os.readlink(p)
            else:
                out[str(p)] = "lock file" if f == ".lock" else sha(p)
    return out


def bri(*args, env=None):
    return subprocess.run([str(BRI_BACKUP), *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)


def refused_mount(db, options, mnt):
    """Starts bri-backupfs -f with options; returns its stderr once it exits
    without mounting. A mount is a failure, and is always undone."""
    mnt.mkdir(exist_ok=True)
    proc = subprocess.Popen([str(BRI_BACKUPFS), "-f", "-o", ",".join(options), str(db),
                             str(mnt)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_until(lambda: proc.poll() is not None or is_mounted(mnt), timeout=30)
        mounted = is_mounted(mnt)
    finally:
        unmount(proc, mnt)
    assert not mounted, "bri-backupfs mounted"
    assert proc.returncode != 0
    return proc.stderr.read()


def names_in(store):
    return sorted(n[:-3] for n in os.listdir(store) if n.endswith(".db"))


def temp_files(*folders):
    return [str(Path(f, n)) for f in folders if Path(f).exists() for n in os.listdir(f)
            if ".tmp" in n]


# ---- item 1: a symlink at the live database's path ----

def test_restore_refuses_a_symlinked_live_database(cli, live_db, store, tmp_path):
    cli.run("create", "--name", "good")
    # Another application's database, which the restore must never overwrite.
    victim = make_sample_db(tmp_path / "other_app" / "app.db", rows=5)
    before = sha(victim)
    link = live_db.parent / "link.db"
    link.symlink_to(victim)
    listing = names_in(store)

    p = bri("--db", link, "--backup-dir", store, "restore", "good")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "symbolic link" in p.stderr
    assert sha(victim) == before, "the restore wrote through the symlink"
    assert link.is_symlink()
    assert names_in(store) == listing, "a safety backup was taken of the link's target"
    # create through the link is refused too (it would back up another file).
    p = bri("--db", link, "--backup-dir", store, "create", "--name", "via_link")
    assert p.returncode == 1 and "symbolic link" in p.stderr
    assert names_in(store) == listing


def test_restore_refuses_a_dangling_symlink_and_creates_nothing(cli, live_db, store, tmp_path):
    cli.run("create", "--name", "good")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = live_db.parent / "dangling.db"
    link.symlink_to(elsewhere / "planted.db")
    before = files_under(tmp_path)

    for extra in ([], ["--follow-symlink"]):
        p = bri("--db", link, "--backup-dir", store, *extra, "restore", "good")
        assert p.returncode == 1, p.stdout + p.stderr
        assert "symbolic link" in p.stderr
        assert not (elsewhere / "planted.db").exists(), "a file was created through the link"
        assert files_under(tmp_path) == before, "the refused restore wrote something"


def test_follow_symlink_restores_into_the_target(cli, live_db, store, tmp_path):
    cli.run("create", "--name", "v1")
    want = table_counts(live_db)
    con = sqlite3.connect(live_db)
    con.execute("delete from memory")
    con.commit()
    con.close()
    link = tmp_path / "link.db"
    link.symlink_to(live_db)

    p = bri("--db", link, "--backup-dir", store, "--follow-symlink", "restore", "v1")
    assert p.returncode == 0, p.stderr
    assert table_counts(live_db) == want
    assert link.is_symlink()
    assert any(n.startswith("pre_restore_safety_") for n in names_in(store))
    p = bri("--db", link, "--backup-dir", store, "--follow-symlink", "create", "--name", "v2")
    assert p.returncode == 0, p.stderr
    assert "v2" in names_in(store)


def test_a_symlink_in_the_folder_part_is_resolved_not_refused(cli, live_db, store, tmp_path):
    """Only the last component is refused; the folder is made canonical once,
    so SQLITE_OPEN_NOFOLLOW (no symlink anywhere in the path) still opens it."""
    alias = tmp_path / "alias"
    alias.symlink_to(live_db.parent)
    db = alias / live_db.name
    p = bri("--db", db, "create", "--name", "through_alias")
    assert p.returncode == 0, p.stderr
    assert "through_alias" in names_in(store)
    p = bri("--db", db, "restore", "through_alias")
    assert p.returncode == 0, p.stderr


def test_mount_refuses_a_symlinked_live_database_unless_follow_symlink(cli, live_db, store,
                                                                      tmp_path):
    cli.run("create", "--name", "good")
    link = tmp_path / "link.db"
    link.symlink_to(live_db)
    mnt = tmp_path / "mnt"
    err = refused_mount(link, [f"backup_dir={store}"], mnt)
    assert "symbolic link" in err, err
    want = table_counts(live_db)
    con = sqlite3.connect(live_db)
    con.execute("delete from memory")
    con.commit()
    con.close()
    m = Mount(link, store, mnt, options=["follow_symlink"]).start()
    try:
        assert "good" in os.listdir(mnt)
        subprocess.run(["mv", str(mnt / "good"), str(mnt / "restore/")], check=True,
                       timeout=TIMEOUT)
        assert (mnt / "restore" / "good.report").read_text().startswith("result: ok")
    finally:
        m.stop()
    assert table_counts(live_db) == want, "the restore did not reach the link's target"
    assert link.is_symlink()


@pytest.mark.parametrize("kind", ["to_a_database", "dangling"])
def test_mount_restore_refuses_a_symlink_planted_after_mounting(cli, live_db, store, tmp_path,
                                                               kind):
    """The daemon (root, in the shipped unit) opened its store long ago; the
    application's user, who can write the database's folder, then puts a
    symlink where the database was. The restore must not follow it."""
    cli.run("create", "--name", "good")
    victim = make_sample_db(tmp_path / "other_app" / "app.db", rows=5)
    victim_sha = sha(victim)
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        for f in live_db.parent.glob(live_db.name + "*"):
            f.unlink()
        live_db.symlink_to(victim if kind == "to_a_database" else tmp_path / "planted.db")
        before = files_under(tmp_path / "other_app")
        r = subprocess.run(["mv", str(m / "good"), str(m / "restore/")], capture_output=True,
                           text=True, timeout=TIMEOUT)
        assert r.returncode != 0, "the restore went through the symlink"
        assert sha(victim) == victim_sha
        assert files_under(tmp_path / "other_app") == before
        assert not (tmp_path / "planted.db").exists(), "a file was created through the link"
        assert live_db.is_symlink()
        assert "symbolic link" in (m / "ctl" / "log").read_text()
    finally:
        m.stop()


# ---- item 1: the store folder as a symlink ----

def test_store_folder_symlink_is_refused_unless_follow_symlink(cli, live_db, store, tmp_path):
    cli.run("create", "--name", "first")
    link = tmp_path / "store_link"
    link.symlink_to(store)
    before = files_under(store)
    for cmd in (["create", "--name", "second"], ["cleanup"], ["delete", "first"], ["list"]):
        p = bri("--db", live_db, "--backup-dir", link, *cmd)
        assert p.returncode == 1, (cmd, p.stdout, p.stderr)
        assert "symbolic link" in p.stderr
    assert files_under(store) == before
    p = bri("--db", live_db, "--backup-dir", link, "--follow-symlink", "create", "--name",
            "second")
    assert p.returncode == 0, p.stderr
    assert names_in(store) == ["first", "second"]
    # A dangling store link is refused too: nothing is created where it points.
    dangling = tmp_path / "dangling_store"
    dangling.symlink_to(tmp_path / "nowhere")
    p = bri("--db", live_db, "--backup-dir", dangling, "create")
    assert p.returncode == 1 and "symbolic link" in p.stderr
    assert not (tmp_path / "nowhere").exists()


def test_metrics_output_never_writes_through_a_symlink(cli, tmp_path):
    cli.run("create", "--name", "m")
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    before = sha(target)
    link = tmp_path / "bri.prom"
    link.symlink_to(target)
    p = cli.run("metrics", "--output", str(link), check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "symbolic link" in p.stderr
    assert sha(target) == before
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert not temp_files(tmp_path)
    # A regular file is written atomically, as before.
    out = tmp_path / "real.prom"
    cli.run("metrics", "--output", str(out))
    assert "bri_backup_" in out.read_text()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".real.prom")]


# ---- item 2: the store is never the database's own folder ----

def test_store_in_the_database_folder_is_refused_unless_forced(tmp_path):
    data = tmp_path / "data"
    db = make_sample_db(data / "bri.db")
    other = make_sample_db(data / "analytics.db")
    other_sha = sha(other)
    before = files_under(data)
    for cmd in (["create"], ["list"], ["cleanup"], ["stats"]):
        p = bri("--db", db, "--backup-dir", data, *cmd)
        assert p.returncode == 1, (cmd, p.stdout, p.stderr)
        assert "own folder" in p.stderr and "--force" in p.stderr
    assert files_under(data) == before, "a refused command wrote into the database's folder"
    # The same folder through another spelling is the same folder.
    p = bri("--db", db, "--backup-dir", f"{data}/./", "create")
    assert p.returncode == 1 and "own folder" in p.stderr
    p = bri("--db", db, "--backup-dir", data, "--force", "create", "--name", "forced")
    assert p.returncode == 0, p.stderr
    assert (data / "forced.db").exists()
    assert sha(other) == other_sha
    # The seed's layout, data/backups beside data/bri.db, is the default and works.
    p = bri("--db", db, "create", "--name", "seedlayout")
    assert p.returncode == 0, p.stderr
    assert (data / "backups" / "seedlayout.db").exists()


def test_mount_refuses_the_database_folder_as_store_unless_forced(tmp_path):
    data = tmp_path / "data"
    db = make_sample_db(data / "bri.db")
    mnt = tmp_path / "mnt"
    err = refused_mount(db, [f"backup_dir={data}"], mnt)
    assert "own folder" in err, err
    m = Mount(db, data, mnt, options=["force"]).start()
    try:
        (mnt / "ctl" / "create").write_text("forced\n")
        assert (data / "forced.db").exists()
    finally:
        m.stop()


# ---- item 10: the store folder replaced while in use ----

def replace_folder(store):
    old = store.with_name(store.name + ".old")
    store.rename(old)
    store.mkdir()
    return old


def test_mount_create_into_a_replaced_store_fails_and_leaves_nothing(cli, live_db, store,
                                                                    tmp_path):
    cli.run("create", "--name", "first")
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        # The background verifier is done with "first" before the folder moves.
        assert wait_until(lambda: (store / "first.db.verify").exists(), timeout=60)
        old = replace_folder(store)
        before_old = files_under(old)
        r = subprocess.run(["sh", "-c", f"echo second > {m / 'ctl' / 'create'}"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode != 0, "create into a replaced store succeeded"
        assert os.listdir(store) == [], f"the new folder got {os.listdir(store)}"
        assert files_under(old) == before_old, "the old folder was written to"
        assert not temp_files(store, old)
    finally:
        m.stop()
    log = m.proc.stderr.read()
    assert "replaced while in use" in log, log


@pytest.mark.parametrize("point", ["create-start", "create-copied"])
def test_cli_create_into_a_store_replaced_mid_way_fails_and_leaves_nothing(
        cli, live_db, store, pause_points, point):
    cli.run("create", "--name", "first")
    pause_points.arm(point)
    proc = subprocess.Popen([str(BRI_BACKUP), "--db", str(live_db), "--backup-dir", str(store),
                             "create", "--name", "second"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=pause_points.env())
    try:
        pause_points.wait_reached(point)
        old = replace_folder(store)
        before_old = {k: v for k, v in files_under(old).items() if ".tmp" not in k}
    finally:
        pause_points.release(point)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 1, out + err
    assert "replaced while in use" in err, err
    assert os.listdir(store) == [], f"the new folder got {os.listdir(store)}"
    assert not temp_files(store, old), "temporary files were left behind"
    assert files_under(old) == before_old, "the old folder was written to"
    # A fresh run uses the folder now at that path.
    p = bri("--db", live_db, "--backup-dir", store, "create", "--name", "third")
    assert p.returncode == 0, p.stderr
    assert names_in(store) == ["third"]
