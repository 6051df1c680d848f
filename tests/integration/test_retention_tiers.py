"""Calendar retention tiers end to end (issue 14): backups dated by the test
($BRI_TEST_NOW), `bri-backup cleanup --keep-daily/--keep-weekly/...` and the
mount's `-o keep_daily=...`: the dry run and ctl/cleanup name, for every
backup, the rule that keeps it or that none does; --retention-days applies
with tiers only when given; bad values are usage errors."""

import json
import os
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from conftest import Mount, sh

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*a):
    return datetime(*a, tzinfo=BERLIN).timestamp()


def env_tz(tz="Europe/Berlin"):
    return dict(os.environ, TZ=tz)


# Around the spring DST change in Berlin (Sunday 29 March 2026, 02:00 -> 03:00).
DATED = [
    ("mar27", berlin(2026, 3, 27, 12, 0)),   # Friday, W13
    ("mar28a", berlin(2026, 3, 28, 1, 0)),
    ("mar28b", berlin(2026, 3, 28, 23, 30)),
    ("mar29a", berlin(2026, 3, 29, 1, 30)),  # CET, before the change
    ("mar29b", berlin(2026, 3, 29, 3, 30)),  # CEST, one real hour later
    ("mar30", berlin(2026, 3, 30, 0, 30)),   # Monday, W14
]


def make_dated(cli, dated=DATED):
    for name, t in dated:
        cli.run("create", "--name", name, now=t, env=env_tz())


def plan_lines(out):
    """{name: (verb, rule)} from the dry run's 'keep NAME (TIME, RULE: why)' lines."""
    got = {}
    for m in re.finditer(r"^(keep|would remove|removed) (\S+) \([^,]+, ([^:]+):", out, re.M):
        got[m.group(2)] = (m.group(1), m.group(3))
    return got


def test_dry_run_names_the_rule_for_every_backup(cli, store):
    make_dated(cli)
    now = berlin(2026, 4, 30, 12, 0)  # a month later: all older than 30 days would not matter
    p = cli.run("--keep-min", "0", "--keep-daily", "3", "--keep-weekly", "2", "cleanup",
                "--dry-run", now=now, env=env_tz())
    got = plan_lines(p.stdout)
    assert got == {
        "mar30": ("keep", "daily 2026-03-30"),
        "mar29b": ("keep", "daily 2026-03-29"),   # newest of its local day
        "mar29a": ("would remove", "no rule"),
        "mar28b": ("keep", "daily 2026-03-28"),
        "mar28a": ("would remove", "no rule"),
        "mar27": ("would remove", "no rule"),      # W13's newest is mar29b: filled
    }, p.stdout
    assert "2 of 6" not in p.stdout and "3 of 6 backups would be removed" in p.stdout
    assert "daily 3, weekly 2, keep at least 0" in p.stdout
    assert len(list(store.glob("*.db"))) == 6  # a dry run removes nothing

    j = json.loads(cli.run("--json", "--keep-min", "0", "--keep-daily", "3", "cleanup",
                           "--dry-run", now=now, env=env_tz()).stdout)
    rules = {o["name"]: o["rule"] for o in j["kept"] + j["removed"]}
    assert rules["mar29b"] == "daily 2026-03-29" and rules["mar27"] == "no rule"

    # Really: the removed ones go, the kept ones stay.
    p = cli.run("--keep-min", "0", "--keep-daily", "3", "--keep-weekly", "2", "cleanup",
                now=now, env=env_tz())
    assert sorted(re.findall(r"^removed (\S+) \(", p.stdout, re.M)) == [
        "mar27", "mar28a", "mar29a"]
    assert sorted(b.stem for b in store.glob("*.db")) == ["mar28b", "mar29b", "mar30"]


def test_weekly_iso_week_53_and_oldest_when_unfilled(cli, store):
    dated = [("w01", berlin(2021, 1, 4, 9)), ("w53b", berlin(2021, 1, 3, 9)),
             ("w53a", berlin(2020, 12, 28, 9)), ("w52", berlin(2020, 12, 27, 9)),
             ("w52a", berlin(2020, 12, 21, 9))]
    make_dated(cli, dated)
    p = cli.run("--keep-min", "0", "--keep-weekly", "5", "cleanup", "--dry-run",
                env=env_tz())
    got = plan_lines(p.stdout)
    assert got["w01"] == ("keep", "weekly 2021-W01")
    assert got["w53b"] == ("keep", "weekly 2020-W53")
    assert got["w53a"] == ("would remove", "no rule")
    assert got["w52"] == ("keep", "weekly 2020-W52")
    # 3 weeks of 5: not filled, so the oldest stays too (restic >= 0.16)
    assert got["w52a"] == ("keep", "oldest"), p.stdout


def test_keep_within_counts_from_the_newest_and_retention_days_only_when_given(cli, store):
    dated = [("n0", berlin(2025, 6, 10, 12)), ("n1", berlin(2025, 6, 9, 13)),
             ("n2", berlin(2025, 6, 8, 11))]
    make_dated(cli, dated)
    now = berlin(2026, 11, 30, 12)  # long after: from "now" nothing would be within 2d
    got = plan_lines(cli.run("--keep-min", "0", "--keep-within", "2d", "cleanup", "--dry-run",
                             now=now, env=env_tz()).stdout)
    assert got == {"n0": ("keep", "within"), "n1": ("keep", "within"),
                   "n2": ("would remove", "no rule")}
    # --retention-days given too: applies as well (here: everything is recent)
    out = cli.run("--keep-min", "0", "--keep-within", "2d", "--retention-days", "1000",
                  "cleanup", "--dry-run", now=now, env=env_tz()).stdout
    assert plan_lines(out)["n2"] == ("keep", "retention_days"), out
    # keep_min always applies
    out = cli.run("--keep-min", "3", "--keep-within", "1h", "cleanup", "--dry-run",
                  now=now, env=env_tz()).stdout
    assert plan_lines(out)["n2"] == ("keep", "keep_min"), out


def test_bad_tier_values_are_usage_errors(cli, store):
    for args in (["--keep-daily", "-1"], ["--keep-weekly", "x"], ["--keep-within", "7"],
                 ["--keep-within", "1q"], ["--keep-within", ""]):
        p = cli.run(*args, "cleanup", "--dry-run", check=False)
        assert p.returncode == 2, (args, p.stdout, p.stderr)


def test_mount_keep_options_in_ctl_cleanup(live_db, store, tmp_path, cli):
    make_dated(cli)
    m = Mount(live_db, store, tmp_path / "mnt",
              options=["keep_daily=2", "keep_min=0"], env=env_tz()).start()
    try:
        plan = (m / "ctl/cleanup").read_text()
        assert "(daily 2, keep at least 0)" in plan, plan
        assert re.search(r"^keep\tmar30\t[^\t]+\tdaily 2026-03-30: ", plan, re.M), plan
        assert re.search(r"^keep\tmar29b\t[^\t]+\tdaily 2026-03-29: ", plan, re.M), plan
        assert re.search(r"^remove\tmar27\t[^\t]+\tno rule: ", plan, re.M), plan
        assert "would remove 4 of 6" in plan, plan
        sh(f"echo yes > {m.path}/ctl/cleanup")
        assert sorted(b.stem for b in store.glob("*.db")) == ["mar29b", "mar30"]
    finally:
        m.stop()
    # a bad value refuses to mount
    p = sh(f"{Mount(live_db, store, tmp_path / 'mnt2').program} -f -o keep_within=7q "
           f"{live_db} {tmp_path / 'mnt2'}", check=False)
    assert p.returncode == 2, p.stderr
