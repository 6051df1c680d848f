"""The seed-compatible wrappers scripts/backup_database, restore_database and
verify_backups, run the way the seed guide runs its Python scripts: from the
project folder (data/bri.db, data/backups), with the seed's flags exactly.
Also how they find bri-backup ($BRI_BACKUP, ../build beside them, PATH)."""

import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import BRI_BACKUP, ROOT
from test_cli import age_backup, content, corrupt

SCRIPTS = ROOT / "scripts"
TIMEOUT = 120


@pytest.fixture
def project(live_db):
    """The project folder: data/bri.db and data/backups below it."""
    return live_db.parent.parent


def env_with(**extra):
    env = dict(os.environ, BRI_BACKUP=str(BRI_BACKUP))
    env.pop("BRI_DB", None)
    env.pop("BRI_BACKUP_DIR", None)
    env.update(extra)
    return env


def script(name, *args, cwd, env=None):
    return subprocess.run([str(SCRIPTS / name), *args], cwd=cwd, env=env or env_with(),
                          capture_output=True, text=True, timeout=TIMEOUT)


def backups(project):
    p = subprocess.run([str(BRI_BACKUP), "--json", "list"], cwd=project, capture_output=True,
                       text=True, timeout=TIMEOUT, check=True)
    return json.loads(p.stdout)


def change_live(db):
    con = sqlite3.connect(db)
    con.execute("delete from memory where id % 2 = 0")
    con.execute("insert into videos(title) values ('after the backup')")
    con.commit()
    con.close()


def test_backup_database_with_the_seed_flags(project, live_db):
    store = project / "data" / "backups"
    p = script("backup_database", "--name", "before_migration_v2", "--verify", "--cleanup",
               cwd=project)
    assert p.returncode == 0, p.stderr
    path = Path(p.stdout.strip())
    assert path == (store / "before_migration_v2.db").resolve()
    assert path.is_file()
    assert json.loads(Path(f"{path}.verify").read_text())["status"] == "ok"

    p = script("backup_database", cwd=project)
    assert p.returncode == 0, p.stderr
    assert re.fullmatch(r"bri_backup_\d{8}_\d{6}(_\d+)?\.db", Path(p.stdout.strip()).name)
    for args in (["--verify"], ["--cleanup"], ["--name=before_update_v1.5"]):
        p = script("backup_database", *args, cwd=project)
        assert p.returncode == 0, (args, p.stderr)
    names = [b["name"] for b in backups(project)]
    assert "before_update_v1.5" in names and len(names) == 5


@pytest.mark.parametrize("args", [["--bogus"], ["--name"], ["extra"], ["--list"],
                                  ["--name", "bad name"], ["--name", "../x"]])
def test_backup_database_bad_usage(project, args):
    p = script("backup_database", *args, cwd=project)
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    assert not (project / "data" / "backups").exists()


def test_restore_database_list_path_latest_and_no_verify(project, live_db):
    script("backup_database", "--name", "first", cwd=project)
    age_backup(project / "data" / "backups" / "first.db", 0, 60)
    expected_first = content(live_db)
    change_live(live_db)
    script("backup_database", "--name", "second", cwd=project)
    expected_second = content(live_db)

    p = script("restore_database", "--list", cwd=project)
    assert p.returncode == 0, p.stderr
    assert "first" in p.stdout and "second" in p.stdout
    assert p.stdout.index("second") < p.stdout.index("first")  # newest first

    # A path, as the seed's guide writes it.
    p = script("restore_database", "data/backups/first.db", cwd=project)
    assert p.returncode == 0, p.stderr
    assert content(live_db) == expected_first

    # No path: the latest backup.
    p = script("restore_database", cwd=project)
    assert p.returncode == 0, p.stderr
    assert content(live_db) == expected_second

    # --no-verify: the latest, unverified; and with a path.
    change_live(live_db)
    p = script("restore_database", "--no-verify", cwd=project)
    assert p.returncode == 0, p.stderr
    assert content(live_db) == expected_second
    p = script("restore_database", "--no-verify", "data/backups/first.db", cwd=project)
    assert p.returncode == 0, p.stderr
    assert content(live_db) == expected_first
    assert any(b["kind"] == "safety" for b in backups(project))


