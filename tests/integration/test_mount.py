"""Integration tests of the bri-backupfs mount (SPEC.md section 4), as root:
a real FUSE mount through /dev/fuse driven with the tools its users use (ls,
stat, cat, sha256sum, sqlite3, echo >, mv, rm, chmod, rsync, tar, find, df).
Every command runs with a time limit; the `mounted` fixture always
unmounts."""

import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import (INSPECTION_DIRS, ROOT_FIXED, BRI_BACKUPFS, COMMAND_LIMIT as T, Mount, is_mounted, sh, table_counts,
                      unmount, wait_past_second, wait_until)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def store_state(store):
    """Every file of the store except the audit log and lock, with its hash."""
    out = {}
    for p in sorted(Path(store).iterdir()):
        if p.name in ("audit.jsonl", "restore_reports.jsonl") or p.name.startswith(".") or \
                p.name.endswith(".verify"):
            continue
        out[p.name] = sha256(p)
    return out


def live_content(db):
    """The live database's rows, as a comparable value."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {t: con.execute(f'select * from "{t}" order by 1').fetchall()
                for t in ("videos", "memory", "video_context")}
    finally:
        con.close()


def all_verified(m):
    names = [p.name for p in m.path.iterdir() if p.name not in ROOT_FIXED]
    return all(not (m.path / n / "verify").read_text().startswith("unverified") for n in names)


@pytest.fixture
def two(cli, mounted):
    """The mount with two backups: 'first' and 'second' (newest)."""
    now = time.time()
    cli.run("create", "--name", "first", now=now - 60)  # distinct backup times
    cli.run("create", "--name", "second", now=now)
    assert wait_until(lambda: (mounted.path / "second").exists(), 5)
    return mounted


def test_ls(two):
    names = sh(f"ls {two.path}").stdout.split()
    assert names == sorted(["ctl", "first", "latest", "restore", "second", *INSPECTION_DIRS])
    assert sh(f"ls {two.path}/first").stdout.split() == ["bri.db", "meta.json", "verify"]
    assert sh(f"ls {two.path}/ctl").stdout.split() == sorted(
        ["cleanup", "create", "delete", "health", "log", "metrics", "pin", "progress", "rehearse",
         "report.html", "restore", "schedule", "stats.json", "unpin", "verify"])
    assert sh(f"ls {two.path}/restore").stdout.split() == []


def test_ls_l_modes(two):
    out = sh(f"ls -l {two.path}").stdout
    modes = {line.split()[-1]: line.split()[0] for line in out.splitlines()[1:]}
    assert modes["first"] == "drwx------"
    assert modes["ctl"] == "drwxr-xr-x"
    assert modes["restore"] == "drwxr-xr-x"
    assert modes["second"].startswith("drwx------")
    assert out.count("latest -> second") == 1
    out = sh(f"ls -l {two.path}/first {two.path}/ctl").stdout
    assert re.search(r"^-r-------- .* bri\.db$", out, re.M)
    assert re.search(r"^-r-------- .* meta\.json$", out, re.M)
    for f in ("create", "verify", "delete", "restore"):
        assert re.search(rf"^--w------- .* {f}$", out, re.M), f
    for f in ("stats.json", "health", "log"):
        assert re.search(rf"^-r--r--r-- .* {re.escape(f)}$", out, re.M), f
    st = os.stat(two.path / "first" / "bri.db")
    assert st.st_uid == os.getuid() and st.st_gid == os.getgid()


def test_stat_exact_sizes_blocks_and_stable_inodes(two, store):
    m = two.path
    assert wait_until(lambda: all_verified(two), 20)  # verify files stop changing
    files = ["first/bri.db", "first/meta.json", "first/verify", "ctl/stats.json", "ctl/health",
             "ctl/cleanup"]
    for f in files:
        # Generated content may change while we look (a background check
        # landing): take a stat and a read that agree with a second stat.
        for _ in range(20):
            st = os.stat(m / f)
            data = (m / f).read_bytes()
            if os.stat(m / f).st_size == st.st_size:
                break
            time.sleep(0.1)
        assert st.st_size == len(data), f
        assert st.st_blocks == (st.st_size + 511) // 512, f
    assert (m / "first/meta.json").read_bytes() == (store / "first.db.meta").read_bytes()
    assert os.stat(m / "first/bri.db").st_size == os.stat(store / "first.db").st_size
    # Times are the backup's time.
    meta = json.loads((m / "first/meta.json").read_text())
    assert int(os.stat(m / "first/bri.db").st_mtime) == int(os.stat(m / "first").st_mtime)
    assert time.strftime("%Y-%m-%dT%H:%M:%S",
                         time.localtime(os.stat(m / "first").st_mtime)) == meta["backup_time"]
    # stat(1) agrees.
    out = sh(f"stat -c '%s %b' {m}/first/verify").stdout.split()
    assert int(out[0]) == len((m / "first/verify").read_bytes()) and int(out[1]) >= 1
    inodes = {f: os.stat(m / f).st_ino for f in ["first", "second", *files]}
    assert len(set(inodes.values())) == len(inodes)
    sh(f"echo third > {m}/ctl/create")
    # A backup's files keep their numbers; a generated ctl/ file whose
    # content changed is a new inode (SPEC.md 4.1: one version per inode).
    for f, ino in inodes.items():
        if f.startswith("ctl/"):
            assert os.stat(m / f).st_ino != ino, f
        else:
            assert os.stat(m / f).st_ino == ino, f
    listed = {e.name: e.inode() for e in os.scandir(m)}
    assert listed["first"] == inodes["first"]


def test_cat_and_sha256_match_store_and_metadata(two, store):
    for name in ("first", "second"):
        out = sh(f"cat {two.path}/{name}/bri.db | sha256sum").stdout.split()[0]
        assert out == sha256(store / f"{name}.db")
        meta = json.loads((two.path / name / "meta.json").read_text())
        assert meta["checksum"] == out
        assert sh(f"sha256sum {two.path}/{name}/bri.db").stdout.split()[0] == out
        assert (two.path / name / "bri.db").read_bytes() == (store / f"{name}.db").read_bytes()


def test_sqlite3_shell_reads_backup_of_wal_database(two, live_db):
    assert sh(f"sqlite3 {live_db} 'pragma journal_mode'").stdout.strip() == "wal"
    out = sh(f"sqlite3 {two.path}/first/bri.db 'select count(*) from memory'").stdout
    assert int(out) == table_counts(live_db)["memory"]
    out = sh(f"sqlite3 -readonly {two.path}/second/bri.db 'pragma integrity_check'").stdout
    assert out.strip() == "ok"


def test_sqlite3_shell_reads_backup_of_rollback_database(tmp_path):
    from conftest import Cli, make_sample_db
    db = make_sample_db(tmp_path / "r" / "bri.db")
    sh(f"sqlite3 {db} 'pragma journal_mode=delete'")
    store = db.parent / "backups"
    Cli(db, store).run("create", "--name", "rb")
    m = Mount(db, store, tmp_path / "mnt2").start()
    try:
        out = sh(f"sqlite3 {m.path}/rb/bri.db 'select count(*) from videos'").stdout
        assert int(out) == 42
    finally:
        m.stop()


def test_ctl_create_good_empty_and_refused_names(mounted, store, live_db):
    m = mounted.path
    sh(f"echo before_update > {m}/ctl/create")
    # Durable and listed when echo returns.
    assert (store / "before_update.db").exists() and (m / "before_update").is_dir()
    assert json.loads((m / "before_update/meta.json").read_text())["tables"]["videos"] == 42
    sh(f"echo > {m}/ctl/create")
    auto = [n for n in os.listdir(m) if n.startswith("bri_backup_")]
    assert len(auto) == 1 and re.fullmatch(r"bri_backup_\d{8}_\d{6}", auto[0])
    before = store_state(store)
    refused = ["bad/name", "..", ".hidden", "-dash", "with space", "ctl", "latest", "restore",
               "x" * 129, "before_update", "tab\there"]
    for name in refused:
        p = sh(f"printf '%s\\n' '{name}' > {m}/ctl/create", check=False)
        assert p.returncode != 0, name
        assert "write error" in p.stderr, p.stderr
    # More than one line in one write: refused, nothing made.
    fd = os.open(m / "ctl/create", os.O_WRONLY)
    with pytest.raises(OSError) as e:
        os.write(fd, b"one\ntwo\n")
    assert e.value.errno == errno.EINVAL
    os.close(fd)
    # One request per open: a second line written later is refused.
    fd = os.open(m / "ctl/create", os.O_WRONLY)
    os.write(fd, b"first_line\n")
    with pytest.raises(OSError) as e:
        os.write(fd, b"second_line\n")
    os.close(fd)
    # Without a newline the write is the request too: /bin/echo sees its error.
    p = sh(f"/bin/echo -n 'bad/x' > {m}/ctl/create", check=False)
    assert p.returncode != 0 and "Invalid argument" in p.stderr
    added = set(store_state(store)) - set(before)
    assert added == {"first_line.db", "first_line.db.meta"}, added
    log = (m / "ctl/log").read_text()
    assert "'bad/name' refused" in log and "'/'" in log, log
    assert "'before_update' failed" in log and "exist" in log, log
    assert "'tab?here' refused" in log  # control characters never reach the log raw


def test_ctl_create_errno(mounted):
    m = mounted.path
    fd = os.open(m / "ctl/create", os.O_WRONLY | os.O_TRUNC)
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"bad/name\n")
        assert e.value.errno == 22
    finally:
        os.close(fd)
    os.close(os.open(m / "ctl/create", os.O_WRONLY))  # nothing written: nothing done
    assert [n for n in os.listdir(m) if n.startswith("bri_")] == []
    fd = os.open(m / "ctl/create", os.O_WRONLY)
    os.write(fd, b"dup")
    os.close(fd)
    fd = os.open(m / "ctl/create", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"dup")
        assert e.value.errno == 17  # EEXIST from the write itself (sysfs)
    finally:
        os.close(fd)  # close adds nothing
    with pytest.raises(OSError) as e:
        with open(m / "ctl/create", "wb") as f:
            f.write(b"y" * 5000)
    assert e.value.errno in (27, 22)  # EFBIG


def test_writes_inside_view_refused_and_nothing_changed(two, store):
    m = two.path
    before = store_state(store)
    cmds = [
        f"echo x > {m}/first/bri.db",
        f"echo x >> {m}/first/meta.json",
        f"truncate -s 0 {m}/first/bri.db",
        f"chmod 777 {m}/first/bri.db",
        f"chmod 777 {m}/first",
        f"chown nobody {m}/first/bri.db",
        f"rm -f {m}/first/bri.db",
        f"rm -rf {m}/first",
        f"rmdir {m}/second",
        f"touch {m}/first/new",
        f"mkdir {m}/first/d",
        f"mkdir {m}/newdir",
        f"touch {m}/newfile",
        f"ln -s first {m}/link",
        f"ln {m}/first/bri.db {m}/first/hard",
        f"mv {m}/first {m}/renamed",
        f"mv {m}/first/bri.db {m}/first/x.db",
        f"cp /etc/hostname {m}/first/",
        f"rm -f {m}/latest",
        f"rm -f {m}/ctl/create",
        f"echo x > {m}/ctl/stats.json",
        f"touch {m}/restore/x",
        f"mkdir {m}/restore/y",
        f"mv {m}/first {m}/restore/other",
    ]
    for c in cmds:
        p = sh(c, check=False)
        assert p.returncode != 0, c
        assert re.search(r"Read-only file system|Permission denied|Operation not permitted|"
                         r"Invalid argument|Bad file", p.stderr), (c, p.stderr)
    assert store_state(store) == before
    assert sorted(os.listdir(m)) == sorted(["ctl", "first", "latest", "restore", "second",
                                           *INSPECTION_DIRS])
    assert os.stat(m / "first/bri.db").st_mode & 0o777 == 0o400


def test_mv_into_restore(two, store, live_db, cli):
    m = two.path
    first = live_content(live_db)
    con = sqlite3.connect(live_db)
    con.execute("delete from memory where id > 10")
    con.commit()
    con.close()
    assert live_content(live_db) != first
    sh(f"mv {m}/first {m}/restore/")
    assert live_content(live_db) == first
    names = os.listdir(m)
    assert "first" in names
    assert any(n.startswith("pre_restore_safety_") for n in names)
    assert os.listdir(m / "restore") == ["first.report"]
    report = (m / "restore/first.report").read_text()
    assert "first" in report and "ok" in report and "pre_restore_safety_" in report
    st = os.stat(m / "restore/first.report")
    assert st.st_size == len(report.encode()) and st.st_mode & 0o777 == 0o444
    # The same mv again: restore/ holds no directory named first.
    con = sqlite3.connect(live_db)
    con.execute("delete from videos where id > 5")
    con.commit()
    con.close()
    sh(f"mv {m}/first {m}/restore/")
    assert live_content(live_db) == first
    assert len([n for n in os.listdir(m) if n.startswith("pre_restore_safety_")]) == 2
    assert (m / "first/bri.db").is_file()
    # ctl/restore does the same.
    sh(f"echo second > {m}/ctl/restore")
    assert sorted(os.listdir(m / "restore")) == ["first.report", "second.report"]


def test_mv_of_corrupted_backup_refused(two, store, live_db):
    m = two.path
    before = live_content(live_db)
    raw = bytearray((store / "first.db").read_bytes())
    raw[5000:5016] = b"\xff" * 16
    (store / "first.db").write_bytes(raw)
    p = sh(f"mv {m}/first {m}/restore/", check=False)
    assert p.returncode != 0
    assert "mv:" in p.stderr
    assert live_content(live_db) == before
    assert "first" in os.listdir(m)
    assert not any(n.startswith("pre_restore_safety_") for n in os.listdir(m))
    report = (m / "restore/first.report").read_text()
    assert "fail" in report
    assert (m / "first/verify").read_text().startswith("failed")


def test_ctl_verify_shows_new_result_at_once(two, store):
    m = two.path
    assert wait_until(lambda: all_verified(two), 20)
    old = (m / "first/verify").read_text()
    assert old.startswith("ok")
    # A new check is told from the old one by its time (in seconds): wait for
    # the clock to pass the old check's second.
    checked = json.loads((store / "first.db.verify").read_text())["checked_epoch"]
    wait_past_second(checked)
    sh(f"echo first > {m}/ctl/verify")
    new = (m / "first/verify").read_text()
    assert new.startswith("ok") and new != old
    raw = bytearray((store / "second.db").read_bytes())
    raw[-100:] = b"\x00" * 100
    (store / "second.db").write_bytes(raw)
    p = sh(f"echo second > {m}/ctl/verify", check=False)
    assert p.returncode != 0
    text = (m / "second/verify").read_text()
    assert text.startswith("failed: ")
    assert os.stat(m / "second/verify").st_size == len(text.encode())
    p = sh(f"echo all > {m}/ctl/verify", check=False)
    assert p.returncode != 0  # second is still bad
    assert (m / "first/verify").read_text().startswith("ok")
    p = sh(f"echo nosuch > {m}/ctl/verify", check=False)
    assert p.returncode != 0


def test_background_verification(cli, live_db, store, tmp_path):
    cli.run("create", "--name", "bg")
    # A create without --verify records no verification: the backup starts
    # unverified, and only the mount's background verifier checks it.
    assert not (store / "bg.db.verify").exists()
    m = Mount(live_db, store, tmp_path / "mnt3", options=["scrub_interval=2s"]).start()
    try:
        # Generous limits: the verifier runs at idle I/O priority, and under
        # the sanitizer build on a busy machine it can take a while.
        assert wait_until(lambda: (m.path / "bg/verify").read_text().startswith("ok"), 60)
        first = (m.path / "bg/verify").read_text()
        # scrub: re-verified after the interval
        assert wait_until(lambda: (m.path / "bg/verify").read_text() != first, 90, 0.2)
    finally:
        m.stop()


def test_backup_made_by_cli_appears(mounted, cli):
    m = mounted.path
    assert sorted(os.listdir(m)) == sorted(["ctl", "restore", *INSPECTION_DIRS])
    cli.run("create", "--name", "from_cli")
    t0 = time.monotonic()
    assert (m / "from_cli" / "bri.db").is_file()  # a lookup looks at the store at once
    assert wait_until(lambda: "from_cli" in os.listdir(m), 5)
    assert time.monotonic() - t0 < 1.5
    assert os.readlink(m / "latest") == "from_cli"
    cli.run("delete", "from_cli")
    assert wait_until(lambda: "from_cli" not in os.listdir(m), 5)
    assert wait_until(lambda: not (m / "from_cli").exists(), 5)


def test_latest(two):
    m = two.path
    assert os.readlink(m / "latest") == "second"
    assert (m / "latest/bri.db").read_bytes() == (m / "second/bri.db").read_bytes()
    sh(f"echo third > {m}/ctl/create")
    assert os.readlink(m / "latest") == "third"


def test_ctl_delete_and_cleanup(two, store):
    m = two.path
    plan = (m / "ctl/cleanup").read_text()
    assert "would remove 0 of 2" in plan and "first" in plan
    assert os.stat(m / "ctl/cleanup").st_size == len(plan.encode())
    sh(f"echo first > {m}/ctl/delete")
    assert not (m / "first").exists()
    assert "first" not in os.listdir(m) and not (store / "first.db").exists()
    p = sh(f"echo first > {m}/ctl/delete", check=False)
    assert p.returncode != 0
    sh(f"echo > {m}/ctl/cleanup")
    assert "second" in os.listdir(m)
    stats = json.loads((m / "ctl/stats.json").read_text())
    assert stats["total_backups"] == 1
    assert (m / "ctl/health").read_text().startswith("warning")


def test_rsync_twice_copies_nothing_the_second_time(two, tmp_path, store):
    m = two.path
    assert wait_until(lambda: all_verified(two), 20)
    dest = tmp_path / "offsite"
    cmd = f"rsync -a --itemize-changes --stats --exclude ctl --exclude restore {m}/ {dest}/"
    p = sh(cmd)
    assert "Number of regular files transferred: 9" in p.stdout, p.stdout
    for name in ("first", "second"):
        assert sha256(dest / name / "bri.db") == sha256(store / f"{name}.db")
    assert os.readlink(dest / "latest") == "second"
    p = sh(cmd)
    assert "Number of regular files transferred: 0" in p.stdout, p.stdout
    assert not re.search(r"^>f", p.stdout, re.M), p.stdout
    # The whole mount, ctl/ and restore/ included, copies and exits 0 too.
    sh(f"rsync -a {m}/ {tmp_path}/all/")
    assert sha256(tmp_path / "all/second/bri.db") == sha256(store / "second.db")


def test_tar_and_find(two, tmp_path, store):
    m = two.path
    out = sh(f"find {m} -path {m}/ctl -prune -o -type f -print").stdout.split()
    assert sorted(os.path.relpath(p, m) for p in out) == sorted(
        [f"{n}/{f}" for n in ("first", "second") for f in ("bri.db", "meta.json", "verify")]
        + [f"{d}/README" for d in INSPECTION_DIRS])
    assert wait_until(lambda: all_verified(two), 20)
    sh(f"tar -C {m} -cf {tmp_path}/b.tar .")  # everything, ctl/ and restore/ too
    sh(f"mkdir {tmp_path}/x && tar -C {tmp_path}/x -xf {tmp_path}/b.tar")
    assert sha256(tmp_path / "x/first/bri.db") == sha256(store / "first.db")
    assert (tmp_path / "x/second/meta.json").read_bytes() == (store / "second.db.meta").read_bytes()
    assert os.readlink(tmp_path / "x/latest") == "second"
    assert sh(f"du -sb {m}/first").stdout.split()[0].isdigit()


def test_two_creates_at_once(mounted, store):
    m = mounted.path
    results = {}

    def create(name):
        results[name] = sh(f"echo {name} > {m}/ctl/create", check=False).returncode

    ts = [threading.Thread(target=create, args=(n,)) for n in ("c1", "c2")]
    for t in ts:
        t.start()
    for t in ts:
        t.join(T)
    assert results == {"c1": 0, "c2": 0}
    for n in ("c1", "c2"):
        assert (m / n / "bri.db").is_file()
        assert sqlite3.connect(f"file:{store}/{n}.db?mode=ro", uri=True).execute(
            "pragma integrity_check").fetchone()[0] == "ok"
    # Two automatic names at once: both complete under distinct names.
    ts = [threading.Thread(target=create, args=("",)) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(T)
    assert len([n for n in os.listdir(m) if n.startswith("bri_backup_")]) == 2


def test_df_reports_store_filesystem(mounted, store):
    out = sh(f"df -k --output=size {mounted.path}").stdout.split()[-1]
    ref = sh(f"df -k --output=size {store}").stdout.split()[-1]
    assert out == ref
    sv, rv = os.statvfs(mounted.path), os.statvfs(store)
    assert sv.f_blocks == rv.f_blocks and sv.f_bsize == rv.f_bsize


def test_dead_store_fails_never_empty(two, store):
    m = two.path
    gone = store.with_name("backups.gone")
    store.rename(gone)
    try:
        # Until the daemon looks at the store again (BFS_REFRESH_INTERVAL) ls
        # may show what it showed before, but never an empty folder.
        seen = []

        def listing_fails():
            seen.append(sh(f"ls {m}", check=False))
            if seen[-1].returncode == 0:
                assert "first" in seen[-1].stdout.split(), seen[-1].stdout
            return seen[-1].returncode != 0

        assert wait_until(listing_fails, 10)
        assert "Input/output error" in seen[-1].stderr
        p = sh(f"rsync -a --exclude ctl --exclude restore {m}/ /tmp/never-{os.getpid()}/",
               check=False)
        assert p.returncode != 0
    finally:
        gone.rename(store)
        shutil.rmtree(f"/tmp/never-{os.getpid()}", ignore_errors=True)


def test_unmount_leaves_no_process(live_db, store, tmp_path):
    m = Mount(live_db, store, tmp_path / "mnt4").start()
    pid = m.proc.pid
    m.stop()
    assert m.proc.returncode == 0
    assert not is_mounted(m.path)
    assert not Path(f"/proc/{pid}").exists()


def test_daemonises_and_fstab_style_options(live_db, store, tmp_path):
    mnt = tmp_path / "mnt5"
    mnt.mkdir()
    opts = f"backup_dir={store},noauto,_netdev,nofail,user,retention_days=10,keep_min=3"
    p = subprocess.run([str(BRI_BACKUPFS), str(live_db), str(mnt), "-o", opts],
                       capture_output=True, text=True, timeout=T)
    try:
        assert p.returncode == 0, p.stderr
        assert wait_until(lambda: is_mounted(mnt), 10)
        assert "retention 10 days, keep at least 3" in (mnt / "ctl/cleanup").read_text()
        mounts = Path("/proc/self/mounts").read_text()
        line = [l for l in mounts.splitlines() if l.split()[1] == str(mnt)][0]
        assert "fuse.bri-backupfs" in line and "default_permissions" in line
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], timeout=T)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)], timeout=T)
    assert wait_until(lambda: sh(f"pgrep -f 'bri-backupfs {live_db}'", check=False).returncode
                      != 0, 10)


def test_help_and_version():
    p = subprocess.run([str(BRI_BACKUPFS), "--help"], capture_output=True, text=True, timeout=T)
    assert p.returncode == 0
    out = p.stdout + p.stderr
    assert out.index("backup_dir=") < out.index("allow_other")
    for key in ("retention_days=", "keep_min=", "scrub_interval=", "log="):
        assert key in out
    p = subprocess.run([str(BRI_BACKUPFS), "--version"], capture_output=True, text=True,
                       timeout=T)
    assert p.returncode == 0 and "bri-backupfs" in p.stdout
    p = subprocess.run([str(BRI_BACKUPFS)], capture_output=True, text=True, timeout=T)
    assert p.returncode == 2 and "usage" in p.stderr


def test_bad_option_values_are_refused_by_name(tmp_path):
    """A value the daemon cannot take is exit 2 with the option named, before
    anything is mounted (a real mount point: a missing one is refused first).
    A duration too large for seconds is refused, not wrapped around."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for bad in ("scrub_interval=soon", "scrub_interval=213503982334602d",
                "offsite_lag_warn=213503982334602d", "offsite_retry_max=1y",
                "retention_days=-1", "log_level=loud"):
        try:
            p = subprocess.run([str(BRI_BACKUPFS), "-f", "-o", bad, str(tmp_path / "bri.db"),
                                str(mnt)], capture_output=True, text=True, timeout=T)
        finally:
            unmount(None, mnt)
        assert p.returncode == 2 and bad.split("=")[0] in p.stderr, (bad, p.stderr)
        assert not (tmp_path / "bri.db").exists()


