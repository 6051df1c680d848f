"""Issue 10, defects 4, 5 and 6: ctl/ files take one request per write(2)
(sysfs), `latest` is a name wherever a backup name is (one target
resolution in the core, shared by the CLI and the mount), restore reports
live in the store, ctl/log shows bri-backup's operations, the root's mtime
never goes back, ctl/progress names the integrity phase, and a delete's
invalidations are sent before its write returns. Real mounts, real tools."""

import json
import os
import subprocess
import time
from pathlib import Path

from conftest import ROOT_FIXED, Mount, sh, wait_until


def names_in(m):
    return {n for n in os.listdir(m) if n not in ROOT_FIXED}


# ---- defect 4: each write(2) is one request, its result that write's ----

def test_printf_without_newline_fails_at_write_for_a_hostile_name(mounted, store):
    m = mounted.path
    before = set(os.listdir(store)) if store.exists() else set()
    for printf in ("printf %s", "/usr/bin/printf %s"):
        p = sh(f"{printf} 'x/../../y' > {m}/ctl/create", check=False)
        assert p.returncode != 0, (printf, p.stdout, p.stderr)
        assert "Invalid argument" in p.stderr, p.stderr
    p = sh(f"echo 'x/../../y' > {m}/ctl/create", check=False)
    assert p.returncode != 0 and "Invalid argument" in p.stderr, p.stderr
    after = set(os.listdir(store)) if store.exists() else set()
    assert {n for n in after - before if n not in ("audit.jsonl", ".lock")} == set()
    assert names_in(m) == set()


def test_a_good_name_without_newline_is_a_backup_when_printf_returns(mounted, store):
    m = mounted.path
    sh(f"printf %s no_newline > {m}/ctl/create")
    # Checked at once: the request ran before the write returned.
    assert (store / "no_newline.db").exists() and (store / "no_newline.db.meta").exists()
    assert "no_newline" in os.listdir(m)
    sh(f"echo with_newline > {m}/ctl/create")
    assert (store / "with_newline.db").exists()
    assert "with_newline" in os.listdir(m)
    # A failure is the write's too: the name exists now.
    p = sh(f"printf %s no_newline > {m}/ctl/create", check=False)
    assert p.returncode != 0 and "File exists" in p.stderr, p.stderr


def test_one_write_is_one_request_and_close_adds_nothing(mounted, store):
    m = mounted.path
    fd = os.open(m / "ctl/create", os.O_WRONLY)
    try:
        assert os.write(fd, b"in_one_write") == len(b"in_one_write")
        assert (store / "in_one_write.db").exists()  # before close
    finally:
        os.close(fd)
    assert names_in(m) == {"in_one_write"}


# ---- defect 5: latest is a name ----

def test_latest_is_a_name_in_the_mount(mounted, store, cli):
    m = mounted.path
    cli.run("create", "--name", "older")
    cli.run("create", "--name", "newest")
    assert wait_until(lambda: os.path.islink(m / "latest"))  # follows the CLI within 0.5 s
    assert os.readlink(m / "latest") == "newest"
    # echo latest > ctl/verify: verifies the newest.
    sh(f"echo latest > {m}/ctl/verify")
    assert (m / "newest/verify").read_text().startswith("ok")
    # echo latest > ctl/restore, and mv latest restore/.
    sh(f"echo latest > {m}/ctl/restore")
    assert "result: ok" in (m / "restore/newest.report").read_text()
    sh(f"mv {m}/latest {m}/restore/")
    assert "result: ok" in (m / "restore/newest.report").read_text()
    # latest is still there, and still the newest (safety backups are not latest).
    assert wait_until(lambda: os.path.islink(m / "latest"))
    assert os.readlink(m / "latest") == "newest"
    assert "backup: newest" in (m / "restore/newest.report").read_text()


def test_latest_is_a_name_for_bri_backup(cli, store):
    p = cli.run("verify", "latest", check=False)
    assert p.returncode == 1 and "no backup" in p.stderr, (p.stdout, p.stderr)
    cli.run("create", "--name", "first")
    cli.run("create", "--name", "second")
    p = cli.run("verify", "latest")
    assert p.stdout.startswith("latest: ok") or "second" in p.stdout or "ok" in p.stdout
    assert json.loads((store / "second.db.verify").read_text())["status"] == "ok"
    assert not (store / "first.db.verify").exists()
    p = cli.run("restore", "latest")
    assert "second" in p.stdout, p.stdout


