"""Integration tests of the mount's operations (issue 6): the backup schedule
(-o schedule=, ctl/schedule, a missed run at start-up, cleanup after each
run), ctl/metrics in the Prometheus text format, ctl/progress during a large
create, the throttled background verifier (idle I/O priority) and the health
warning after a failed verification. Real mounts through the conftest Mount
class; every command and every test has a time limit, and every mount is
unmounted even when a test fails."""

import json
import os
import re
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import ROOT_FIXED, BRI_BACKUPFS, COMMAND_LIMIT as T, Mount, sh, wait_until



def backups(store):
    """{name: meta} of the complete backups in the store."""
    out = {}
    for meta in Path(store).glob("*.db.meta"):
        name = meta.name[: -len(".db.meta")]
        if (Path(store) / f"{name}.db").exists():
            try:
                out[name] = json.loads(meta.read_text())
            except (OSError, ValueError):
                continue
    return out


def auto_backups(store):
    return {n: m for n, m in backups(store).items() if m.get("kind") == "auto"}


def audit(store):
    p = Path(store) / "audit.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def keys(text):
    """The "key: value" lines of a generated file, as a dict."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(": ")
        if sep:
            out[k] = v
    return out


def all_verified(m):
    names = [p.name for p in m.path.iterdir() if p.name not in ROOT_FIXED]
    return all(not (m.path / n / "verify").read_text().startswith("unverified") for n in names)


def backdate(store, name, seconds):
    """Moves a backup's time (its .meta) seconds into the past."""
    meta_path = Path(store) / f"{name}.db.meta"
    meta = json.loads(meta_path.read_text())
    t = datetime.now() - timedelta(seconds=seconds)
    meta["backup_time"] = t.strftime("%Y-%m-%dT%H:%M:%S")
    meta["backup_time_utc"] = datetime.utcfromtimestamp(t.timestamp()).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")


