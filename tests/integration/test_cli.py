"""bri-backup's command line as a whole: usage and exit statuses, --help and
--version, defaults from the environment, global options after the command,
--json output of every command that has it, list, delete, stats and health.
Also the helpers the other test_cli_*.py files import. Real databases, real
processes; every subprocess runs under a timeout."""

import datetime
import json
import os
import re
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (BRI_BACKUP, all_formats, as_plain, audit_records, backup_file, both_formats, read_sidecar,
                      sidecar, table_counts, write_sidecar)

TIMEOUT = 120
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


# ---- helpers shared by the test_cli_*.py files ----

def run(args, cwd=None, env=None, timeout=TIMEOUT, input=None):
    """bri-backup with exactly these arguments (no --db/--backup-dir added)."""
    return subprocess.run([str(BRI_BACKUP), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout, input=input)


def create(cli, *args):
    """Runs create and returns the new backup's path (its only stdout line)."""
    p = cli.run("create", *args)
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p.stdout
    path = Path(lines[0])
    assert path.is_absolute() and path.is_file(), path
    return path


def meta_of(db_path):
    return json.loads(read_sidecar(db_path, "meta"))


def sha256sum(path):
    out = subprocess.run(["sha256sum", str(as_plain(path))], capture_output=True, text=True,
                         check=True, timeout=TIMEOUT).stdout
    return out.split()[0]


def content(db):
    """Every row of every table of db, as sorted lists per table: for equality."""
    db = as_plain(db)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        names = sorted(r[0] for r in con.execute(
            "select name from sqlite_master where type='table' and name not like 'sqlite_%'"))
        return {n: sorted(con.execute(f'select * from "{n}"').fetchall(), key=repr)
                for n in names}
    finally:
        con.close()


def listing(store):
    """The store's backup files with their sizes and checksums (no audit log, lock)."""
    store = Path(store)
    if not store.exists():
        return None
    out = {}
    for p in sorted(store.iterdir()):
        if p.name in ("audit.jsonl", ".lock", "restore_reports.jsonl"):
            continue
        out[p.name] = (p.stat().st_size, sha256sum(p) if p.is_file() else None)
    return out


def names_in(cli):
    return [b["name"] for b in json.loads(cli.run("--json", "list").stdout)]


def age_backup(db_path, days, extra_seconds=0):
    """Moves a backup's time (its .meta's backup_time and backup_time_utc)
    days into the past. The checksum covers the .db only, so it stays valid."""
    meta = meta_of(db_path)
    when = datetime.datetime.now().replace(microsecond=0) - datetime.timedelta(
        days=days, seconds=extra_seconds)
    meta["backup_time"] = when.isoformat()
    utc = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    meta["backup_time_utc"] = utc.isoformat() + "Z"
    write_sidecar(db_path, "meta", json.dumps(meta, indent=2))
    return meta["backup_time"]


def corrupt(path, at=None, n=64):
    """Flips n bytes of a file in place (by default in its second half)."""
    size = os.path.getsize(path)
    at = size // 2 + 100 if at is None else at
    with open(path, "r+b") as f:
        f.seek(at)
        data = f.read(n)
        f.seek(at)
        f.write(bytes(b ^ 0xFF for b in data))


# ---- usage, help, version ----

@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["--bogus", "list"],
    ["list", "--bogus"],
    ["list", "extra"],
    ["stats", "extra"],
    ["create", "extra"],
    ["create", "--name"],
    ["--db"],
    ["--retention-days", "abc", "cleanup"],
    ["--retention-days", "-1", "cleanup"],
    ["--keep-min", "1x", "cleanup"],
    ["cleanup", "--keep-min", "-3"],
    ["delete"],
    ["delete", "a", "b"],
    ["restore", "a", "b"],
    ["health", "--max-age-hours", "0"],
    ["health", "--max-age-hours", "soon"],
    ["health", "--min-backups", "-1"],
    ["verify", "--no-such-option"],
    ["--json=1", "list"],
])
def test_bad_usage_exits_2(cli, store, args):
    before = listing(store)
    p = cli.run(*args, check=False)
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    assert "bri-backup" in p.stderr and "--help" in p.stderr
    assert p.stdout == ""
    assert listing(store) == before