def test_verify_accepts_a_copy_of_the_mount_as_restore_does(mounted, cli, store, tmp_path):
    m = mounted.path
    cli.run("create", "--name", "copied")
    assert wait_until(lambda: "copied" in names_in(m))
    dest = tmp_path / "offsite"
    sh(f"rsync -a --exclude ctl --exclude restore {m}/ {dest}/")
    copy = dest / "copied" / "bri.db"
    assert copy.exists() and (dest / "copied" / "meta.json").exists()
    p = cli.run("verify", str(copy), check=False)
    assert p.returncode == 0 and ": ok" in p.stdout, (p.stdout, p.stderr)
    p = cli.run("verify", str(dest / "copied"), check=False)  # the folder: its bri.db
    assert p.returncode == 0 and ": ok" in p.stdout, (p.stdout, p.stderr)
    # Damaged copy: failed, not "no metadata".
    with open(copy, "r+b") as f:
        f.seek(200)
        f.write(b"\xff" * 16)
    p = cli.run("verify", str(copy), check=False)
    assert p.returncode == 1 and "checksum mismatch" in p.stdout, (p.stdout, p.stderr)
    # restore takes the same paths (and refuses the damaged one the same way).
    p = cli.run("restore", str(copy), check=False)
    assert p.returncode == 1 and "checksum mismatch" in p.stderr, p.stderr


# ---- defect 6 ----

