"""Runs a command under the system call filters a systemd unit asks for, built
the way systemd does (each its own seccomp filter, stacked): an allow list
whose other calls fail with EPERM (SystemCallFilter= with
SystemCallErrorNumber=EPERM), socket() refused with EAFNOSUPPORT outside the
allowed address families (RestrictAddressFamilies=), and no memory both
writable and executable, nor made executable later (MemoryDenyWriteExecute=).
test_systemd_units.py computes the lists from the unit and systemd-analyze.

Usage: unit_seccomp.py SPEC -- COMMAND [ARG...], where SPEC is JSON:
{"allow": [syscall names], "families": [address family numbers] or null,
"mdwe": true/false}. The caller has set no_new_privs (setpriv), as systemd
does before loading filters for an unprivileged service."""

import errno
import json
import os
import sys

import seccomp

AF_MAX = 64  # above every address family Linux has (46 in 6.x)
PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000


def allow_list(names):
    f = seccomp.SyscallFilter(seccomp.ERRNO(errno.EPERM))
    for name in names:
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (ValueError, RuntimeError, OSError):
            pass  # not a call of this architecture, or unknown to this libseccomp
    f.load()


def address_families(allowed):
    f = seccomp.SyscallFilter(seccomp.ALLOW)
    refuse = seccomp.ERRNO(errno.EAFNOSUPPORT)
    for family in range(AF_MAX + 1):
        if family not in allowed:
            f.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.EQ, family))
    f.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.GT, AF_MAX))
    f.load()


def memory_deny_write_execute():
    f = seccomp.SyscallFilter(seccomp.ALLOW)
    refuse = seccomp.ERRNO(errno.EPERM)
    wx = PROT_WRITE | PROT_EXEC
    f.add_rule(refuse, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, wx, wx))
    for name in ("mprotect", "pkey_mprotect"):
        f.add_rule(refuse, name, seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
    f.add_rule(refuse, "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, SHM_EXEC))
    f.load()


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: unit_seccomp.py SPEC -- COMMAND [ARG...]")
    spec = json.loads(sys.argv[1])
    cmd = sys.argv[3:]
    if spec.get("families") is not None:
        address_families(set(spec["families"]))
    if spec.get("mdwe"):
        memory_deny_write_execute()
    allow_list(spec["allow"])  # last: the two above need prctl and seccomp themselves
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
