"""scripts/run: builds, makes a sample database and a first backup, mounts
the view in the foreground and unmounts cleanly on Ctrl-C (SIGINT to the
whole process group, as a terminal sends it). Also -o allow_other as root."""

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from conftest import sh, wait_until
from conftest import BUILD, ROOT, Cli, Mount, is_mounted, make_sample_db


def test_scripts_run_mounts_then_unmounts_on_ctrl_c(tmp_path):
    mnt = tmp_path / "mnt"
    env = dict(os.environ, BRI_BUILD_DIR=str(BUILD), BRI_DB=str(tmp_path / "data" / "bri.db"))
    p = subprocess.Popen([str(ROOT / "scripts/run"), str(mnt)], env=env, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        assert wait_until(lambda: is_mounted(mnt) or p.poll() is not None, 240, 0.1)
        assert is_mounted(mnt), p.communicate(timeout=10)[0]
        names = os.listdir(mnt)
        assert "ctl" in names and any(n.startswith("bri_backup_") for n in names)
        assert (tmp_path / "data" / "backups").is_dir()
        # Ctrl-C once the script waits for it (its last words say so).
        head = []
        for line in p.stdout:
            head.append(line)
            if "Ctrl-C here unmounts." in line:
                break
        assert "Ctrl-C here unmounts." in "".join(head)
        os.killpg(p.pid, signal.SIGINT)
        out = "".join(head) + p.communicate(timeout=30)[0]
        assert not is_mounted(mnt)
        assert "ls -l" in out and "unmounted" in out
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)], timeout=30)
    assert sh(f"pgrep -f 'bri-backupfs -f .* {mnt}$'", check=False).returncode != 0


def test_allow_other_lets_other_users_in():
    if os.geteuid() != 0:
        return  # an ordinary user needs user_allow_other in /etc/fuse.conf
    base = Path(tempfile.mkdtemp(prefix="bri-allow-"))  # pytest's folders are 0700
    os.chmod(base, 0o755)
    live_db = make_sample_db(base / "data" / "bri.db")
    store = base / "data" / "backups"
    Cli(live_db, store).run("create", "--name", "shared")
    m = Mount(live_db, store, base / "mnt", options=["allow_other"]).start()
    try:
        other = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--"]
        p = subprocess.run(other + ["ls", str(m.path)], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0 and "shared" in p.stdout.split()
        p = subprocess.run(other + ["cat", str(m.path / "shared/bri.db")],
                           capture_output=True, timeout=60)
        assert p.returncode != 0  # 0400, owned by the mounting user
        p = subprocess.run(other + ["cat", str(m.path / "ctl/health")], capture_output=True,
                           timeout=60)
        assert p.returncode == 0  # 0444
        p = subprocess.run(other + ["bash", "-c", f"echo x > {m.path}/ctl/create"],
                           capture_output=True, timeout=60)
        assert p.returncode != 0 and not (store / "x.db").exists()
    finally:
        m.stop()
        shutil.rmtree(base, ignore_errors=True)
