"""Operations around the core: the offsite rsync recipe that refuses a dead
or empty source, bash completion of bri-backup, and the systemd units."""

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import BRI_BACKUP, BRI_BACKUPFS, ROOT, Mount, table_counts

OFFSITE = ROOT / "scripts/offsite-sync"
COMPLETION = ROOT / "scripts/completion/bri-backup.bash"
SYSTEMD = ROOT / "scripts/systemd"


def offsite(*args, timeout=120):
    return subprocess.run([str(OFFSITE), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def tree(path):
    return sorted(str(p.relative_to(path)) for p in Path(path).rglob("*"))


def test_offsite_sync_of_a_store_mirrors_it(cli, store, tmp_path):
    cli.run("create", "--name", "one")
    cli.run("create", "--name", "two")
    dest = tmp_path / "offsite"
    r = offsite(store, dest)
    assert r.returncode == 0, r.stderr
    assert (dest / "one.db").read_bytes() == (store / "one.db").read_bytes()
    assert (dest / "two.db.meta").exists()
    assert not (dest / ".lock").exists()
    cli.run("delete", "one")
    assert offsite(store, dest).returncode == 0
    assert not (dest / "one.db").exists() and (dest / "two.db").exists()


def test_offsite_sync_refuses_an_empty_source_and_keeps_the_copy(cli, store, tmp_path):
    cli.run("create", "--name", "one")
    dest = tmp_path / "offsite"
    assert offsite(store, dest).returncode == 0
    before = tree(dest)
    empty = tmp_path / "empty"
    empty.mkdir()
    r = offsite(empty, dest)
    assert r.returncode == 1
    assert "refusing" in r.stderr
    r = offsite(tmp_path / "missing", dest)
    assert r.returncode == 1
    r = offsite("--min-backups", 5, store, dest)
    assert r.returncode == 1 and "fewer than" in r.stderr
    assert tree(dest) == before


def test_offsite_sync_of_a_mount_and_refusal_when_the_daemon_died(live_db, store, cli,
                                                                  tmp_path):
    cli.run("create", "--name", "one")
    dest = tmp_path / "offsite"
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        r = offsite(m.path, dest)
        assert r.returncode == 0, r.stderr
        assert (dest / "one" / "bri.db").read_bytes() == (store / "one.db").read_bytes()
        assert not (dest / "ctl").exists() and not (dest / "restore").exists()
        before = tree(dest)
        # Restore from the offsite copy of the view: verified against the
        # meta.json beside the file; a damaged copy is refused.
        con = sqlite3.connect(live_db)
        con.execute("delete from memory")
        con.commit()
        con.close()
        r = cli.run("restore", str(dest / "one" / "bri.db"))
        assert table_counts(live_db)["memory"] > 0
        damaged = tmp_path / "damaged"
        shutil.copytree(dest / "one", damaged)
        with open(damaged / "bri.db", "r+b") as f:
            f.seek(-100, 2)
            f.write(b"x" * 100)
        r = cli.run("restore", str(damaged / "bri.db"), check=False)
        assert r.returncode == 1 and "verification failed" in r.stderr
        m.proc.kill()
        m.proc.wait(timeout=10)
        r = offsite(m.path, dest)
        assert r.returncode == 1, r.stdout
        assert tree(dest) == before
    finally:
        m.stop()
    # Unmounted: an empty mountpoint is refused as well.
    r = offsite(m.path, dest)
    assert r.returncode == 1
    assert tree(dest) == before


def complete(line, env_extra=None):
    """What bash completion offers for line (the cursor at its end)."""
    words = line.split(" ")
    script = f"""
source {COMPLETION}
COMP_WORDS=({' '.join(repr(w) if w else "''" for w in words)})
COMP_CWORD={len(words) - 1}
_bri_backup
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = dict(os.environ, PATH=f"{BRI_BACKUP.parent}:{os.environ['PATH']}", **(env_extra or {}))
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                       env=env)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_bash_completion_of_commands_options_and_names(cli, live_db, store):
    cli.run("create", "--name", "before_update")
    cli.run("create", "--name", "before_migration")
    assert {"create", "cleanup"} <= complete("bri-backup c")
    assert "--name" in complete("bri-backup create --")
    assert "--no-verify" in complete("bri-backup restore --")
    names = complete(f"bri-backup --db {live_db} --backup-dir {store} restore before_")
    assert names == {"before_update", "before_migration"}
    assert complete(f"bri-backup --db {live_db} --backup-dir {store} verify before_u") == {
        "before_update"}
    # latest is a name for verify and restore, never offered to delete.
    assert "latest" in complete(f"bri-backup --db {live_db} --backup-dir {store} restore l")
    assert "latest" in complete(f"bri-backup --db {live_db} --backup-dir {store} verify ")
    assert "latest" not in complete(f"bri-backup --db {live_db} --backup-dir {store} delete ")


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_units_verify(tmp_path):
    # Point the units at the built programs so that verify can check them.
    for unit in ("bri-backupfs.service", "bri-backup.service", "bri-backup.timer"):
        text = (SYSTEMD / unit).read_text()
        text = text.replace("/usr/local/bin/bri-backupfs", str(BRI_BACKUPFS))
        text = text.replace("/usr/local/bin/bri-backup", str(BRI_BACKUP))
        (tmp_path / unit).write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no",
                        *[str(tmp_path / u) for u in ("bri-backupfs.service",
                                                      "bri-backup.service",
                                                      "bri-backup.timer")]],
                       capture_output=True, text=True, timeout=60)
    problems = [l for l in r.stderr.splitlines() if "bri-" in l]
    assert r.returncode == 0 and not problems, r.stderr


def test_systemd_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a unit with a bad setting is reported."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    text = (SYSTEMD / "bri-backup.service").read_text()
    text = text.replace("Type=oneshot", "Type=bogus")
    text = text.replace("/usr/local/bin/bri-backup", str(BRI_BACKUP))
    (tmp_path / "bri-backup.service").write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no",
                        str(tmp_path / "bri-backup.service")],
                       capture_output=True, text=True, timeout=60)
    assert "bogus" in r.stderr


def parse_prometheus(text):
    """{sample name with labels: value}, checking every line's format."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


def test_metrics_for_the_textfile_collector(cli, store, tmp_path):
    cli.run("create", "--name", "one", "--verify")
    cli.run("create")
    assert cli.run("create", "--name", "one", check=False).returncode == 1
    m = parse_prometheus(cli.run("metrics").stdout)
    assert m['bri_backups{kind="named"}'] == 1
    assert m['bri_backups{kind="auto"}'] == 1
    assert m["bri_backup_bytes"] == sum(p.stat().st_size for p in store.glob("*.db"))
    assert 0 <= m["bri_backup_newest_age_seconds"] < 120
    assert m['bri_backup_verification{result="ok"}'] == 1
    assert m['bri_backup_verification{result="unverified"}'] == 1
    assert m['bri_backup_last_run_success{operation="create"}'] == 0  # the refused one
    assert m['bri_backup_last_run_success{operation="verify"}'] == 1
    assert m["bri_backup_healthy"] == 0  # two backups are fewer than seven
    out = tmp_path / "textfile" / "bri.prom"
    out.parent.mkdir()
    cli.run("metrics", "--output", str(out))
    written = parse_prometheus(out.read_text())
    assert set(written) == set(m)
    assert written['bri_backups{kind="named"}'] == 1
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in out.parent.iterdir()] == ["bri.prom"]
    r = cli.run("metrics", "--output", str(tmp_path / "missing" / "x.prom"), check=False)
    assert r.returncode == 1 and "cannot write" in r.stderr


def test_metrics_before_the_first_backup(cli, store):
    """No store yet: zero backups and unhealthy, not a crash."""
    assert not store.exists()
    m = parse_prometheus(cli.run("metrics").stdout)
    assert m['bri_backups{kind="auto"}'] == 0
    assert m["bri_backup_healthy"] == 0
    assert "bri_backup_newest_age_seconds" not in m
    assert not store.exists()
