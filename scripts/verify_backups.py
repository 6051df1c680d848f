#!/usr/bin/env python3
"""verify_backups.py: the seed's script, over the bri_backup module.
Verifies every backup of data/backups (or $BRI_BACKUP_DIR): checksum,
integrity check, row counts; prints each result and the counts.
    python scripts/verify_backups.py
Exit status 0 when every backup is good, 1 when any is not, 2 bad usage."""

import argparse
import sys

from _bri_seed import import_bri_backup, manager

PROG = "verify_backups.py"


def main():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Verify every BRI database backup (checksum, integrity check, "
        "row counts).")
    parser.parse_args()
    bri_backup = import_bri_backup(PROG)
    mgr = manager(bri_backup)
    try:
        backups = mgr.list_backups()
    except bri_backup.Error as e:
        print(f"{PROG}: {e.strerror}", file=sys.stderr)
        return 1
    if not backups:
        print("No backups to verify.")
        return 0
    valid = invalid = 0
    for b in backups:
        try:
            ok = mgr.verify_backup(b["path"])
        except bri_backup.Error as e:
            if e.errno == 2:  # removed since the listing (a cleanup): not a failure
                print(f"{b['name']}: skipped: removed since the listing")
                continue
            print(f"{b['name']}: error: {e.strerror}")
            invalid += 1
            continue
        if ok:
            valid += 1
            print(f"{b['name']}: ok")
        else:
            invalid += 1
            reason = next((x.get("verify_reason") for x in mgr.list_backups()
                           if x["name"] == b["name"]), None) or b.get("meta_error") or "failed"
            print(f"{b['name']}: failed: {reason}")
    print(f"Valid: {valid}, Invalid: {invalid}")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
