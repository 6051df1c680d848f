"""What is a backup, and which backups are good (issue 9 items 2 and 4).

Only a NAME.db whose NAME.db.meta parses with the seed's keys is a backup.
Another program's database in the store's folder (no .meta, or one without
the seed's keys) is listed as `unknown`, never removed by cleanup or
delete, never verified as good, counted apart by stats, reported by health,
and not shown by the mount. A backup is good when its last verification did
not fail: cleanup's keep_min floor counts good backups and the newest good
one always stays, and health is critical when no good backup exists.

The store here is a separate folder holding foreign .db files: the same
situation as a store in the database's own folder, which is refused unless
--force. Real CLI runs, real sqlite3 files, real mounts."""

import hashlib
import json
import os
import re
import time
from pathlib import Path

from conftest import Mount, make_sample_db, sh, wait_until
from test_cli import age_backup, corrupt, create, meta_of, names_in

DAY = 86400


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def foreign_files(store, now):
    """Three .db files that are not backups, old by their mtime; {file: sha}."""
    store.mkdir(parents=True, exist_ok=True)
    analytics = make_sample_db(store / "analytics.db", rows=20)  # no .meta at all
    seedless = make_sample_db(store / "seedless.db", rows=10)  # a .meta of another program
    (store / "seedless.db.meta").write_text(json.dumps({"app": "other", "version": 3}))
    half = make_sample_db(store / "halfmeta.db", rows=5)  # a .meta lacking a seed key
    for path, age in ((analytics, 90 * DAY), (seedless, 80 * DAY), (half, 70 * DAY)):
        os.utime(path, (now - age, now - age))
    return {p.name: sha(p) for p in sorted(store.iterdir())
            if p.name.startswith(("analytics", "seedless", "halfmeta"))}


def test_foreign_db_files_are_unknown_and_never_removed(cli, store):
    now = time.time()
    for name in ("old1", "old2"):
        age_backup(create(cli, "--name", name), 60)
    fresh = create(cli, "--name", "fresh")
    foreign = foreign_files(store, now)
    m = meta_of(fresh)
    del m["checksum"]
    (store / "halfmeta.db.meta").write_text(json.dumps(m))
    foreign["halfmeta.db.meta"] = sha(store / "halfmeta.db.meta")
    unknown = {"analytics", "seedless", "halfmeta"}

    # cleanup with keep_min 0: the old backups go, the foreign files stay.
    p = cli.run("--keep-min", "0", "cleanup")
    removed = re.findall(r"^removed (\S+) \(", p.stdout, re.M)
    assert sorted(removed) == ["old1", "old2"], p.stdout
    for f, digest in foreign.items():
        assert (store / f).exists() and sha(store / f) == digest, f

    # list: every one shown, the foreign ones as unknown (text and JSON).
    entries = {e["name"]: e for e in json.loads(cli.run("--json", "list").stdout)}
    assert set(entries) == {"fresh"} | unknown
    for name in unknown:
        assert entries[name]["kind"] == "unknown", entries[name]
        assert entries[name]["verify"] == "failed" and entries[name]["meta_error"]
    assert entries["fresh"]["kind"] == "named"
    text = cli.run("list").stdout
    for name in unknown:
        assert re.search(rf"^{name}\s.*\sunknown\s", text, re.M), text

    # stats counts them apart; health warns, naming how many.
    st = json.loads(cli.run("--json", "stats").stdout)
    assert st["total_backups"] == 1 and st["newest_name"] == "fresh"
    assert st["unknown_files"] == 3 and st["by_kind"]["unknown"] == 3
    assert st["total_bytes"] == fresh.stat().st_size
    h = cli.run("health", "--min-backups", "1", check=False)
    assert h.returncode == 1
    assert re.search(r"^warning: 3 \.db files in the store are not backups", h.stdout, re.M), \
        h.stdout
    assert "critical" not in h.stdout

    # verify: failed, "no metadata", the file neither changed nor given a .verify.
    p = cli.run("verify", "analytics", check=False)
    assert p.returncode == 1 and "no metadata" in p.stdout, (p.stdout, p.stderr)
    p = cli.run("verify", check=False)  # all: the backups, and the unknown ones as failed
    assert p.returncode == 1
    assert re.search(r"^fresh: ok", p.stdout, re.M), p.stdout
    for name in unknown:
        assert re.search(rf"^{name}: failed: not a backup", p.stdout, re.M), p.stdout

    # delete by name refuses: a backup tool does not remove another program's file.
    p = cli.run("delete", "analytics", check=False)
    assert p.returncode == 1 and "not a backup" in p.stderr, p.stderr
    assert (store / "analytics.db").exists()

    for f, digest in foreign.items():
        assert sha(store / f) == digest, f
    assert not list(store.glob("analytics.db.*")) and not (store / "seedless.db.verify").exists()
    assert not (store / "halfmeta.db.verify").exists()


def test_seed_written_meta_is_a_backup(cli, store):
    """A seed-written .meta (the seed's seven keys only) still makes a backup."""
    path = create(cli, "--name", "x")
    seed_name = "bri_backup_20251016_143000"
    os.rename(path, store / f"{seed_name}.db")
    m = meta_of(path)
    seed = {k: m[k] for k in ("backup_time", "source_db", "backup_path", "size_bytes",
                              "size_mb", "checksum", "tables")}
    (store / f"{seed_name}.db.meta").write_text(json.dumps(seed, indent=2))
    os.unlink(f"{path}.meta")
    (e,) = json.loads(cli.run("--json", "list").stdout)
    assert e["name"] == seed_name and e["kind"] == "auto"
    assert cli.run("verify", seed_name).returncode == 0


