"""Offsite copies in S3-compatible object storage (SPEC.md section 6),
against a real Ceph RGW (tests/integration/rgw.py): push, a second push
that uploads nothing, list, verify (a tampered object caught), restore from
s3:// into an empty machine, pull, prune, Object Lock, multipart, and the
secret never leaking. The remote is looked at with an independent S3
client, never with bri-backup's own."""

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BRI_BACKUP, Cli, all_formats, both_formats, make_sample_db, table_counts
from rgw import ACCESS_KEY, SECRET_KEY


def test_rgw_fixture_serves_s3(rgw, bucket):
    s3 = rgw.client()
    assert s3.request("PUT", bucket).status == 200
    assert s3.request("PUT", bucket, "a/b.txt", body=b"hello").status == 200
    assert s3.keys(bucket) == ["a/b.txt"]
    assert s3.request("GET", bucket, "a/b.txt").body == b"hello"


class Offsite:
    """bri-backup offsite ... against one bucket/prefix of the RGW."""

    def __init__(self, cli, rgw, bucket, prefix="bri/host1"):
        self.cli, self.rgw, self.bucket, self.prefix = cli, rgw, bucket, prefix
        self.remote = f"s3://{bucket}/{prefix}"
        self.env = rgw.env()

    def run(self, *args, check=True, env=None, now=None):
        return self.cli.run(*args, check=check, env=env or self.env, now=now)

    def off(self, sub, *args, check=True, env=None, now=None):
        return self.run("offsite", sub, "--remote", self.remote, *args, check=check, env=env,
                        now=now)

    def keys(self):
        return sorted(k[len(self.prefix) + 1:] for k in self.rgw.client().keys(self.bucket,
                                                                            self.prefix + "/"))

    def listing(self):
        return json.loads(self.run("--json", "offsite", "list", "--remote", self.remote).stdout)


@pytest.fixture
def off(cli, rgw, bucket):
    o = Offsite(cli, rgw, bucket)
    o.off("init")
    return o


_clock = [int(time.time()) - 3600]


def create(cli, name, now=None):
    """A backup called name, a minute after the previous one (distinct times, no sleep)."""
    if now is None:
        _clock[0] += 60
        now = _clock[0]
    return cli.run("create", "--name", name, now=now).stdout.strip()


def push(off, *args, **kw):
    return json.loads(off.run("--json", "offsite", "push", "--remote", off.remote, *args,
                              **kw).stdout)


@all_formats
def test_push_uploads_then_a_second_push_uploads_nothing(off, cli, store_format):
    create(cli, "one")
    create(cli, "two")
    r = push(off)
    assert (r["pushed"], r["failed"]) == (2, 0)
    assert r["objects"] >= 4 and r["bytes"] > 0
    keys = off.keys()
    if store_format == "plain":
        assert keys == ["one.db", "one.db.meta", "two.db", "two.db.meta"]
    else:
        assert {"one.manifest", "one.meta", "two.manifest", "two.meta", "store.json"} <= set(keys)
        assert any(k.startswith("pack-") and k.endswith(".pack") for k in keys)
    again = push(off)
    assert (again["pushed"], again["present"], again["objects"], again["bytes"]) == (0, 2, 0, 0)
    assert [b["name"] for b in off.listing()] == ["two", "one"]
    if store_format == "pages-sealed":
        # The remote's metadata is sealed: another key reads none of it.
        wrong = cli.store.parent / "wrong.key"
        wrong.write_bytes(os.urandom(32))
        p = off.run("offsite", "list", "--remote", off.remote, check=False,
                    env=dict(off.env, BRI_KEY_FILE=str(wrong)))
        assert p.returncode == 1 and "does not open" in p.stderr, p.stderr
    # A third backup: only it (and, for pages, only the new pack) goes up.
    create(cli, "three")
    third = push(off)
    assert (third["pushed"], third["present"]) == (1, 2)
    assert [b["name"] for b in off.listing()] == ["three", "two", "one"]


@both_formats
def test_push_state_is_recorded_per_backup(off, cli, store_format, store):
    create(cli, "one")
    push(off)
    state = json.loads(next(p for p in store.iterdir() if p.name.startswith("one.")
                            and p.name.endswith(".offsite")).read_text())
    assert state["status"] == "uploaded" and state["remote"] == off.remote