def corrupt(path):
    """Overwrites bytes in the middle of a file, keeping its size."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\xde\xad\xbe\xef" * 64)


@pytest.fixture
def mount(live_db, store, tmp_path):
    """Starts mounts with options; every one is unmounted afterwards."""
    started = []

    def start(*options, name="mnt", env=None):
        m = Mount(live_db, store, tmp_path / name, options=list(options), env=env).start()
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


# --- the schedule ---------------------------------------------------------


def test_schedule_every_takes_auto_backups_then_cleans_up(mount, store):
    m = mount("schedule=every=2s")
    # Never run before: the first backup is taken at once.
    assert wait_until(lambda: len(auto_backups(store)) >= 1, 20)
    assert wait_until(lambda: len(auto_backups(store)) >= 2, 20)
    # After the interval, not at once: by the backups' own times (when the
    # test saw the first one says nothing on a busy machine).
    metas = sorted(auto_backups(store).values(), key=lambda x: x["backup_time"])
    first = datetime.fromisoformat(metas[0]["backup_time"])
    second = datetime.fromisoformat(metas[1]["backup_time"])
    assert (second - first).total_seconds() >= 2
    # Each run is followed by a cleanup, audited like any other.
    assert wait_until(lambda: any(r["operation"] == "cleanup" and r["via"] == "mount"
                                  for r in audit(store)), 5)
    # The mount shows them (a run may have just added one: its rescan follows).
    assert wait_until(lambda: set(auto_backups(store)) <= set(os.listdir(m.path)), 10)
    # The log line of the cleanup is written after its audit line: wait for it.
    assert wait_until(lambda: "schedule: cleanup removed" in (m.path / "ctl/log").read_text(), 10)
    assert "schedule: created backup" in (m.path / "ctl/log").read_text()


def test_schedule_cleanup_applies_the_mount_retention(cli, mount, store):
    # Two old named backups; keep_min=1 lets the cleanup after a run remove them.
    for name in ("old1", "old2"):
        cli.run("create", "--name", name)
        backdate(store, name, 40 * 86400)
    mount("schedule=every=1h", "retention_days=30", "keep_min=1")
    assert wait_until(lambda: len(auto_backups(store)) == 1, 20)
    # The cleanup's audit line is written after it removed the backups: wait
    # for the line itself, not for the backups to vanish.
    assert wait_until(lambda: any(r["operation"] == "cleanup" for r in audit(store)), 20)
    assert "old1" not in backups(store) and "old2" not in backups(store)
    cleanups = [r for r in audit(store) if r["operation"] == "cleanup"]
    assert cleanups[-1]["result"] == "ok"
    assert "removed 2" in cleanups[-1].get("detail", "")


def test_schedule_missed_run_runs_at_startup(cli, mount, store):
    cli.run("create")  # an automatic backup, as cron would make
    (old,) = auto_backups(store)
    backdate(store, old, 2 * 86400)  # the machine was off for two days
    m = mount("schedule=every=1h")
    assert wait_until(lambda: len(auto_backups(store)) == 2, 20)
    # Once, not once per missed slot: when the run has finished (its result is
    # in ctl/schedule), the next one is an hour away and only one was taken.
    assert wait_until(lambda: "last_scheduled: ok" in (m.path / "ctl/schedule").read_text(), 20)
    assert len(auto_backups(store)) == 2
    sched = keys((m.path / "ctl/schedule").read_text())
    assert sched["schedule"] == "every 3600 s"
    assert 3500 <= int(sched["next_run_in_s"]) <= 3600
    new = (set(auto_backups(store)) - {old}).pop()
    assert sched["last_run"].endswith(f"({new})")


def test_schedule_not_due_takes_nothing_at_startup(cli, mount, store, pause_points):
    cli.run("create")
    (last,) = auto_backups(store)
    backdate(store, last, 600)  # ten minutes ago
    # The scheduler stops where it has decided to wait for the next run.
    pause_points.arm("schedule-waits")
    m = mount("schedule=every=1h", env=pause_points.env())
    pause_points.wait_reached("schedule-waits")
    assert list(auto_backups(store)) == [last]
    pause_points.release("schedule-waits")
    sched = keys((m.path / "ctl/schedule").read_text())
    # The next run is an hour after the last one, whoever made it.
    assert 2900 <= int(sched["next_run_in_s"]) <= 3000
    last_time = datetime.fromisoformat(auto_backups(store)[last]["backup_time"])
    assert sched["next_run"] == (last_time + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")


def test_ctl_schedule_daily_shows_next_run(cli, mount, store, pause_points):
    cli.run("create")  # a run today already: nothing due now
    pause_points.arm("schedule-waits")
    m = mount("schedule=daily@02:00", env=pause_points.env())
    pause_points.wait_reached("schedule-waits")  # decided: nothing due
    pause_points.release("schedule-waits")
    text = sh(f"cat {m.path}/ctl/schedule").stdout
    sched = keys(text)
    assert sched["schedule"] == "daily at 02:00"
    now = datetime.now()
    nxt = now.replace(hour=2, minute=0, second=0, microsecond=0)
    if nxt <= now:
        nxt += timedelta(days=1)
    assert sched["next_run"] == nxt.strftime("%Y-%m-%dT%H:%M:%S")
    assert "cleanup" in sched
    st = os.stat(m.path / "ctl/schedule")
    assert st.st_mode & 0o777 == 0o444
    assert st.st_size == len((m.path / "ctl/schedule").read_bytes())
    assert len(auto_backups(store)) == 1


def test_ctl_schedule_without_schedule(mounted):
    sched = keys((mounted.path / "ctl/schedule").read_text())
    assert sched["schedule"] == "none"
    assert sched["next_run"].startswith("none")


@pytest.mark.parametrize("spec", ["fortnightly", "weekly@02:00", "every=0", "every=soon", "daily@25:00", "daily@2"])
def test_bad_schedule_refused(live_db, store, tmp_path, spec):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run([str(BRI_BACKUPFS), "-f", "-o", f"backup_dir={store},schedule={spec}",
                        str(live_db), str(mnt)], capture_output=True, text=True, timeout=T)
    assert p.returncode == 2
    assert "schedule" in p.stderr


def test_help_documents_schedule():
    out = subprocess.run([str(BRI_BACKUPFS), "--help"], capture_output=True, text=True,
                         timeout=T).stdout
    assert "schedule=" in out


# --- metrics --------------------------------------------------------------

METRIC_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"'
                         r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? -?[0-9]+(\.[0-9]+)?$')


def parse_metrics(text):
    values = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* \S", line), line
            continue
        assert METRIC_LINE.match(line), f"not a metric line: {line!r}"
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values


def test_ctl_metrics_parses_and_matches_store(cli, mount, store):
    cli.run("create", "--name", "one")
    cli.run("create", "--name", "two")
    cli.run("create")
    m = mount()
    assert wait_until(lambda: all_verified(m), 60, 0.2)
    text = sh(f"cat {m.path}/ctl/metrics").stdout
    assert text.endswith("\n")
    v = parse_metrics(text)
    assert v['bri_backups{kind="named"}'] == 2
    assert v['bri_backups{kind="auto"}'] == 1
    assert v['bri_backups{kind="safety"}'] == 0
    assert v["bri_backup_bytes"] == sum(p.stat().st_size for p in store.glob("*.db"))
    assert v['bri_backup_verification{result="ok"}'] == 3
    assert v['bri_backup_verification{result="failed"}'] == 0
    newest = max(meta["backup_time"] for meta in backups(store).values())
    assert v["bri_backup_newest_timestamp_seconds"] == datetime.fromisoformat(newest).timestamp()
    assert 0 <= v["bri_backup_newest_age_seconds"] < 120
    assert v["bri_backup_healthy"] == 0  # fewer than 7 backups
    assert v['bri_backup_last_run_success{operation="create"}'] == 1
    st = os.stat(m.path / "ctl/metrics")
    assert st.st_mode & 0o777 == 0o444
    # Exact size in stat (retried: the age may gain a digit between the two).
    assert wait_until(lambda: os.stat(m.path / "ctl/metrics").st_size
                      == len((m.path / "ctl/metrics").read_bytes()), 5)
    assert sh(f"echo x > {m.path}/ctl/metrics", check=False).returncode != 0
    # A new backup shows at once.
    sh(f"echo three > {m.path}/ctl/create")
    v = parse_metrics((m.path / "ctl/metrics").read_text())
    assert v['bri_backups{kind="named"}'] == 3


def test_ctl_listing_has_the_new_files(mounted):
    names = os.listdir(mounted.path / "ctl")
    for f in ("schedule", "metrics", "progress"):
        assert f in names
    out = sh(f"ls -l {mounted.path}/ctl").stdout
    for f in ("schedule", "metrics", "progress"):
        assert re.search(rf"^-r--r--r-- .* {f}$", out, re.M), f


# --- progress -------------------------------------------------------------


def make_big(db, mb):
    """Adds about mb MB of random blobs to the live database, quickly."""
    sh(f"""sqlite3 {db} "create table big(b blob);
        with recursive c(x) as (select 1 union all select x + 1 from c where x < {mb * 4})
        insert into big select randomblob(262144) from c;
        pragma wal_checkpoint(truncate);" """, timeout=120)