def test_restore_reports_survive_a_remount_and_include_bri_backup_restores(live_db, store, cli,
                                                                            tmp_path):
    cli.run("create", "--name", "by_mount")
    cli.run("create", "--name", "by_cli")
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        sh(f"mv {m.path}/by_mount {m.path}/restore/")
        assert "result: ok" in (m.path / "restore/by_mount.report").read_text()
    finally:
        m.stop()
    cli.run("restore", "by_cli")
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        listed = os.listdir(m.path / "restore")
        assert {"by_mount.report", "by_cli.report"} <= set(listed), listed
        text = (m.path / "restore/by_mount.report").read_text()
        assert "result: ok" in text and "backup: by_mount" in text
        assert "safety_backup: pre_restore_safety_" in text
        assert "backup: by_cli" in (m.path / "restore/by_cli.report").read_text()
    finally:
        m.stop()
    # Readable without this software: JSON lines in the store.
    lines = (store / "restore_reports.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["by_mount", "by_cli"]


def test_restore_lists_every_report_the_store_keeps(live_db, store, cli, tmp_path):
    """The store keeps the newest 256 reports (SPEC.md 4.1); restore/ lists
    them all, each readable, and a new restore takes the oldest's place."""
    cli.run("create", "--name", "real")
    # 300 earlier restores' reports, as the core writes them (JSON lines).
    with open(store / "restore_reports.jsonl", "w") as f:
        for i in range(300):
            f.write(json.dumps({"name": f"old{i:03}", "time": 1760000000 + i,
                                "text": f"backup: old{i:03}\nresult: ok\n"}) + "\n")
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        listed = os.listdir(m.path / "restore")
        assert sorted(listed) == [f"old{i:03}.report" for i in range(44, 300)]
        assert (m.path / "restore/old044.report").read_text() == "backup: old044\nresult: ok\n"
        assert (m.path / "restore/old299.report").read_text() == "backup: old299\nresult: ok\n"
        sh(f"mv {m.path}/real {m.path}/restore/")
        listed = os.listdir(m.path / "restore")
        assert len(listed) == 256 and "real.report" in listed and "old044.report" not in listed
        assert "result: ok" in (m.path / "restore/real.report").read_text()
    finally:
        m.stop()
    kept = [json.loads(line)["name"] + ".report"
            for line in (store / "restore_reports.jsonl").read_text().splitlines()]
    assert sorted(kept) == sorted(listed)


def test_ctl_log_shows_operations_of_bri_backup(mounted, cli):
    m = mounted.path
    cli.run("create", "--name", "made_by_cli")
    cli.run("delete", "made_by_cli")
    assert wait_until(lambda: "create made_by_cli: ok" in (m / "ctl/log").read_text()), \
        (m / "ctl/log").read_text()
    log = (m / "ctl/log").read_text()
    assert "delete made_by_cli: ok" in log and "by cli" in log, log


def test_ctl_log_starts_with_the_stores_recent_operations(live_db, store, cli, tmp_path):
    cli.run("create", "--name", "before_mount")
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        assert "create before_mount: ok" in (m.path / "ctl/log").read_text()
    finally:
        m.stop()


def root_mtime(m):
    return os.stat(m).st_mtime


def test_root_mtime_never_goes_back_on_delete_and_follows_safety_backups(mounted, cli, store):
    m = mounted.path
    cli.run("create", "--name", "old")
    # An old backup: its time is from its metadata.
    meta = json.loads((store / "old.db.meta").read_text())
    meta["backup_time"] = "2020-01-01T00:00:00"
    meta.pop("backup_time_utc", None)
    (store / "old.db.meta").write_text(json.dumps(meta))
    sh(f"echo new > {m}/ctl/create")
    assert wait_until(lambda: {"old", "new"} <= names_in(m))
    t1 = root_mtime(m)
    sh(f"echo new > {m}/ctl/delete")
    assert "new" not in names_in(m)
    t2 = root_mtime(m)
    assert t2 >= t1, (t1, t2)
    sh(f"mv {m}/old {m}/restore/")
    safety = [n for n in names_in(m) if n.startswith("pre_restore_safety_")]
    assert safety, names_in(m)
    safety_time = (store / f"{safety[0]}.db").stat().st_mtime
    assert wait_until(lambda: root_mtime(m) >= int(safety_time)), (root_mtime(m), safety_time)


def test_root_mtime_stays_when_only_a_backups_files_change(mounted, cli, store):
    """The root's mtime is the time of the last listing change (SPEC 4.1):
    a new verification result (a new file in the store folder, so a newer
    folder mtime and a rescan) changes no name, so not the root's mtime,
    else every `rsync -a` of the mount copies the root's time again (a
    rescan that took some backups over unchanged and re-read others saw a
    listing change: the count of what was left of the old catalog)."""
    m = mounted.path
    cli.run("create", "--name", "one", "--verify")
    cli.run("create", "--name", "two", "--verify")  # unchanged: taken over by the rescan
    assert wait_until(lambda: {"one", "two"} <= names_in(m))
    t1 = root_mtime(m)
    later = (store / ".").stat().st_mtime + 1.1
    assert wait_until(lambda: time.time() >= later, 5)  # a later second of the folder's mtime
    sh(f"echo one > {m}/ctl/verify")  # the daemon's own
    assert (store / ".").stat().st_mtime > t1 + 1
    assert root_mtime(m) == t1
    cli.run("verify", "two")  # another process's: seen at the rescan of the next look
    looked = time.monotonic() + 0.6  # the daemon looks at the store at most every 0.5 s
    assert wait_until(lambda: time.monotonic() >= looked, 5)
    assert root_mtime(m) == t1  # this stat's look rescans: one taken over, two re-read


def test_ctl_progress_names_the_integrity_phase(live_db, store, cli, tmp_path, pause_points,
                                                monkeypatch):
    cli.run("create", "--name", "checked")
    pause_points.arm("verify_database_check")
    monkeypatch.setenv("BRI_TEST_PAUSE_DIR", str(pause_points.dir))
    m = Mount(live_db, store, tmp_path / "mnt").start()  # the background verifier starts
    try:
        pause_points.wait_reached("verify_database_check")
        # The checksum finishes while the database check is held: the phase says so.
        assert wait_until(lambda: "phase: integrity_check" in
                          (m.path / "ctl/progress").read_text(), timeout=30), \
            (m.path / "ctl/progress").read_text()
        assert "operation: verify" in (m.path / "ctl/progress").read_text()
        pause_points.release("verify_database_check")
        assert wait_until(lambda: (m.path / "ctl/progress").read_text().startswith("idle"),
                          timeout=60)
    finally:
        pause_points.release("verify_database_check")
        m.stop()


def test_a_deleted_backup_is_gone_from_the_kernel_when_delete_returns(mounted):
    m = mounted.path
    for i in range(30):
        name = f"gone{i}"
        sh(f"echo {name} > {m}/ctl/create")
        os.stat(m / name)  # the kernel caches the entry (long entry timeout)
        os.stat(m / name / "bri.db")
        # delete in a child: its write returns only when the kernel forgot the name
        subprocess.run(["bash", "-c", f"echo {name} > {m}/ctl/delete"], check=True, timeout=60)
        assert not os.path.exists(m / name), f"{name} still visible right after delete (#{i})"


def test_delete_waits_for_its_invalidations_with_a_real_deadline(live_db, store, cli, tmp_path,
                                                                  pause_points, monkeypatch):
    """bfs_inval_wait's deadline is CLOCK_MONOTONIC: with the notify worker
    held, a delete waits for it (up to its 2 s deadline), not returning at
    once as it did when the condition variable ran on the realtime clock."""
    cli.run("create", "--name", "held")
    monkeypatch.setenv("BRI_TEST_PAUSE_DIR", str(pause_points.dir))
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        os.stat(m.path / "held")
        pause_points.arm("notify_send")
        started = time.monotonic()
        p = subprocess.Popen(["bash", "-c", f"echo held > {m.path}/ctl/delete"])
        pause_points.wait_reached("notify_send")
        assert p.wait(timeout=60) == 0
        took = time.monotonic() - started
        assert took >= 1.9, f"delete returned after {took:.3f} s, before its invalidations"
    finally:
        pause_points.release("notify_send")
        m.stop()
