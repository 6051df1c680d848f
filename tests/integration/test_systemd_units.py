"""The systemd units of scripts/systemd (issue 14, "A hardened service"):
systemd-analyze verify accepts them (with ExecStart= pointing at the built
programs), systemd-analyze security rates them at the scores they reached,
the daemon's unit takes no setting that would hide its FUSE mount in a mount
namespace, and the sysusers.d file makes the user. No running systemd is
needed. Then the sandboxes themselves, emulated from the units' own settings
(no systemd here to start them): the CLI's unit run as its user, no
capabilities, no_new_privs, umask 0077, the whole tree read-only but its
ReadWritePaths= and a private /tmp, must take, verify, clean up and rehearse
a backup and run a hook; the daemon's, as its user with only the ambient
CAP_SYS_ADMIN and no_new_privs, must mount where the host sees it, unmount
at stop, and start its hooks without the capability. Both run under the
units' system call filters, address families and MemoryDenyWriteExecute=,
loaded with libseccomp as systemd builds them (unit_seccomp.py). What the
emulation leaves out (the device policy, the argument filters of
RestrictNamespaces=, RestrictRealtime=, LockPersonality= and
RestrictSUIDSGID=, PrivateNetwork=, PrivateUsers=, the kernel tunables,
modules and logs made read-only or hidden) is checked only by
systemd-analyze."""

import errno
import json
import os
import re
import socket
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (BRI_BACKUP, BRI_BACKUPFS, ROOT, copy_programs, is_mounted,
                      make_sample_db, reachable_tmp, sanitizer_preload, wait_for_mount,
                      wait_until)

T = 120
HELPER = Path(__file__).resolve().parent / "unit_seccomp.py"
UNITS = ROOT / "scripts/systemd"
CLI_UNIT = UNITS / "bri-backup.service"
DAEMON_UNIT = UNITS / "bri-backupfs.service"
DROP_INS = {"bri-backup.service": UNITS / "bri-backup-offsite.conf",
            "bri-backupfs.service": UNITS / "bri-backupfs-offsite.conf"}

# The scores reached with Debian 12's systemd 252 (`systemd-analyze security`;
# lower is safer, 10 is an unconfined service; both units scored 9.6 before).
# The issue asks <= 4.0 for the CLI's unit, which reaches 0.2: what is left is
# RootDirectory= (the CLI runs from the host's /usr), AF_UNIX (stdout and
# stderr go to the journal over a local socket), the read access to
# /dev/rtc that ProtectClock= itself grants, and RemoveIPC= (left out: it
# would remove the IPC objects of an application running as the same user).
# The daemon reaches 3.2, and no lower while it mounts: a FUSE mount made in a
# mount namespace stays there, so ProtectSystem=, ProtectHome=, PrivateTmp=, PrivateDevices=,
# PrivateMounts=, ProtectKernel*=, ProtectControlGroups=, ProtectProc=,
# ProcSubset=, RootDirectory= and PrivateUsers= are out; mount(2) needs
# CAP_SYS_ADMIN and @mount's mount/umount2; PrivateNetwork= is out for
# -o offsite=, @resources for the verifier's ioprio_set (the unit's comments
# say why for each).
CLI_MAX_SCORE = 0.2
DAEMON_MAX_SCORE = 3.2
# With the offsite drop-ins, which give back the network (PrivateNetwork=,
# AF_INET/AF_INET6, IPAddressDeny=) for the S3 uploads.
CLI_OFFSITE_MAX_SCORE = 1.1
DAEMON_OFFSITE_MAX_SCORE = 3.7

