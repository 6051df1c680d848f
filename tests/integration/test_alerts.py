"""Alerts (issue 14): health thresholds in sanoid's style (--warn-age,
--crit-age, --warn-count, --crit-count; exit 0 ok, 1 warning or critical, 2
bad usage), --nagios (one line, exit 0/1/2/3), and hooks: --on-success /
--on-failure / -o on_success= / -o on_failure= run a program with no shell
and exactly BRI_OPERATION, BRI_NAME, BRI_RESULT, BRI_REASON; shell
metacharacters inject nothing; a hanging hook is killed (its whole process
group) at the timeout; a hook's failure never changes the result."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import BRI_BACKUPFS, Mount, python_env, sh, unmount, wait_until
from test_cli import corrupt

HOUR = 3600


def make(cli, n, age_hours):
    now = time.time()
    for i in range(n):
        cli.run("create", "--name", f"b{i}", now=now - age_hours * HOUR - i * 60)


def health(cli, *args):
    return cli.run("health", *args, check=False)


def test_health_thresholds(cli):
    make(cli, 9, 30)
    p = health(cli, "--warn-age", "26h", "--crit-age", "48h", "--warn-count", "7",
               "--crit-count", "3")
    assert p.returncode == 1 and p.stdout.startswith("warning: latest backup is 30.0 hours old")
    p = health(cli, "--warn-age", "31h", "--crit-age", "48h")
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stdout
    p = health(cli, "--warn-age", "2h", "--crit-age", "1d")
    assert p.returncode == 1 and p.stdout.startswith("critical: latest backup is 30.0 hours"), \
        p.stdout
    assert "warning: latest backup" not in p.stdout  # one line per problem, the worst
    p = health(cli, "--warn-age", "2d", "--warn-count", "20", "--crit-count", "10")
    assert p.returncode == 1 and "critical: only 9 backups available (fewer than 10)" in p.stdout
    j = json.loads(cli.run("--json", "health", "--warn-age", "2d", "--crit-count", "10",
                           check=False).stdout)
    assert j["status"] == "critical" and j["critical"]
    for bad in (["--warn-age", "0"], ["--warn-age", "x"], ["--crit-count", "-1"],
                ["--warn-age", "48h", "--crit-age", "26h"]):
        assert health(cli, *bad).returncode == 2, bad


# Values `bri-backup health --NAME TEXT` refuses, as the mount (-o name=TEXT)
# and health(name=VALUE) are given them: (NAME, TEXT, VALUE). The three say
# the same words: the core checks the text (bri_health_threshold_set).
BAD_THRESHOLDS = [
    ("max-age-hours", "0", 0),
    ("max-age-hours", "inf", float("inf")),
    ("warn-age", "0", 0),
    ("warn-age", "soon", "soon"),
    ("crit-age", "0", 0),
    ("crit-age", "-1h", "-1h"),
    ("crit-age", "2x", "2x"),
    ("min-backups", "-1", -1),
    ("warn-count", "-1", -1),
    ("crit-count", "-1", -1),
    ("crit-count", "99999999999", 99999999999),
    ("rehearse-age", "0", 0),
    ("rehearse-age", "1y", "1y"),
]


def py_health(store, db, **kwargs):
    """health(**kwargs) in /usr/bin/python3: ("ok", text) or (exception type, message)."""
    code = ("import json, bri_backup\n"
            f"m = bri_backup.DatabaseBackup({str(db)!r}, {str(store)!r})\n"
            f"kw = json.loads({json.dumps(kwargs)!r})\n"  # float("inf") too
            "try:\n"
            "    print(json.dumps(['ok', m.health(**kw)]))\n"
            "except Exception as e:\n"
            "    print(json.dumps([type(e).__name__, str(e)]))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=python_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    return tuple(json.loads(p.stdout))


def mount_refuses(tmp_path, *opts):
    """bri-backupfs -f -o opts over a database whose folder does not exist:
    the bad value is refused at startup, before the store, the log or the
    mount. Returns (exit status, stderr)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    proc = subprocess.Popen([str(BRI_BACKUPFS), "-f", "-o", ",".join(opts),
                             str(tmp_path / "no" / "bri.db"), str(mnt)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        unmount(proc, mnt)
    assert not (tmp_path / "no").exists()
    return proc.returncode, err


@pytest.mark.parametrize("name,text,value", BAD_THRESHOLDS)
def test_bad_thresholds_are_refused_alike(cli, live_db, store, tmp_path, name, text, value):
    """A threshold value the CLI refuses (exit 2) is refused by the mount at
    startup (exit 2, nothing made) and by health() (ValueError), in the
    same words after the option's name."""
    p = health(cli, f"--{name}", text)
    assert p.returncode == 2, (name, text, p.stdout)
    first = p.stderr.splitlines()[0]
    assert first.startswith(f"bri-backup: --{name} wants "), first
    words = first[len(f"bri-backup: --{name}"):]  # " wants ..., not 'TEXT'"
    key = name.replace("-", "_")
    rc, err = mount_refuses(tmp_path, f"{key}={text}")
    assert rc == 2 and err == f"bri-backupfs: {key}{words}\n", (rc, err)
    assert py_health(store, live_db, **{key: value}) == ("ValueError", f"health: {key}{words}")


def test_crit_age_below_warn_age_is_refused_alike(cli, live_db, store, tmp_path):
    assert health(cli, "--warn-age", "48h", "--crit-age", "26h").returncode == 2
    assert health(cli, "--max-age-hours", "48", "--crit-age", "26h").returncode == 2
    for opts in (["warn_age=48h", "crit_age=26h"], ["max_age_hours=48", "crit_age=1d"]):
        rc, err = mount_refuses(tmp_path, *opts)
        assert rc == 2 and err.startswith("bri-backupfs: crit_age: the critical age ("), err
    kind, msg = py_health(store, live_db, warn_age="48h", crit_age=26 * 3600)
    assert kind == "ValueError" and msg == ("health: crit_age: the critical age (26 hours) must "
                                            "not be below the warning age (48 hours)"), msg
    # Equal is allowed, as by the CLI: critical from the same age on.
    cli.run("create", "--name", "one", now=time.time() - 30 * HOUR)
    p = health(cli, "--warn-age", "1d", "--crit-age", "1d")
    assert p.stdout.startswith("critical: latest backup is 30.0 hours old")
    assert py_health(store, live_db, warn_age="1d", crit_age="1d") == ("ok", p.stdout)


def test_health_keywords_of_the_wrong_type(cli, live_db, store):
    """health() and metrics() take seconds (int) or the CLI's text for the
    durations, ints for the counts, numbers for max_age_hours; anything
    else is a TypeError naming the keyword. The old keywords still work."""
    cli.run("create", "--name", "one", now=time.time() - 30 * HOUR)
    for kwargs in ({"warn_age": 1.5}, {"crit_age": [1]}, {"crit_count": "3"},
                   {"warn_count": True}, {"max_age_hours": "24"},
                   {"rehearse_age": None, "min_backups": 2.0},
                   {"offsite_lag_warn": [1]}):
        kind, msg = py_health(store, live_db, **kwargs)
        assert kind == "TypeError", (kwargs, kind, msg)
        key = [k for k, v in kwargs.items() if v is not None][0]
        assert msg.startswith(f"health: {key} wants "), msg
    for kwargs in ({"offsite_lag_warn": -1}, {"offsite_lag_warn": "0"},
                   {"offsite": "http://x"}, {"rehearse_age": "1d\0"}):
        assert py_health(store, live_db, **kwargs)[0] == "ValueError", kwargs
    # The keywords of old, and None for "not given", as before.
    old = py_health(store, live_db, max_age_hours=26, min_backups=1, offsite=None,
                    offsite_lag_warn=0)
    assert old == ("ok", health(cli, "--max-age-hours", "26", "--min-backups", "1").stdout)
    assert old[1] == "warning: latest backup is 30.0 hours old (more than 26)\n"
    assert py_health(store, live_db, warn_age=None, crit_age=None, warn_count=None,
                     crit_count=None, rehearse_age=None) == ("ok", health(cli).stdout)


def test_report_and_metrics_take_healths_thresholds(cli):
    """report and metrics accept health's whole family of thresholds (one
    parser), so the status page, bri_backup_health and health say the same:
    the same lines, the same level, the thresholds in the page's sentence."""
    make(cli, 9, 30)
    now = int(time.time())
    for args, level in ((["--warn-age", "2h", "--crit-age", "1d"], "critical"),
                        (["--warn-age", "31h", "--crit-count", "3"], "ok"),
                        (["--warn-age", "2d", "--warn-count", "20", "--crit-count", "10"],
                         "critical"),
                        (["--max-age-hours", "26", "--min-backups", "9"], "warning")):
        h = cli.run("health", *args, check=False, now=now).stdout
        lines = h.splitlines() if level != "ok" else []
        text = cli.run("report", *args, now=now).stdout
        assert f"Health: {level}" in text, (args, text)
        for line in lines:
            assert line.split(": ", 1)[1][:40] in " ".join(text.split()), (line, text)
        metrics = cli.run("metrics", *args, now=now).stdout
        assert f'bri_backup_health{{level="{level}"}} 1\n' in metrics, (args, metrics)
        assert f"bri_backup_healthy {int(level == 'ok')}\n" in metrics
    page = " ".join(cli.run("report", "--crit-age", "2d", "--crit-count", "3",
                            "--rehearse-age", "8d", now=now).stdout.split())
    assert "the newest is older than 48 h, fewer than 3 backups exist" in page, page
    assert "the newest rehearsal is older than 192 h" in page
    for cmd in ("report", "metrics"):
        for bad in (["--warn-age", "0"], ["--crit-count", "-1"], ["--offsite-lag-warn", "x"],
                    ["--offsite", "http://x"], ["--warn-age", "48h", "--crit-age", "26h"]):
            assert cli.run(cmd, *bad, check=False).returncode == 2, (cmd, bad)


def test_nagios(cli, tmp_path):
    make(cli, 9, 30)
    p = health(cli, "--nagios", "--warn-age", "31h", "--crit-age", "48h")
    assert p.returncode == 0, p.stdout
    assert p.stdout.startswith("BRI-BACKUP OK - 9 backups, 9 good, newest 30.0 hours old | ")
    assert p.stdout.count("\n") == 1
    assert "age=108" in p.stdout and ";111600;172800 backups=9;7; good=9" in p.stdout
    p = health(cli, "--nagios", "--warn-age", "26h", "--crit-age", "48h")
    assert p.returncode == 1 and p.stdout.startswith(
        "BRI-BACKUP WARNING - latest backup is 30.0 hours old (more than 26) | "), p.stdout
    p = health(cli, "--nagios", "--warn-age", "26h", "--crit-age", "29h")
    assert p.returncode == 2 and p.stdout.startswith("BRI-BACKUP CRITICAL - "), p.stdout
    # unknown: bad arguments, an unreadable store
    assert health(cli, "--nagios", "--warn-age", "x").returncode == 3
    (tmp_path / "notadir").write_text("x")
    p = cli.run("--backup-dir", str(tmp_path / "notadir"), "health", "--nagios", check=False)
    assert p.returncode == 3 and p.stdout.startswith("BRI-BACKUP UNKNOWN - "), (p.stdout,
                                                                              p.stderr)


HOOK = """#!/usr/bin/python3
import json, os, sys
with open({out!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv,
                         "env": {{k: v for k, v in os.environ.items() if k.startswith("BRI_")
                                  and k != "BRI_TEST_NOW"}}}}) + "\\n")
sys.exit({status})
"""


def make_hook(tmp_path, name, status=0):
    out = tmp_path / f"{name}.jsonl"
    prog = tmp_path / name
    prog.write_text(HOOK.format(out=str(out), status=status))
    prog.chmod(0o755)
    return prog, out


def calls(out):
    return [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []


def test_hooks_get_exactly_the_right_variables(cli, store, tmp_path):
    ok, ok_out = make_hook(tmp_path, "ok_hook")
    bad, bad_out = make_hook(tmp_path, "bad_hook", status=3)  # a failing hook
    hooks = ["--on-success", str(ok), "--on-failure", str(bad)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRI_")}

    p = cli.run(*hooks, "create", "--name", "one", env=env)
    assert p.returncode == 0  # the failure hook's exit 3 is not ours; the success hook ran
    assert calls(ok_out) == [{"argv": [str(ok)], "env": {
        "BRI_OPERATION": "create", "BRI_NAME": "one", "BRI_RESULT": "ok", "BRI_REASON": ""}}]
    cli.run(*hooks, "verify", "one", env=env)
    cli.run(*hooks, "restore", "one", env=env)
    cli.run(*hooks, "cleanup", env=env)
    cli.run(*hooks, "cleanup", "--dry-run", env=env)  # nothing done: no hook
    cli.run(*hooks, "list", env=env)                  # not an operation: no hook
    cli.run(*hooks, "create", "--help", env=env)     # nothing done: no hook
    got = [(c["env"]["BRI_OPERATION"], c["env"]["BRI_NAME"], c["env"]["BRI_RESULT"])
           for c in calls(ok_out)]
    assert got == [("create", "one", "ok"), ("verify", "one", "ok"), ("restore", "one", "ok"),
                   ("cleanup", "", "ok")]
    assert calls(bad_out) == []

    corrupt(store / "one.db")
    p = cli.run(*hooks, "verify", "one", check=False, env=env)
    assert p.returncode == 1
    (c,) = calls(bad_out)
    assert c["env"]["BRI_OPERATION"] == "verify" and c["env"]["BRI_NAME"] == "one"
    assert c["env"]["BRI_RESULT"] == "failed" and c["env"]["BRI_REASON"].startswith("one: failed")
    assert sorted(c["env"]) == ["BRI_NAME", "BRI_OPERATION", "BRI_REASON", "BRI_RESULT"]
    assert "hook" in p.stderr and "exited 3" in p.stderr  # logged, result unchanged

    # bad usage runs nothing, so no hook either
    assert cli.run(*hooks, "create", "--name", "../x", check=False, env=env).returncode == 2
    assert len(calls(bad_out)) == 1
    assert cli.run("--on-failure", "relative/prog", "list", check=False).returncode == 2


def test_shell_metacharacters_inject_nothing(cli, tmp_path):
    hook, out = make_hook(tmp_path, "hook")
    evil = tmp_path / "x; touch PWN1 $(touch PWN2) `touch PWN3` | touch PWN4 'a\"b.db"
    p = cli.run("--db", str(evil), "--on-failure", str(hook), "create", check=False,
                env=dict(os.environ, PWD=str(tmp_path)))
    assert p.returncode == 1
    (c,) = calls(out)
    assert c["env"]["BRI_RESULT"] == "failed" and c["env"]["BRI_OPERATION"] == "create"
    assert str(evil) in c["env"]["BRI_REASON"]  # passed literally
    for d in (tmp_path, os.getcwd()):
        assert not [f for f in os.listdir(d) if f.startswith("PWN")]


def test_hanging_hook_is_killed_at_its_timeout(cli, tmp_path):
    pids = tmp_path / "pids"
    hang = tmp_path / "hang"
    hang.write_text(f"#!/bin/sh\nsleep 1000 &\necho $$ $! > {pids}\nwait\n")
    hang.chmod(0o755)
    t0 = time.monotonic()
    p = cli.run("--on-success", str(hang), "--hook-timeout", "1", "create", "--name", "h")
    took = time.monotonic() - t0
    assert p.returncode == 0 and "killed at its timeout" in p.stderr
    assert took < 30, took
    shell, sleeper = (int(x) for x in pids.read_text().split())

    def gone(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] == "Z"  # a zombie is dead
        except FileNotFoundError:
            return True
    # the whole process group, the shell's child too
    assert wait_until(lambda: gone(shell) and gone(sleeper), 10)


def test_mount_hooks(live_db, store, tmp_path):
    ok, ok_out = make_hook(tmp_path, "ok_hook")
    bad, bad_out = make_hook(tmp_path, "bad_hook")
    m = Mount(live_db, store, tmp_path / "mnt",
              options=[f"on_success={ok}", f"on_failure={bad}", "hook_timeout=5"],
              env={k: v for k, v in os.environ.items() if not k.startswith("BRI_")}).start()
    try:
        sh(f"echo mine > {m.path}/ctl/create")
        # (the background verifier's failed verdicts run on_failure too)
        assert wait_until(lambda: any(c["env"]["BRI_OPERATION"] == "create"
                                      for c in calls(ok_out)), 20)
        assert [c["env"] for c in calls(ok_out) if c["env"]["BRI_OPERATION"] == "create"] == [
            {"BRI_OPERATION": "create", "BRI_NAME": "mine", "BRI_RESULT": "ok",
             "BRI_REASON": ""}]
        corrupt(store / "mine.db")
        sh(f"echo mine > {m.path}/ctl/verify", check=False)
        assert wait_until(lambda: len(calls(bad_out)) >= 1, 20)
        c = calls(bad_out)[0]["env"]
        assert (c["BRI_OPERATION"], c["BRI_NAME"], c["BRI_RESULT"]) == ("verify", "mine",
                                                                         "failed")
        assert "mine" in c["BRI_REASON"]
    finally:
        m.stop()
    p = sh(f"{m.program} -f -o on_failure=relative {live_db} {tmp_path / 'mnt2'}", check=False)
    assert p.returncode == 2


def test_background_verifier_runs_only_the_failure_hook(cli, live_db, store, tmp_path):
    """The background verifier's good verdicts are no event: a ping hook
    (on_success) would fire once per backup at every scrub. Its failed
    verdicts reach on_failure, one per backup, named; a verify asked for
    through ctl/ still runs on_success."""
    for name in ("bad", "good1", "good2"):
        cli.run("create", "--name", name)
    corrupt(store / "bad.db")
    ok, ok_out = make_hook(tmp_path, "ok_hook")
    bad, bad_out = make_hook(tmp_path, "bad_hook")
    m = Mount(live_db, store, tmp_path / "mnt",
              options=[f"on_success={ok}", f"on_failure={bad}"],
              env={k: v for k, v in os.environ.items() if not k.startswith("BRI_")}).start()
    try:
        # The verifier's order is not the test's: wait for all three results.
        for name in ("good1", "good2"):
            assert wait_until(lambda: (m.path / name / "verify").read_text().startswith("ok"),
                              60), name
        assert wait_until(lambda: [(c["env"]["BRI_OPERATION"], c["env"]["BRI_NAME"])
                                   for c in calls(bad_out)] == [("verify", "bad")], 60)
        sh(f"echo good1 > {m.path}/ctl/verify")
        assert wait_until(lambda: len(calls(ok_out)) >= 1, 20)
        assert [(c["env"]["BRI_OPERATION"], c["env"]["BRI_NAME"]) for c in calls(ok_out)] == [
            ("verify", "good1")]
    finally:
        m.stop()
