"""Rehearsal status and scheduled rehearsals (issue 14): each rehearsal's
outcome is kept in the store (the backup's rehearsal sidecar, never its
.meta), so it survives remounts and comes from whoever rehearsed; `list`
(text and --json), `health --rehearse-age`, `metrics` and the mount's
NAME/rehearsal file show it, the file only when the mount is configured for
rehearsals (-o rehearse= or -o checks=). `-o rehearse=daily|weekly|monthly|
every=N` rehearses the newest good backup when due, judged by the store's
newest rehearsal (times given by the test through $BRI_TEST_NOW, never by
waiting), and runs the hooks."""

import json
import os
import re
import time

import pytest

from conftest import Mount, both_formats, sh, wait_until
from test_alerts import calls, make_hook

DAY = 86400


def checks(tmp_path, good=True):
    f = tmp_path / ("good.sql" if good else "bad.sql")
    f.write_text("SELECT count(*) > 0 FROM videos; -- expect 1\n"
                 + ("" if good else "SELECT count(*) FROM videos; -- expect -1\n"))
    return f


def listed(cli):
    return {b["name"]: b for b in json.loads(cli.run("--json", "list").stdout)}


def no_bri_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("BRI_")}


@both_formats
def test_rehearsal_status_in_the_store(cli, store, tmp_path):
    t = int(time.time())
    cli.run("create", "--name", "old", now=t - 3 * DAY)
    cli.run("create", "--name", "new", now=t - 2 * DAY)
    metas = {f: (store / f).read_bytes() for f in os.listdir(store) if f.endswith(".meta")}
    assert cli.run("health", "--warn-count", "1", "--warn-age", "3d").stdout == "ok\n"
    p = cli.run("health", "--warn-count", "1", "--warn-age", "3d", "--rehearse-age", "1d",
                check=False)
    assert p.returncode == 1 and p.stdout == (
        "warning: no restore rehearsal has run (one is expected every 24 hours)\n")

    p = cli.run("rehearse", "old", "--checks", str(checks(tmp_path, good=False)),
                now=t - 2 * DAY, check=False)
    assert p.returncode == 1
    p = cli.run("health", "--warn-count", "1", "--warn-age", "3d", "--rehearse-age", "1d",
                check=False)
    assert p.returncode == 1 and p.stdout.startswith(
        "critical: the last restore rehearsal (old) failed: 1 of 2 checks failed"), p.stdout
    j = json.loads(cli.run("--json", "health", "--rehearse-age", "1d", check=False).stdout)
    assert j["status"] == "critical" and j["rehearsal"]["name"] == "old"
    assert j["rehearsal"]["result"] == "failed"

    cli.run("rehearse", "new", "--checks", str(checks(tmp_path)), now=t - 30 * 3600)
    p = cli.run("health", "--warn-count", "1", "--warn-age", "3d", "--rehearse-age", "1d",
                check=False)
    assert p.returncode == 1 and p.stdout == (
        "warning: the last restore rehearsal (new) is 30.0 hours old (more than 24)\n"), p.stdout
    assert cli.run("health", "--warn-count", "1", "--warn-age", "3d",
                   "--rehearse-age", "2d").stdout == "ok\n"
    p = cli.run("health", "--nagios", "--warn-count", "1", "--warn-age", "3d",
                "--rehearse-age", "1d", check=False)
    assert p.returncode == 1 and p.stdout.startswith(
        "BRI-BACKUP WARNING - the last restore rehearsal (new) is 30.0 hours old"), p.stdout
    assert re.search(r" good=2 rehearsal_age=108\d\d\ds;86400\n$", p.stdout), p.stdout

    got = listed(cli)
    assert got["new"]["rehearsal"]["result"] == "ok" and got["new"]["rehearsal"]["checks"] == 1
    assert got["new"]["rehearsal"]["reason"] is None
    assert got["old"]["rehearsal"]["result"] == "failed"
    assert got["old"]["rehearsal"]["checks"] == 2
    assert got["old"]["rehearsal"]["checks_failed"] == 1
    assert got["old"]["rehearsal"]["reason"] == "1 of 2 checks failed"
    text = cli.run("list").stdout
    new_line = next(x for x in text.splitlines() if x.startswith("new "))
    old_line = next(x for x in text.splitlines() if x.startswith("old "))
    assert "[rehearsal ok " in new_line and "(restore " in new_line and ", 1 check)]" in new_line
    assert "[rehearsal failed: 1 of 2 checks failed (" in old_line

    m = cli.run("metrics").stdout
    assert f"bri_backup_rehearsal_timestamp_seconds {t - 30 * 3600}\n" in m
    assert "bri_backup_rehearsal_success 1\n" in m
    assert 'bri_backup_rehearsal_checks{result="ok"} 1\n' in m
    assert 'bri_backup_last_run_success{operation="rehearse"} 1\n' in m

    # the metas never change; the status goes with its backup
    assert {f: (store / f).read_bytes() for f in metas} == metas
    cli.run("delete", "new")
    assert not [f for f in os.listdir(store) if f.startswith("new")]
    assert [f for f in os.listdir(store) if f.startswith("old") and "rehearsal" in f]


