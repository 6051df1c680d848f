"""Pins (issue 14): `bri-backup pin NAME [--reason]` / `unpin`, and
`echo NAME > ctl/pin` / `ctl/unpin`. A pinned backup survives every cleanup
(tiers, retention days, keep_min 0) and delete refuses it until unpinned; the
pin is its own file NAME.db.pin (JSON time, reason, by) and the .meta is not
touched; list (text and --json) and ctl/cleanup show it; the backup's folder
in the mount keeps exactly bri.db, meta.json, verify."""

import json
import os
import re

from conftest import Mount, all_formats, backup_file, read_sidecar, sh, sidecar

DAY = 86400


def make_old(cli, now):
    """Three backups a year old and one fresh one."""
    for i, name in enumerate(("old0", "old1", "old2")):
        cli.run("create", "--name", name, now=now - 365 * DAY - i * 60)
    cli.run("create", "--name", "fresh", now=now)


def test_pin_survives_cleanup_and_delete_until_unpinned(cli, store):
    now = 1_780_000_000
    make_old(cli, now)
    meta_before = (store / "old1.db.meta").read_bytes()

    p = cli.run("pin", "old1", "--reason", "audit 2026; keep $(touch /tmp/x) `id`", now=now)
    assert p.stdout.strip() == "pinned old1"
    pin = json.loads((store / "old1.db.pin").read_text())
    assert pin["reason"] == "audit 2026; keep $(touch /tmp/x) `id`"
    assert pin["time"].startswith("2026-") and "via cli" in pin["by"]
    assert (store / "old1.db.meta").read_bytes() == meta_before  # metas stay immutable
    assert oct((store / "old1.db.pin").stat().st_mode & 0o777) == "0o600"

    listed = {b["name"]: b for b in json.loads(cli.run("--json", "list").stdout)}
    assert listed["old1"]["pinned"] is True
    assert listed["old1"]["pin_reason"].startswith("audit 2026")
    assert listed["old0"]["pinned"] is False and listed["old0"]["pin_reason"] is None
    text = cli.run("list").stdout
    assert re.search(r"^old1 .*\[pinned: audit 2026", text, re.M), text
    assert not re.search(r"^old0 .*pinned", text, re.M), text

    dry = cli.run("--keep-min", "0", "cleanup", "--dry-run", now=now).stdout
    assert re.search(r"^keep old1 \(.*, pinned: ", dry, re.M), dry
    cli.run("--keep-min", "0", "--keep-daily", "1", "cleanup", now=now)
    assert sorted(b.stem for b in store.glob("*.db")) == ["fresh", "old1"]

    p = cli.run("delete", "old1", check=False)
    assert p.returncode == 1 and "pinned" in p.stderr and "unpin" in p.stderr
    assert (store / "old1.db").exists() and (store / "old1.db.pin").exists()

    assert cli.run("unpin", "old1").stdout.strip() == "unpinned old1"
    assert not (store / "old1.db.pin").exists()
    p = cli.run("unpin", "old1", check=False)
    assert p.returncode == 1 and "not pinned" in p.stderr
    cli.run("--keep-min", "0", "cleanup", now=now)
    assert sorted(b.stem for b in store.glob("*.db")) == ["fresh"]

    audit = [json.loads(x) for x in (store / "audit.jsonl").read_text().splitlines()]
    ops = [r["operation"] for r in audit]
    assert "pin" in ops and "unpin" in ops


@all_formats
def test_pin_and_unpin_on_every_format(cli, store):
    """pin reads the backup's metadata through the store (a page store's
    NAME.meta, sealed in an encrypted one), not as NAME.db.meta by hand."""
    cli.run("create", "--name", "a")
    assert cli.run("pin", "a", "--reason", "keep").stdout.strip() == "pinned a"
    assert json.loads(read_sidecar(backup_file(store, "a"), "pin"))["reason"] == "keep"
    assert json.loads(cli.run("--json", "list").stdout)[0]["pinned"] is True
    p = cli.run("delete", "a", check=False)
    assert p.returncode == 1 and "pinned" in p.stderr
    assert cli.run("unpin", "a").stdout.strip() == "unpinned a"
    assert not sidecar(backup_file(store, "a"), "pin").exists()
    cli.run("delete", "a")


def test_pin_refuses_bad_requests(cli, store):
    cli.run("create", "--name", "a")
    assert cli.run("pin", "nosuch", check=False).returncode == 1
    assert cli.run("pin", "../a", check=False).returncode == 2
    assert cli.run("pin", check=False).returncode == 2
    p = cli.run("pin", "a", "--reason", "two\nlines", check=False)
    assert p.returncode == 1 and "one line" in p.stderr
    assert not (store / "a.db.pin").exists()
    # not a backup: a .db without a usable .meta is not pinned either
    (store / "other.db").write_bytes(b"x")
    assert cli.run("pin", "other", check=False).returncode == 1
    assert not (store / "other.db.pin").exists()
    # pinning again replaces the reason
    cli.run("pin", "a", "--reason", "first")
    cli.run("pin", "a", "--reason", "second")
    assert json.loads((store / "a.db.pin").read_text())["reason"] == "second"


def test_ctl_pin_and_unpin(live_db, store, tmp_path, cli):
    now = 1_780_000_000
    make_old(cli, now)
    m = Mount(live_db, store, tmp_path / "mnt", options=["keep_min=0"]).start()
    try:
        sh(f"echo old2 kept for the auditors > {m.path}/ctl/pin")
        assert json.loads((store / "old2.db.pin").read_text())["reason"] == \
            "kept for the auditors"
        plan = (m / "ctl/cleanup").read_text()
        assert re.search(r"^keep\told2\t[^\t]+\tpinned: ", plan, re.M), plan
        assert re.search(r"^remove\told0\t", plan, re.M), plan
        # the backup's folder keeps its exact contents (SPEC 4.1)
        assert sorted(os.listdir(m / "old2")) == ["bri.db", "meta.json", "verify"]
        # ctl/delete refuses a pinned backup
        p = sh(f"echo old2 > {m.path}/ctl/delete", check=False)
        assert p.returncode != 0 and (store / "old2.db").exists()
        sh(f"echo yes > {m.path}/ctl/cleanup")
        assert sorted(b.stem for b in store.glob("*.db")) == ["fresh", "old2"]
        # bad requests are refused before anything happens
        assert sh(f"echo ../x > {m.path}/ctl/pin", check=False).returncode != 0
        assert sh(f"echo nosuch > {m.path}/ctl/pin", check=False).returncode != 0
        sh(f"echo old2 > {m.path}/ctl/unpin")
        assert not (store / "old2.db.pin").exists()
        assert re.search(r"^remove\told2\t", (m / "ctl/cleanup").read_text(), re.M)
        assert sh(f"echo old2 > {m.path}/ctl/unpin", check=False).returncode != 0
    finally:
        m.stop()