def test_the_meta_goes_last_so_a_half_pushed_backup_is_no_backup(off, cli, pause_points, store):
    create(cli, "first")
    push(off)
    create(cli, "second")
    pause_points.arm("offsite-before-meta")
    env = pause_points.env(off.env)
    p = subprocess.Popen([str(BRI_BACKUP), "--db", str(cli.db), "--backup-dir", str(store),
                          "offsite", "push", "--remote", off.remote], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pause_points.wait_reached("offsite-before-meta")
        assert "second.db" in off.keys() and "second.db.meta" not in off.keys()
        assert [b["name"] for b in off.listing()] == ["first"]
        state = json.loads((store / "second.db.offsite").read_text())
        assert state["status"] == "pending"
    finally:
        pause_points.release("offsite-before-meta")
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert [b["name"] for b in off.listing()] == ["second", "first"]


def test_virtual_host_addressing(cli, rgw, bucket, live_db, store):
    """--addressing virtual: the bucket in the host name (BUCKET.localhost)."""
    o = Offsite(cli, rgw, bucket)
    o.env = rgw.env(AWS_ENDPOINT_URL=rgw.vhost_endpoint)
    o.off("init", "--addressing", "virtual")
    create(cli, "one")
    o.off("push", "--addressing", "virtual")
    assert o.keys() == ["one.db", "one.db.meta"]  # seen path-style by the test's client
    o.env["BRI_OFFSITE_ADDRESSING"] = "virtual"
    assert [b["name"] for b in o.listing()] == ["one"]
    assert o.off("verify").returncode == 0
    # Proof the bucket went into the host name: with an IP endpoint there is no such host.
    ip = o.off("list", check=False, env=rgw.env(BRI_OFFSITE_ADDRESSING="virtual", BRI_S3_TRIES="1"))
    assert ip.returncode == 1 and f"{bucket}.127.0.0.1" not in ip.stdout


def test_push_to_a_stopped_server_fails_and_records_why(cli, rgw, bucket, store):
    create(cli, "one")
    o = Offsite(cli, rgw, bucket)
    env = rgw.env(AWS_ENDPOINT_URL="http://127.0.0.1:1", BRI_S3_TRIES="1")
    r = o.off("push", check=False, env=env)
    assert r.returncode == 1
    assert "127.0.0.1:1" in r.stderr


@both_formats
def test_verify_catches_a_tampered_object(off, cli, store_format):
    create(cli, "one")
    create(cli, "two")
    push(off)
    assert off.off("verify").returncode == 0
    s3 = off.rgw.client()
    data = "one.db" if store_format == "plain" else "one.manifest"
    key = f"{off.prefix}/{data}"
    good = s3.request("GET", off.bucket, key)
    assert good.status == 200
    # Replaced by other bytes (as a careless or hostile writer would): HEAD finds it.
    assert s3.request("PUT", off.bucket, key, body=good.body[:-10] + b"x" * 10).status == 200
    r = off.off("verify", check=False)
    assert r.returncode == 1
    assert "one: FAILED" in r.stdout and "two: ok" in r.stdout
    # The same size and a forged stored checksum: only a download finds it.
    forged = good.body[:100] + bytes([good.body[100] ^ 1]) + good.body[101:]
    sha = good.headers.get("x-amz-meta-sha256") or good.headers.get("X-Amz-Meta-Sha256")
    assert s3.request("PUT", off.bucket, key, body=forged,
                      headers={"x-amz-meta-sha256": sha}).status == 200
    assert off.off("verify", "one").returncode == 0  # HEAD cannot tell
    r = off.off("verify", "one", "--read-data", check=False)
    assert r.returncode == 1 and "do not hash" in r.stdout


@all_formats
def test_restore_from_s3_into_an_empty_machine(off, cli, store_format, live_db, store):
    create(cli, "good")
    want = table_counts(live_db)
    push(off)
    # The machine is lost: database and store gone.
    shutil.rmtree(store)
    for p in live_db.parent.glob("bri.db*"):
        p.unlink()
    r = off.run("restore", f"{off.remote}/good")
    assert "restored" in r.stdout
    assert table_counts(live_db) == want
    assert not list(store.glob(".offsite-fetch-*")), "the download folder stays behind"


def test_restore_from_s3_refuses_a_damaged_download(off, cli, live_db):
    create(cli, "good")
    push(off)
    before = live_db.read_bytes()
    s3 = off.rgw.client()
    key = f"{off.prefix}/good.db"
    body = bytearray(s3.request("GET", off.bucket, key).body)
    body[200] ^= 0xFF
    assert s3.request("PUT", off.bucket, key, body=bytes(body)).status == 200
    r = off.run("restore", f"{off.remote}/good", check=False)
    assert r.returncode == 1
    assert "does not match its metadata" in r.stderr
    assert live_db.read_bytes() == before


@all_formats
def test_pull_brings_a_remote_backup_into_the_store(off, cli, store_format, tmp_path):
    create(cli, "one")
    push(off)
    # Another machine with an empty store of the same format pulls it (an
    # encrypted one: with the same key, $BRI_KEY_FILE).
    other = Cli(make_sample_db(tmp_path / "other" / "bri.db"), tmp_path / "other" / "backups")
    if store_format != "plain":
        other.run("init", "--format", "pages")
    o2 = Offsite(other, off.rgw, off.bucket)
    o2.off("pull", "one")
    v = other.run("--json", "verify", "one")
    assert json.loads(v.stdout)[0]["status"] == "ok"
    assert o2.off("pull", "one", check=False).returncode == 1  # already there


def test_multipart_upload_of_a_large_backup(cli, rgw, bucket, live_db, tmp_path):
    db = make_sample_db(tmp_path / "big" / "bri.db", rows=50000)
    big = Cli(db, tmp_path / "big" / "backups")
    o = Offsite(big, rgw, bucket)
    o.env = rgw.env(BRI_S3_PART_MB="8")
    o.off("init")
    big.run("create", "--name", "big")
    size = (tmp_path / "big" / "backups" / "big.db").stat().st_size
    assert size > 9 << 20, size  # two parts of 8 MiB at least
    r = push(o)
    assert r["pushed"] == 1
    got = rgw.client().request("GET", bucket, f"{o.prefix}/big.db")
    assert "-" in got.headers.get("ETag", ""), "not a multipart object"
    assert hashlib.sha256(got.body).hexdigest() == json.loads(
        (tmp_path / "big" / "backups" / "big.db.meta").read_text())["checksum"]
    assert o.off("verify", "--read-data").returncode == 0


def test_prune_applies_retention_to_the_remote(off, cli):
    now = int(time.time())
    day = 86400
    for i, age in enumerate([90, 60, 40, 5, 1]):
        cli.run("create", "--name", f"b{i}", now=now - age * day)
    push(off)
    # A multipart upload abandoned two days ago (the prune runs "now + 2 days").
    s3 = off.rgw.client()
    r = s3.request("POST", off.bucket, f"{off.prefix}/stale.db", query={"uploads": ""})
    assert r.status == 200
    dry = off.run("offsite", "prune", "--remote", off.remote, "--dry-run",
                  "--remote-retention-days", "30", "--keep-min", "1", now=now)
    assert "would remove b0" in dry.stdout and "would remove b1" in dry.stdout
    assert len(off.listing()) == 5
    off.run("offsite", "prune", "--remote", off.remote, "--remote-retention-days", "30",
            "--keep-min", "1", now=now + 2 * day)
    assert [b["name"] for b in off.listing()] == ["b4", "b3"]
    assert "b0.db" not in off.keys() and "b0.db.meta" not in off.keys()
    uploads = s3.request("GET", off.bucket, query={"uploads": "", "prefix": off.prefix + "/"})
    assert b"<UploadId>" not in uploads.body


def test_prune_keeps_the_newest_good_remote_backup(off, cli):
    now = int(time.time())
    cli.run("create", "--name", "old", now=now - 400 * 86400)
    push(off)
    off.run("offsite", "prune", "--remote", off.remote, "--remote-retention-days", "30",
            "--keep-min", "0", now=now)
    assert [b["name"] for b in off.listing()] == ["old"]


def test_object_lock_refuses_deleting_a_locked_version(cli, rgw, bucket, live_db, store):
    o = Offsite(cli, rgw, bucket)
    o.off("init", "--lock")
    create(cli, "locked")
    want = table_counts(live_db)
    push(o, "--lock-days", "1")
    s3 = rgw.client()
    key = f"{o.prefix}/locked.db"
    head = s3.request("HEAD", bucket, key)
    assert head.headers.get("x-amz-object-lock-mode") == "COMPLIANCE"
    # A plain DELETE (a compromised host) only adds a delete marker ...
    assert s3.request("DELETE", bucket, key).status == 204
    assert s3.request("DELETE", bucket, key + ".meta").status == 204
    assert any(marker for _, _, marker in s3.versions(bucket, o.prefix + "/"))
    # ... which list and restore look through.
    assert [b["name"] for b in o.listing()] == ["locked"]
    # Deleting the locked version itself is refused.
    vid = next(v for k, v, marker in s3.versions(bucket, key) if k == key and not marker)
    assert s3.request("DELETE", bucket, key, query={"versionId": vid}).status == 403
    # Prune cannot remove it either, and says why.
    r = o.run("--json", "offsite", "prune", "--remote", o.remote, "--remote-retention-days", "0",
              "--keep-min", "0", now=int(time.time()) + 3 * 86400)
    shutil.rmtree(store)
    for p in live_db.parent.glob("bri.db*"):
        p.unlink()
    o.run("restore", f"{o.remote}/locked")
    assert table_counts(live_db) == want
    assert json.loads(r.stdout)["backups"][0]["removed"] is False


def _all_text_under(folder):
    out = b""
    for p in Path(folder).rglob("*"):
        if p.is_file():
            out += p.read_bytes()
    return out


@both_formats
def test_the_secret_never_leaks(cli, rgw, bucket, store, tmp_path, pause_points, store_format):
    """Credentials from a profile file: never in argv, output, logs, the
    store (audit log, push state), error messages."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(
        f"[backup]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    (home / ".aws" / "config").write_text(
        f"[profile backup]\nregion = us-east-1\nendpoint_url = {rgw.endpoint}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(home), AWS_PROFILE="backup")
    o = Offsite(cli, rgw, bucket)
    o.env = env
    seen = []
    seen.append(o.off("init", "-v", "-v"))
    create(cli, "one")
    # Hold a push at its pause point and read its command line.
    pause_points.arm("offsite-before-meta")
    p = subprocess.Popen([str(BRI_BACKUP), "--db", str(cli.db), "--backup-dir", str(store),
                          "-v", "-v", "offsite", "push", "--remote", o.remote],
                         env=pause_points.env(env), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        pause_points.wait_reached("offsite-before-meta")
        cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes()
        assert SECRET_KEY.encode() not in cmdline
    finally:
        pause_points.release("offsite-before-meta")
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    seen.append(subprocess.CompletedProcess([], 0, out, err))
    seen.append(o.off("verify", "--read-data", "-v", "-v"))
    seen.append(o.off("list", "-v", "-v"))
    # Failures: a wrong secret, a server that is down, a missing bucket.
    (home / ".aws" / "credentials").write_text(
        f"[backup]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}x\n")
    bad = o.off("list", "-v", check=False)
    assert bad.returncode == 1 and "SignatureDoesNotMatch" in bad.stderr
    seen.append(bad)
    seen.append(o.off("push", "-v", check=False,
                      env=dict(env, AWS_ENDPOINT_URL="http://127.0.0.1:1", BRI_S3_TRIES="1")))
    seen.append(Offsite(cli, rgw, "no-such-bucket-here").off("push", check=False, env=env))
    for r in seen:
        assert SECRET_KEY not in (r.stdout or "") + (r.stderr or "")
    assert SECRET_KEY.encode() not in _all_text_under(store)
    assert b"offsite-push" in (store / "audit.jsonl").read_bytes()


@pytest.mark.parametrize("store_format", ["pages", "pages-sealed"])
def test_verify_read_data_assembles_a_page_store_backup(off, cli, store_format):
    """A pack gone from the remote is not seen by HEADs of the objects that
    are there; --read-data assembles the backup from its pages and finds it."""
    create(cli, "one")
    push(off)
    assert off.off("verify", "--read-data").returncode == 0
    s3 = off.rgw.client()
    pack = next(k for k in off.keys() if k.startswith("pack-"))
    assert s3.request("DELETE", off.bucket, f"{off.prefix}/{pack}").status == 204
    r = off.off("verify", "--read-data", check=False)
    assert r.returncode == 1 and "one: FAILED" in r.stdout


def test_listings_follow_markers_past_a_thousand_keys(off, cli):
    """S3 answers 1000 keys a page: a remote with more (other files under the
    prefix, and things in sub-folders) still lists, pushes and restores."""
    create(cli, "one")
    s3 = off.rgw.client()
    for i in range(1005):  # sort before "one.db": the backup is on the second page
        assert s3.request("PUT", off.bucket, f"{off.prefix}/a{i:04d}.txt", body=b"x").status == 200
    assert s3.request("PUT", off.bucket, f"{off.prefix}/sub/zz.db.meta", body=b"{}").status == 200
    assert push(off)["pushed"] == 1
    assert push(off)["present"] == 1
    create(cli, "two")
    assert push(off)["pushed"] == 1
    assert [b["name"] for b in off.listing()] == ["two", "one"]
    assert off.off("verify").returncode == 0


def test_status_shows_push_states_and_the_lag(off, cli, store, rgw):
    now = int(time.time())
    create(cli, "old", now=now - 7200)
    push(off)
    create(cli, "new", now=now - 600)
    st = json.loads(off.run("--json", "offsite", "status", "--remote", off.remote + "/").stdout)
    assert (st["backups"], st["uploaded"], st["pending"], st["failed"]) == (2, 1, 1, 0)
    assert 500 < st["lag_seconds"] < 3600
    states = {i["name"]: i["offsite"] for i in st["items"]}
    assert states["old"].startswith("uploaded ") and states["new"] == ""
    # A failed push says why, and status needs no server nor credentials.
    bad = rgw.env(AWS_ENDPOINT_URL="http://127.0.0.1:1", BRI_S3_TRIES="1")
    off.off("push", check=False, env=bad)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    st = json.loads(off.run("--json", "offsite", "status", "--remote", off.remote,
                            env=clean).stdout)
    assert (st["uploaded"], st["failed"]) == (1, 1)
    states = {i["name"]: i["offsite"] for i in st["items"]}
    assert states["new"].startswith("failed: ") and "127.0.0.1:1" in states["new"]
    push(off)
    st = json.loads(off.run("--json", "offsite", "status", "--remote", off.remote,
                            env=clean).stdout)
    assert (st["uploaded"], st["pending"], st["lag_seconds"]) == (2, 0, 0)


@pytest.mark.parametrize("store_format", ["pages"])
def test_prune_of_a_page_store_removes_the_packs_no_backup_uses(off, cli, live_db, store_format):
    """A page store's backup lists its packs on the remote (NAME.packs);
    prune keeps exactly the packs the remaining backups list, and they still
    restore."""
    now = int(time.time())
    create(cli, "old", now=now - 90 * 86400)
    push(off)
    # Every page changes (freed pages zeroed): the new backup shares no pack with the old.
    subprocess.run(["sqlite3", str(live_db)], check=True, timeout=60, input=(
        "PRAGMA secure_delete=ON; UPDATE videos SET title = title || ' v2';"
        "UPDATE memory SET video_id = video_id + 1000000, content = content || ' v2';"
        "UPDATE video_context SET data = data || ' v2';"), text=True)
    create(cli, "new", now=now - 3600)
    push(off)
    s3 = off.rgw.client()
    lists = {n: set(json.loads(s3.request("GET", off.bucket,
                                          f"{off.prefix}/{n}.packs").body)) for n in ("old", "new")}
    assert lists["old"] and lists["new"] and not lists["old"] & lists["new"], lists
    r = json.loads(off.run("--json", "offsite", "prune", "--remote", off.remote,
                           "--remote-retention-days", "30", "--keep-min", "1",
                           now=now + 2 * 86400).stdout)
    assert r["removed_packs"] == len(lists["old"])
    assert [b["name"] for b in off.listing()] == ["new"]
    packs = {k for k in off.keys() if k.startswith("pack-")}
    assert packs == lists["new"]
    assert "old.packs" not in off.keys()
    assert off.off("verify", "--read-data").returncode == 0


@pytest.mark.parametrize("part_mb", ["64", "8"])
def test_a_damaged_local_backup_is_not_pushed(cli, rgw, bucket, tmp_path, part_mb):
    """Bytes that are not what the metadata says never reach the remote: not
    as one PUT, and a multipart upload is aborted, never completed."""
    db = make_sample_db(tmp_path / "big" / "bri.db", rows=50000)
    big = Cli(db, tmp_path / "big" / "backups")
    big.run("create", "--name", "big")
    f = tmp_path / "big" / "backups" / "big.db"
    data = bytearray(f.read_bytes())
    data[len(data) - 100] ^= 0xFF  # in the last part
    f.chmod(0o600)
    f.write_bytes(bytes(data))
    o = Offsite(big, rgw, bucket)
    o.env = rgw.env(BRI_S3_PART_MB=part_mb)
    o.off("init")
    r = o.off("push", check=False)
    assert r.returncode == 1 and "was not uploaded" in r.stderr
    assert o.keys() == []
    uploads = rgw.client().request("GET", bucket, query={"uploads": ""})
    assert b"<UploadId>" not in uploads.body
    st = json.loads((tmp_path / "big" / "backups" / "big.db.offsite").read_text())
    assert st["status"] == "failed"
