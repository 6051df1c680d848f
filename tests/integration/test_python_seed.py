"""Every Python snippet of the seed's guide runs unchanged over the bri_backup
module (SPEC.md section 7). The guide is copied byte for byte in
data/seed_backup_guide.md (the seed's "BRI Database Backup and Restore
Guide"); the snippets are taken from it by section ("Programmatic Usage":
Create, Restore, Verify, List, Cleanup, Get Statistics; "Retention Policy";
"Monitor Backup Health"; "Monitoring": Check Backup Status and the JSON
"Backup Health Report"). Each runs in its own interpreter from the
project's folder (data/bri.db, data/backups), as the seed's application
does; where a snippet uses a variable the guide defines elsewhere
(backup_path), a prelude defines it and the snippet follows unchanged."""

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BRI_BACKUP, python_env
from test_cli import age_backup, content, corrupt

GUIDE = Path(__file__).parent / "data" / "seed_backup_guide.md"
TIMEOUT = 120


def seed_blocks(lang):
    """{section heading: [code blocks of lang]} of the seed's guide."""
    blocks, heading, code = {}, None, None
    for line in GUIDE.read_text().splitlines(keepends=True):
        if code is not None:
            if line.startswith("```"):
                blocks.setdefault(heading, []).append("".join(code))
                code = None
            else:
                code.append(line)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.strip() == f"```{lang}":
            code = []
    return blocks


PYTHON = seed_blocks("python")


def snippet(heading):
    (code,) = PYTHON[heading]
    return code


def test_every_python_snippet_of_the_seed_is_tested():
    assert set(PYTHON) == {
        "Retention Policy", "Create Backup", "Restore Backup", "Verify Backup",
        "List Backups", "Cleanup Old Backups", "Get Statistics", "3. Monitor Backup Health",
        "Check Backup Status"}
    assert all(len(v) == 1 for v in PYTHON.values())
    assert "Backup Health Report" in seed_blocks("bash")


@pytest.fixture
def project(live_db):
    """The seed application's folder: data/bri.db, data/backups."""
    return live_db.parent.parent


