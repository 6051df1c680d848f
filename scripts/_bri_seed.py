"""Shared by the seed's scripts backup_database.py, restore_database.py and
verify_backups.py: finds the bri_backup module (the C extension over the
core, SPEC.md section 7) wherever it is, and the seed's paths.

The interpreter that runs a script may not be the one meson built the module
for and installed it into (`python3` first on PATH may be another one), so
the module is looked for: in the build folder $BRI_BUILD_DIR, else
../build beside the scripts, else where the interpreter looks anyway, else
where meson installs it (<prefix>/lib/python3.X/dist-packages for /usr/local
and /usr, and Debian's /usr/lib/python3/dist-packages). Not a seed file."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _candidates():
    if os.environ.get("BRI_BUILD_DIR"):
        yield Path(os.environ["BRI_BUILD_DIR"]) / "src" / "python"
    yield HERE.parent / "build" / "src" / "python"


def _installed():
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for prefix in ("/usr/local", "/usr"):
        yield Path(prefix) / "lib" / version / "dist-packages"
        yield Path(prefix) / "lib" / "python3" / "dist-packages"


def import_bri_backup(prog):
    """The bri_backup module; exits 1 with a clear message when not found."""
    for d in _candidates():
        if any(d.glob("bri_backup*.so")):
            sys.path.insert(0, str(d))
            break
    try:
        import bri_backup
        return bri_backup
    except ImportError:
        pass
    for d in _installed():
        if any(d.glob("bri_backup*.so")) and str(d) not in sys.path:
            sys.path.append(str(d))
    try:
        import bri_backup
        return bri_backup
    except ImportError as e:
        sys.exit(f"{prog}: the bri_backup module was not found ({e}): build it "
                 "(meson setup build && ninja -C build) or install it (meson install -C build)")


def manager(bri_backup, **kw):
    """DatabaseBackup of $BRI_DB (else data/bri.db) and $BRI_BACKUP_DIR (else
    the default beside the database), as bri-backup and the shell wrappers."""
    return bri_backup.DatabaseBackup(os.environ.get("BRI_DB") or "data/bri.db",
                                     os.environ.get("BRI_BACKUP_DIR") or None, **kw)
