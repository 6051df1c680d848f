"""The bri_backup module beyond the seed's snippets: its signatures and
help, bri_backup.Error (an OSError with errno and the command line's words),
verify_backup's verdict against bad input, agreement with bri-backup, the
GIL released during create (two threads inside two backups at once), and
refcounts and memory over 10,000 rounds of calls (80,000 calls). Each check runs in its own
/usr/bin/python3 with python_env()'s PYTHONPATH (the build tree)."""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import BRI_BACKUP, PY_MODULE_DIR, make_sample_db, python_env, sanitizer_preload
from test_cli import corrupt

TIMEOUT = 300


def py(cwd, code, env=None, timeout=TIMEOUT):
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                       env=env or python_env(), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return p.stdout


def cli(cwd, *args):
    return subprocess.run([str(BRI_BACKUP), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT)


@pytest.fixture
def project(live_db):
    return live_db.parent.parent


def test_module_surface(project):
    out = py(project, """
        import inspect, pydoc, bri_backup
        from bri_backup import DatabaseBackup, verify_all_backups
        print(bri_backup.__version__)
        print(inspect.signature(DatabaseBackup))
        for m in ("create_backup", "restore_backup", "verify_backup", "list_backups",
                  "cleanup_old_backups", "get_backup_stats"):
            print(m, inspect.signature(getattr(DatabaseBackup, m)))
        print(inspect.signature(verify_all_backups))
        print(issubclass(bri_backup.Error, OSError))
        text = pydoc.render_doc(DatabaseBackup, renderer=pydoc.plaintext)
        print("create_backup(self, /, name=None)" in text, "Take a backup" in text)
    """)
    version = cli(project, "--version").stdout
    lines = out.splitlines()
    assert lines[0] in version
    assert lines[1:] == [
        "(db_path='data/bri.db', backup_dir=None, retention_days=30)",
        "create_backup (self, /, name=None)",
        "restore_backup (self, /, path=None, verify=True)",
        "verify_backup (self, /, path)",
        "list_backups (self, /)",
        "cleanup_old_backups (self, /)",
        "get_backup_stats (self, /)",
        "(db_path='data/bri.db', backup_dir=None)",
        "True",
        "True True",
    ]
    assert (PY_MODULE_DIR / "bri_backup.pyi").is_file()


def test_errors_carry_errno_and_the_cli_message(project, live_db):
    out = py(project, """
        import errno, json
        from bri_backup import DatabaseBackup, Error
        m = DatabaseBackup()
        res = {}
        def catch(key, f, *a):
            try:
                f(*a)
                res[key] = None
            except Error as e:
                res[key] = [errno.errorcode[e.errno], e.strerror, isinstance(e, OSError)]
        m.create_backup("taken")
        catch("exists", m.create_backup, "taken")
        catch("badname", m.create_backup, "../x")
        catch("missing_file", m.verify_backup, "data/backups/nope.db")
        catch("no_such_name", m.verify_backup, "nope")
        catch("restore_missing", m.restore_backup, "data/backups/nope.db")
        catch("no_db", DatabaseBackup("data/none.db").create_backup)
        print(json.dumps(res))
    """)
    res = json.loads(out)
    assert res["exists"][0] == "EEXIST" and res["exists"][1].startswith("create: ")
    cli_err = cli(project, "create", "--name", "taken").stderr.strip()
    assert cli_err == "bri-backup: " + res["exists"][1]
    assert res["badname"][0] == "EINVAL"
    assert res["missing_file"][0] == "ENOENT" and "nope.db" in res["missing_file"][1]
    assert res["no_such_name"][0] == "ENOENT"
    assert res["restore_missing"][0] == "ENOENT"
    assert res["no_db"][0] == "ENOENT" and "database not found" in res["no_db"][1]
    assert all(r[2] for r in res.values())


def test_verify_backup_verdicts_and_paths(project, tmp_path):
    py(project, """
        from bri_backup import DatabaseBackup
        m = DatabaseBackup()
        m.create_backup("good")
        m.create_backup("bad")
    """)
    store = project / "data" / "backups"
    corrupt(store / "bad.db")
    # A copy elsewhere, .db.meta beside it: verified, nothing recorded.
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    shutil.copy(store / "good.db", elsewhere / "good.db")
    shutil.copy(store / "good.db.meta", elsewhere / "good.db.meta")
    out = py(project, f"""
        from bri_backup import DatabaseBackup, verify_all_backups
        m = DatabaseBackup()
        print(m.verify_backup("good"), m.verify_backup("data/backups/good.db"),
              m.verify_backup("good.db"), m.verify_backup({str(store / 'bad.db')!r}),
              m.verify_backup({str(elsewhere / 'good.db')!r}))
        print(verify_all_backups(), m.verify_all_backups())
        print([(b["name"], b["verified"]) for b in m.list_backups()])
    """)
    assert out.splitlines()[0] == "True True True False True"
    assert out.splitlines()[1] == "(1, 1) (1, 1)"
    assert not (elsewhere / "good.db.verify").exists()
    listed = json.loads(cli(project, "--json", "list").stdout)
    assert {b["name"]: b["verify"] for b in listed} == {"good": "ok", "bad": "failed"}


def test_verify_backup_accepts_what_the_cli_accepts(project, tmp_path):
    """Python asks the core's target resolution, as bri-backup does: latest,
    a copy of the mount (DEST/NAME/bri.db with meta.json, or DEST/NAME), a
    copy of the store (X.db with X.db.meta); the same verdicts as the CLI."""
    py(project, """
        from bri_backup import DatabaseBackup
        m = DatabaseBackup()
        m.create_backup("good")
        m.create_backup("newest")
    """)
    store = project / "data" / "backups"
    mount_copy = tmp_path / "dest" / "good"
    mount_copy.mkdir(parents=True)
    shutil.copy(store / "good.db", mount_copy / "bri.db")
    shutil.copy(store / "good.db.meta", mount_copy / "meta.json")
    bad_copy = tmp_path / "dest" / "bad"
    bad_copy.mkdir()
    shutil.copy(store / "good.db", bad_copy / "bri.db")
    shutil.copy(store / "good.db.meta", bad_copy / "meta.json")
    corrupt(bad_copy / "bri.db")
    targets = ["latest", "newest.db", str(mount_copy / "bri.db"), str(mount_copy),
               str(bad_copy / "bri.db"), str(bad_copy)]
    out = py(project, f"""
        import json
        from bri_backup import DatabaseBackup
        m = DatabaseBackup()
        print(json.dumps([m.verify_backup(t) for t in {targets!r}]))
    """)
    assert json.loads(out) == [True, True, True, True, False, False]
    for t, verdict in zip(targets, json.loads(out)):
        p = cli(project, "verify", t)
        assert (p.returncode == 0) == verdict, (t, p.stdout, p.stderr)
    assert not (mount_copy / "bri.db.verify").exists()


def test_list_and_stats_agree_with_the_cli(project):
    out = py(project, """
        import json
        from bri_backup import DatabaseBackup
        m = DatabaseBackup(retention_days=7)
        m.create_backup("one")
        m.create_backup()
        print(json.dumps([m.list_backups(), m.get_backup_stats()]))
    """)
    listed, stats = json.loads(out)
    cli_list = json.loads(cli(project, "--json", "list").stdout)
    for b in cli_list:
        b["verified"] = {"ok": True, "failed": False}.get(b["verify"])
    assert listed == cli_list
    assert stats == json.loads(cli(project, "--json", "stats").stdout)
    # No store yet: empty answers, nothing created.
    out = py(project, """
        from bri_backup import DatabaseBackup
        m = DatabaseBackup(backup_dir="data/none")
        print(m.list_backups(), m.get_backup_stats()["total_backups"],
              m.cleanup_old_backups(), m.verify_all_backups())
    """)
    assert out == "[] 0 0 (0, 0)\n"
    assert not (project / "data" / "none").exists()


def test_two_threads_back_up_two_databases_at_once(tmp_path, pause_points):
    """Both threads are inside bri_create at the same time: thread one stops
    at the pause point, and thread two gets there too, which it could not
    while one held the GIL."""
    a = make_sample_db(tmp_path / "a" / "bri.db")
    b = make_sample_db(tmp_path / "b" / "bri.db")
    pause_points.arm("create-copied")
    reached = pause_points.dir / "create-copied.reached"
    out = py(tmp_path, f"""
        import os, threading, time
        from bri_backup import DatabaseBackup
        done = {{}}
        def backup(db):
            done[db] = DatabaseBackup(db).create_backup()
        def wait_reached():
            deadline = time.monotonic() + 60
            while not os.path.exists({str(reached)!r}):
                assert time.monotonic() < deadline, "not reached"
                time.sleep(0.01)
        t1 = threading.Thread(target=backup, args=({str(a)!r},))
        t1.start()
        wait_reached()                     # one is paused inside create
        os.unlink({str(reached)!r})
        t2 = threading.Thread(target=backup, args=({str(b)!r},))
        t2.start()
        wait_reached()                     # two is inside create as well
        assert t1.is_alive() and t2.is_alive()
        os.unlink({str(pause_points.dir / 'create-copied')!r})   # release both
        t1.join(); t2.join()
        print(sorted(done.values()))
    """, env=python_env(pause_points.env()), timeout=120)
    paths = eval(out)
    assert len(paths) == 2 and all(p.endswith(".db") for p in paths)
    assert paths[0].startswith(str(a.parent)) and paths[1].startswith(str(b.parent))


def test_refcounts_and_memory_over_10000_calls(project, tmp_path):
    py(project, """
        from bri_backup import DatabaseBackup
        DatabaseBackup().create_backup("kept")
    """)
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(project / "data" / "backups" / "kept.db", copy / "kept.db")
    shutil.copy(project / "data" / "backups" / "kept.db.meta", copy / "kept.db.meta")
    out = py(project, f"""
        import gc, sys
        import bri_backup
        from bri_backup import DatabaseBackup, Error
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4096
        def calls():
            m = DatabaseBackup("data/bri.db", backup_dir=None, retention_days=30)
            m.list_backups()
            m.get_backup_stats()
            assert m.verify_backup({str(copy / 'kept.db')!r}) is True
            for bad in ("data/backups/missing.db", "no such"):
                try:
                    m.verify_backup(bad)
                except Error:
                    pass
            try:
                m.create_backup("kept")
            except Error:
                pass
            repr(m)
        def counts():
            return (sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False),
                    sys.getrefcount(DatabaseBackup), sys.getrefcount(Error),
                    len(gc.get_objects()))
        for _ in range(500):
            calls()
        gc.collect()
        before, refs = rss(), counts()
        for _ in range(10000):
            calls()
        gc.collect()
        print(rss() - before)
        print(refs)
        print(counts())
    """)
    growth, refs_before, refs_after = out.splitlines()
    # ASan's allocator keeps freed memory in quarantine: RSS says nothing there.
    if not sanitizer_preload():
        assert int(growth) < 1 << 20, f"RSS grew by {int(growth)} bytes"
    # A reference leaked per call would show as 10,000; a few are the loop's own.
    for x, y in zip(eval(refs_before), eval(refs_after)):
        assert abs(x - y) < 50, (refs_before, refs_after)