def test_ctl_progress_during_large_create(live_db, mount, store):
    make_big(live_db, 300)
    assert live_db.stat().st_size > 250e6
    m = mount()
    prog = m.path / "ctl/progress"
    assert sh(f"cat {prog}").stdout.startswith("idle")
    writer = subprocess.Popen(["bash", "-c", f"echo big > {m.path}/ctl/create"],
                              stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = sh(f"cat {prog}").stdout
            k = keys(text)
            if k.get("operation") == "create" and int(k.get("bytes_done", 0)) > 0:
                seen.append(k)
            if writer.poll() is not None:
                break
            time.sleep(0.02)
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert seen, "ctl/progress never showed the create with bytes done"
    k = seen[-1]
    assert k["name"] == "big"
    assert k["started_by"] == "ctl/create"
    assert k["phase"] in ("copy", "checksum")
    assert 0 < int(k["bytes_done"]) <= int(k["bytes_total"])
    assert int(k["bytes_total"]) >= 250e6
    assert 0 < float(k["percent"]) <= 100
    assert float(k["elapsed_s"]) >= 0
    assert "remaining_s" in k
    # Back to idle (after the background verification of the new backup).
    assert wait_until(lambda: sh(f"cat {prog}").stdout.startswith("idle"), 60, 0.2)
    st = os.stat(prog)
    assert st.st_mode & 0o777 == 0o444
    idle = sh(f"cat {prog}").stdout
    assert keys(idle)["last_name"] == "big"
    assert keys(idle)["last_result"] == "ok"


def test_ctl_progress_during_restore_by_mv(live_db, cli, mount, store):
    make_big(live_db, 200)
    cli.run("create", "--name", "bigone")
    m = mount()
    assert wait_until(lambda: all_verified(m), 60, 0.2)
    prog = m.path / "ctl/progress"
    mover = subprocess.Popen(["mv", str(m.path / "bigone"), str(m.path / "restore/")],
                             stderr=subprocess.PIPE, text=True)
    phases = set()
    try:
        deadline = time.monotonic() + 60
        while mover.poll() is None and time.monotonic() < deadline:
            k = keys(sh(f"cat {prog}").stdout)
            if k.get("operation") == "restore":
                assert k["name"] == "bigone"
                assert k["started_by"] == "restore/"
                phases.add(k["phase"])
            time.sleep(0.02)
        assert mover.wait(timeout=120) == 0, mover.stderr.read()
    finally:
        if mover.poll() is None:
            mover.kill()
            mover.wait()
    # verify (checksum), the safety backup (copy, checksum), the restore itself
    assert phases, "ctl/progress never showed the restore"
    assert phases <= {"starting", "checksum", "copy", "restore"}
    assert (m.path / "restore/bigone.report").exists()


def test_ctl_progress_idle_shows_last_operation(cli, mount, store):
    cli.run("create", "--name", "small")
    m = mount()
    assert wait_until(lambda: all_verified(m), 60, 0.2)
    sh(f"echo small > {m.path}/ctl/verify")
    text = sh(f"cat {m.path}/ctl/progress").stdout
    assert text.splitlines()[0] == "idle"
    k = keys(text)
    assert k["last_operation"] == "verify"
    assert k["last_name"] == "small"
    assert k["last_started_by"] == "ctl/verify"
    assert k["last_result"] == "ok"
    assert os.stat(m.path / "ctl/progress").st_size == len(text.encode())


# --- the background verifier and health -------------------------------------


def test_failed_verification_warns_in_health(cli, mount, store):
    cli.run("create", "--name", "good")
    cli.run("create", "--name", "bad")
    m = mount("min_backups=1")
    assert wait_until(lambda: all_verified(m), 60, 0.2)
    assert sh(f"cat {m.path}/ctl/health").stdout == "ok\n"
    corrupt(store / "bad.db")
    p = sh(f"echo bad > {m.path}/ctl/verify", check=False)
    assert p.returncode != 0
    health = sh(f"cat {m.path}/ctl/health").stdout
    lines = [line for line in health.splitlines() if line.startswith("warning:")]
    assert any("bad" in line and "verification" in line for line in lines), health
    assert not any("good" in line for line in lines)
    v = parse_metrics((m.path / "ctl/metrics").read_text())
    assert v['bri_backup_verification{result="failed"}'] == 1
    assert v["bri_backup_healthy"] == 0
    k = keys((m.path / "ctl/progress").read_text())
    assert k["last_result"].startswith("failed: ")


def test_scrub_failed_verification_warns_in_health(cli, mount, store):
    cli.run("create", "--name", "good")
    cli.run("create", "--name", "rotted")
    m = mount("min_backups=1", "scrub_interval=2s")
    assert wait_until(lambda: all_verified(m), 60, 0.2)
    assert (m.path / "rotted/verify").read_text().startswith("ok")
    corrupt(store / "rotted.db")  # bit rot after the first verification
    assert wait_until(lambda: "rotted" in (m.path / "ctl/health").read_text(), 90, 0.2)
    health = (m.path / "ctl/health").read_text()
    assert re.search(r"^warning: .*rotted.*verification", health, re.M), health
    assert (m.path / "rotted/verify").read_text().startswith("failed: ")
    assert (m.path / "good/verify").read_text().startswith("ok")


def _threads(pid):
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out.setdefault((task / "comm").read_text().strip(), []).append(int(task.name))
        except OSError:
            continue
    return out


def test_background_verifier_runs_at_idle_io_priority(cli, mount, store):
    cli.run("create", "--name", "bg")
    m = mount("scrub_interval=2s", "schedule=every=1h")
    # The threads name themselves once they run, which may be after the mount.
    assert wait_until(lambda: {"bri-verify", "bri-schedule"} <= _threads(m.proc.pid).keys(), 30)

    def verifiers_idle():
        # The verifier's own threads (a verify's hash, a page store's warming)
        # take its name and its I/O priority while they last.
        tids = _threads(m.proc.pid).get("bri-verify", [])
        return bool(tids) and all(
            sh(f"ionice -p {t}", check=False).stdout.strip() == "idle" for t in tids)

    assert wait_until(verifiers_idle, 30)
    # Only that thread: requests are served at normal priority.
    assert sh(f"ionice -p {m.proc.pid}").stdout.strip() != "idle"
    # And it still verifies and scrubs.
    assert wait_until(lambda: (m.path / "bg/verify").read_text().startswith("ok"), 60, 0.2)
    first = (m.path / "bg/verify").read_text()
    assert wait_until(lambda: (m.path / "bg/verify").read_text() != first, 90, 0.2)


def test_schedule_from_an_fstab_line(live_db, store, tmp_path, cli):
    """schedule= passes through mount(8) and mount.fuse3 like any option."""
    if os.geteuid() != 0:
        pytest.skip("mount -T needs root")
    cli.run("create")  # a run a moment ago: the daily one is not due
    mnt = tmp_path / "mnt-fstab"
    mnt.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{BRI_BACKUPFS}#{live_db} {mnt} fuse "
                     f"backup_dir={store},schedule=daily@03:30,noauto,nofail 0 0\n")
    try:
        sh(f"mount -T {fstab} {mnt}")
        sched = keys((mnt / "ctl/schedule").read_text())
        assert sched["schedule"] == "daily at 03:30"
        assert sched["next_run"].endswith("T03:30:00")
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], timeout=T, capture_output=True)
        if subprocess.run(["mountpoint", "-q", str(mnt)]).returncode == 0:
            subprocess.run(["fusermount3", "-uz", str(mnt)], timeout=T)


def test_unmount_is_prompt_with_a_schedule(mount, store):
    m = mount("schedule=every=1h")
    assert wait_until(lambda: len(auto_backups(store)) == 1, 20)
    t0 = time.monotonic()
    m.stop()
    assert m.proc.returncode == 0
    assert time.monotonic() - t0 < 5  # the sleeping scheduler wakes at once