def test_restore_database_refuses_a_damaged_backup(project, live_db):
    script("backup_database", "--name", "damaged", cwd=project)
    corrupt(project / "data" / "backups" / "damaged.db")
    change_live(live_db)
    before = content(live_db)
    p = script("restore_database", "data/backups/damaged.db", cwd=project)
    assert p.returncode == 1
    assert "--no-verify" in p.stderr
    assert content(live_db) == before


@pytest.mark.parametrize("args", [["--bogus"], ["a.db", "b.db"], ["--name", "x"]])
def test_restore_database_bad_usage(project, live_db, args):
    before = content(live_db)
    p = script("restore_database", *args, cwd=project)
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    assert content(live_db) == before


def test_verify_backups(project):
    p = script("verify_backups", cwd=project)
    assert p.returncode == 0, p.stderr
    script("backup_database", "--name", "one", cwd=project)
    script("backup_database", "--name", "two", cwd=project)
    p = script("verify_backups", cwd=project)
    assert p.returncode == 0, p.stderr
    assert "one: ok" in p.stdout and "two: ok" in p.stdout
    corrupt(project / "data" / "backups" / "two.db")
    p = script("verify_backups", cwd=project)
    assert p.returncode == 1
    assert "two: failed" in p.stdout and "one: ok" in p.stdout
    assert script("verify_backups", "--all", cwd=project).returncode == 2


def test_help_of_every_script(project):
    for name, flags in (("backup_database", ["--name", "--verify", "--cleanup"]),
                        ("restore_database", ["--list", "--no-verify"]),
                        ("verify_backups", [])):
        p = script(name, "--help", cwd=project)
        assert p.returncode == 0 and p.stdout.startswith(f"usage: {name}")
        for flag in flags:
            assert flag in p.stdout


def test_environment_selects_database_and_store(tmp_path, live_db):
    store = tmp_path / "elsewhere"
    env = env_with(BRI_DB=str(live_db), BRI_BACKUP_DIR=str(store))
    p = script("backup_database", "--name", "via_env", cwd="/", env=env)
    assert p.returncode == 0, p.stderr
    assert Path(p.stdout.strip()) == store / "via_env.db"


def test_finding_bri_backup(tmp_path, project):
    # ../build/src/cli/bri-backup beside the scripts.
    tree = tmp_path / "checkout"
    (tree / "scripts").mkdir(parents=True)
    for name in ("backup_database", "restore_database", "verify_backups"):
        shutil.copy2(SCRIPTS / name, tree / "scripts" / name)
    (tree / "build" / "src" / "cli").mkdir(parents=True)
    os.symlink(BRI_BACKUP, tree / "build" / "src" / "cli" / "bri-backup")
    env = dict(os.environ, PATH="/usr/bin:/bin")
    env.pop("BRI_BACKUP", None)
    p = subprocess.run([str(tree / "scripts" / "backup_database"), "--name", "from_build"],
                       cwd=project, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("from_build.db")

    # On PATH.
    shutil.rmtree(tree / "build")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(BRI_BACKUP, bindir / "bri-backup")
    env["PATH"] = f"{bindir}:/usr/bin:/bin"
    p = subprocess.run([str(tree / "scripts" / "restore_database"), "--list"], cwd=project,
                       env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    assert "from_build" in p.stdout

    # Nowhere: a clear error.
    env["PATH"] = "/usr/bin:/bin"
    p = subprocess.run([str(tree / "scripts" / "verify_backups")], cwd=project, env=env,
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 1
    assert "bri-backup not found" in p.stderr