# Settings that give a service its own mount namespace (systemd's
# exec_needs_mount_namespace(), systemd.exec(5)): a FUSE mount made inside it
# never reaches the host. PrivateDevices= would also hide /dev/fuse,
# PrivateUsers= takes away CAP_SYS_ADMIN over the host's mounts.
NAMESPACE_SETTINGS = (
    "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
    "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "ExecPaths", "NoExecPaths",
    "BindPaths", "BindReadOnlyPaths", "TemporaryFileSystem", "MountImages",
    "ExtensionImages", "ExtensionDirectories", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc",
    "ProcSubset", "PrivateIPC", "IPCNamespacePath", "RootDirectory", "RootImage",
    "LogNamespace", "PrivateUsers", "PrivateNetwork", "NetworkNamespacePath",
    "DynamicUser", "StateDirectory", "CacheDirectory", "LogsDirectory")


def need_systemd_analyze():
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is missing: scripts/install-deps installs the systemd package")


def settings(unit, section="Service"):
    """The unit file's settings of one section: name -> list of values, in order."""
    out, current = {}, None
    for line in Path(unit).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = line.strip("[]")
            continue
        if current == section:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def one(unit_settings, key):
    values = unit_settings.get(key)
    assert values and len(values) == 1, f"{key}= should be set once, is {values}"
    return values[0]


def syscall_set(item, _cache={}):
    """The system calls of a systemd-analyze group (@name, nested groups
    expanded), or the one call named."""
    if not item.startswith("@"):
        return {item}
    if item not in _cache:
        p = subprocess.run(["systemd-analyze", "syscall-filter", item], capture_output=True,
                           text=True, timeout=T)
        assert p.returncode == 0, p.stderr
        out = set()
        for line in p.stdout.splitlines():
            if line.startswith((" ", "\t")) and not line.strip().startswith("#"):
                out |= syscall_set(line.strip())
        _cache[item] = out
    return _cache[item]


# Deny lists that other settings add (systemd.exec(5)).
IMPLIED_DENIALS = {"ProtectClock": ["@clock"], "ProtectKernelModules": ["@module"],
                   "ProtectKernelLogs": ["syslog"], "ProtectHostname": ["sethostname",
                                                                      "setdomainname"]}


def seccomp_spec(unit_settings):
    """unit_seccomp.py's SPEC for a unit: its SystemCallFilter= lines in order
    (an allow list gets @default too, as systemd adds it), the denials other
    settings imply, RestrictAddressFamilies= and MemoryDenyWriteExecute=."""
    lines = unit_settings["SystemCallFilter"]
    assert not lines[0].startswith("~"), "an allow list is expected"
    assert unit_settings.get("SystemCallErrorNumber") == ["EPERM"]
    allow = set(syscall_set("@default"))
    for line in lines:
        names = set().union(*(syscall_set(x) for x in line.lstrip("~").split()))
        allow = allow - names if line.startswith("~") else allow | names
    for key, denied in IMPLIED_DENIALS.items():
        if unit_settings.get(key) == ["yes"]:
            allow -= set().union(*(syscall_set(x) for x in denied))
    families = one(unit_settings, "RestrictAddressFamilies").split()
    return json.dumps({"allow": sorted(allow),
                       "families": [getattr(socket, f) for f in families],
                       "mdwe": unit_settings.get("MemoryDenyWriteExecute") == ["yes"]})


