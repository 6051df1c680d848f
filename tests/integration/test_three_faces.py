"""The three faces agree because the core decides (issue 13): for the same
store and the same target, `bri-backup --json verify`, the mount (`echo T >
ctl/verify`, then NAME/verify; names and latest only) and the Python
module's verify_backup give the same verdict, over every kind of target the
core's resolution knows: a name, latest, a path into the store, an offsite
copy (X.db with X.db.meta), a copy of the mount (DEST/NAME/bri.db with
meta.json, and DEST/NAME), a damaged backup and a missing one. And list and
stats are the same data: `--json list` is list_backups(), the mount's
folders and meta.json match it, and `--json stats`, ctl/stats.json and
get_backup_stats() are equal. Verification results have one JSON shape:
the CLI's object and the recorded NAME.db.verify share their keys."""

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import Mount, make_sample_db, python_env, sh, wait_until
from test_cli import corrupt

# Entries of the mount's root that are not backups.
CONTROL = {"ctl", "restore", "latest", "inspect", "diff", "at", "live"}


def py(code, **values):
    """Runs code in /usr/bin/python3 with the build tree's bri_backup; its
    last line of output is JSON."""
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code).format(**values)],
                       env=python_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.splitlines()[-1])


class Faces:
    """A store with backups good, bad (damaged) and newest (latest), a .db
    that is not a backup, an offsite copy and a copy of the mount's folder,
    every backup verified once (so the daemon's background verifier has
    nothing to change), and the mount over it."""

    def __init__(self, cli, live_db, store, tmp_path):
        self.cli, self.db, self.store, self.tmp = cli, live_db, store, tmp_path
        now = time.time()
        cli.run("create", "--name", "good", now=now - 120)
        cli.run("create", "--name", "bad", now=now - 60)
        cli.run("create", "--name", "newest", now=now)
        corrupt(store / "bad.db")
        make_sample_db(tmp_path / "foreign.db", rows=5)
        shutil.copy(tmp_path / "foreign.db", store / "foreign.db")
        self.offsite = tmp_path / "offsite"
        self.offsite.mkdir()
        for f in ("good.db", "good.db.meta"):
            shutil.copy(store / f, self.offsite / f)
        cli.run("verify", check=False)
        self.mount = Mount(live_db, store, tmp_path / "mnt")

    def start(self):
        m = self.mount.start()
        assert wait_until(lambda: os.path.islink(m / "latest"))
        # rsync -a MOUNT/good DEST/: a copy of the mount's folder.
        self.dest = self.tmp / "dest"
        self.dest.mkdir()
        shutil.copytree(m / "good", self.dest / "good")
        return self

    # ---- the three faces' verdicts: "ok", "failed" or "missing", and the reason ----

    def cli_verify(self, target):
        p = self.cli.run("--json", "verify", target, check=False)
        out = json.loads(p.stdout) if p.stdout.strip() else []
        if not out:
            assert p.returncode != 0
            return "missing", p.stderr
        assert len(out) == 1, out
        o = out[0]
        assert (p.returncode == 0) == (o["status"] == "ok"), (p, o)
        verdict = {"ok": "ok", "failed": "failed", "error": "missing"}[o["status"]]
        return verdict, o["reason"]

    def py_verify(self, target):
        return py("""
            import errno, json
            from bri_backup import DatabaseBackup, Error
            m = DatabaseBackup({db!r}, {store!r})
            try:
                print(json.dumps(["ok" if m.verify_backup({t!r}) else "failed", ""]))
            except Error as e:
                assert e.errno == errno.ENOENT, e
                print(json.dumps(["missing", e.strerror]))
        """, db=str(self.db), store=str(self.store), t=target)

    def mount_verify(self, target):
        m = self.mount.path
        p = sh(f"echo {target} > {m}/ctl/verify", check=False)
        if p.returncode != 0 and "No such file" in p.stderr:
            return "missing", p.stderr
        name = os.readlink(m / "latest") if target == "latest" else target
        first = (m / name / "verify").read_text().splitlines()[0]
        # The write fails (EIO) exactly when the verification failed.
        assert (p.returncode == 0) == (first == "ok"), (p.stderr, first)
        if first == "ok":
            return "ok", ""
        assert first.startswith("failed: "), first
        return "failed", first[len("failed: "):]


@pytest.fixture
def faces(cli, live_db, store, tmp_path):
    f = Faces(cli, live_db, store, tmp_path)
    try:
        yield f.start()
    finally:
        f.mount.stop()


