"""bri-backup rehearse (issue 14): the real restore path into a scratch copy
outside the store (verify, SQLite copy, quick_check), the user's checks
("SELECT ...; -- expect 1") against that copy, durations and results
reported, the scratch folder removed; the live database and the store are
never changed; a failed check, a writing statement or a corrupt backup fail
the rehearsal (exit 1) and reach the failure hook."""

import json
import os

from conftest import table_counts
from test_cli import corrupt


def listing(store):
    """The store's files but the audit log, the lock, verification results
    (a rehearsal verifies, and records that like any verification) and
    rehearsal outcomes (test_rehearsal_status.py)."""
    return sorted(f for f in os.listdir(store)
                  if f not in ("audit.jsonl", ".lock") and not f.endswith(".verify")
                  and not f.endswith(".rehearsal"))


def test_rehearse_runs_the_checks_on_a_scratch_copy(cli, live_db, store, tmp_path):
    cli.run("create", "--name", "old")
    cli.run("create", "--name", "new")
    checks = tmp_path / "checks.sql"
    checks.write_text("-- the videos are there\n"
                      "SELECT count(*) > 0 FROM videos; -- expect 1\n"
                      "SELECT count(*) FROM videos;\n"
                      "SELECT 'a;b' ; -- expect a;b\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    before, counts = listing(store), table_counts(live_db)
    p = cli.run("rehearse", "--checks", str(checks), "--scratch", str(scratch))
    assert p.stdout.startswith("rehearsal of new: ok\n"), p.stdout  # the newest by default
    assert "restore: ok, quick_check ok (" in p.stdout
    assert "check 1: ok: SELECT count(*) > 0 FROM videos; -> 1, expected 1" in p.stdout
    assert f"check 2: ok: SELECT count(*) FROM videos; -> {counts['videos']} (" in p.stdout
    assert "check 3: ok: SELECT 'a;b' ; -> a;b, expected a;b" in p.stdout
    assert os.listdir(scratch) == []  # the scratch copy is gone
    assert listing(store) == before and table_counts(live_db) == counts

    j = json.loads(cli.run("--json", "rehearse", "old", "--checks", str(checks),
                           "--scratch", str(scratch)).stdout)
    assert j["name"] == "old" and j["ok"] and j["restored"] and j["verify"] == "ok"
    assert [c["ok"] for c in j["checks"]] == [True, True, True]
    assert j["restore_s"] >= 0
    audit = [json.loads(x) for x in (store / "audit.jsonl").read_text().splitlines()]
    assert [r["operation"] for r in audit].count("rehearse") == 2


def test_rehearse_failures(cli, live_db, store, tmp_path):
    cli.run("create", "--name", "one")
    counts = table_counts(live_db)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    bad = tmp_path / "bad.sql"
    bad.write_text("SELECT count(*) FROM videos; -- expect -1\n"
                   "DELETE FROM videos;\n"
                   "SELECT nosuch FROM videos;\n")
    p = cli.run("rehearse", "one", "--checks", str(bad), "--scratch", str(scratch),
                check=False)
    assert p.returncode == 1 and p.stdout.startswith("rehearsal of one: FAILED")
    assert "check 1: FAILED" in p.stdout and "expected -1" in p.stdout
    assert "check 2: FAILED: DELETE FROM videos; -> error: attempt to write a readonly database" \
        in p.stdout, p.stdout
    assert "check 3: FAILED: SELECT nosuch FROM videos -> error: no such column: nosuch" in p.stdout
    assert "3 of 3 checks failed" in p.stderr
    assert os.listdir(scratch) == [] and table_counts(live_db) == counts

    # a checks file that cannot be read fails before anything runs
    p = cli.run("rehearse", "--checks", str(tmp_path / "nosuch.sql"), check=False)
    assert p.returncode == 1 and "checks file" in p.stderr
    # no such backup; bad name
    assert cli.run("rehearse", "nosuch", check=False).returncode == 1
    assert cli.run("rehearse", "../x", check=False).returncode == 2

    # a corrupt backup fails its verification: nothing is restored; the hook hears it
    hook = tmp_path / "hook"
    out = tmp_path / "hook.out"
    hook.write_text(f"#!/bin/sh\nprintf '%s|%s|%s\\n' \"$BRI_OPERATION\" \"$BRI_NAME\" "
                    f"\"$BRI_RESULT\" >> {out}\n")
    hook.chmod(0o755)
    corrupt(store / "one.db")
    p = cli.run("--on-failure", str(hook), "rehearse", "one", "--scratch", str(scratch),
                check=False)
    assert p.returncode == 1 and "verify: failed" in p.stdout and "restore:" not in p.stdout
    assert out.read_text() == "rehearse|one|failed\n"
    assert os.listdir(scratch) == []


def test_ctl_rehearse(live_db, store, tmp_path, cli):
    from conftest import Mount, sh, wait_until
    cli.run("create", "--name", "one")
    checks = tmp_path / "checks.sql"
    checks.write_text("SELECT count(*) > 0 FROM videos; -- expect 1\n")
    hook = tmp_path / "hook"
    out = tmp_path / "hook.out"
    hook.write_text(f"#!/bin/sh\nprintf '%s|%s|%s\\n' \"$BRI_OPERATION\" \"$BRI_NAME\" "
                    f"\"$BRI_RESULT\" >> {out}\n")
    hook.chmod(0o755)
    m = Mount(live_db, store, tmp_path / "mnt",
              options=[f"checks={checks}", f"on_success={hook}", f"on_failure={hook}"]).start()
    try:
        def rehearsals():  # (the background verifier's verifications run the hook too)
            lines = out.read_text().splitlines(True) if out.exists() else []
            return "".join(x for x in lines if x.startswith("rehearse|"))
        sh(f"echo latest > {m.path}/ctl/rehearse")
        assert wait_until(lambda: rehearsals() == "rehearse|one|ok\n", 20)
        assert "ctl/rehearse: one ok" in (m / "ctl/log").read_text()
        checks.write_text("SELECT count(*) FROM videos; -- expect -1\n")
        assert sh(f"echo one > {m.path}/ctl/rehearse", check=False).returncode != 0
        assert wait_until(lambda: rehearsals().endswith("rehearse|one|failed\n"), 20)
        # checks= configures rehearsals: the folder shows the outcome
        assert sorted(os.listdir(m / "one")) == ["bri.db", "meta.json", "rehearsal", "verify"]
        assert (m / "one" / "rehearsal").read_text().startswith("failed: 1 of 1 checks")
    finally:
        m.stop()