def copy_units(dest, units=None, drop_ins=False):
    """Copies of the units (and, with drop_ins, the offsite drop-ins, as
    UNIT.d/offsite.conf) in dest, ExecStart= and friends pointing at the
    built programs instead of /usr/local/bin."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted(UNITS.glob("*.service")) + sorted(UNITS.glob("*.timer")):
        if units and src.name not in units:
            continue
        (dest / src.name).write_text(point_at_build(src.read_text()))
    for unit, drop_in in DROP_INS.items():
        if not drop_ins or (units and unit not in units):
            continue
        d = dest / (unit + ".d")
        d.mkdir(exist_ok=True)
        (d / "offsite.conf").write_text(point_at_build(drop_in.read_text()))
    return dest


def point_at_build(text):
    text = text.replace("/usr/local/bin/bri-backupfs ", f"{BRI_BACKUPFS} ")
    return text.replace("/usr/local/bin/bri-backup ", f"{BRI_BACKUP} ")


def verify(*paths):
    return subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, paths)],
                          capture_output=True, text=True, timeout=T)


def exposure(unit):
    p = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
                       capture_output=True, text=True, timeout=T)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", p.stdout)
    assert m, f"no score in systemd-analyze security's output:\n{p.stdout}\n{p.stderr}"
    return float(m.group(1)), p.stdout


@pytest.mark.parametrize("drop_ins", [False, True], ids=["units", "with-offsite-drop-ins"])
def test_units_verify_with_the_built_programs(tmp_path, drop_ins):
    need_systemd_analyze()
    d = copy_units(tmp_path / "units", drop_ins=drop_ins)
    names = sorted(p.name for p in d.iterdir() if p.is_file())
    assert {"bri-backup.service", "bri-backup.timer", "bri-backupfs.service"} <= set(names)
    for name in names:
        p = verify(d / name)
        # verify exits 0 on warnings too (an unknown setting, a bad specifier):
        # the units must give none at all. Drop-ins are read with their unit.
        assert p.returncode == 0 and not p.stderr.strip() and not p.stdout.strip(), \
            f"{name}: rc {p.returncode}\n{p.stdout}{p.stderr}"


def test_verify_catches_what_it_is_here_for(tmp_path):
    """The check above can fail: a misspelt setting and a missing program are
    reported."""
    need_systemd_analyze()
    d = copy_units(tmp_path / "units", units={"bri-backup.service"})
    unit = d / "bri-backup.service"
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    p = verify(unit)
    assert "ProtectSytem" in p.stderr, p.stderr
    unit.write_text(point_at_build(CLI_UNIT.read_text()).replace(str(BRI_BACKUP),
                                                                  "/nonexistent/bri-backup"))
    p = verify(unit)
    assert p.returncode != 0 and "/nonexistent/bri-backup" in p.stderr, p.stderr


def test_security_scores(tmp_path):
    need_systemd_analyze()
    d = copy_units(tmp_path / "units")
    cli, cli_out = exposure(d / "bri-backup.service")
    daemon, daemon_out = exposure(d / "bri-backupfs.service")
    print(f"systemd-analyze security: bri-backup.service {cli}, bri-backupfs.service {daemon}")
    assert cli <= 4.0, cli_out  # the issue's target
    assert cli <= CLI_MAX_SCORE, cli_out
    assert daemon <= DAEMON_MAX_SCORE, daemon_out
    # The same units from their real place (ExecStart= in /usr/local/bin) score the same.
    assert exposure(CLI_UNIT)[0] == cli and exposure(DAEMON_UNIT)[0] == daemon
    # With the offsite drop-ins (network for S3): higher, and still under the target.
    d = copy_units(tmp_path / "offsite", drop_ins=True)
    cli_offsite, out = exposure(d / "bri-backup.service")
    daemon_offsite, _ = exposure(d / "bri-backupfs.service")
    print(f"with the offsite drop-ins: {cli_offsite}, {daemon_offsite}")
    assert cli < cli_offsite <= CLI_OFFSITE_MAX_SCORE, out
    assert daemon < daemon_offsite <= DAEMON_OFFSITE_MAX_SCORE


def test_daemon_unit_keeps_the_host_mount_namespace():
    daemon = settings(DAEMON_UNIT)
    for key in NAMESPACE_SETTINGS:
        assert key not in daemon, f"{key}= would hide the FUSE mount from the host"
    # What makes mount(2) work without the setuid fusermount3 (which
    # no_new_privs would stop): CAP_SYS_ADMIN, and nothing else.
    assert one(daemon, "User") == "bri-backup"
    assert one(daemon, "AmbientCapabilities") == "CAP_SYS_ADMIN"
    assert one(daemon, "CapabilityBoundingSet") == "CAP_SYS_ADMIN"
    assert one(daemon, "NoNewPrivileges") == "yes"
    assert "/dev/fuse rw" in daemon.get("DeviceAllow", [])
    # Its offsite drop-in neither (LoadCredential= makes no namespace: systemd
    # builds the credentials folder in a helper process).
    for key in settings(DROP_INS["bri-backupfs.service"]):
        assert key not in NAMESPACE_SETTINGS, key


def test_cli_unit_has_the_issues_settings():
    cli = settings(CLI_UNIT)
    want = {"User": "bri-backup", "Group": "bri-backup", "ProtectSystem": "strict",
            "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
            "RestrictAddressFamilies": "AF_UNIX", "CapabilityBoundingSet": "",
            "UMask": "0077", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
            "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
            "ProtectControlGroups": "yes", "LockPersonality": "yes",
            "MemoryDenyWriteExecute": "yes", "RestrictNamespaces": "yes",
            "RestrictRealtime": "yes", "SystemCallArchitectures": "native"}
    for key, value in want.items():
        assert one(cli, key) == value, key
    assert cli["SystemCallFilter"][0] == "@system-service"
    # The offsite drop-in gives back the network, and the credentials through
    # LoadCredential= (ProtectHome= hides ~/.aws).
    offsite = settings(DROP_INS["bri-backup.service"])
    assert one(offsite, "RestrictAddressFamilies") == "AF_UNIX AF_INET AF_INET6"
    assert one(offsite, "PrivateNetwork") == "no"
    assert one(offsite, "LoadCredential").startswith("aws-credentials:")
    assert "AWS_SHARED_CREDENTIALS_FILE=%d/aws-credentials" in offsite["Environment"]


def test_sysusers_file_makes_the_user(tmp_path):
    if not shutil.which("systemd-sysusers"):
        pytest.fail("systemd-sysusers is missing: scripts/install-deps installs systemd")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    p = subprocess.run(["systemd-sysusers", f"--root={root}", str(UNITS / "bri-backup.sysusers")],
                       capture_output=True, text=True, timeout=T)
    assert p.returncode == 0, p.stderr
    line = [l for l in (root / "etc/passwd").read_text().splitlines()
            if l.startswith("bri-backup:")]
    assert len(line) == 1, (root / "etc/passwd").read_text()
    _, _, uid, gid, _, home, shell = line[0].split(":")
    assert 0 < int(uid) < 1000 and uid == gid  # a system user with its own group
    assert shell == "/usr/sbin/nologin" and home == "/"
    assert any(l.startswith(f"bri-backup:x:{gid}:") for l in
               (root / "etc/group").read_text().splitlines())


# --- The sandboxes, emulated ------------------------------------------------

def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root: a user of its own, a mount namespace")


@pytest.fixture
def service_user():
    """This run's own user (test_mount_user's helpers: one per process, removed after)."""
    need_root()
    import test_mount_user as tmu
    uid, gid = tmu.make_user()
    try:
        yield uid, gid
    finally:
        subprocess.run(["userdel", tmu.USER], capture_output=True, timeout=T)


# Builds, inside a private mount namespace (unshare -m), what the CLI unit's
# settings make, then runs the command as the user. $1: the data folder on
# the host, bound at the unit's database folder; $2: the programs, bound at
# /usr/local/bin (the unit's ExecStart= path); $3: ReadWritePaths (space
# separated); $4 $5: uid, gid; $6: unit_seccomp.py's SPEC (empty: no
# filters); $7: extra environment (NAME=VALUE ..., see sandbox_env()); the
# rest: the command.
SANDBOX = r"""
set -eu
data=$1 bin=$2 rw=$3 uid=$4 gid=$5 filters=$6 envs=$7; shift 7
# SystemCallFilter=, RestrictAddressFamilies=, MemoryDenyWriteExecute=
if [ -n "$filters" ]; then
    set -- /usr/bin/python3 /usr/local/bin/unit_seccomp.py "$filters" -- "$@"
