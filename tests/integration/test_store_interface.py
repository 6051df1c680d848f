"""The store as an interface (issue 11, first step): a restore copies in the
very file it verified.

Restore opens the backup once, through the store's reader, verifies what that
reader reads and copies the same reader in. A backup file replaced by another
process after the verification (the store's lock keeps out only bri-backup's
own operations) cannot slip unverified content into the live database. The
pause point restore_verified (after the verification, before the copy) makes
the window certain."""

import os
import shutil
import subprocess

from conftest import BRI_BACKUP, make_sample_db
from test_cli import content

TIMEOUT = 120


def test_restore_copies_the_file_it_verified(cli, live_db, store, pause_points, tmp_path):
    cli.run("create", "--name", "good", now=1_700_000_000)
    good = content(store / "good.db")
    other_db = make_sample_db(tmp_path / "other" / "bri.db", rows=37)
    other = content(other_db)
    assert other != good

    pause_points.arm("restore_verified")
    proc = subprocess.Popen([str(BRI_BACKUP), "--db", str(live_db), "--backup-dir", str(store),
                             "restore", "good"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=pause_points.env())
    try:
        pause_points.wait_reached("restore_verified")
        # Another process puts other content in place of the verified file.
        staged = store / "staged.tmp-other"
        shutil.copy(other_db, staged)
        os.rename(staged, store / "good.db")
    finally:
        pause_points.release("restore_verified")
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, out + err
    assert content(live_db) == good, "the restore copied in a file it had not verified"


def test_a_store_of_an_unknown_format_is_refused_and_left_alone(cli, live_db, store, tmp_path):
    """store.json names the store's format; one this version does not know is
    refused by the CLI and the mount, and nothing in the store is touched:
    its files are no plain store's, so the plain sweep (which removes
    metadata without a .db) must never run on it."""
    cli.run("create", "--name", "first", now=1_700_000_000)
    (store / "store.json").write_text('{"format": "tapes", "version": 1}\n')
    (store / "kept.db.meta").write_text("{}\n")  # plain would sweep this
    before = sorted(os.listdir(store))
    for args in (["list"], ["create", "--name", "second"], ["cleanup"], ["verify", "first"]):
        p = cli.run(*args, check=False)
        assert p.returncode != 0, (args, p.stdout)
        assert 'format "tapes"' in p.stderr, (args, p.stderr)
    from test_daemon_guards import refused_mount
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    rc, err = refused_mount(live_db, mnt, store)
    assert rc != 0
    assert 'format "tapes"' in err, err
    assert sorted(os.listdir(store)) == before
