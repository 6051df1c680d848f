"""Every command line of the seed's guide (data/seed_backup_guide.md, copied
verbatim) that runs one of our scripts, exactly as written, from the
project's root: `python scripts/backup_database.py --name
before_update_v1.5`, `python scripts/restore_database.py --list`, `python
scripts/verify_backups.py`, the cron line `cd /path/to/bri-video-agent &&
python scripts/backup_database.py --cleanup` (the folder replaced by the
project's) and the rest. The project is a folder with data/bri.db and the
repository's scripts/ (a link), the way the BRI application holds them.
Each line runs with `python3` and with `python` (where that name exists on
PATH), through bash. The scripts find the bri_backup module themselves:
PYTHONPATH is not set."""

import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, python_env
from test_cli import content
from test_python_seed import names, seed_blocks

TIMEOUT = 120
OURS = ("scripts/backup_database.py", "scripts/restore_database.py", "scripts/verify_backups.py")
CRON_DIR = "/path/to/bri-video-agent"


def seed_command_lines():
    """The guide's shell lines that run our scripts, in the guide's order,
    as written (comments and other programs' lines left out)."""
    lines = []
    for blocks in seed_blocks("bash").values():
        for block in blocks:
            for line in block.splitlines():
                if any(s in line for s in OURS):
                    lines.append(line)
    return lines


def interpreters():
    return [name for name in ("python3", "python") if shutil.which(name)]


def test_the_seed_command_lines_are_all_found():
    lines = seed_command_lines()
    assert "python scripts/backup_database.py --name before_update_v1.5" in lines
    assert "python scripts/restore_database.py --list" in lines
    assert "python scripts/verify_backups.py" in lines
    assert f"0 2 * * * cd {CRON_DIR} && python scripts/backup_database.py --cleanup" in lines
    assert len(lines) == 25


def env():
    e = python_env()
    e.pop("PYTHONPATH")  # the scripts find the module themselves
    e.pop("BRI_DB", None)
    e.pop("BRI_BACKUP_DIR", None)
    return e


def bash(line, cwd, interpreter):
    # The line exactly; `python` means the interpreter under test.
    if interpreter != "python":
        line = re.sub(r"(^|&& |\s)python ", lambda m: f"{m.group(1)}{interpreter} ", line)
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=TIMEOUT)


@pytest.mark.parametrize("interpreter", interpreters())
def test_every_seed_command_line(live_db, interpreter):
    project = live_db.parent.parent
    os.symlink(ROOT / "scripts", project / "scripts")
    store = project / "data" / "backups"
    # The backups the guide's restore lines name exist, as in the guide.
    # (before_migration_v2 and before_update_v1.5 are made by the guide's own lines.)
    for name in ("bri_backup_20251016_143000", "bri_backup_20251016_120000"):
        p = bash(f"python scripts/backup_database.py --name {name}", project, interpreter)
        assert p.returncode == 0, p.stderr
    ran = []
    for line in seed_command_lines():
        if line.startswith("0 2 * * * "):  # cron: the command after the schedule
            line = line[len("0 2 * * * "):].replace(CRON_DIR, str(project))
        before = set(names(project))
        p = bash(line, project, interpreter)
        assert p.returncode == 0, (line, p.stdout, p.stderr)
        ran.append(line)
        if "backup_database.py" in line:
            created = Path(p.stdout.strip().splitlines()[-1])
            assert created.parent == store.resolve() and created.is_file(), (line, p.stdout)
            m = re.search(r"--name (\S+)", line)
            if m:
                assert created.name == f"{m.group(1)}.db"
            assert created.stem in set(names(project)) - before
        elif "--list" in line:
            assert p.stdout.startswith("NAME") and "bri_backup_20251016_143000" in p.stdout
        elif "verify_backups.py" in line:
            assert re.search(r"^Valid: \d+, Invalid: 0$", p.stdout, re.M), p.stdout
        else:
            assert p.stdout.startswith("restored "), p.stdout
    assert len(ran) == len(seed_command_lines())


@pytest.mark.parametrize("interpreter", interpreters())
def test_seed_restore_lines_restore_what_they_name(live_db, interpreter):
    project = live_db.parent.parent
    os.symlink(ROOT / "scripts", project / "scripts")
    p = bash("python scripts/backup_database.py --name before_update_v1.5", project, interpreter)
    assert p.returncode == 0, p.stderr
    before = content(live_db)
    con = sqlite3.connect(live_db)
    con.execute("delete from memory")
    con.commit()
    con.close()
    p = bash("python scripts/restore_database.py data/backups/before_update_v1.5.db", project,
             interpreter)
    assert p.returncode == 0, p.stderr
    assert content(live_db) == before


def test_the_extensionless_names_still_work(live_db):
    project = live_db.parent.parent
    for script in ("backup_database", "restore_database", "verify_backups"):
        p = subprocess.run([str(ROOT / "scripts" / script), "--help"], cwd=project, env=env(),
                           capture_output=True, text=True, timeout=TIMEOUT)
        assert p.returncode == 0 and p.stdout.startswith(f"usage: {script}")
        p = subprocess.run(["python3", str(ROOT / "scripts" / f"{script}.py"), "--help"],
                           cwd=project, env=env(), capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert p.returncode == 0 and p.stdout.startswith(f"usage: {script}.py"), p.stderr