def test_unknown_mount_option_is_a_usage_error_and_touches_nothing(tmp_path):
    """An -o option neither we nor libfuse know is bad usage, exit 2 as the
    man page says, refused before the store folder or the log is created."""
    (tmp_path / "mnt").mkdir()
    db, backups, log = tmp_path / "bri.db", tmp_path / "backups", tmp_path / "bfs.log"
    p = subprocess.run([str(BRI_BACKUPFS), "-f", "-o", f"log={log}", "-o", "no_such_opt=1",
                        str(db), str(tmp_path / "mnt")],
                       capture_output=True, text=True, timeout=T)
    assert p.returncode == 2 and "no_such_opt" in p.stderr, (p.returncode, p.stderr)
    assert not backups.exists() and not log.exists() and not db.exists()
    assert not is_mounted(tmp_path / "mnt")


def test_log_option_writes_file(live_db, store, tmp_path):
    log = tmp_path / "bfs.log"
    m = Mount(live_db, store, tmp_path / "mnt6", options=[f"log={log}"]).start()
    try:
        sh(f"echo bad/name > {m.path}/ctl/create", check=False)
        assert "bad/name" in (m.path / "ctl/log").read_text()
    finally:
        m.stop()
    assert "bad/name" in log.read_text()


def test_fstab_line_through_mount(live_db, store, tmp_path, cli):
    """An fstab line mounts the view through mount(8) and mount.fuse3, which
    pass the fstab-only keys on; the daemon ignores them. (The fuse.bri-backupfs
    type needs the program installed in PATH; "fuse" with PROGRAM#DB is the
    same path through mount.fuse3.)"""
    if os.geteuid() != 0:
        pytest.skip("mount -T needs root")
    cli.run("create", "--name", "fst")
    mnt = tmp_path / "mnt7"
    mnt.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{BRI_BACKUPFS}#{live_db} {mnt} fuse "
                     f"backup_dir={store},noauto,_netdev,nofail,user,retention_days=9 0 0\n")
    try:
        sh(f"mount -T {fstab} {mnt}")
        assert is_mounted(mnt)
        assert "fst" in os.listdir(mnt)
        assert "retention 9 days" in (mnt / "ctl/cleanup").read_text()
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], timeout=T, capture_output=True)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)], timeout=T)
    assert not is_mounted(mnt)