def test_help_and_version(cli):
    p = run(["--help"])
    assert p.returncode == 0 and p.stderr == ""
    for command in ("create", "list", "verify", "restore", "cleanup", "delete", "stats",
                    "health"):
        assert command in p.stdout
        sub = run([command, "--help"])
        assert sub.returncode == 0, sub.stderr
        assert sub.stdout.startswith(f"Usage: bri-backup [OPTIONS] {command}")
        assert run(["help", command]).stdout == sub.stdout
    for opt in ("--db", "--backup-dir", "--retention-days", "--keep-min", "--json"):
        assert opt in p.stdout
    assert "--max-age-hours" in run(["health", "--help"]).stdout
    assert "--no-verify" in run(["restore", "--help"]).stdout
    v = run(["--version"])
    assert v.returncode == 0 and re.match(r"^bri-backup \d+\.\d+", v.stdout)


def test_help_writes_nothing(tmp_path):
    db = tmp_path / "data" / "bri.db"
    p = run(["--db", str(db), "create", "--help"])
    assert p.returncode == 0
    assert not (tmp_path / "data").exists()


# ---- defaults and the placing of global options ----

def test_defaults_from_cwd_and_environment(live_db, store, tmp_path):
    # data/bri.db relative to the current folder, store data/backups beside it.
    p = run(["create", "--name", "from_cwd"], cwd=live_db.parent.parent)
    assert p.returncode == 0, p.stderr
    assert Path(p.stdout.strip()) == (store / "from_cwd.db").resolve()

    # $BRI_DB and $BRI_BACKUP_DIR from anywhere.
    other = tmp_path / "elsewhere"
    env = dict(os.environ, BRI_DB=str(live_db), BRI_BACKUP_DIR=str(other))
    p = run(["create", "--name", "from_env"], cwd="/", env=env)
    assert p.returncode == 0, p.stderr
    assert Path(p.stdout.strip()) == other / "from_env.db"
    assert oct(other.stat().st_mode & 0o777) == "0o700"

    # Options beat the environment.
    p = run(["--backup-dir", str(store), "--json", "list"], cwd="/", env=env)
    assert [b["name"] for b in json.loads(p.stdout)] == ["from_cwd"]


def test_global_options_after_the_command(live_db, store):
    p = run(["create", "--db", str(live_db), "--backup-dir", str(store), "--name", "late"])
    assert p.returncode == 0, p.stderr
    p = run(["list", "--json", "--backup-dir", str(store), "--db", str(live_db)])
    assert p.returncode == 0, p.stderr
    assert [b["name"] for b in json.loads(p.stdout)] == ["late"]


def test_missing_database_is_an_error_and_writes_nothing(tmp_path):
    db = tmp_path / "data" / "bri.db"
    p = run(["--db", str(db), "create"])
    assert p.returncode == 1
    assert "not found" in p.stderr and "--db" in p.stderr
    assert not (tmp_path / "data").exists()


def test_reading_commands_on_a_missing_store(tmp_path, live_db):
    store = tmp_path / "no_store"
    base = ["--db", str(live_db), "--backup-dir", str(store)]
    p = run([*base, "--json", "list"])
    assert p.returncode == 0 and json.loads(p.stdout) == []
    p = run([*base, "--json", "stats"])
    assert p.returncode == 0 and json.loads(p.stdout)["total_backups"] == 0
    assert run([*base, "health"]).returncode == 1
    assert run([*base, "verify"]).returncode == 0
    assert run([*base, "delete", "x"]).returncode == 1
    assert not store.exists()


# ---- list ----

