"""An offsite copy is one form of one store (SPEC.md section 6): a push first
compares the remote's store identity (plain or page objects, store.json,
pages.secret) with the store's by content, and refuses a remote of another
form or key before uploading anything. After `bri-backup migrate` re-keys,
encrypts, decrypts or converts a store, pushing into the old prefix would
mix two forms into a copy nothing can restore; the old copy must stay
byte-identical and restorable with its own key, and a new prefix works.
The mount's scheduled push refuses alike and says so in the backup's
`offsite` file, ctl/log and ctl/health. Against a real Ceph RGW
(tests/integration/rgw.py), looked at with an independent S3 client."""

import hashlib
import json
import os
from pathlib import Path

import pytest

from conftest import Cli, Mount, make_sample_db, table_counts, wait_until
from test_offsite import Offsite, create, push


@pytest.fixture
def off(cli, rgw, bucket):
    o = Offsite(cli, rgw, bucket, prefix="bri/old")
    o.off("init")
    return o


def remote_bytes(off, prefix=None):
    """Every object under the prefix: key -> SHA-256 of its bytes."""
    s3 = off.rgw.client()
    prefix = (prefix or off.prefix) + "/"
    return {k[len(prefix):]: hashlib.sha256(s3.request("GET", off.bucket, k).body).hexdigest()
            for k in s3.keys(off.bucket, prefix)}


def new_key(tmp_path, name):
    k = tmp_path / name
    k.write_bytes(os.urandom(32))
    k.chmod(0o600)
    return k


def env_with_key(off, key):
    e = dict(off.env)
    if key is None:
        e.pop("BRI_KEY_FILE", None)
    else:
        e["BRI_KEY_FILE"] = str(key)
    return e


@pytest.mark.parametrize("store_format", ["pages-sealed"])
def test_a_rekeyed_store_is_refused_by_its_old_prefix_and_the_old_copy_still_restores(
        off, cli, store_format, live_db, store, tmp_path, rgw, monkeypatch):
    old_key = Path(os.environ["BRI_KEY_FILE"])
    create(cli, "one")
    create(cli, "two")
    want = table_counts(live_db)
    assert push(off)["pushed"] == 2
    before = remote_bytes(off)
    assert "store.json" in before and "pages.secret" in before

    key2 = new_key(tmp_path, "new.key")
    cli.run("migrate", "--to", "pages", "--new-key-file", str(key2))
    monkeypatch.setenv("BRI_KEY_FILE", str(key2))
    off.env = env_with_key(off, key2)
    create(cli, "three")
    # store.json is the same size under both keys: only its content tells them apart.
    assert len((store / "store.json").read_bytes()) == len(
        rgw.client().request("GET", off.bucket, f"{off.prefix}/store.json").body)

    r = off.run("--json", "offsite", "push", "--remote", off.remote, check=False)
    assert r.returncode == 1, r.stdout
    assert "refusing to push into" in r.stderr and "another key" in r.stderr, r.stderr
    assert "new prefix (--remote" in r.stderr, r.stderr
    assert json.loads(r.stdout)["objects"] == 0
    assert remote_bytes(off) == before  # untouched, byte for byte
    status = json.loads(off.run("--json", "offsite", "status", "--remote", off.remote).stdout)
    three = next(i for i in status["items"] if i["name"] == "three")
    assert three["offsite"].startswith("failed: refusing to push"), three
    # One backup by name is refused alike.
    r = off.run("offsite", "push", "--remote", off.remote, "three", check=False)
    assert r.returncode == 1 and "another key" in r.stderr, r.stderr
    assert remote_bytes(off) == before

    # The old copy is read with the old key: verify and a restore on an empty machine.
    r = off.run("offsite", "verify", "--remote", off.remote, "--read-data", check=False)
    assert r.returncode == 1 and "pushed under another key" in r.stderr, r.stderr
    old_env = env_with_key(off, old_key)
    v = off.run("--json", "offsite", "verify", "--remote", off.remote, "--read-data",
                env=old_env)
    assert [c["status"] for c in json.loads(v.stdout)] == ["ok", "ok"]
    other = Cli(make_sample_db(tmp_path / "other" / "bri.db"), tmp_path / "other" / "backups")
    for p in other.db.parent.glob("bri.db*"):
        p.unlink()
    other.store.mkdir(mode=0o700)  # the empty store (a restore makes it)
    before_other = sorted(str(p) for p in other.db.parent.rglob("*"))
    r = other.run("restore", f"{off.remote}/one", check=False, env=off.env)  # the new key
    assert r.returncode == 1 and "another key" in r.stderr, r.stderr
    assert sorted(str(p) for p in other.db.parent.rglob("*")) == before_other
    other.run("restore", f"{off.remote}/one", env=old_env)
    assert table_counts(other.db) == want

    # On this machine too: the re-keyed store reads the old copy with --remote-key-file,
    # and what it pulls is sealed under its own key.
    cli.run("delete", "one")
    r = off.run("offsite", "pull", "one", "--remote", off.remote, check=False)
    assert r.returncode == 1 and "another key" in r.stderr, r.stderr
    off.run("offsite", "pull", "one", "--remote", off.remote, "--remote-key-file", str(old_key))
    assert json.loads(cli.run("--json", "verify", "one").stdout)[0]["status"] == "ok"
    for p in live_db.parent.glob("bri.db*"):
        p.unlink()
    off.run("restore", f"{off.remote}/two", "--remote-key-file", str(old_key))
    assert table_counts(live_db) == want
    r = off.run("offsite", "push", "--remote", off.remote, "--remote-key-file", str(old_key),
                check=False)
    assert r.returncode == 2 and "--remote-key-file" in r.stderr, r.stderr

    # A new prefix takes the re-keyed store whole.
    new = Offsite(cli, rgw, off.bucket, prefix="bri/new")
    new.env = off.env
    assert push(new)["pushed"] == 3
    v = new.run("--json", "offsite", "verify", "--remote", new.remote, "--read-data")
    assert [c["status"] for c in json.loads(v.stdout)] == ["ok"] * 3
    assert push(new)["objects"] == 0
    assert remote_bytes(off) == before