def backup_folder(m, name):
    return sorted(os.listdir(m / name))


def test_rehearsal_file_only_when_configured(cli, live_db, store, tmp_path):
    cli.run("create", "--name", "one")
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        # the default view is SPEC 4.1's: exactly bri.db, meta.json, verify
        assert backup_folder(m, "one") == ["bri.db", "meta.json", "verify"]
        assert not os.path.exists(m / "one" / "rehearsal")
        assert "rehearse: none" in (m / "ctl" / "schedule").read_text()
    finally:
        m.stop()

    good = checks(tmp_path)
    m = Mount(live_db, store, tmp_path / "mnt", options=[f"checks={good}"]).start()
    try:
        assert backup_folder(m, "one") == ["bri.db", "meta.json", "rehearsal", "verify"]
        assert (m / "one" / "rehearsal").read_text() == "never\n"
        assert os.stat(m / "one" / "rehearsal").st_size == len("never\n")
        sh(f"echo latest > {m.path}/ctl/rehearse")
        text = (m / "one" / "rehearsal").read_text()  # at once
        assert text.startswith("ok ") and text.endswith(", 1 check)\n"), text
        assert os.stat(m / "one" / "rehearsal").st_size == len(text)
    finally:
        m.stop()

    # kept in the store: another mount, and the CLI, see it
    m = Mount(live_db, store, tmp_path / "mnt", options=[f"checks={good}"]).start()
    try:
        assert (m / "one" / "rehearsal").read_text() == text
        cli.run("rehearse", "one", "--checks", str(checks(tmp_path, good=False)), check=False)
        assert wait_until(lambda: (m / "one" / "rehearsal").read_text().startswith(
            "failed: 1 of 2 checks failed ("), 10)
        assert "critical: the last restore rehearsal (one) failed" in (
            m / "ctl" / "health").read_text()
        assert "bri_backup_rehearsal_success 0\n" in (m / "ctl" / "metrics").read_text()
    finally:
        m.stop()
    assert listed(cli)["one"]["rehearsal"]["result"] == "failed"