# (id, target (format keys: store, offsite, dest), the mount's word for it or None, verdict)
TARGETS = [
    ("name", "good", "good", "ok"),
    ("latest", "latest", "latest", "ok"),
    ("name_db", "newest.db", None, "ok"),
    ("store_path", "{store}/good.db", None, "ok"),
    ("offsite_copy", "{offsite}/good.db", None, "ok"),
    ("mount_copy", "{dest}/good/bri.db", None, "ok"),
    ("mount_copy_folder", "{dest}/good", None, "ok"),
    ("damaged", "bad", "bad", "failed"),
    ("missing", "nope", "nope", "missing"),
]


@pytest.mark.parametrize("target,in_mount,verdict",
                         [t[1:] for t in TARGETS], ids=[t[0] for t in TARGETS])
def test_verify_verdicts_agree(faces, target, in_mount, verdict):
    target = target.format(store=faces.store, offsite=faces.offsite, dest=faces.dest)
    got = {"cli": faces.cli_verify(target), "python": tuple(faces.py_verify(target))}
    if in_mount:
        got["mount"] = faces.mount_verify(in_mount)
    assert {face: v[0] for face, v in got.items()} == {face: verdict for face in got}
    if verdict == "failed":
        # The same reason, word for word, from the CLI and the mount.
        assert got["cli"][1] and got["cli"][1] == got["mount"][1]
    # Copies outside the store are verified, never recorded.
    assert not list(faces.offsite.glob("*.verify"))
    assert not list(faces.dest.rglob("*.verify"))


def test_list_and_stats_agree(faces):
    m = faces.mount.path
    listed = json.loads(faces.cli.run("--json", "list").stdout)
    py_list, py_stats = py("""
        import json
        from bri_backup import DatabaseBackup
        m = DatabaseBackup({db!r}, {store!r})
        print(json.dumps([m.list_backups(), m.get_backup_stats()]))
    """, db=str(faces.db), store=str(faces.store))
    # The same rendering: every key, every value.
    assert py_list == listed
    assert [b["name"] for b in listed] == ["newest", "bad", "good", "foreign"]
    assert {b["name"]: b["verified"] for b in listed} == {
        "newest": True, "bad": False, "good": True, "foreign": False}
    # The mount shows the backups (not the foreign .db), each with its metadata.
    backups = {b["name"]: b for b in listed if b["kind"] != "unknown"}
    shown = {n for n in os.listdir(m) if n not in CONTROL}
    assert shown == set(backups)
    for name, b in backups.items():
        meta = json.loads((m / name / "meta.json").read_text())
        assert meta["checksum"] == b["checksum"]
        assert meta["tables"] == b["tables"]
        assert (m / name / "bri.db").stat().st_size == b["size_bytes"]
        first = (m / name / "verify").read_text().splitlines()[0]
        assert first == ("ok" if b["verify"] == "ok" else f"failed: {b['verify_reason']}")
    # Stats: one object from the three faces.
    cli_stats = json.loads(faces.cli.run("--json", "stats").stdout)
    assert cli_stats == json.loads((m / "ctl/stats.json").read_text()) == py_stats
    assert cli_stats["total_backups"] == 3 and cli_stats["unknown_files"] == 1


def test_verify_json_is_one_shape(faces):
    """The CLI's verification object and the recorded NAME.db.verify share
    their keys and values; the reason is "reason" in both (and "detail" only
    in the record, as SPEC.md section 1 names it for older readers)."""
    out = json.loads(faces.cli.run("--json", "verify", "bad", check=False).stdout)[0]
    recorded = json.loads((faces.store / "bad.db.verify").read_text())
    assert set(out) == {"name", "path", "status", "reason", "checked_at", "check",
                        "checksum_ok", "integrity_ok", "counts_ok", "duration_s"}
    assert set(recorded) - set(out) == {"checked_epoch", "detail", "file"}
    assert set(out) - set(recorded) == {"name", "path"}
    for key in set(out) - {"name", "path"}:
        assert out[key] == recorded[key], key
    assert out["status"] == "failed" and out["reason"] == recorded["detail"] != ""
    # create --verify embeds the same object.
    made = json.loads(faces.cli.run("--json", "create", "--name", "fresh", "--verify").stdout)
    assert set(made["verify"]) == set(out) and made["verify"]["status"] == "ok"
    assert made["verify"]["name"] == "fresh" and made["verify"]["reason"] == ""


# ---- Health thresholds: one core function, the same bytes from the three faces ----

