"""bri-backup cleanup: the retention rules (--retention-days, --keep-min)
applied to backups made old by editing their .meta times; it never empties
the store, never removes a safety backup, and --dry-run removes nothing."""

import json
import re

from conftest import all_formats, audit_records, backup_file, both_formats
from test_cli import age_backup, create, listing, names_in


def make_aged(cli, n, days, prefix="b"):
    """n named backups, the i-th aged days + i minutes: b0 newest, b{n-1} oldest."""
    paths = [create(cli, "--name", f"{prefix}{i}") for i in range(n)]
    for i, path in enumerate(paths):
        age_backup(path, days, i * 60)
    return paths


def make_safety(cli, live_db, days):
    """A safety backup (from a restore), aged days."""
    create(cli, "--name", "for_restore")
    cli.run("restore", "for_restore")
    safety = [b for b in json.loads(cli.run("--json", "list").stdout) if b["kind"] == "safety"]
    assert len(safety) == 1
    cli.run("delete", "for_restore")
    age_backup(backup_file(cli.store, safety[0]["name"]), days, 3600 * 24)
    return safety[0]["name"]


@all_formats
def test_cleanup_keeps_the_newest_keep_min_and_every_safety_backup(cli, live_db, store):
    make_aged(cli, 10, 60)
    safety = make_safety(cli, live_db, 60)
    fresh = create(cli, "--name", "fresh")

    before = listing(store)
    p = cli.run("cleanup", "--dry-run")
    assert listing(store) == before  # a dry run removes nothing
    would = re.findall(r"^would remove (\S+)", p.stdout, re.M)
    assert sorted(would) == ["b6", "b7", "b8", "b9"]

    p = cli.run("cleanup")
    removed = re.findall(r"^removed (\S+) \(", p.stdout, re.M)
    assert sorted(removed) == ["b6", "b7", "b8", "b9"]
    # The newest 7 non-safety (fresh, b0..b5) and the safety backup stay.
    assert sorted(names_in(cli)) == sorted(["fresh", safety] + [f"b{i}" for i in range(6)])
    for name in ("b6", "b7", "b8", "b9"):
        assert not (store / f"{name}.db").exists()
        assert not (store / f"{name}.db.meta").exists()
    assert fresh.exists()

    # Again: nothing more to do.
    p = cli.run("cleanup")
    assert not re.findall(r"^removed (\S+) \(", p.stdout, re.M)
    audit = audit_records(store)
    assert any(r["operation"].startswith("cleanup") or r["operation"] == "delete"
               for r in audit)


@both_formats
def test_cleanup_never_empties_the_store(cli, store):
    """A long pause in backups: all are older than the retention period."""
    make_aged(cli, 9, 90)
    cli.run("cleanup")
    assert sorted(names_in(cli)) == [f"b{i}" for i in range(7)]
    # Retention 365 days: only the ancient ones go. keep-min 2: the newest two remain.
    make_aged(cli, 3, 400, prefix="ancient")
    cli.run("--retention-days", "365", "cleanup")
    assert len(names_in(cli)) == 7
    cli.run("--keep-min", "2", "cleanup")
    assert sorted(names_in(cli)) == ["b0", "b1"]


@both_formats
def test_cleanup_within_retention_removes_nothing(cli, store):
    make_aged(cli, 12, 10)
    before = listing(store)
    p = cli.run("cleanup")
    assert listing(store) == before
    assert p.stdout.splitlines()[-1].startswith("0 of ")
    # A shorter retention makes them expire.
    cli.run("--retention-days", "5", "cleanup")
    assert len(names_in(cli)) == 7


@both_formats
def test_cleanup_dry_run_json(cli, store):
    make_aged(cli, 9, 45)
    before = listing(store)
    out = json.loads(cli.run("--json", "cleanup", "--dry-run").stdout)
    assert out["dry_run"] is True
    assert sorted(r["name"] for r in out["removed"]) == ["b7", "b8"]
    assert len(out["kept"]) == 7
    assert listing(store) == before
    out = json.loads(cli.run("--json", "cleanup").stdout)
    assert sorted(r["name"] for r in out["removed"]) == ["b7", "b8"]
    assert len(names_in(cli)) == 7


def test_cleanup_on_an_empty_or_missing_store(cli, store):
    p = cli.run("cleanup")
    assert p.stdout.splitlines()[-1].startswith("0 of ")
    assert not store.exists()