fi
# The unit's paths, in this namespace only.
mount -t tmpfs -o mode=0755 tmpfs /srv
mkdir -p /srv/bri/data
mount --bind "$data" /srv/bri/data
mount --bind "$bin" /usr/local/bin
# ProtectSystem=strict: every mount read-only, but the API file systems and
# FUSE mounts (other tests' daemons, perhaps held at a pause point: never
# wait on them; nothing here writes to them).
awk '{for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1), $5; break }}' \
    /proc/self/mountinfo | sort -u -k2 | while read -r fstype m; do
    case $fstype in fuse|fuse.*|fuseblk) continue ;; esac
    case $m in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
    mount -o remount,bind,ro "$(printf '%b' "$m")"
done
# ReadWritePaths=
for p in $rw; do mount --bind "$p" "$p"; mount -o remount,bind,rw "$p"; done
# ProtectProc=invisible, ProcSubset=pid
mount -t proc -o nosuid,nodev,noexec,hidepid=invisible,subset=pid proc /proc
# PrivateTmp=, PrivateDevices= (its /dev/shm), ProtectHome=yes
for t in /tmp /var/tmp /dev/shm; do mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$t"; done
for h in /home /root /run/user; do
    if [ -d "$h" ]; then mount -t tmpfs -o mode=000,ro tmpfs "$h"; fi
