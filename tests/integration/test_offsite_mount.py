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

from conftest import BRI_BACKUP, Mount, wait_until


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


def test_a_create_is_pushed_and_its_offsite_file_says_uploaded(live_db, store, tmp_path, rgw,
                                                              remote):
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
