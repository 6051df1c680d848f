"""Shared fixtures of the integration tests: the built programs, a sample
live database in a temporary folder, a CLI runner and a real FUSE mount of
the daemon that is always unmounted, even when a test fails."""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

# Tests stop daemons and scripts with SIGINT, as Ctrl-C does. A suite
# started in the background of a non-interactive shell (`./scripts/test &`
# from a script) inherits SIGINT ignored, and every process it starts would
# too (an ignored signal stays ignored across exec, and libfuse leaves it
# so): back to Python's own handler here, so that they start with the
# default, as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("BRI_BUILD_DIR", ROOT / "build"))
BRI_BACKUP = BUILD / "src/cli/bri-backup"
BRI_BACKUPFS = BUILD / "src/fs/bri-backupfs"
MAKE_SAMPLE = ROOT / "scripts/make-sample-db"
# The bri_backup module (and its stubs) in the build tree; ROOT holds the
# seed's storage/backup.py shim. PYTHONPATH for both: python_env().
PY_MODULE_DIR = BUILD / "src/python"

COMMAND_LIMIT = 60  # seconds: the time limit of one shell command (sh)
TEST_LIMIT = 600  # seconds: the time limit of one test (a hang guard, generous for sanitizer builds)


def sanitizer_preload():
    """The sanitizer runtimes the bri_backup module of BUILD links (an ASan
    build: scripts/check sanitize), as an LD_PRELOAD value; "" for an
    ordinary build. The interpreter itself is not instrumented, so the ASan
    runtime has to come first in it."""
    so = next(PY_MODULE_DIR.glob("bri_backup*.so"), None)
    if so is None:
        return ""
    out = subprocess.run(["ldd", str(so)], capture_output=True, text=True, timeout=60).stdout
    libs = [line.split("=>")[1].split("(")[0].strip() for line in out.splitlines()
            if "=>" in line and ("libasan.so" in line or "libubsan.so" in line)]
    return ":".join(sorted(libs))  # libasan before libubsan