@all_formats
def test_list_newest_first_text_and_json(cli, store, live_db):
    first = create(cli, "--name", "first")
    age_backup(first, 2)
    second = create(cli)
    age_backup(second, 1)
    third = create(cli, "--name", "third", "--verify")

    p = cli.run("list")
    lines = p.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "CREATED"]
    assert [ln.split()[0] for ln in lines[1:]] == ["third", second.stem, "first"]
    assert "ok" in lines[1] and "named" in lines[1]
    assert "unverified" in lines[2] and "auto" in lines[2]

    entries = json.loads(cli.run("--json", "list").stdout)
    assert [e["name"] for e in entries] == ["third", second.stem, "first"]
    counts = table_counts(live_db)
    for e, path in zip(entries, (third, second, first)):
        # The seed's list keys with the seed's types, then ours.
        assert e["filename"] == f"{e['name']}.db"
        assert Path(e["path"]) == path
        assert TIME_RE.match(e["created"]) and e["created"] == meta_of(path)["backup_time"]
        assert isinstance(e["size_mb"], float)
        size = as_plain(path).stat().st_size  # the database as served
        assert e["size_mb"] == round(size / 2**20, 2)
        assert e["tables"] == counts
        assert e["size_bytes"] == size
    assert [e["kind"] for e in entries] == ["named", "auto", "named"]
    assert [e["verify"] for e in entries] == ["ok", "unverified", "unverified"]


def test_list_hides_work_in_progress_and_survives_bad_meta(cli, store):
    good = create(cli, "--name", "good")
    (store / ".good2.create.999999.abcdef.tmp").write_bytes(b"partial")
    bad = create(cli, "--name", "bad")
    Path(f"{bad}.meta").write_text("{ not json")
    entries = json.loads(cli.run("--json", "list").stdout)
    by_name = {e["name"]: e for e in entries}
    assert set(by_name) == {"good", "bad"}
    assert by_name["bad"]["meta_error"]
    assert by_name["good"]["meta_error"] is None
    assert "bad" in cli.run("list").stdout
    # A broken .meta is a failed verification, not a crash.
    p = cli.run("verify", "bad", check=False)
    assert p.returncode == 1 and "failed" in p.stdout
    assert cli.run("verify", "good").returncode == 0
    assert good.exists()


# ---- delete ----

@all_formats
def test_delete(cli, store):
    a = create(cli, "--name", "a")
    create(cli, "--name", "b")
    cli.run("verify", "a")
    assert sidecar(a, "verify").exists()
    p = cli.run("delete", "a")
    assert "a" in p.stdout
    assert not a.exists() and not sidecar(a, "meta").exists()
    assert not Path(f"{a}.verify").exists()
    assert names_in(cli) == ["b"]

    before = listing(store)
    p = cli.run("delete", "a", check=False)
    assert p.returncode == 1 and "no backup named a" in p.stderr
    for bad in ("../b", "b/..", "", "ctl", "-b"):
        p = cli.run("delete", "--", bad, check=False)
        assert p.returncode == 2, bad
    assert listing(store) == before

    audit = audit_records(store)
    assert any(r["operation"] == "delete" and r["name"] == "a" for r in audit)


# ---- stats ----

@all_formats
def test_stats_keys_and_values(cli, store, store_format):
    old = create(cli, "--name", "old")
    old_time = age_backup(old, 3)
    new = create(cli, "--name", "new")
    st = json.loads(cli.run("--json", "stats").stdout)
    for key in ("total_backups", "total_size_mb", "newest_backup", "oldest_backup"):
        assert key in st
    assert st["total_backups"] == 2
    assert isinstance(st["total_size_mb"], float)
    total = meta_of(old)["size_bytes"] + meta_of(new)["size_bytes"]
    assert abs(st["total_size_mb"] - total / 2**20) < 0.01
    assert st["newest_backup"] == meta_of(new)["backup_time"]
    assert st["oldest_backup"] == old_time
    assert TIME_RE.match(st["newest_backup"]) and TIME_RE.match(st["oldest_backup"])
    # Logical bytes (as served), stored bytes and the dedup ratio (SPEC.md 5).
    assert st["format"] == store_format.split("-")[0] and st["logical_bytes"] == total
    assert st["encryption"] == ("aes-256-gcm" if store_format == "pages-sealed" else "none")
    if store_format == "plain":
        assert st["stored_bytes"] == total and st["dedup_ratio"] == 1.0
    else:  # the same database twice: its pages are stored once, compressed
        assert st["stored_bytes"] < total / 2 and st["dedup_ratio"] > 2
    # The seed's monitoring snippet works on it.
    newest = datetime.datetime.fromisoformat(st["newest_backup"])
    assert datetime.datetime.now() - newest < datetime.timedelta(minutes=5)

    text = cli.run("stats").stdout
    assert "total_backups: 2" in text and st["newest_backup"] in text
    shown = {"pages-sealed": "pages, encrypted"}.get(store_format, store_format)
    assert f"format: {shown};" in text and "dedup ratio" in text