done
# User=, Group=, CapabilityBoundingSet= (empty), NoNewPrivileges=, UMask=
exec setpriv --reuid "$uid" --regid "$gid" --clear-groups --inh-caps=-all \
    --bounding-set=-all --no-new-privs -- \
    env -i PATH=/usr/bin:/bin LANG=C.UTF-8 $envs sh -c 'umask 0077 && exec "$@"' sh "$@"
"""


def sandbox_env(inside):
    """Extra environment of the programs in a sandbox: none for the ordinary
    build. An ASan build (scripts/check sanitize) runs without LeakSanitizer
    there: it stops the threads with ptrace(2), which the units' system call
    filter refuses, as it should (systemd runs the ordinary build). Every other
    check stays on; inside the read-only tree the reports go to stderr, shown
    when the test fails, since the stage's log folder cannot be written."""
    if not sanitizer_preload():
        return {}
    if inside:
        return {"ASAN_OPTIONS": "detect_leaks=0",
                "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    return {"ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                    "detect_leaks=0"])),
            "UBSAN_OPTIONS": os.environ.get("UBSAN_OPTIONS",
                                            "halt_on_error=1:print_stacktrace=1")}


def in_cli_sandbox(data, bindir, uid, gid, cmd, read_write=None, filters=True):
    cli = settings(CLI_UNIT)
    for key, value in {"ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
                       "PrivateDevices": "yes", "NoNewPrivileges": "yes",
                       "ProtectProc": "invisible", "ProcSubset": "pid",
                       "CapabilityBoundingSet": "", "UMask": "0077"}.items():
        assert one(cli, key) == value, f"the emulation assumes {key}={value}"
    rw = cli["ReadWritePaths"] if read_write is None else read_write
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "--",
                           "bash", "-c", SANDBOX, "sandbox", str(data), str(bindir), " ".join(rw),
                           str(uid), str(gid), seccomp_spec(cli) if filters else "",
                           " ".join(f"{k}={v}" for k, v in sandbox_env(inside=True).items()), *cmd],
                          capture_output=True, text=True, timeout=T)


def unit_command(unit, key="ExecStart", **env):
    """The unit's command line with its Environment= defaults (and env) expanded."""
    s = settings(unit)
    values = {}
    for assignment in s.get("Environment", []):
        k, _, v = assignment.partition("=")
        values[k] = v
    values.update(env)
    line = one(s, key)
    line = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], line)
    line = re.sub(r"\$(\w+)", lambda m: values[m.group(1)], line)
    return line.split()