# Each conversion migrate makes, into the same prefix: refused, the remote untouched.
# pages -> plain -> pages keeps an identical store.json (no key): only pages.secret differs.
@pytest.mark.parametrize("store_format,route,words", [
    ("plain", ["pages"], "this store is a page store"),
    ("pages", ["plain"], "this store is plain"),
    ("pages", ["plain", "pages"], "page-id secret"),
    ("pages", ["encrypt"], "this store is encrypted"),
    ("pages-sealed", ["plain"], "this store is plain"),
])
def test_a_converted_store_is_refused_by_its_old_prefix(off, cli, store_format, route, words,
                                                        tmp_path, monkeypatch):
    old_key = os.environ.get("BRI_KEY_FILE")
    create(cli, "one")
    assert push(off)["pushed"] == 1
    before = remote_bytes(off)
    for i, to in enumerate(route):
        if to == "encrypt":
            k = new_key(tmp_path, "enc.key")
            cli.run("--key-file", str(k), "migrate", "--to", "pages")
            monkeypatch.setenv("BRI_KEY_FILE", str(k))
            off.env = env_with_key(off, k)
        else:
            p = cli.run("migrate", "--to", to)
            if to == "plain":
                monkeypatch.delenv("BRI_KEY_FILE", raising=False)
                off.env = env_with_key(off, None)
            if i == 0:
                assert "offsite" in p.stderr and "refuses" in p.stderr, p.stderr
    create(cli, "two")
    r = off.run("offsite", "push", "--remote", off.remote, check=False)
    assert r.returncode == 1, r.stdout
    assert "refusing to push into" in r.stderr and words in r.stderr, r.stderr
    assert remote_bytes(off) == before
    # The old copy still pulls into the converted store (read in its own form and key).
    cli.run("delete", "one")
    off.off("pull", "one", *(["--remote-key-file", old_key] if old_key else []))
    assert json.loads(cli.run("--json", "verify", "one").stdout)[0]["status"] == "ok"
    assert remote_bytes(off) == before
    # A new prefix works.
    new = Offsite(cli, off.rgw, off.bucket, prefix="bri/new")
    new.env = off.env
    assert push(new)["pushed"] == 2


@pytest.mark.parametrize("store_format", ["pages"])
def test_page_objects_without_a_store_json_are_refused(off, cli, store_format):
    create(cli, "one")
    push(off)
    s3 = off.rgw.client()
    assert s3.request("DELETE", off.bucket, f"{off.prefix}/store.json").status == 204
    before = remote_bytes(off)
    create(cli, "two")
    r = off.run("offsite", "push", "--remote", off.remote, check=False)
    assert r.returncode == 1 and "no store.json" in r.stderr, r.stderr
    assert remote_bytes(off) == before