def python_env(base=None, **extra):
    """An environment whose Python finds bri_backup in the build tree and
    the seed's storage.backup (PYTHONPATH=<build>/src/python:<root>). For an
    ASan build, the runtime is preloaded and leak detection is off: the
    interpreter's own allocations at exit are not ours."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PY_MODULE_DIR), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    preload = sanitizer_preload()
    if preload:
        env["LD_PRELOAD"] = preload
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"),
                                                     "detect_leaks=0"]))
    env.update(extra)
    return env


# The root's fixed entries (SPEC.md sections 4 and 4.1): everything else is a backup.
# inspect/, diff/ and at/ list only a README each.
INSPECTION_DIRS = ("inspect", "diff", "at")
ROOT_FIXED = ("ctl", "restore", "latest") + INSPECTION_DIRS


def sh(cmd, check=True, timeout=COMMAND_LIMIT, **kw):
    """Runs a shell command line with a time limit; returns the CompletedProcess."""
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd!r} exited {p.returncode}: {p.stderr}")
    return p


def wait_past_second(sec):
    """Waits until the daemon's and the CLI's clock have left second sec (so a
    result they time now reads differently from one timed in sec). Their
    time(2) comes from glibc's coarse clock, up to a tick (a few ms) behind
    time.time(): a margin of 0.2 s covers it."""
    assert wait_until(lambda: time.time() >= sec + 1.2, 5)


def wait_until(pred, timeout=10, step=0.05):
    """Polls pred until it is true or timeout seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def open_paths(pid):
    """The paths process pid has open, read from /proc/PID/fd. A descriptor
    closed between the listing and its readlink is skipped; a process gone
    has none."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    out = []
    for fd in fds:
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return out


class PausePoints:
    """Test-only pause points (include/bri/testpoint.h) of the processes a
    test starts with env() in their environment: arm(P) makes the next one to
    reach P stop there, wait_reached(P) waits until one has, release(P) lets
    it go on."""

    def __init__(self, folder):
        self.dir = Path(folder)
        self.dir.mkdir(mode=0o777, exist_ok=True)
        self.dir.chmod(0o777)  # the daemon may run as another user

    def env(self, base=None):
        e = dict(os.environ if base is None else base)
        e["BRI_TEST_PAUSE_DIR"] = str(self.dir)
        return e

    def arm(self, point):
        (self.dir / f"{point}.reached").unlink(missing_ok=True)
        (self.dir / point).touch()

    def wait_reached(self, point, timeout=60):
        assert wait_until(lambda: (self.dir / f"{point}.reached").exists(), timeout), (
            f"no process reached the pause point {point}"
        )

    def release(self, point):
        (self.dir / point).unlink(missing_ok=True)


@pytest.fixture
def pause_points(tmp_path):
    """Pause points for this test; every armed point is released at the end,
    so a paused process never outlives a failing test by 60 s."""
    p = PausePoints(tmp_path / "pause-points")
    yield p
    for f in p.dir.iterdir():
        if not f.name.endswith(".reached"):
            f.unlink(missing_ok=True)


def our_daemons(tmp_path):
    """Pids of the bri-backupfs processes this test started (children of
    pytest, or daemonised with this test's folder on their command line)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"bri-backupfs" in cmd and (ppid == os.getpid() or str(tmp_path).encode() in cmd):
            pids.append(int(pid))
    return pids


@pytest.fixture(autouse=True)
def time_limit(tmp_path):
    """Every test has a time limit: a hung mount cannot hang the suite. When
    it passes, the test's daemons are killed, which aborts their FUSE
    connections, so whatever waits on the mount fails (ENOTCONN); the
    fixtures then unmount."""
    fired = []

    def expire():
        fired.append(True)
        for pid in our_daemons(tmp_path):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    timer = threading.Timer(TEST_LIMIT, expire)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()
    assert not fired, f"the test took longer than {TEST_LIMIT} s"


def reachable_tmp():
    """A temporary folder every user can traverse: $TMPDIR's when it is, else /tmp."""
    import tempfile
    d = Path(tempfile.gettempdir()).resolve()
    if all(os.stat(p).st_mode & 0o001 for p in [d, *d.parents]):
        return str(d)
    return "/tmp"


def copy_programs(folder):
    """Copies bri-backup and bri-backupfs into folder (made 0755), for tests
    that run them as another user: the clone may sit where that user cannot
    go (a 0700 folder, root's home). Returns (bri-backup, bri-backupfs)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    out = []
    for prog in (BRI_BACKUP, BRI_BACKUPFS):
        dest = folder / prog.name
        shutil.copy(prog, dest)  # follows symlinks
        dest.chmod(0o755)
        out.append(dest)
    return tuple(out)


def make_sample_db(path, rows=200):
    """A BRI-shaped database in WAL mode at path (videos, memory, video_context)."""
    subprocess.run([str(MAKE_SAMPLE), str(path), str(rows)], check=True,
                   stdout=subprocess.DEVNULL)
    return Path(path)


def backup_file(store, name):
    """Where the backup name of store is: NAME.db (plain), NAME.manifest (pages)."""
    store = Path(store)
    fmt = "plain"
    if (store / "store.json").exists():
        fmt = json.loads((store / "store.json").read_text())["format"]
    return store / (f"{name}.manifest" if fmt == "pages" else f"{name}.db")


def sidecar(backup_path, kind):
    """The sidecar kind (meta, verify, pin, report) of the backup at backup_path."""
    p = Path(backup_path)
    if p.suffix == ".manifest":
        return p.with_suffix(f".{kind}")
    return Path(f"{p}.{kind}")


def store_key(store, key_file=None):
    """The 32-byte key of an encrypted page store (None for one without
    encryption), from key_file or $BRI_KEY_FILE, made as SPEC.md section 5
    says: the file's bytes (key "raw") or scrypt of the passphrase with
    store.json's parameters. Independent of the C code: a second reader of
    the format."""
    conf_path = Path(store) / "store.json"
    if not conf_path.exists():
        return None
    conf = json.loads(conf_path.read_text())
    if conf.get("encryption", "none") == "none":
        return None
    data = Path(key_file or os.environ["BRI_KEY_FILE"]).read_bytes()
    if conf["key"] == "raw":
        return data
    import hashlib
    kdf = conf["kdf"]
    if data.endswith(b"\n"):
        data = data[:-1]
    if data.endswith(b"\r"):
        data = data[:-1]
    return hashlib.scrypt(data, salt=bytes.fromhex(kdf["salt"]), n=kdf["n"], r=kdf["r"],
                          p=kdf["p"], maxmem=1 << 30, dklen=32)


def aes_gcm(encrypt, key, nonce, data, aad, tag=b""):
    """AES-256-GCM through libcrypto by ctypes (the tests use the standard
    library only): (ciphertext, tag) when encrypting, the plaintext when
    decrypting; ValueError when the tag does not match."""
    import ctypes
    import ctypes.util
    lib = ctypes.CDLL(ctypes.util.find_library("crypto"))
    vp, cp, ip = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    lib.EVP_CIPHER_CTX_new.restype = vp
    lib.EVP_aes_256_gcm.restype = vp
    lib.EVP_CipherInit_ex.argtypes = [vp, vp, vp, cp, cp, ip]
    lib.EVP_CIPHER_CTX_ctrl.argtypes = [vp, ip, ip, vp]
    lib.EVP_CipherUpdate.argtypes = [vp, vp, ctypes.POINTER(ip), cp, ip]
    lib.EVP_CipherFinal_ex.argtypes = [vp, vp, ctypes.POINTER(ip)]
    lib.EVP_CIPHER_CTX_free.argtypes = [vp]
    ctx = lib.EVP_CIPHER_CTX_new()
    out = ctypes.create_string_buffer(len(data) + 16)
    n, tagbuf = ip(0), ctypes.create_string_buffer(tag, 16)
    try:
        ok = (lib.EVP_CipherInit_ex(ctx, lib.EVP_aes_256_gcm(), None, None, None, encrypt) and
              lib.EVP_CIPHER_CTX_ctrl(ctx, 0x9, len(nonce), None) and  # SET_IVLEN
              lib.EVP_CipherInit_ex(ctx, None, None, key, nonce, encrypt) and
              lib.EVP_CipherUpdate(ctx, None, ctypes.byref(n), aad, len(aad)) and
              lib.EVP_CipherUpdate(ctx, out, ctypes.byref(n), data, len(data)))
        size = n.value
        if ok and not encrypt:
            ok = lib.EVP_CIPHER_CTX_ctrl(ctx, 0x11, 16, tagbuf)  # SET_TAG
        if ok:
            ok = lib.EVP_CipherFinal_ex(ctx, ctypes.byref(out, size), ctypes.byref(n))
        if ok and encrypt:
            ok = lib.EVP_CIPHER_CTX_ctrl(ctx, 0x10, 16, tagbuf)  # GET_TAG
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)
    if not ok:
        raise ValueError("AES-256-GCM: the tag does not match")
    return (out.raw[:size], tagbuf.raw) if encrypt else out.raw[:size]


def unseal(key, blob, context):
    """A sealed blob (seal.h: "BRIs", version 1, cipher 1, 2 zero bytes, a
    12-byte nonce, ciphertext, 16-byte tag; header and context the AEAD's
    additional data) opened with AES-256-GCM; ValueError when it does not open."""
    assert blob[:8] == b"BRIs\x01\x01\x00\x00", blob[:8]
    return aes_gcm(0, key, blob[8:20], blob[20:-16], blob[:8] + context, blob[-16:])


def seal(key, data, context):
    """data sealed as seal.h does (a fresh random nonce): for tests that
    change a sidecar by hand."""
    head, nonce = b"BRIs\x01\x01\x00\x00", os.urandom(12)
    ct, tag = aes_gcm(1, key, nonce, data, head + context)
    return head + nonce + ct + tag


def write_sidecar(backup_path, kind, text, key_file=None):
    """Writes a backup's sidecar by hand, sealed when its store is encrypted."""
    path = sidecar(backup_path, kind)
    data = text.encode()
    key = store_key(path.parent, key_file)
    if key is not None:
        data = seal(key, data, path.name.encode())
    path.write_bytes(data)


def audit_records(store, key_file=None):
    """The records of store's audit.jsonl, each line opened first when the
    store is encrypted (a sealed line: "sealed:" and the blob in base64,
    bound to the file's name)."""
    import base64
    key = store_key(store, key_file)
    out = []
    for line in (Path(store) / "audit.jsonl").read_text().splitlines():
        if key is not None:
            assert line.startswith("sealed:"), line
            line = unseal(key, base64.b64decode(line[7:]), b"audit.jsonl").decode()
        out.append(json.loads(line))
    return out


def read_sidecar(backup_path, kind, key_file=None):
    """The text of a backup's sidecar, opened when its store is encrypted."""
    path = sidecar(backup_path, kind)
    data = path.read_bytes()
    key = store_key(path.parent, key_file)
    if key is not None:
        data = unseal(key, data, path.name.encode())
    return data.decode()


_EXPORTS = []  # as_plain's folder, made at its first use, removed at the session's end


@pytest.fixture(scope="session", autouse=True)
def _remove_exports():
    yield
    for d in _EXPORTS:
        shutil.rmtree(d, ignore_errors=True)


def as_plain(path):
    """A plain .db of the backup at path: path itself, or for a page store's
    manifest (store/NAME.manifest, its live database ../bri.db) a copy made
    with `bri-backup export NAME FILE` into a fresh folder (under one
    temporary folder that the session removes at its end)."""
    p = Path(path)
    if p.suffix != ".manifest":
        return p
    if not _EXPORTS:
        _EXPORTS.append(tempfile.mkdtemp(prefix="bri-export-"))
    out = Path(tempfile.mkdtemp(dir=_EXPORTS[0])) / (p.stem + ".db")
    r = subprocess.run([str(BRI_BACKUP), "--backup-dir", str(p.parent), "--db",
                        str(p.parent.parent / "bri.db"), "export", p.stem, str(out)],
                       capture_output=True, text=True, timeout=COMMAND_LIMIT)
    assert r.returncode == 0, r.stderr
    return out


def table_counts(db):
    db = as_plain(db)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [r[0] for r in con.execute(
            "select name from sqlite_master where type='table' and name not like 'sqlite_%'")]
        return {n: con.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}
    finally:
        con.close()


class Cli:
    """Runs bri-backup against one live database and store."""

    def __init__(self, db, store):
        self.db = Path(db)
        self.store = Path(store)

    def run(self, *args, check=True, timeout=120, input=None, env=None, now=None):
        """now: the time (seconds since the epoch) a create stamps its backup
        with, through the test-only $BRI_TEST_NOW: distinct backup times
        without sleeping."""
        cmd = [str(BRI_BACKUP), "--db", str(self.db), "--backup-dir", str(self.store), *args]
        if now is not None:
            env = dict(os.environ if env is None else env, BRI_TEST_NOW=str(int(now)))
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           input=input, env=env)
        if check and p.returncode != 0:
            raise AssertionError(f"{cmd} exited {p.returncode}: {p.stderr}")
        return p