@pytest.fixture
def cli_sandbox(service_user, tmp_path):
    if not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.fail("unshare and setpriv (util-linux) are needed")
    uid, gid = service_user
    data = tmp_path / "data"
    make_sample_db(data / "bri.db")
    hook = data / "hook"
    hook.write_text("#!/bin/sh\n"
                    "echo \"$BRI_OPERATION $BRI_RESULT $(id -u) $(umask)"
                    " $(grep ^CapEff /proc/self/status | cut -f2)\" >> /srv/bri/data/hook.out\n")
    hook.chmod(0o755)
    subprocess.run(["chown", "-R", f"{uid}:{gid}", str(data)], check=True, timeout=T)
    data.chmod(0o750)
    bindir = tmp_path / "bin"
    copy_programs(bindir)
    shutil.copy(HELPER, bindir / HELPER.name)
    return data, bindir, uid, gid


def test_cli_runs_in_its_units_sandbox(cli_sandbox):
    """Every path the CLI writes is in ReadWritePaths= or the private /tmp:
    the unit's own command (create --verify --cleanup), a rehearsal (its
    scratch copy in /tmp), health, and a hook run by the CLI, all succeed with
    everything else read-only; the files it makes are its user's, mode 0600."""
    data, bindir, uid, gid = cli_sandbox
    assert one(settings(CLI_UNIT), "ReadWritePaths") == "/srv/bri/data"
    base = unit_command(CLI_UNIT, BRI_BACKUP_ARGS="--on-success /srv/bri/data/hook")
    assert base[0] == "/usr/local/bin/bri-backup" and base[-3:] == ["create", "--verify",
                                                                     "--cleanup"]
    p = in_cli_sandbox(data, bindir, uid, gid, base)
    assert p.returncode == 0, p.stderr
    store = data / "backups"
    backups = sorted(store.glob("*.db.meta"))
    assert len(backups) == 1, sorted(store.iterdir())
    for f in [store, *store.iterdir()]:
        assert f.stat().st_uid == uid, f
        if f.is_file():
            assert f.stat().st_mode & 0o077 == 0, f"{f} is {oct(f.stat().st_mode)}"
    hook_lines = (data / "hook.out").read_text().splitlines()
    assert hook_lines[0].split() == ["create", "ok", str(uid), "0077", "0000000000000000"]
    for cmd in (["rehearse", "latest"], ["health", "--min-backups", "1"], ["verify"]):
        p = in_cli_sandbox(data, bindir, uid, gid,
                           ["/usr/local/bin/bri-backup", "--db", "/srv/bri/data/bri.db", *cmd])
        assert p.returncode == 0, f"{cmd}: {p.stderr}"
    assert "ok" in (data / "backups").joinpath(backups[0].name[:-len(".db.meta")] +
                                               ".db.verify").read_text()
    # Nothing was left anywhere but the data folder: it is the only writable place
    # besides the namespace's own /tmp, which went away with it.


