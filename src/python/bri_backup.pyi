# Type stubs of bri_backup, the C extension over libbri (src/python/bri_backup.c).
# The API of the BRI seed's storage/backup.py (SPEC.md section 7).
import os
from typing import Any, Optional, TypedDict, Union

__version__: str

_Path = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
_Duration = Union[int, str]  # seconds, or "26h", "90m", "2d" as bri-backup takes them
_Lag = Union[float, str]     # offsite_lag_warn: seconds (0: 26 hours), or "26h"

class Error(OSError):
    """A backup operation failed: errno set, the message bri-backup prints."""

class BackupInfo(TypedDict):
    filename: str
    path: str
    size_mb: float
    created: str
    tables: dict[str, int]
    name: str
    kind: str
    verified: Optional[bool]
    verify: str
    size_bytes: int
    checksum: Optional[str]
    backup_time_utc: Optional[str]
    verified_at: Optional[str]
    verify_reason: Optional[str]
    meta_error: Optional[str]

class DatabaseBackup:
    def __init__(self, db_path: _Path = "data/bri.db", backup_dir: Optional[_Path] = None,
                 retention_days: int = 30) -> None: ...
    @property
    def db_path(self) -> str: ...
    @property
    def backup_dir(self) -> Optional[str]: ...
    @property
    def retention_days(self) -> int: ...
    def create_backup(self, name: Optional[str] = None) -> str: ...
    def restore_backup(self, path: Optional[_Path] = None, verify: bool = True) -> bool: ...
    def verify_backup(self, path: _Path) -> bool: ...
    def list_backups(self) -> list[BackupInfo]: ...
    def cleanup_old_backups(self) -> int: ...
    def get_backup_stats(self) -> dict[str, Any]: ...
    def verify_all_backups(self) -> tuple[int, int]: ...
    # The thresholds of `bri-backup health` (--warn-age -> warn_age, ...), the
    # same values refused (ValueError) and the same text returned; None: the
    # option not given. A duration: seconds (int) or the CLI's text ("26h").
    def health(self, *, max_age_hours: float = 24, min_backups: int = 7,
               offsite: Optional[str] = None, offsite_lag_warn: _Lag = 0,
               warn_age: Optional[_Duration] = None, crit_age: Optional[_Duration] = None,
               warn_count: Optional[int] = None, crit_count: Optional[int] = None,
               rehearse_age: Optional[_Duration] = None) -> str: ...
    def metrics(self, *, max_age_hours: float = 24, min_backups: int = 7,
                offsite: Optional[str] = None, offsite_lag_warn: _Lag = 0,
                warn_age: Optional[_Duration] = None, crit_age: Optional[_Duration] = None,
                warn_count: Optional[int] = None, crit_count: Optional[int] = None,
                rehearse_age: Optional[_Duration] = None) -> str: ...

def verify_all_backups(db_path: _Path = "data/bri.db",
                       backup_dir: Optional[_Path] = None) -> tuple[int, int]: ...