def test_dead_store_fails_inside_backup_dirs_too(two, store):
    m = two.path
    os.listdir(m / "first")  # cached by the kernel
    gone = store.with_name("backups.gone")
    store.rename(gone)
    try:
        errors = []

        def listing_fails():
            try:
                assert sorted(os.listdir(m / "first")) == ["bri.db", "meta.json", "verify"]
                return False  # not looked at again yet: what it showed before
            except OSError as e:
                errors.append(e.errno)
                return True

        assert wait_until(listing_fails, 10)
        assert errors[-1] == errno.EIO
        with pytest.raises(OSError):
            (m / "first/bri.db").read_bytes()
    finally:
        gone.rename(store)

    def listing_back():
        try:
            return sorted(os.listdir(m / "first"))
        except OSError:
            return None  # the failure, until the daemon looks again

    assert wait_until(lambda: listing_back() is not None, 10)
    assert listing_back() == ["bri.db", "meta.json", "verify"]


def test_ctl_cleanup_removes_expired_keeps_safety_and_newest(cli, live_db, store, tmp_path):
    cli.run("create", "--name", "new")
    meta = json.loads((store / "new.db.meta").read_text())
    olds = ["old1", "old2", "old3", "pre_restore_safety_20200101_000000"]
    for i, name in enumerate(olds):
        shutil.copyfile(store / "new.db", store / f"{name}.db")
        m = dict(meta)
        m["backup_time"] = f"2020-01-0{i + 1}T10:00:00"
        m["backup_time_utc"] = f"2020-01-0{i + 1}T10:00:00Z"
        m["backup_path"] = str(store / f"{name}.db")
        m["kind"] = "safety" if name.startswith("pre_") else "named"
        (store / f"{name}.db.meta").write_text(json.dumps(m, indent=2) + "\n")
    mnt = Mount(live_db, store, tmp_path / "mnt8",
                options=["retention_days=30", "keep_min=2"]).start()
    try:
        m = mnt.path
        for name in olds:
            os.stat(m / name)  # the kernel knows them
        plan = (m / "ctl/cleanup").read_text()
        assert "would remove 2 of 5" in plan, plan
        assert re.search(r"^remove\told1\t", plan, re.M), plan
        assert re.search(r"^remove\told2\t", plan, re.M), plan
        assert re.search(r"^keep\told3\t", plan, re.M), plan  # keep_min 2: new and old3
        assert re.search(r"^keep\tpre_restore_safety_20200101_000000\t", plan, re.M), plan
        sh(f"echo yes > {m}/ctl/cleanup")
        assert sorted(n for n in os.listdir(m) if n not in ROOT_FIXED) == [
            "new", "old3", "pre_restore_safety_20200101_000000"]
        assert not (m / "old2").exists() and not (store / "old2.db").exists()
        assert not (m / "old1").exists()
        assert "would remove 0 of 3" in (m / "ctl/cleanup").read_text()
        assert "cleanup" in (m / "ctl/log").read_text()
    finally:
        mnt.stop()


