"""The seed's storage.backup, over the bri_backup C extension (SPEC.md section 7)."""
from bri_backup import DatabaseBackup, Error, verify_all_backups  # noqa: F401
