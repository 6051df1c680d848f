#!/usr/bin/env python3
"""backup_database.py: the seed's script, over the bri_backup module. Takes a
backup of data/bri.db (or $BRI_DB) into data/backups (or $BRI_BACKUP_DIR)
and prints its path; --verify verifies it, --cleanup then removes backups
older than the retention period (30 days).
    python scripts/backup_database.py [--name NAME] [--verify] [--cleanup]
Exit status 0, 1 when something failed, 2 for bad usage."""

import argparse
import sys

from _bri_seed import import_bri_backup, manager

PROG = "backup_database.py"


def main():
    parser = argparse.ArgumentParser(prog=PROG, description="Create a backup of the BRI database.")
    parser.add_argument("--name", help="custom backup name (default: bri_backup_YYYYMMDD_HHMMSS)")
    parser.add_argument("--verify", action="store_true", help="verify the backup after creating it")
    parser.add_argument("--cleanup", action="store_true",
                        help="remove backups older than the retention period (30 days)")
    args = parser.parse_args()
    bri_backup = import_bri_backup(PROG)
    mgr = manager(bri_backup)
    status = 0
    try:
        path = mgr.create_backup(args.name)
        print(path, flush=True)
        if args.verify:
            if mgr.verify_backup(path):
                print(f"verified {path}: ok", file=sys.stderr)
            else:
                print(f"{PROG}: verification of {path} failed; the backup is kept, "
                      "do not rely on it. Retry the backup.", file=sys.stderr)
                status = 1
        if args.cleanup:
            removed = mgr.cleanup_old_backups()
            print(f"Removed {removed} old backups", file=sys.stderr)
    except bri_backup.Error as e:
        print(f"{PROG}: {e.strerror}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
