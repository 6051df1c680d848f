"""The mount's offsite copy (SPEC.md section 6, -o offsite=): a background
push after every create against a real Ceph RGW (tests/integration/rgw.py),
the `offsite` file of each backup folder going pending -> uploaded, the
local create never waiting for or failing because of the remote (RGW
stopped mid-way), nothing half-uploaded ever listed as a backup, and the
lag in ctl/metrics and ctl/health, the same bytes as `bri-backup health`,
`metrics`, `report --html -` and the Python module's health() and metrics()
(one core renders them). Real mounts, always unmounted."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BRI_BACKUP, Mount, both_formats, python_env, wait_until


def remote_names(rgw, remote):
    p = subprocess.run([str(BRI_BACKUP), "--json", "offsite", "list", "--remote", remote],
                       env=rgw.env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return [b["name"] for b in json.loads(p.stdout)]


def folders(mnt):
    return {p.name for p in Path(mnt.path).iterdir()
            if not p.is_symlink() and (p / "meta.json").exists()}


def offsite_text(mnt, name):
    return (Path(mnt.path) / name / "offsite").read_text()


@pytest.fixture
def remote(rgw, bucket):
    s3 = rgw.client()
    assert s3.request("PUT", bucket).status == 200
    return f"s3://{bucket}/mnt"


def mount_offsite(live_db, store, tmp_path, rgw, remote, *extra):
    m = Mount(live_db, store, tmp_path / "mnt",
              options=[f"offsite={remote}", f"endpoint={rgw.endpoint}",
                       "offsite_retry_max=1", *extra],
              env=rgw.env(BRI_S3_TRIES="1"))
    return m.start()


def test_without_offsite_there_is_no_offsite_file(mounted):
    (mounted / "ctl" / "create").write_text("one\n")
    name = "one"
    assert folders(mounted) == {"one"}
    assert sorted(os.listdir(mounted / name)) == ["bri.db", "meta.json", "verify"]
    assert not (mounted / name / "offsite").exists()


@both_formats
def test_a_create_is_pushed_and_its_offsite_file_says_uploaded(cli, live_db, store, tmp_path, rgw,
                                                              remote, store_format):
    m = mount_offsite(live_db, store, tmp_path, rgw, remote)
    try:
        (m / "ctl" / "create").write_text("one\n")
        name = "one"
        assert sorted(os.listdir(m / name)) == ["bri.db", "meta.json", "offsite", "verify"]
        first = offsite_text(m, name)
        assert first == "pending\n" or first.startswith("uploaded ")
        assert wait_until(lambda: offsite_text(m, name).startswith("uploaded "), timeout=60), \
            offsite_text(m, name)
        assert remote_names(rgw, remote) == [name]
        metrics = (m / "ctl" / "metrics").read_text()
        assert "bri_offsite_pending_backups 0" in metrics
        assert "bri_offsite_lag_seconds 0" in metrics
    finally:
        m.stop()


def test_rgw_down_never_fails_a_create_and_the_remote_catches_up(live_db, store, tmp_path, rgw,
                                                                 remote):
    m = mount_offsite(live_db, store, tmp_path, rgw, remote, "offsite_lag_warn=1")
    try:
        (m / "ctl" / "create").write_text("first\n")
        first = "first"
        assert wait_until(lambda: offsite_text(m, first).startswith("uploaded "), timeout=60)
        rgw.stop_rgw()
        try:
            (m / "ctl" / "create").write_text("second\n")  # returns: the backup is made
            second = "second"
            assert (m / second / "bri.db").exists()
            assert wait_until(lambda: offsite_text(m, second).startswith("failed: "),
                              timeout=60), offsite_text(m, second)
            assert wait_until(lambda: "lags" in (m / "ctl" / "health").read_text(), timeout=30)
            assert "bri_offsite_pending_backups 1" in (m / "ctl" / "metrics").read_text()
        finally:
            rgw.start_rgw()
        # Nothing half-uploaded is listed; then the retry brings the remote up to date.
        assert wait_until(lambda: offsite_text(m, second).startswith("uploaded "), timeout=90), \
            offsite_text(m, second)
        assert sorted(remote_names(rgw, remote)) == sorted([first, second])
        assert "bri_offsite_pending_backups 0" in (m / "ctl" / "metrics").read_text()
    finally:
        m.stop()


def test_a_backup_held_before_its_meta_is_never_listed(live_db, store, tmp_path, rgw, remote,
                                                       pause_points):
    m = Mount(live_db, store, tmp_path / "mnt",
              options=[f"offsite={remote}", f"endpoint={rgw.endpoint}", "offsite_retry_max=1"],
              env=pause_points.env(rgw.env()))
    pause_points.arm("offsite-before-meta")
    m.start()
    try:
        (m / "ctl" / "create").write_text("one\n")
        name = "one"
        pause_points.wait_reached("offsite-before-meta")
        assert offsite_text(m, name) == "pending\n"
        assert remote_names(rgw, remote) == []  # its .db is up there, its .meta is not
        pause_points.release("offsite-before-meta")
        assert wait_until(lambda: offsite_text(m, name).startswith("uploaded "), timeout=60)
        assert remote_names(rgw, remote) == [name]
    finally:
        pause_points.release("offsite-before-meta")
        m.stop()


def test_the_daemon_never_shows_the_secret(live_db, store, tmp_path, rgw, remote):
    """Credentials from a profile file: not in the daemon's argv, its log
    (debug level), any ctl/ file, the offsite files, the store or the audit
    log, neither when pushes fail (a wrong secret) nor when they work."""
    from rgw import ACCESS_KEY, SECRET_KEY
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    creds = home / ".aws" / "credentials"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(home), AWS_PROFILE="bri", BRI_S3_TRIES="1")
    log = tmp_path / "daemon.log"
    for secret, want in ((SECRET_KEY + "wrong", "failed: "), (SECRET_KEY, "uploaded ")):
        creds.write_text(f"[bri]\naws_access_key_id = {ACCESS_KEY}\n"
                         f"aws_secret_access_key = {secret}\n")
        m = Mount(live_db, store, tmp_path / "mnt",
                  options=[f"offsite={remote}", f"endpoint={rgw.endpoint}",
                           "offsite_retry_max=1", f"log={log}", "log_level=debug"], env=env)
        m.start()
        try:
            name = f"b{len(want)}"
            (m / "ctl" / "create").write_text(name + "\n")
            assert wait_until(lambda: offsite_text(m, name).startswith(want), timeout=60), \
                offsite_text(m, name)
            assert SECRET_KEY.encode() not in Path(f"/proc/{m.proc.pid}/cmdline").read_bytes()
            seen = "".join((m / "ctl" / f).read_text() for f in os.listdir(m / "ctl")
                           if os.access(m / "ctl" / f, os.R_OK)
                           and (m / "ctl" / f).is_file() and f not in ("create",))
            seen += "".join(offsite_text(m, n) for n in folders(m))
            assert "SignatureDoesNotMatch" in seen or want == "uploaded "
            assert SECRET_KEY not in seen
        finally:
            m.stop()
    assert SECRET_KEY.encode() not in log.read_bytes()
    assert b"offsite" in log.read_bytes()
    for p in store.rglob("*"):
        if p.is_file():
            assert SECRET_KEY.encode() not in p.read_bytes(), p


def test_unmounting_aborts_an_upload_in_progress(tmp_path, rgw, remote):
    """A push of a large backup (slowed to 512 KiB/s) does not hold up the
    unmount: the transfer is aborted, the backup stays not uploaded."""
    import time
    from conftest import Cli, make_sample_db
    db = make_sample_db(tmp_path / "big" / "bri.db", rows=50000)
    store = tmp_path / "big" / "backups"
    Cli(db, store).run("create", "--name", "big")
    m = Mount(db, store, tmp_path / "mnt",
              options=[f"offsite={remote}", f"endpoint={rgw.endpoint}"],
              env=rgw.env(BRI_S3_MAX_SEND_KBPS="512", BRI_S3_PART_MB="8"))
    m.start()
    try:
        bucket = remote[5:].split("/")[0]
        s3 = rgw.client()
        assert wait_until(lambda: b"<UploadId>" in s3.request(
            "GET", bucket, query={"uploads": "", "prefix": "mnt/"}).body, timeout=60)
    finally:
        t0 = time.monotonic()
        m.stop()
    assert time.monotonic() - t0 < 10
    assert remote_names(rgw, remote) == []
    state = json.loads((store / "big.db.offsite").read_text())
    assert state["status"] == "failed"


def test_offsite_and_rehearsal_files_side_by_side(live_db, store, tmp_path, rgw, remote):
    checks = tmp_path / "checks.sql"
    checks.write_text("SELECT count(*) > 0 FROM videos; -- expect 1\n")
    m = mount_offsite(live_db, store, tmp_path, rgw, remote, f"checks={checks}")
    try:
        (m / "ctl" / "create").write_text("one\n")
        assert sorted(os.listdir(m / "one")) == ["bri.db", "meta.json", "offsite", "rehearsal",
                                                 "verify"]
        assert wait_until(lambda: offsite_text(m, "one").startswith("uploaded "), timeout=60)
        assert (m / "one" / "rehearsal").read_text().startswith("never")
    finally:
        m.stop()


# ---- The three faces agree on the offsite copy (issue 13's promise, for issues 12 and 14) ----

HOUR = 3600


def pushed_then_lagging(cli, rgw, remote):
    """first pushed to remote, second made an hour later and not pushed,
    every backup verified (the mount's verifier then changes nothing): at
    t0 + 2 h the remote lags 1.9 hours. Returns t0 + 2 h."""
    t0 = int(time.time()) - 3 * HOUR
    cli.run("create", "--name", "first", now=t0)
    cli.run("offsite", "push", "--remote", remote, env=rgw.env(), now=t0 + 60)
    cli.run("create", "--name", "second", now=t0 + 360)
    cli.run("verify")
    return t0 + 2 * HOUR


def cli_face(cli, now, *args, env=None):
    return cli.run(*args, check=False, now=now, env=env)


def py_face(cli, now, method, **kwargs):
    """DatabaseBackup(...).method(**kwargs) in /usr/bin/python3 at time now."""
    code = ("import sys, bri_backup\n"
            f"t = bri_backup.DatabaseBackup({str(cli.db)!r}, {str(cli.store)!r}).{method}"
            f"(**{kwargs!r})\n"
            "sys.stdout.write(t)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=python_env(BRI_TEST_NOW=str(now)), timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


@both_formats
def test_the_mount_and_the_cli_warn_alike_of_the_lag(cli, live_db, store, tmp_path, rgw, remote,
                                                    pause_points, store_format):
    """The lag past -o offsite_lag_warn= / --offsite-lag-warn: ctl/health and
    `bri-backup health`, ctl/metrics and `bri-backup metrics`, ctl/report.html
    and `bri-backup report --html -` are the same bytes at the same time
    ($BRI_TEST_NOW); the CLI finds the remote in the store's push states."""
    now = pushed_then_lagging(cli, rgw, remote)
    lag = "lags 1.9 hours (more than 1.0): 1 backup(s) not uploaded\n"
    # Before any mount: the cron job's view, the remote read from the push states.
    p = cli_face(cli, now, "health", "--offsite-lag-warn", "1h")
    assert p.returncode == 1
    assert p.stdout.endswith(f"warning: the offsite copy {remote} {lag}"), p.stdout
    assert cli_face(cli, now, "health", "--offsite-lag-warn", "2h").stdout.count("offsite") == 0
    assert "offsite" not in cli_face(cli, now, "health", "--offsite", "none",
                                     "--offsite-lag-warn", "1h").stdout
    n = cli_face(cli, now, "health", "--nagios", "--warn-count", "1", "--offsite-lag-warn", "1h")
    assert n.returncode == 1 and n.stdout.startswith(
        f"BRI-BACKUP WARNING - the offsite copy {remote} lags 1.9 hours"), n.stdout
    assert f" offsite_lag={now - (now - 2 * HOUR + 360)}s;3600\n" in n.stdout
    j = json.loads(cli_face(cli, now, "--json", "health", "--offsite-lag-warn", "60m").stdout)
    assert j["status"] == "warning" and j["warnings"][-1].endswith(lag.strip())
    assert j["offsite"] == {"remote": remote, "lag_seconds": 2 * HOUR - 360,
                            "lag_warn_seconds": 3600, "pending": 1, "failed": 0,
                            "last_error": None, "refused": False}

    # The mount pushes second at start: held before its .meta, the remote still lags.
    pause_points.arm("offsite-before-meta")
    m = Mount(live_db, store, tmp_path / "mnt",
              options=[f"offsite={remote}", f"endpoint={rgw.endpoint}", "offsite_retry_max=1",
                       "offsite_lag_warn=3600"],
              env=pause_points.env(rgw.env(BRI_TEST_NOW=str(now))))
    m.start()
    try:
        pause_points.wait_reached("offsite-before-meta")
        assert offsite_text(m, "second") == "pending\n"
        args = ("--offsite-lag-warn", "1h")
        health = (m / "ctl" / "health").read_text()
        assert health.endswith(f"warning: the offsite copy {remote} {lag}"), health
        assert health == cli_face(cli, now, "health", *args).stdout
        assert health == py_face(cli, now, "health", offsite_lag_warn=3600)
        assert health == py_face(cli, now, "health", offsite_lag_warn="1h")  # the CLI's text
        metrics = (m / "ctl" / "metrics").read_text()
        assert "bri_offsite_pending_backups 1\n" in metrics
        assert f"bri_offsite_lag_seconds {2 * HOUR - 360}\n" in metrics
        assert "bri_backup_healthy 0\n" in metrics  # ctl/health warns: not healthy
        assert metrics == cli_face(cli, now, "metrics", *args).stdout
        assert metrics == py_face(cli, now, "metrics", offsite_lag_warn=3600)
        page = (m / "ctl" / "report.html").read_text()
        assert f"the offsite copy {remote} lags more than 1 h" in page
        assert page == cli_face(cli, now, "report", "--html", "-", *args).stdout
        # The explicit remote and $BRI_OFFSITE say the same as the inferred one.
        assert health == cli_face(cli, now, "health", "--offsite", remote + "/", *args).stdout
        assert health == cli_face(cli, now, "health", *args,
                                  env=dict(os.environ, BRI_OFFSITE=remote)).stdout
        pause_points.release("offsite-before-meta")
        assert wait_until(lambda: offsite_text(m, "second").startswith("uploaded "), timeout=60)
        # Caught up: no offsite line in either face, the gauges at 0.
        assert wait_until(lambda: "offsite" not in (m / "ctl" / "health").read_text())
        assert (m / "ctl" / "health").read_text() == cli_face(cli, now, "health", *args).stdout
        assert (m / "ctl" / "health").read_text() == py_face(cli, now, "health")
        metrics = (m / "ctl" / "metrics").read_text()
        assert "bri_offsite_lag_seconds 0\n" in metrics
        assert metrics == cli_face(cli, now, "metrics", *args).stdout
    finally:
        pause_points.release("offsite-before-meta")
        m.stop()


def test_with_the_remote_down_both_faces_give_the_last_error(cli, live_db, store, tmp_path, rgw,
                                                             remote):
    """RGW stopped: the mount's retries fail; its ctl/health and `bri-backup
    health` (which reads the failure the store recorded) give the same
    warning, last error included; ctl/metrics and `bri-backup metrics` count
    the failed backup alike."""
    now = pushed_then_lagging(cli, rgw, remote)
    m = Mount(live_db, store, tmp_path / "mnt",
              options=[f"offsite={remote}", f"endpoint={rgw.endpoint}", "offsite_retry_max=1",
                       "offsite_lag_warn=1h"],
              env=rgw.env(BRI_S3_TRIES="1", BRI_TEST_NOW=str(now)))
    rgw.stop_rgw()
    try:
        m.start()
        try:
            assert wait_until(lambda: offsite_text(m, "second").startswith("failed: "),
                              timeout=60), offsite_text(m, "second")

            def faces_agree():
                mount = (m / "ctl" / "health").read_text()
                return "; last error: " in mount and mount == cli_face(
                    cli, now, "health", "--offsite-lag-warn", "1h").stdout

            assert wait_until(faces_agree, timeout=60), (m / "ctl" / "health").read_text()
            assert (m / "ctl" / "health").read_text() == py_face(cli, now, "health",
                                                                 offsite_lag_warn=3600)
            why = offsite_text(m, "second")[len("failed: "):].strip()
            assert (m / "ctl" / "health").read_text().endswith(f"; last error: {why}\n")
            assert wait_until(lambda: (m / "ctl" / "metrics").read_text() == cli_face(
                cli, now, "metrics", "--offsite-lag-warn", "1h").stdout, timeout=60)
            assert "bri_offsite_failed_backups 1\n" in (m / "ctl" / "metrics").read_text()
        finally:
            m.stop()
    finally:
        rgw.start_rgw()


def test_a_mount_without_offsite_watches_what_cron_pushes(cli, live_db, store, tmp_path, rgw,
                                                          remote):
    """The store pushed by `bri-backup offsite push` (cron), mounted without
    -o offsite=: ctl/health and ctl/metrics watch the remote the push states
    name, as `bri-backup health` and Python do; -o offsite_lag_warn= is its
    threshold. No offsite file appears (the mount pushes nothing)."""
    now = pushed_then_lagging(cli, rgw, remote)
    m = Mount(live_db, store, tmp_path / "mnt", options=["offsite_lag_warn=1h"],
              env=dict(os.environ, BRI_TEST_NOW=str(now)))
    m.start()
    try:
        health = (m / "ctl" / "health").read_text()
        assert health.endswith(f"warning: the offsite copy {remote} lags 1.9 hours (more than "
                               "1.0): 1 backup(s) not uploaded\n"), health
        assert health == cli_face(cli, now, "health", "--offsite-lag-warn", "1h").stdout
        assert health == py_face(cli, now, "health", offsite_lag_warn=3600)
        metrics = (m / "ctl" / "metrics").read_text()
        assert metrics == cli_face(cli, now, "metrics", "--offsite-lag-warn", "1h").stdout
        assert "bri_offsite_pending_backups 1\n" in metrics
        assert not (m / "second" / "offsite").exists()
    finally:
        m.stop()
    # The default threshold (26 h): no warning from either face.
    m = Mount(live_db, store, tmp_path / "mnt", env=dict(os.environ, BRI_TEST_NOW=str(now)))
    m.start()
    try:
        health = (m / "ctl" / "health").read_text()
        assert "offsite" not in health and health == cli_face(cli, now, "health").stdout
    finally:
        m.stop()