@pytest.fixture
def live_db(tmp_path):
    return make_sample_db(tmp_path / "data" / "bri.db")


@pytest.fixture
def store(live_db):
    return live_db.parent / "backups"


@pytest.fixture
def store_format():
    """The format the cli fixture makes its store in: plain unless a test is
    parametrized over both_formats (SPEC.md section 5)."""
    return "plain"


# Runs a test once on a plain store and once on a page store: the same test,
# its store made with `bri-backup init --format pages` for the second run.
both_formats = pytest.mark.parametrize("store_format", ["plain", "pages"])
# A chosen few run a third time on an encrypted page store ("pages-sealed":
# init --format pages --key-file K, with $BRI_KEY_FILE=K for the test, so
# every bri-backup, mount and Python call of the test has the key).
all_formats = pytest.mark.parametrize("store_format", ["plain", "pages", "pages-sealed"])


@pytest.fixture
def cli(live_db, store, store_format, tmp_path, monkeypatch):
    c = Cli(live_db, store)
    if store_format == "pages-sealed":
        key = tmp_path / "store.key"
        key.write_bytes(os.urandom(32))
        key.chmod(0o600)
        monkeypatch.setenv("BRI_KEY_FILE", str(key))
        c.run("init", "--format", "pages")
    elif store_format != "plain":
        c.run("init", "--format", store_format)
    return c