def rewrite_remote_store_json(off, **changes):
    """The remote's store.json with fields changed (None: removed), put back."""
    s3 = off.rgw.client()
    key = f"{off.prefix}/store.json"
    conf = json.loads(s3.request("GET", off.bucket, key).body)
    for k, v in changes.items():
        if v is None:
            conf.pop(k, None)
        else:
            conf[k] = v
    assert s3.request("PUT", off.bucket, key, body=json.dumps(conf).encode()).status == 200


@pytest.mark.parametrize("store_format", ["pages", "pages-sealed"])
def test_a_store_json_that_differs_only_in_how_packs_are_written_is_the_same_store(
        off, cli, store, store_format):
    # A later version may add fields or write packs another way; its copy is
    # still this store's: the push goes on and puts the store's store.json back.
    create(cli, "one")
    push(off)
    rewrite_remote_store_json(off, group_pages=64, compression="zstd-2", added_later={"x": 1})
    create(cli, "two")
    assert push(off)["pushed"] == 1
    assert remote_bytes(off)["store.json"] == \
        hashlib.sha256((store / "store.json").read_bytes()).hexdigest()
    off.run("restore", f"{off.remote}/two")


@pytest.mark.parametrize("store_format", ["pages"])
@pytest.mark.parametrize("field,value,words", [
    ("version", 2, "version"),
    ("hash", "blake2b", "hash"),
    ("format", None, "format"),
])
def test_a_store_json_of_another_identity_is_refused(off, cli, store_format, field, value,
                                                     words):
    create(cli, "one")
    push(off)
    rewrite_remote_store_json(off, **{field: value})
    before = remote_bytes(off)
    create(cli, "two")
    r = off.run("offsite", "push", "--remote", off.remote, check=False)
    assert r.returncode == 1 and words in r.stderr, r.stderr
    assert remote_bytes(off) == before


@pytest.mark.parametrize("store_format", ["pages"])
def test_a_copy_pushed_before_encryption_restores_into_the_encrypted_store(
        off, cli, store_format, live_db, tmp_path, monkeypatch):
    create(cli, "one")
    want = table_counts(live_db)
    push(off)
    k = new_key(tmp_path, "enc.key")
    cli.run("--key-file", str(k), "migrate", "--to", "pages")
    monkeypatch.setenv("BRI_KEY_FILE", str(k))
    off.env = env_with_key(off, k)
    for p in live_db.parent.glob("bri.db*"):  # the live database is lost
        p.unlink()
    # The copy is not encrypted: it is read without the store's key.
    off.run("restore", f"{off.remote}/one")
    assert table_counts(live_db) == want


@pytest.mark.parametrize("store_format", ["pages-sealed"])
def test_the_mount_refuses_to_push_a_rekeyed_store_into_its_old_prefix(
        off, cli, store_format, live_db, store, tmp_path, rgw, monkeypatch):
    create(cli, "one")
    push(off)
    before = remote_bytes(off)
    key2 = new_key(tmp_path, "new.key")
    cli.run("migrate", "--to", "pages", "--new-key-file", str(key2))
    monkeypatch.setenv("BRI_KEY_FILE", str(key2))
    m = Mount(live_db, store, tmp_path / "mnt",
              options=[f"offsite={off.remote}", f"endpoint={rgw.endpoint}",
                       "offsite_retry_max=1"],
              env=rgw.env(BRI_S3_TRIES="1")).start()
    try:
        (m / "ctl" / "create").write_text("two\n")
        assert wait_until(lambda: (m / "two" / "offsite").read_text().startswith(
            "failed: refusing to push"), timeout=60), (m / "two" / "offsite").read_text()
        assert wait_until(lambda: "another key" in (m / "ctl" / "health").read_text(),
                          timeout=30), (m / "ctl" / "health").read_text()
        assert "refusing to push into" in (m / "ctl" / "log").read_text()
        # bri-backup health (from cron) reads the refusal the push states record
        # and says it alike, at once, whatever the lag (one core renders both).
        assert wait_until(lambda: (m / "ctl" / "health").read_text() == cli.run(
            "health", check=False).stdout, timeout=30), (
            (m / "ctl" / "health").read_text(), cli.run("health", check=False).stdout)
        assert "warning: offsite: refusing to push into" in cli.run("health",
                                                                    check=False).stdout
    finally:
        m.stop()
    assert remote_bytes(off) == before
