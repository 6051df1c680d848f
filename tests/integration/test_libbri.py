"""libbri, the core as an installed shared library (SPEC.md section 7):
`meson install` into a folder of this test (DESTDIR) puts libbri.so.0, the
headers under include/bri/ and bri.pc there; the README's C example
(data/libbri_example.c) compiles with `pkg-config --cflags --libs bri`
against it, runs, and sees what bri-backup sees. The library exports
exactly the bri_* functions and variables declared in include/bri/. The
same install puts the Python module where Debian's python3 reads it."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import BRI_BACKUP, BUILD, ROOT, sanitizer_preload

TIMEOUT = 300
EXAMPLE = Path(__file__).parent / "data" / "libbri_example.c"

pytestmark = pytest.mark.skipif(
    bool(sanitizer_preload()), reason="a sanitizer build: the example would need its runtime")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    subprocess.run(["meson", "install", "-C", str(BUILD), "--no-rebuild", "--quiet",
                    "--destdir", str(dest)], check=True, capture_output=True, timeout=TIMEOUT)
    (pc,) = dest.rglob("pkgconfig/bri.pc")
    return dest, pc.parent


def pkg_env(dest, pcdir):
    return dict(os.environ, PKG_CONFIG_PATH=str(pcdir), PKG_CONFIG_SYSROOT_DIR=str(dest))


def test_installed_files(installed):
    dest, pcdir = installed
    libdir = pcdir.parent
    so = libdir / "libbri.so.0"
    assert so.is_symlink() and re.fullmatch(r"libbri\.so\.0\.\d+\.\d+", os.readlink(so))
    assert (libdir / "libbri.so").exists()
    headers = {p.name for p in dest.rglob("include/bri/*.h")}
    assert headers == {p.name for p in (ROOT / "include" / "bri").glob("*.h")}
    soname = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True,
                            check=True).stdout
    assert "Library soname: [libbri.so.0]" in soname


def test_exports_exactly_the_public_api(installed):
    dest, pcdir = installed
    out = subprocess.run(["nm", "-D", "--defined-only", str(pcdir.parent / "libbri.so.0")],
                         capture_output=True, text=True, check=True).stdout
    exported = {line.split()[-1].split("@")[0] for line in out.splitlines()} - {"BRI_0"}
    headers = "".join(p.read_text() for p in (ROOT / "include" / "bri").glob("*.h"))
    assert exported and all(s.startswith("bri_") for s in exported), exported
    undeclared = {s for s in exported if not re.search(rf"\b{s}\b", headers)}
    assert not undeclared
    # And every function the headers declare is there (none left out).
    declared = set(re.findall(r"^[a-z][^;(]*?\b(bri_\w+)\(", headers, re.M))
    assert declared <= exported, declared - exported


def test_the_c_example_builds_with_pkg_config_and_runs(installed, live_db, tmp_path):
    dest, pcdir = installed
    env = pkg_env(dest, pcdir)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "bri"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    assert "-lbri" in flags
    exe = tmp_path / "example"
    subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(EXAMPLE), *flags],
                   env=env, check=True, timeout=TIMEOUT)
    run_env = dict(os.environ, LD_LIBRARY_PATH=str(pcdir.parent))
    ldd = subprocess.run(["ldd", str(exe)], env=run_env, capture_output=True, text=True).stdout
    assert str(pcdir.parent / "libbri.so.0") in ldd
    project = live_db.parent.parent
    p = subprocess.run([str(exe)], cwd=project, env=run_env, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "from_c: ok"
    listed = json.loads(subprocess.run([str(BRI_BACKUP), "--json", "list"], cwd=project,
                                       capture_output=True, text=True, check=True).stdout)
    assert lines[1:] == [f"{b['name']} {b['created']} {b['size_bytes']}" for b in listed]


def test_python_module_installs_where_debians_python_reads_it(installed, live_db):
    """After `meson install` the module is in a folder /usr/bin/python3 reads
    (<prefix>/lib/python3.X/dist-packages, not meson's .../python3/... that
    Debian's interpreter ignores for /usr/local), its stubs beside it; and
    the issue's one-liner works from there."""
    dest, _ = installed
    (so,) = dest.rglob("bri_backup*.so")
    assert (so.parent / "bri_backup.pyi").is_file()
    target = "/" + str(so.parent.relative_to(dest))
    sys_path = subprocess.run(["/usr/bin/python3", "-c", "import sys; print('\\n'.join(sys.path))"],
                              capture_output=True, text=True, check=True).stdout.split("\n")
    assert target in sys_path, (target, sys_path)
    project = live_db.parent.parent
    env = dict(os.environ, PYTHONPATH=str(so.parent))
    p = subprocess.run(["/usr/bin/python3", "-c",
                        "from bri_backup import DatabaseBackup; "
                        "print(DatabaseBackup().create_backup())"],
                       cwd=project, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    assert Path(p.stdout.strip()).parent == (project / "data" / "backups").resolve()
