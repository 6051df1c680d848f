"""The mount's offsite copy (SPEC.md section 6, -o offsite=): a background
push after every create against a real Ceph RGW (tests/integration/rgw.py),
the `offsite` file of each backup folder going pending -> uploaded, the
local create never waiting for or failing because of the remote (RGW
stopped mid-way), nothing half-uploaded ever listed as a backup, and the
lag in ctl/metrics and ctl/health. Real mounts, always unmounted."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import BRI_BACKUP, Mount, both_formats, wait_until


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