def run(project, code, prelude=""):
    """Runs prelude + code with /usr/bin/python3 in project; returns stdout."""
    p = subprocess.run([sys.executable, "-c", prelude + code], cwd=project, env=python_env(),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    return p.stdout


def cli_json(project, *args):
    p = subprocess.run([str(BRI_BACKUP), "--json", *args], cwd=project, capture_output=True,
                       text=True, timeout=TIMEOUT)
    return json.loads(p.stdout)


def names(project):
    return [b["name"] for b in cli_json(project, "list")]


def change_live(db):
    con = sqlite3.connect(db)
    con.execute("delete from memory where id % 2 = 0")
    con.execute("insert into videos(title) values ('after the backup')")
    con.commit()
    con.close()


def test_seed_create_backup(project):
    out = run(project, snippet("Create Backup"))
    m = re.fullmatch(r"Backup created: (.*)\n", out)
    assert m, out
    path = Path(m.group(1))
    assert path.is_file() and re.fullmatch(r"bri_backup_\d{8}_\d{6}\.db", path.name)
    assert path.parent == (project / "data" / "backups").resolve()
    assert sorted(names(project)) == sorted(["before_migration", path.stem])


def test_seed_retention_policy(project):
    out = run(project, snippet("Retention Policy") + "print(backup_manager.retention_days)\n",
              prelude="from storage.backup import DatabaseBackup\n")
    assert out == "30\n"


def test_seed_restore_backup_with_and_without_verification(project, live_db):
    # The guide's backup file name, and backup_path from "Create Backup".
    run(project, "from bri_backup import DatabaseBackup\n"
                 "DatabaseBackup().create_backup('bri_backup_20251016_143000')\n")
    first = content(live_db)
    change_live(live_db)
    second = content(live_db)
    later = run(project, "from bri_backup import DatabaseBackup\n"
                         "print(DatabaseBackup().create_backup())\n").strip()
    change_live(live_db)
    code = snippet("Restore Backup")
    # The snippet restores the named backup, then backup_path unverified: second.
    run(project, code, prelude=f"backup_path = {later!r}\n")
    assert content(live_db) == second

    # Each half on its own: the verified restore of the guide's file gives first.
    verified_only = code.split("\n# Restore without verification")[0] + "\n"
    run(project, verified_only)
    assert content(live_db) == first
    safety = [b for b in cli_json(project, "list") if b["kind"] == "safety"]
    assert len(safety) == 3  # one per restore

    # A damaged backup: the verified restore refuses it and changes nothing;
    # the unverified one (the snippet's second call) is the caller's risk.
    corrupt(project / "data" / "backups" / "bri_backup_20251016_143000.db")
    p = subprocess.run([sys.executable, "-c", verified_only], cwd=project, env=python_env(),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 1
    assert "bri_backup.Error" in p.stderr and "restore:" in p.stderr
    assert content(live_db) == first


def test_seed_verify_backup_one_and_all(project):
    prelude = ("from storage.backup import DatabaseBackup\n"
               "backup_path = DatabaseBackup().create_backup('one')\n")
    code = snippet("Verify Backup") + "print(is_valid)\n"
    assert run(project, code, prelude) == "Valid: 1, Invalid: 0\nTrue\n"
    run(project, "from bri_backup import DatabaseBackup\n"
                 "DatabaseBackup().create_backup('two')\n")
    corrupt(project / "data" / "backups" / "two.db")
    prelude = ("from storage.backup import DatabaseBackup\n"
               "backup_path = 'data/backups/two.db'\n")
    assert run(project, code, prelude) == "Valid: 1, Invalid: 1\nFalse\n"
    statuses = {b["name"]: b["verify"] for b in cli_json(project, "list")}
    assert statuses == {"one": "ok", "two": "failed"}


def test_seed_list_backups(project):
    run(project, "from bri_backup import DatabaseBackup\n"
                 "m = DatabaseBackup()\nm.create_backup('older')\n")
    age_backup(project / "data" / "backups" / "older.db", 1)
    run(project, "from bri_backup import DatabaseBackup\n"
                 "DatabaseBackup().create_backup('newer')\n")
    out = run(project, snippet("List Backups"))
    listed = cli_json(project, "list")
    expected = "".join(
        f"{b['filename']}: {b['size_mb']:.2f} MB\n  Created: {b['created']}\n"
        f"  Tables: {b['tables']}\n" for b in listed)
    assert out == expected
    assert out.index("newer.db") < out.index("older.db")  # newest first
    assert "'videos': " in out


def test_seed_cleanup_old_backups(project):
    run(project, "from bri_backup import DatabaseBackup\nm = DatabaseBackup()\n"
                 "for i in range(9): m.create_backup(f'b{i}')\n")
    for i in range(9):
        age_backup(project / "data" / "backups" / f"b{i}.db", 40 + i)
    out = run(project, snippet("Cleanup Old Backups"))
    # 9 expired; the newest 7 good ones always stay (bri-backup cleanup's rule).
    assert out == "Removed 2 old backups\n"
    assert sorted(names(project)) == [f"b{i}" for i in range(7)]
    assert run(project, snippet("Cleanup Old Backups")) == "Removed 0 old backups\n"


def test_seed_get_statistics(project):
    run(project, "from bri_backup import DatabaseBackup\nm = DatabaseBackup()\n"
                 "m.create_backup('a')\nm.create_backup('b')\n")
    out = run(project, snippet("Get Statistics"))
    stats = cli_json(project, "stats")
    assert out == (f"Total backups: 2\nTotal size: {stats['total_size_mb']:.2f} MB\n"
                   f"Newest: {stats['newest_backup']}\nOldest: {stats['oldest_backup']}\n")


@pytest.mark.parametrize("age_days,warned", [(0, False), (3, True)])
def test_seed_monitor_backup_health(project, age_days, warned):
    run(project, "from bri_backup import DatabaseBackup\nDatabaseBackup().create_backup('x')\n")
    age_backup(project / "data" / "backups" / "x.db", age_days)
    out = run(project, snippet("3. Monitor Backup Health"))
    assert out == ("⚠️  Warning: No recent backups!\n" if warned else "")


def test_seed_check_backup_status(project):
    run(project, "from bri_backup import DatabaseBackup\nm = DatabaseBackup()\n"
                 "for i in range(3): m.create_backup(f'c{i}')\n")
    for i in range(3):
        age_backup(project / "data" / "backups" / f"c{i}.db", 2 + i)
    out = run(project, snippet("Check Backup Status")).splitlines()
    assert re.fullmatch(r"⚠️  Warning: Latest backup is 4[89]\.\d hours old", out[0]), out
    assert out[1] == "⚠️  Warning: Only 3 backups available"

    run(project, "from bri_backup import DatabaseBackup\nm = DatabaseBackup()\n"
                 "for i in range(5): m.create_backup(f'd{i}')\n")
    out = run(project, snippet("Check Backup Status")).splitlines()
    assert re.fullmatch(r"✓ Backups are current \(latest: 0\.\d hours ago\)", out[0]), out
    assert out[1] == "✓ 8 backups available"


def test_seed_backup_health_report(project):
    run(project, "from bri_backup import DatabaseBackup\nDatabaseBackup().create_backup()\n")
    (block,) = seed_blocks("bash")["Backup Health Report"]
    # Literally as the guide writes it: a shell runs `python -c "..."`.
    p = subprocess.run(["bash", "-c", block], cwd=project, env=python_env(),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    # The very object `bri-backup --json stats` prints: the core renders both.
    assert json.loads(p.stdout) == cli_json(project, "stats")
    assert p.stdout.startswith('{\n  "total_backups": 1,\n  "total_size_mb": ')