def test_mv_into_restore_while_live_database_locked_fails_ebusy(cli, live_db, store, tmp_path):
    cli.run("create", "--name", "locked")
    before = live_content(live_db)
    mnt = Mount(live_db, store, tmp_path / "mnt9", options=["busy_timeout=300"]).start()
    writer = sqlite3.connect(live_db, isolation_level=None)
    try:
        writer.execute("begin immediate")
        writer.execute("insert into videos(title) values ('uncommitted')")
        p = sh(f"mv {mnt.path}/locked {mnt.path}/restore/", check=False)
        assert p.returncode != 0
        assert "busy" in p.stderr.lower(), p.stderr
        writer.execute("rollback")
        assert live_content(live_db) == before
        report = (mnt.path / "restore/locked.report").read_text()
        assert "locked" in report or "busy" in report, report
        assert "locked" in os.listdir(mnt.path)
        sh(f"mv {mnt.path}/locked {mnt.path}/restore/")  # unlocked: works
    finally:
        writer.close()
        mnt.stop()


def test_create_while_a_writer_commits(mounted, live_db, store):
    stop = threading.Event()
    commits = []

    def write():
        con = sqlite3.connect(live_db, timeout=30)
        while not stop.is_set():
            con.execute("insert into memory(video_id, role, content) values (1, 'user', 'x')")
            con.commit()
            commits.append(1)
        con.close()

    t = threading.Thread(target=write)
    t.start()
    try:
        assert wait_until(lambda: len(commits) > 0, 30)  # the writer is committing
        for i in range(3):
            sh(f"echo during_{i} > {mounted.path}/ctl/create")
    finally:
        stop.set()
        t.join(T)
    assert len(commits) > 10
    for i in range(3):
        con = sqlite3.connect(f"file:{mounted.path}/during_{i}/bri.db?mode=ro&immutable=1",
                              uri=True)
        assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
        con.close()


def test_verify_by_cli_shows_at_once(two, store, cli):
    m = two.path
    assert wait_until(lambda: all_verified(two), 20)
    assert (m / "first/verify").read_text().startswith("ok")
    raw = bytearray((store / "first.db").read_bytes())
    raw[-64:] = b"\x01" * 64
    (store / "first.db").write_bytes(raw)
    p = cli.run("verify", "first", check=False)
    assert p.returncode == 1
    text = (m / "first/verify").read_text()  # no waiting
    assert text.startswith("failed: "), text
    assert os.stat(m / "first/verify").st_size == len(text.encode())
    assert "verify" in sh(f"ls {m}/first").stdout