def test_mount_hides_unknown_and_agrees_with_the_cli(cli, live_db, store, tmp_path):
    now = time.time()
    create(cli, "--name", "real")
    foreign = foreign_files(store, now)
    m = Mount(live_db, store, tmp_path / "mnt", options=["keep_min=0"]).start()
    try:
        shown = os.listdir(m.path)
        assert "real" in shown
        assert not {"analytics", "seedless", "halfmeta"} & set(shown), shown
        assert not (m.path / "analytics").exists()
        # ctl/health and ctl/cleanup say what the CLI says.
        health = (m.path / "ctl/health").read_text()
        assert health == cli.run("health", check=False).stdout
        assert "warning: 3 .db files in the store are not backups" in health
        plan = (m.path / "ctl/cleanup").read_text()
        assert "would remove 0 of 1 backups" in plan, plan
        assert "analytics" not in plan and "seedless" not in plan
        dry = cli.run("--keep-min", "0", "cleanup", "--dry-run").stdout
        assert "0 of 1 backups would be removed" in dry, dry
        st = json.loads((m.path / "ctl/stats.json").read_text())
        assert st["total_backups"] == 1 and st["unknown_files"] == 3
        # Neither ctl/delete nor ctl/cleanup nor ctl/verify touch them.
        p = sh(f"echo analytics > {m.path}/ctl/delete", check=False)
        assert p.returncode != 0
        sh(f"echo > {m.path}/ctl/cleanup")
        p = sh(f"echo analytics > {m.path}/ctl/verify", check=False)
        assert p.returncode != 0
        assert "real" in os.listdir(m.path)
    finally:
        m.stop()
    for f, digest in foreign.items():
        assert sha(store / f) == digest, f
    assert not (store / "analytics.db.verify").exists()


# ---- item 4: the floor counts good backups ----

def make_aged(cli, n, days):
    """n named backups b0 (newest) .. b{n-1}, aged days + i minutes."""
    paths = [create(cli, "--name", f"b{i}") for i in range(n)]
    for i, path in enumerate(paths):
        age_backup(path, days, i * 60)
    return paths


def test_cleanup_keeps_the_good_backups_when_the_newest_fail(cli, store):
    paths = make_aged(cli, 10, 60)
    for path in paths[:7]:
        corrupt(path)
    p = cli.run("verify", check=False)
    assert p.returncode == 1
    assert len(re.findall(r"^b\d: failed", p.stdout, re.M)) == 7, p.stdout

    # Default keep_min 7: the seven newest failed; the three good ones stay.
    p = cli.run("cleanup")
    assert not re.findall(r"^removed (b[789]) ", p.stdout, re.M), p.stdout
    for path in paths[7:]:
        assert path.exists()
    assert cli.run("verify", "b7", "b8", "b9").returncode == 0
    assert "critical" not in cli.run("health", check=False).stdout

    # keep_min 0: the newest good backup still stays, however old.
    p = cli.run("--keep-min", "0", "cleanup")
    assert names_in(cli) == ["b7"], p.stdout
    plan = json.loads(cli.run("--json", "--keep-min", "0", "cleanup", "--dry-run").stdout)
    assert [k["name"] for k in plan["kept"]] == ["b7"] and plan["removed"] == []
    assert "newest good" in plan["kept"][0]["reason"]


def test_health_is_critical_without_a_good_backup(cli, live_db, store, tmp_path):
    paths = [create(cli, "--name", f"c{i}") for i in range(3)]
    assert "critical" not in cli.run("health", check=False).stdout
    for path in paths:
        corrupt(path)
    assert cli.run("verify", check=False).returncode == 1
    p = cli.run("health", "--min-backups", "1", check=False)
    assert p.returncode == 1
    assert p.stdout.startswith("critical: no good backup exists"), p.stdout
    h = json.loads(cli.run("--json", "health", check=False).stdout)
    assert h["status"] == "critical" and h["good_backups"] == 0 and len(h["critical"]) == 1
    metrics = cli.run("metrics").stdout
    assert re.search(r'^bri_backup_health\{level="critical"\} 1$', metrics, re.M), metrics
    assert re.search(r'^bri_backup_health\{level="warning"\} 0$', metrics, re.M)
    assert re.search(r"^bri_backup_good 0$", metrics, re.M)
    assert re.search(r"^bri_backup_healthy 0$", metrics, re.M)
    # The mount says the same.
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        health = (m.path / "ctl/health").read_text()
        assert health.startswith("critical: no good backup exists"), health
        assert health == cli.run("health", check=False).stdout
        assert re.search(r'^bri_backup_health\{level="critical"\} 1$',
                         (m.path / "ctl/metrics").read_text(), re.M)
    finally:
        m.stop()
    # One good backup again: no longer critical.
    create(cli, "--name", "good")
    p = cli.run("health", "--min-backups", "1", check=False)
    assert "critical" not in p.stdout and p.stdout.startswith("warning: backup c"), p.stdout