def test_cli_sandbox_is_real(cli_sandbox):
    """The emulation above does confine: without ReadWritePaths= the same
    command fails on the read-only file system and the store gets nothing;
    and the user can reach neither home folders nor the host's /tmp."""
    data, bindir, uid, gid = cli_sandbox
    p = in_cli_sandbox(data, bindir, uid, gid, unit_command(CLI_UNIT), read_write=[])
    assert p.returncode != 0 and "Read-only file system" in p.stderr, p.stderr
    assert not (data / "backups").exists() or not any((data / "backups").glob("*.db*"))
    marker = Path(tempfile.mkdtemp(prefix="bri-sandbox-", dir="/tmp"))
    try:
        marker.chmod(0o755)
        p = in_cli_sandbox(data, bindir, uid, gid,
                           ["/bin/sh", "-c", f"test ! -e {marker} && ! ls /root >/dev/null 2>&1"])
        assert p.returncode == 0, p.stderr
    finally:
        marker.rmdir()
    # /proc shows the run's own processes only, and no /proc/meminfo (ProcSubset=pid).
    p = in_cli_sandbox(data, bindir, uid, gid,
                       ["/bin/sh", "-c", "test -e /proc/self/status && test ! -e /proc/meminfo"
                        " && test ! -e /proc/1"])
    assert p.returncode == 0, p.stderr
    # The filters are loaded: chown(2) of one's own file to oneself (fine
    # without them) is in @privileged, an AF_INET socket is not AF_UNIX, and
    # W+X memory is refused.
    own = f"/bin/chown {uid}:{gid} /srv/bri/data/bri.db"
    assert in_cli_sandbox(data, bindir, uid, gid, own.split(), filters=False).returncode == 0
    p = in_cli_sandbox(data, bindir, uid, gid, own.split())
    assert p.returncode != 0 and "Operation not permitted" in p.stderr, p.stderr
    probe = ("import mmap, socket\n"
             "try:\n socket.socket(socket.AF_INET)\nexcept OSError as e: print(e.errno)\n"
             "try:\n mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
             "except OSError as e: print(e.errno)\n")
    p = in_cli_sandbox(data, bindir, uid, gid, ["/usr/bin/python3", "-c", probe])
    assert p.stdout.split() == [str(errno.EAFNOSUPPORT), str(errno.EPERM)], p.stdout + p.stderr


# --- The daemon's unit --------------------------------------------------------