def test_stats_empty_store(cli):
    st = json.loads(cli.run("--json", "stats").stdout)
    assert st["total_backups"] == 0


# ---- health ----

def test_health_exit_statuses(cli, store):
    p = cli.run("health", check=False)
    assert p.returncode == 1 and "warning" in p.stdout

    paths = [create(cli, "--name", f"h{i}") for i in range(7)]
    p = cli.run("health", check=False)
    assert p.returncode == 0, p.stdout
    assert p.stdout.strip() == "ok"
    h = json.loads(cli.run("--json", "health").stdout)
    assert isinstance(h, dict)

    # Settable thresholds.
    assert cli.run("health", "--min-backups", "8", check=False).returncode == 1
    assert cli.run("health", "--min-backups", "7").returncode == 0

    for i, path in enumerate(paths):
        age_backup(path, 2, i)
    p = cli.run("health", check=False)
    assert p.returncode == 1 and "warning" in p.stdout
    assert cli.run("health", "--max-age-hours", "72").returncode == 0
    assert cli.run("--json", "health", check=False).returncode == 1
    json.loads(cli.run("--json", "health", check=False).stdout)


def test_health_warns_on_failed_verification(cli, store):
    paths = [create(cli, "--name", f"h{i}") for i in range(7)]
    assert cli.run("health").returncode == 0
    corrupt(paths[3])
    assert cli.run("verify", check=False).returncode == 1
    p = cli.run("health", check=False)
    assert p.returncode == 1 and "warning" in p.stdout


# ---- --json of everything that has it ----

@both_formats
def test_json_outputs_parse(cli, store, tmp_path):
    p = cli.run("--json", "create", "--name", "j1", "--verify", "--cleanup")
    out = json.loads(p.stdout)
    assert out["name"] == "j1" and Path(out["path"]) == backup_file(store, "j1")
    assert out["verify"]["status"] == "ok"
    assert "removed" in out["cleanup"]
    create(cli, "--name", "j2")

    lst = json.loads(cli.run("--json", "list").stdout)
    assert isinstance(lst, list) and len(lst) == 2
    v = json.loads(cli.run("--json", "verify").stdout)
    assert sorted(r["name"] for r in v) == ["j1", "j2"]
    assert all(r["status"] == "ok" for r in v)
    assert json.loads(cli.run("--json", "verify", "j2").stdout)[0]["checksum_ok"] is True
    st = json.loads(cli.run("--json", "stats").stdout)
    assert st["total_backups"] == 2
    json.loads(cli.run("--json", "health", check=False).stdout)
    c = json.loads(cli.run("--json", "cleanup", "--dry-run").stdout)
    assert c["removed"] == [] and c["dry_run"] is True
    r = json.loads(cli.run("--json", "restore", "j1").stdout)
    assert r["result"] == "restored" and r["safety_backup"].startswith("pre_restore_safety_")


def test_delete_by_file_name(cli, store):
    create(cli, "--name", "seedstyle")
    cli.run("delete", "seedstyle.db")
    assert names_in(cli) == []


def test_output_write_errors_fail(cli):
    create(cli, "--name", "x")
    with open("/dev/full", "w") as full:
        p = subprocess.run([*map(str, (BRI_BACKUP, "--db", cli.db, "--backup-dir", cli.store)),
                            "list"], stdout=full, stderr=subprocess.PIPE, text=True,
                           timeout=TIMEOUT)
    assert p.returncode == 1 and "write" in p.stderr