@both_formats
def test_scheduled_rehearsal_runs_when_due(cli, live_db, store, tmp_path, pause_points):
    cli.run("create", "--name", "first")
    cli.run("create", "--name", "newest")
    ok, ok_out = make_hook(tmp_path, "ok_hook")
    bad, bad_out = make_hook(tmp_path, "bad_hook")
    m = Mount(live_db, store, tmp_path / "mnt",
              options=["rehearse=daily", f"checks={checks(tmp_path)}", "min_backups=1",
                       f"on_success={ok}", f"on_failure={bad}"],
              env=pause_points.env(no_bri_env()))
    pause_points.arm("rehearse-waits")
    m.start()
    try:
        # never rehearsed: due at once, the newest good backup
        assert wait_until(lambda: (m / "newest" / "rehearsal").read_text().startswith("ok "),
                          60)
        assert (m / "first" / "rehearsal").read_text() == "never\n"
        assert wait_until(lambda: ["rehearse", "newest", "ok", ""] in [
            [c["env"][k] for k in ("BRI_OPERATION", "BRI_NAME", "BRI_RESULT", "BRI_REASON")]
            for c in calls(ok_out)], 20)
        assert not [c for c in calls(bad_out) if c["env"]["BRI_OPERATION"] == "rehearse"]
        pause_points.wait_reached("rehearse-waits")  # then nothing more is due
        pause_points.release("rehearse-waits")
        sched = (m / "ctl" / "schedule").read_text()
        assert "rehearse: daily at 02:00\n" in sched
        assert "rehearse_last: newest: ok " in sched
        assert int(sched.split("rehearse_next_in_s: ")[1].split()[0]) > 0
        assert "rehearsal" not in (m / "ctl" / "health").read_text()
        # the rehearsals' thread works at idle I/O priority, as the verifier's
        from test_mount_operations import _threads
        for tid in _threads(m.proc.pid)["bri-rehearse"]:
            assert sh(f"ionice -p {tid}").stdout.strip() == "idle"
    finally:
        pause_points.release("rehearse-waits")
        m.stop()


def test_scheduled_rehearsal_failure_reaches_hook_and_health(cli, live_db, store, tmp_path):
    cli.run("create", "--name", "one")
    bad, bad_out = make_hook(tmp_path, "bad_hook")
    m = Mount(live_db, store, tmp_path / "mnt",
              options=["rehearse=weekly", f"checks={checks(tmp_path, good=False)}",
                       "min_backups=1", f"on_failure={bad}"], env=no_bri_env()).start()
    try:
        assert wait_until(lambda: any(c["env"]["BRI_OPERATION"] == "rehearse"
                                      for c in calls(bad_out)), 60)
        (c,) = [c["env"] for c in calls(bad_out) if c["env"]["BRI_OPERATION"] == "rehearse"]
        assert c == {"BRI_OPERATION": "rehearse", "BRI_NAME": "one", "BRI_RESULT": "failed",
                     "BRI_REASON": "1 of 2 checks failed"}
        assert (m / "one" / "rehearsal").read_text().startswith("failed: 1 of 2 checks failed")
        health = (m / "ctl" / "health").read_text()
        assert health.startswith("critical: the last restore rehearsal (one) failed"), health
        metrics = (m / "ctl" / "metrics").read_text()
        assert "bri_backup_rehearsal_success 0\n" in metrics
        assert 'bri_backup_health{level="critical"} 1\n' in metrics
    finally:
        m.stop()


def test_schedule_goes_by_the_stores_newest_rehearsal(cli, live_db, store, tmp_path,
                                                      pause_points):
    t = int(time.time())
    good = checks(tmp_path)
    cli.run("create", "--name", "one")
    # rehearsed an hour ago (by the CLI): with every=1d, nothing is due
    cli.run("rehearse", "one", "--checks", str(good), now=t - 3600)
    opts = ["rehearse=every=1d", f"checks={good}", "min_backups=1"]
    m = Mount(live_db, store, tmp_path / "mnt", options=opts, env=pause_points.env())
    pause_points.arm("rehearse-waits")
    m.start()
    try:
        pause_points.wait_reached("rehearse-waits")
        pause_points.release("rehearse-waits")
        assert listed(cli)["one"]["rehearsal"]["time"] == time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(t - 3600))
        sched = (m / "ctl" / "schedule").read_text()
        left = int(sched.split("rehearse_next_in_s: ")[1].split()[0])
        assert DAY - 3600 - 600 < left <= DAY - 3600, sched
        assert "rehearsal" not in (m / "ctl" / "health").read_text()
    finally:
        pause_points.release("rehearse-waits")
        m.stop()

    # three days old: stale for health (two periods), and due at once
    cli.run("rehearse", "one", "--checks", str(good), now=t - 3 * DAY)
    m = Mount(live_db, store, tmp_path / "mnt", options=opts, env=pause_points.env())
    pause_points.arm("rehearse-starts")
    m.start()
    try:
        pause_points.wait_reached("rehearse-starts")
        health = (m / "ctl" / "health").read_text()
        assert "warning: the last restore rehearsal (one) is 72.0 hours old (more than 48)" \
            in health, health
        pause_points.release("rehearse-starts")
        assert wait_until(lambda: "rehearsal" not in (m / "ctl" / "health").read_text(), 60)
        when = listed(cli)["one"]["rehearsal"]["time"]
        assert when >= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t - 5)), when
    finally:
        pause_points.release("rehearse-starts")
        m.stop()


