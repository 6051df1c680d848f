#!/usr/bin/env python3
"""restore_database.py: the seed's script, over the bri_backup module.
Restores a backup into data/bri.db (or $BRI_DB): the one given, else the
newest; verified first unless --no-verify; the current content is saved as
a safety backup before. --list lists the backups, newest first.
    python scripts/restore_database.py [--list] [--no-verify] [backup_path]
Exit status 0, 1 when nothing was restored, 2 for bad usage."""

import argparse
import sys

from _bri_seed import import_bri_backup, manager

PROG = "restore_database.py"


def list_backups(mgr):
    backups = mgr.list_backups()
    if not backups:
        print("No backups.")
        return
    width = max(4, *(len(b["name"]) for b in backups))
    print(f"{'NAME':<{width}}  {'CREATED':<19}  {'SIZE MB':>10}  {'KIND':<7}  VERIFIED")
    for b in backups:
        reason = f": {b['verify_reason']}" if b["verify"] == "failed" else ""
        print(f"{b['name']:<{width}}  {b['created']:<19}  {b['size_mb']:>10.2f}  "
              f"{b['kind']:<7}  {b['verify']}{reason}")


def main():
    parser = argparse.ArgumentParser(prog=PROG, description="Restore the BRI database from a backup.")
    parser.add_argument("backup_path", nargs="?",
                        help="backup file to restore (default: the latest backup)")
    parser.add_argument("--list", action="store_true", help="list available backups and exit")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip backup verification before restoring (faster but risky)")
    args = parser.parse_args()
    bri_backup = import_bri_backup(PROG)
    mgr = manager(bri_backup)
    try:
        if args.list:
            list_backups(mgr)
            return 0
        mgr.restore_backup(args.backup_path, verify=not args.no_verify)
    except bri_backup.Error as e:
        print(f"{PROG}: {e.strerror}", file=sys.stderr)
        if not args.no_verify and "verif" in e.strerror:
            print("If the backup is known good: restore_database.py --no-verify", file=sys.stderr)
        return 1
    print(f"restored {args.backup_path or 'the latest backup'} into {mgr.db_path}")
    if args.no_verify:
        print("the backup was not verified (--no-verify)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