HOUR = 3600

# Each threshold of `bri-backup health` as the CLI, the mount (-o) and the
# Python module (keyword) spell it, for a store whose newest backup is 30
# hours old, with 3 backups and one good rehearsal 48 hours old.
# (CLI options, mount options, Python keywords, the lines all three give)
THRESHOLDS = [
    pytest.param(["--warn-age", "26h", "--warn-count", "5"],
                 ["warn_age=26h", "warn_count=5"],
                 {"warn_age": "26h", "warn_count": 5},
                 "warning: latest backup is 30.0 hours old (more than 26)\n"
                 "warning: only 3 backups available (fewer than 5)\n", id="warn"),
    pytest.param(["--warn-age", "2h", "--crit-age", "1d", "--crit-count", "5",
                  "--min-backups", "1"],
                 ["warn_age=2h", "crit_age=1d", "crit_count=5", "min_backups=1"],
                 {"warn_age": 2 * HOUR, "crit_age": "1d", "crit_count": 5, "min_backups": 1},
                 "critical: latest backup is 30.0 hours old (more than 24)\n"
                 "critical: only 3 backups available (fewer than 5)\n", id="crit"),
    pytest.param(["--crit-age", "2d", "--crit-count", "3", "--min-backups", "3"],
                 ["crit_age=2d", "crit_count=3", "min_backups=3"],
                 {"crit_age": 2 * 86400, "crit_count": 3, "min_backups": 3},
                 "warning: latest backup is 30.0 hours old (more than 24)\n",
                 id="crit_not_reached"),
    pytest.param(["--max-age-hours", "48", "--warn-count", "1", "--rehearse-age", "1d"],
                 ["max_age_hours=48", "warn_count=1", "rehearse_age=1d"],
                 {"max_age_hours": 48, "warn_count": 1, "rehearse_age": "1d"},
                 "warning: the last restore rehearsal (b1) is 48.0 hours old (more than 24)\n",
                 id="rehearse"),
    pytest.param(["--max-age-hours", "48", "--min-backups", "1", "--rehearse-age", "3d"],
                 ["max_age_hours=48", "min_backups=1", "rehearse_age=3d"],
                 {"max_age_hours": 48.0, "min_backups": 1, "rehearse_age": 3 * 86400},
                 "ok\n", id="rehearse_fresh"),
]


@pytest.mark.parametrize("cli_args,mount_opts,py_kwargs,lines", THRESHOLDS)
def test_health_thresholds_agree(cli, live_db, store, tmp_path, cli_args, mount_opts, py_kwargs,
                                 lines):
    """For every threshold `bri-backup health` takes (--warn-age, --crit-age,
    --warn-count, --crit-count, --rehearse-age, --max-age-hours,
    --min-backups), the mount's -o option and health()'s keyword of the same
    name give the same ctl/health bytes and health() text, and ctl/metrics,
    `bri-backup metrics` and metrics() the same bytes, at the same time."""
    now = int(time.time())
    for i in range(3):
        cli.run("create", "--name", f"b{i}", now=now - 30 * HOUR - i * 60)
    checks = tmp_path / "checks.sql"
    checks.write_text("SELECT count(*) > 0 FROM videos; -- expect 1\n")
    cli.run("rehearse", "b1", "--checks", str(checks), now=now - 48 * HOUR)
    cli.run("verify")  # every backup verified: the mount's verifier changes nothing
    p = cli.run("health", *cli_args, check=False, now=now)
    assert p.stdout == lines and p.returncode == (lines != "ok\n"), (p.stdout, p.stderr)
    cli_metrics = cli.run("metrics", *cli_args, now=now).stdout
    level = lines.split(":")[0].strip()
    assert f'bri_backup_health{{level="{level}"}} 1\n' in cli_metrics
    code = textwrap.dedent("""
        import json, bri_backup
        m = bri_backup.DatabaseBackup({db!r}, {store!r})
        print(json.dumps([m.health(**{kw!r}), m.metrics(**{kw!r})]))
    """).format(db=str(live_db), store=str(store), kw=py_kwargs)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=python_env(BRI_TEST_NOW=str(now)), timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [lines, cli_metrics]
    m = Mount(live_db, store, tmp_path / "mnt", options=mount_opts,
              env=dict(os.environ, BRI_TEST_NOW=str(now)))
    m.start()
    try:
        assert (m / "ctl" / "health").read_text() == lines
        assert (m / "ctl" / "metrics").read_text() == cli_metrics
    finally:
        m.stop()