def test_rehearse_option_refused_when_malformed(live_db, store, tmp_path):
    p = sh(f"{Mount(live_db, store, tmp_path).program} -f -o rehearse=fortnightly "
           f"{live_db} {tmp_path / 'mnt'}", check=False)
    assert p.returncode == 2 and "rehearse" in p.stderr


def hook_calls(out, operation):
    return [(c["env"]["BRI_NAME"], c["env"]["BRI_RESULT"]) for c in calls(out)
            if c["env"]["BRI_OPERATION"] == operation]


def test_mount_hooks_for_every_way_in(cli, live_db, store, tmp_path):
    """mv into restore/, ctl/restore, an automatic ctl/create and ctl/verify
    latest run the hooks, with the backup's own name (the background
    verifier only its failures: test_alerts.py)."""
    cli.run("create", "--name", "one")
    ok, ok_out = make_hook(tmp_path, "ok_hook")
    bad, bad_out = make_hook(tmp_path, "bad_hook")
    m = Mount(live_db, store, tmp_path / "mnt",
              options=[f"on_success={ok}", f"on_failure={bad}"], env=no_bri_env()).start()
    try:
        # the background verifier verifies "one" by itself (no hook for a good verdict)
        assert wait_until(lambda: (m.path / "one" / "verify").read_text().startswith("ok"), 60)
        sh(f"mv {m.path}/one {m.path}/restore/")
        assert wait_until(lambda: hook_calls(ok_out, "restore") == [("one", "ok")], 20)
        sh(f"echo > {m.path}/ctl/create")
        auto = [n for n in os.listdir(store)
                if n.endswith(".db") and n.startswith("bri_backup_")]
        assert len(auto) == 1
        assert wait_until(lambda: hook_calls(ok_out, "create") == [(auto[0][:-3], "ok")], 20)
        sh(f"echo latest > {m.path}/ctl/verify")
        assert wait_until(lambda: (auto[0][:-3], "ok") in hook_calls(ok_out, "verify"), 20)
        assert ("latest", "ok") not in hook_calls(ok_out, "verify")
        sh(f"echo one > {m.path}/ctl/restore")
        assert wait_until(lambda: hook_calls(ok_out, "restore") == [("one", "ok")] * 2, 20)
        assert hook_calls(bad_out, "restore") == []
        sh(f"echo > {m.path}/ctl/cleanup")
        assert wait_until(lambda: hook_calls(ok_out, "cleanup") == [("", "ok")], 20)

        from test_cli import corrupt
        corrupt(store / "one.db")
        assert sh(f"mv {m.path}/one {m.path}/restore/", check=False).returncode != 0
        assert wait_until(lambda: hook_calls(bad_out, "restore") == [("one", "failed")], 20)
        c = [c["env"] for c in calls(bad_out) if c["env"]["BRI_OPERATION"] == "restore"][0]
        assert "verification failed" in c["BRI_REASON"]
    finally:
        m.stop()


@pytest.mark.parametrize("spec", ["weekly", "monthly", "every=7d", "daily@03:30"])
def test_rehearse_schedules_accepted(live_db, store, tmp_path, spec):
    m = Mount(live_db, store, tmp_path / "mnt", options=[f"rehearse={spec}"]).start()
    try:
        sched = (m / "ctl" / "schedule").read_text()
        assert "rehearse: none" not in sched and "rehearse_last: never" in sched
    finally:
        m.stop()
