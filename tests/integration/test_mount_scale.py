"""The mount over a large store: 5,000 backups (copies of one backup's .db
and .meta under new names, which is cheap) listed with ls -l and find within
a time limit, with stable inodes and without a descriptor per backup."""

import os
import shutil
import subprocess
import time

from conftest import INSPECTION_DIRS, Mount

N = 5000


def test_ls_l_of_5000_backups(cli, live_db, store, tmp_path):
    cli.run("create", "--name", "seed")
    db, meta = store / "seed.db", store / "seed.db.meta"
    for i in range(1, N):
        name = f"copy_{i:05d}"
        shutil.copyfile(db, store / f"{name}.db")
        shutil.copyfile(meta, store / f"{name}.db.meta")
    m = Mount(live_db, store, tmp_path / "mnt").start()
    try:
        t0 = time.monotonic()
        p = subprocess.run(["ls", "-l", str(m.path)], capture_output=True, text=True,
                           timeout=60)
        took = time.monotonic() - t0
        assert p.returncode == 0, p.stderr
        lines = [l for l in p.stdout.splitlines() if l.startswith("d")]
        assert len(lines) == N + 2 + len(INSPECTION_DIRS)  # backups, ctl, restore, inspect, diff, at
        assert took < 30, took
        names = os.listdir(m.path)
        assert len(names) == N + 3 + len(INSPECTION_DIRS)
        ino = os.stat(m.path / "copy_04999").st_ino
        p = subprocess.run(["find", str(m.path), "-name", "bri.db"], capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0 and len(p.stdout.split()) == N
        assert os.stat(m.path / "copy_04999").st_ino == ino
        # No descriptor per inode the kernel knows.
        fds = len(os.listdir(f"/proc/{m.proc.pid}/fd"))
        assert fds < 100, fds
        assert (m.path / "copy_02500/meta.json").read_bytes() == meta.read_bytes()
    finally:
        m.stop()