def mount_field(text):
    """A path as /proc/self/mounts and mountinfo write it: a space, tab,
    newline and backslash are escaped as \\040, \\011, \\012 and \\134."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def is_mounted(mnt):
    mnt = os.path.realpath(mnt)
    with open("/proc/self/mounts") as f:
        return any(mount_field(line.split()[1]) == mnt for line in f)


def wait_for_mount(proc, mnt, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_mounted(mnt):
            return
        if proc.poll() is not None:
            out = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"bri-backupfs exited {proc.returncode} before mounting: {out}")
        time.sleep(0.05)
    raise AssertionError("bri-backupfs did not mount within the time limit")


def unmount(proc, mnt):
    """fusermount3 -u, then -uz, then kill: never leave a mount behind."""
    if is_mounted(mnt):
        r = subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
    if proc is not None:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    if is_mounted(mnt):
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)


class Mount:
    """A running bri-backupfs -f over a live database, at path."""

    def __init__(self, db, store, path, options=(), user=None, env=None, group=None,
                 program=None, cwd=None):
        self.db, self.store, self.path = Path(db), Path(store), Path(path)
        self.options = list(options)
        self.user = user  # run the daemon as this uid (group: its gid, default the same)
        self.group = user if group is None else group
        self.env = env  # the daemon's environment (None: ours), e.g. pause_points.env()
        self.program = Path(program) if program else BRI_BACKUPFS  # e.g. a copy
        self.cwd = cwd
        self.proc = None

    def start(self):
        self.path.mkdir(parents=True, exist_ok=True)
        opts = ["backup_dir=" + str(self.store), *self.options]
        cmd = [str(self.program), "-f", "-o", ",".join(opts), str(self.db), str(self.path)]
        if self.user:
            cmd = ["setpriv", "--reuid", str(self.user), "--regid", str(self.group),
                   "--clear-groups", "--"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=self.env, cwd=self.cwd)
        try:
            wait_for_mount(self.proc, self.path)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        unmount(self.proc, self.path)

    def __truediv__(self, other):
        return self.path / other


@pytest.fixture
def mounted(live_db, store, tmp_path):
    """The view of live_db mounted at tmp_path/mnt; always unmounted afterwards."""
    m = Mount(live_db, store, tmp_path / "mnt")
    m.start()
    try:
        yield m
    finally:
        m.stop()


# ---- A real S3 server (Ceph RGW) for the offsite tests: tests/integration/rgw.py ----

@pytest.fixture(scope="session")
def rgw(tmp_path_factory):
    """A single-node Ceph RGW for the whole session, stopped at the end
    (only the daemons it started). Errors, never skips, when ceph is missing."""
    from rgw import RGW
    r = RGW(tmp_path_factory.mktemp("rgw"))
    try:
        r.start()
        yield r
    finally:
        r.stop()


@pytest.fixture
def bucket(rgw):
    """A fresh bucket name for this test (made by the test, or by offsite init)."""
    import uuid
    return "bri-" + uuid.uuid4().hex[:16]