@pytest.fixture
def daemon_env(service_user, tmp_path):
    """Like test_mount_user's user_env: the user's data, mountpoint and programs
    in a folder it can reach, and /dev/fuse usable by users (0666)."""
    import test_mount_user as tmu
    uid, gid = service_user
    fuse = tmu.FuseForUsers()
    fuse.acquire()
    base = Path(tempfile.mkdtemp(prefix="bri-unit-", dir=reachable_tmp()))
    try:
        base.chmod(0o755)
        copy_programs(base / "bin")
        shutil.copy(HELPER, base / "bin" / HELPER.name)
        db = make_sample_db(base / "data" / "bri.db")
        (base / "mnt").mkdir()
        hook = base / "data" / "hook"
        hook.write_text("#!/bin/sh\ngrep -E '^Cap(Eff|Prm|Amb)' /proc/self/status"
                        f" > {base}/data/hook.out.tmp && mv {base}/data/hook.out.tmp"
                        f" {base}/data/hook.out\n")
        hook.chmod(0o755)
        subprocess.run(["chown", "-R", f"{uid}:{gid}", str(base / "data"), str(base / "mnt")],
                       check=True, timeout=T)
        yield uid, gid, base, db
    finally:
        if is_mounted(base / "mnt"):
            subprocess.run(["fusermount3", "-uz", str(base / "mnt")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        fuse.release()


def daemon_credentials(uid, gid, bindir, unit_settings=None):
    """setpriv (and unit_seccomp.py) arguments giving what the daemon's unit
    gives its process: user, capabilities, no_new_privs, seccomp filters."""
    s = settings(DAEMON_UNIT) if unit_settings is None else unit_settings
    caps = [c.lower().removeprefix("cap_") for c in s.get("AmbientCapabilities", [""])[0].split()]
    bounding = [c.lower().removeprefix("cap_")
                for c in s.get("CapabilityBoundingSet", [""])[0].split()]
    args = ["setpriv", "--reuid", str(uid), "--regid", str(gid), "--clear-groups",
            "--inh-caps=" + ",".join(["-all"] + ["+" + c for c in caps]),
            "--ambient-caps=" + ",".join(["-all"] + ["+" + c for c in caps]),
            "--bounding-set=" + ",".join(["-all"] + ["+" + c for c in bounding])]
    if s.get("NoNewPrivileges") == ["yes"]:
        args.append("--no-new-privs")
    return args + ["--", "/usr/bin/python3", str(bindir / HELPER.name), seccomp_spec(s), "--"]


def start_daemon(prefix, base, db, options=()):
    mnt = base / "mnt"
    cmd = [*prefix, str(base / "bin/bri-backupfs"), "-f", "-o",
           ",".join(["backup_dir=" + str(base / "data/backups"), *options]), str(db), str(mnt)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={"PATH": "/usr/bin:/bin", **sandbox_env(inside=False)}, cwd=base)


def test_daemon_mounts_with_its_units_credentials(daemon_env):
    """As the unit runs it (its user, ambient+bounding CAP_SYS_ADMIN only,
    no_new_privs), the daemon mounts with mount(2) itself: the mount is in
    the host's table, usable by the user; a hook it runs does not inherit
    CAP_SYS_ADMIN; on SIGTERM (the unit's stop) it unmounts itself with
    umount2(2) and exits 0, as after fusermount3 -u."""
    uid, gid, base, db = daemon_env
    mnt = base / "mnt"
    prefix = daemon_credentials(uid, gid, base / "bin")
    proc = start_daemon(prefix, base, db, [f"on_success={base}/data/hook"])
    try:
        wait_for_mount(proc, mnt)
        mine = [l for l in Path("/proc/self/mountinfo").read_text().splitlines()
                if f" {mnt} " in l]
        assert len(mine) == 1 and f"user_id={uid}" in mine[0], mine
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
        assert re.search(r"^Seccomp:\s+2$", status, re.M), status  # filters loaded
        assert re.search(r"^CapBnd:\s+0000000000200000$", status, re.M), status
        p = subprocess.run(["setpriv", "--reuid", str(uid), "--regid", str(gid), "--clear-groups",
                            "--", "sh", "-c", f"echo by_unit > {mnt}/ctl/create && ls {mnt}"],
                           capture_output=True, text=True, timeout=T)
        assert p.returncode == 0 and "by_unit" in p.stdout.split(), p.stderr
        out = base / "data/hook.out"
        wait_until(out.exists, timeout=60)
        caps = dict(l.split(":") for l in out.read_text().splitlines())
        assert {k: v.strip() for k, v in caps.items()} == {
            "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
            "CapAmb": "0000000000000000"}, caps
        # The unit's stop is systemd's SIGTERM (no ExecStop=): the daemon
        # unmounts with umount2(2) and its CAP_SYS_ADMIN, and exits 0 (it
        # exited 1, and systemd would have marked every stop a failure).
        assert "ExecStop" not in settings(DAEMON_UNIT)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        assert not is_mounted(mnt)
        # An unmount from outside (fusermount3 -u, as root here) stops it cleanly too.
        proc = start_daemon(prefix, base, db)
        wait_for_mount(proc, mnt)
        subprocess.run(["/bin/fusermount3", "-u", str(mnt)], check=True, timeout=T)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        assert not is_mounted(mnt)
    finally:
        if proc.poll() is None:
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
            proc.kill()
            proc.wait(timeout=60)


def test_daemon_without_the_capability_cannot_mount_under_no_new_privs(daemon_env):
    """Why the unit gives CAP_SYS_ADMIN: as a plain user, libfuse falls back to
    the setuid fusermount3, which no_new_privs (set by NoNewPrivileges=, and
    implied by every seccomp setting of a User= unit) leaves without root."""
    uid, gid, base, db = daemon_env
    s = dict(settings(DAEMON_UNIT))
    s.pop("AmbientCapabilities")
    s["CapabilityBoundingSet"] = [""]
    proc = start_daemon(daemon_credentials(uid, gid, base / "bin", s), base, db)
    try:
        assert proc.wait(timeout=60) != 0
        assert "fusermount3: mount failed: Operation not permitted" in proc.stderr.read()
        assert not is_mounted(base / "mnt")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
