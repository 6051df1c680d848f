"""The status page (issue 15): ctl/report.html in a real mount and
`bri-backup report --html FILE` give the same bytes for the same store and
minute; headless Chromium renders it (a screenshot with the page's colours,
a DOM with one calendar cell per day, one bar per backup, the failed backup
marked failed); w3m reads it as text with its health line; it is balanced
HTML with no script and no external resource; `bri-backup report` fits 80
columns; 10,000 backups stay under 2 MB (one mark per day before the last
90 days); every expr of the Grafana dashboard and alert rules names a
metric that ctl/metrics exports, and every exported family has a panel."""

import json
import hashlib
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import time
import zlib
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import BRI_BACKUP, ROOT, Mount, both_formats, sh, wait_until
from test_cli import corrupt

DAY = 86400
CHROMIUM_LIMIT = 120  # seconds for one headless Chromium run
GRAFANA = ROOT / "scripts/grafana"


def window_start(now):
    """Local midnight 89 days before now's day: the first day of the calendar."""
    d = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return (d - timedelta(days=89)).timestamp()


def report(cli, *args, now):
    return cli.run("report", *args, now=now)


# ---- HTML parsing with the standard library ----

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Page(HTMLParser):
    """Checks that tags balance, and collects the elements (tag, attrs, the
    ids of the elements around it)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.elements, self.errors, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a, [x[1].get("id") for x in self.stack]))
        if tag not in VOID:
            self.stack.append((tag, a))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), [x[1].get("id") for x in self.stack]))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1][0] if self.stack else 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)
        if len(self.stack) >= 2 and self.stack[-1][0] == "title":
            self.stack[-2][1]["_title"] = data  # a shape's tooltip

    def classes(self, tag, cls, inside=None):
        return [(a, a.get("class", "").split()) for t, a, around in self.elements
                if t == tag and cls in a.get("class", "").split()
                and (inside is None or inside in around)]


def parse(html):
    p = Page()
    p.feed(html)
    p.close()
    return p


def check_valid(html):
    """Balanced, one document, nothing fetched, no script."""
    assert html.startswith("<!DOCTYPE html>\n")
    p = parse(html)
    assert not p.errors, p.errors[:5]
    assert not p.stack, f"unclosed: {[t for t, _ in p.stack]}"
    tags = {t for t, _, _ in p.elements}
    assert "script" not in tags and "link" not in tags and "img" not in tags
    for t, a, _ in p.elements:
        assert not {"src", "href", "onload", "onclick"} & set(a), (t, a)
    assert "url(" not in html and "@import" not in html and "http" not in html
    return p


# ---- PNG reading with the standard library ----

def png_pixels(data):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pr = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pr) & 0xFF
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
        prev = line
    return w, h, rows


def near(px, rgb, tol=10):
    return all(abs(a - b) <= tol for a, b in zip(px, rgb))


# ---- Chromium ----

def chromium(tmp_path, *args):
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed (./scripts/install-deps installs it)"
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    env = dict(os.environ, HOME=str(tmp_path))
    return subprocess.run(cmd, capture_output=True, timeout=CHROMIUM_LIMIT, env=env)


# ---- a store with a history ----

@pytest.fixture
def history(cli, live_db):
    """Backups over 200 days: in the window on days 0, 1, 2, 3 (named), 4, 7
    (damaged: fails verification), 30 and 60; before it on days 100, 101 and
    200; a restore (with its safety backup); a rehearsal of the newest; all
    verified. Returns (now,
    failed name)."""
    now = int(time.time()) - 120
    for d in (0, 1, 2, 4, 7, 30, 60, 100, 101, 200):
        cli.run("create", "--verify", now=now - d * DAY - 3600)
    cli.run("create", "--name", "before_update", now=now - 3 * DAY)
    failed = datetime.fromtimestamp(now - 7 * DAY - 3600).strftime("bri_backup_%Y%m%d_%H%M%S")
    path = Path(cli.store) / f"{failed}.db"
    assert path.exists()
    corrupt(path)
    assert cli.run("verify", failed, check=False).returncode == 1
    restored = datetime.fromtimestamp(now - DAY - 3600).strftime("bri_backup_%Y%m%d_%H%M%S")
    cli.run("restore", restored)
    cli.run("rehearse", "latest")  # the newest backup's rehearsal status: passed
    # Everything verified now: the mount's background verifier changes nothing.
    assert cli.run("verify", check=False).returncode == 1
    return now, failed


def listed(cli):
    return json.loads(cli.run("--json", "list").stdout)


def test_mount_and_cli_give_the_same_page(cli, live_db, store, tmp_path, history):
    now, _ = history
    m = Mount(live_db, store, tmp_path / "mnt", env=dict(os.environ, BRI_TEST_NOW=str(now)))
    m.start()
    try:
        page = (m.path / "ctl/report.html").read_bytes()
        st = os.stat(m.path / "ctl/report.html")
        assert st.st_size == len(page)  # the exact size at stat
        assert (st.st_mode & 0o777) == 0o444
    finally:
        m.stop()
    out = tmp_path / "report.html"
    report(cli, "--html", str(out), now=now)
    assert out.read_bytes() == page
    # The same minute, the same page; another minute, another one.
    assert report(cli, "--html", "-", now=now - now % 60 + 59).stdout.encode() == page
    assert report(cli, "--html", "-", now=now + 60).stdout.encode() != page


@both_formats
def test_same_page_from_the_mount_and_the_cli_on_both_formats(cli, live_db, store, tmp_path,
                                                              store_format):
    now = int(time.time())
    for d in (9, 2, 1, 0):
        cli.run("create", "--verify", now=now - d * DAY)
    m = Mount(live_db, store, tmp_path / "mnt", env=dict(os.environ, BRI_TEST_NOW=str(now)))
    m.start()
    try:
        page = (m.path / "ctl/report.html").read_bytes()
    finally:
        m.stop()
    assert report(cli, "--html", "-", now=now).stdout.encode() == page
    assert f"{store_format} format".encode() in page


def test_chromium_renders_the_page_from_the_mount(cli, live_db, store, tmp_path, history):
    now, failed = history
    start = window_start(now)
    backups = listed(cli)
    in_window = {b["name"] for b in backups
                 if datetime.fromisoformat(b["backup_time_utc"].replace("Z", "+00:00"))
                 .timestamp() >= start}
    assert failed in in_window and len(in_window) >= 9
    m = Mount(live_db, store, tmp_path / "mnt", env=dict(os.environ, BRI_TEST_NOW=str(now)))
    m.start()
    try:
        url = (m.path / "ctl/report.html").as_uri()
        shot = tmp_path / "page.png"
        r = chromium(tmp_path, "--window-size=1000,1200", f"--screenshot={shot}", url)
        assert shot.exists(), r.stderr.decode(errors="replace")[-2000:]
        r = chromium(tmp_path, "--dump-dom", url)
        assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
        dom = r.stdout.decode()
    finally:
        m.stop()

    # The screenshot is no blank page: many colours, the calendar's green and red.
    w, h, rows = png_pixels(shot.read_bytes())
    assert (w, h) == (1000, 1200)
    colours = {px for row in rows[::4] for px in row[::4]}
    assert len(colours) > 20, len(colours)
    flat = [px for row in rows for px in row]
    assert sum(near(px, (0x2E, 0x7D, 0x32)) for px in flat) > 500  # verified ok
    assert sum(near(px, (0xC6, 0x28, 0x28)) for px in flat) > 50  # the failed one

    # The DOM Chromium built: one cell per day, one bar per backup of the window.
    p = parse(dom)
    days = p.classes("rect", "day")
    assert len(days) == 90
    dates = [a["data-date"] for a, _ in days]
    assert len(set(dates)) == 90 and dates == sorted(dates)
    assert dates[-1] == datetime.fromtimestamp(now).strftime("%Y-%m-%d")
    bars = p.classes("rect", "bar", inside="sizes")
    # Each bar's tooltip starts with its backup's name.
    assert sorted(a["_title"].split()[0] for a, _ in bars) == sorted(in_window)
    by_name = {a["_title"].split()[0]: c for a, c in bars}
    assert "failed" in by_name[failed]
    assert all("failed" not in c for n, c in by_name.items() if n != failed)
    failed_day = datetime.fromtimestamp(now - 7 * DAY - 3600).strftime("%Y-%m-%d")
    day_class = {a["data-date"]: c for a, c in days}
    assert "failed" in day_class[failed_day]
    assert sum("failed" in c for c in day_class.values()) == 1
    assert "none" in day_class[datetime.fromtimestamp(now - 10 * DAY).strftime("%Y-%m-%d")]
    # Kinds: the named backup's day, and the safety backup of the restore today.
    kinds = {(a["x"], c[1]) for a, c in p.classes("rect", "kind")}
    assert any(k == "k-named" for _, k in kinds) and any(k == "k-safety" for _, k in kinds)
    # The rehearsal of the newest backup: one mark, passed, under its day's cell.
    rehs = p.classes("rect", "reh", inside="calendar")
    assert len(rehs) == 1 and "ok" in rehs[0][1]
    newest_day = datetime.fromtimestamp(now - 3600).strftime("%Y-%m-%d")
    cell = [a for a, _ in days if a["data-date"] == newest_day][0]
    assert rehs[0][0]["x"] == cell["x"]
    # The restore is a bar; days before the window are one mark each (100, 101, 200).
    assert len(p.classes("rect", "restore", inside="restores")) == 1
    assert len(p.classes("rect", "mark", inside="history")) == 3


def test_w3m_reads_the_page_and_its_health_line(cli, live_db, store, tmp_path, history):
    now, failed = history
    m = Mount(live_db, store, tmp_path / "mnt", env=dict(os.environ, BRI_TEST_NOW=str(now)))
    m.start()
    try:
        health = (m.path / "ctl/health").read_text().splitlines()
        dump = sh(f"w3m -dump -cols 200 -T text/html {m.path}/ctl/report.html").stdout
    finally:
        m.stop()
    lines = dump.splitlines()
    assert lines[0].startswith("Backups of ")
    level = health[0].split(":")[0]
    assert level == "warning"  # a backup failed verification
    verdict = [ln for ln in lines if ln.startswith("Health: ")]
    assert len(verdict) == 1 and verdict[0].startswith(f"Health: {level} ")
    for h in health:  # each problem in words, as ctl/health says it
        assert any(h in ln for ln in lines), h
    assert any(ln.startswith("Thresholds: warning when the newest backup is older than 24 h")
               for ln in lines)
    assert any(ln.startswith("Last 90 days") for ln in lines)
    assert any(ln.strip().startswith("Verification") and "1 failed" in ln for ln in lines)
    newest = datetime.fromtimestamp(now - 3600).strftime("bri_backup_%Y%m%d_%H%M%S")
    assert any(ln.strip().startswith(f"Last rehearsal {newest}: ok ") for ln in lines), lines
    assert "<" not in dump and "M4" not in dump  # no markup, no path data


def test_page_is_valid_html_without_script_or_external_resource(cli, tmp_path, history):
    now, _ = history
    html = report(cli, "--html", "-", now=now).stdout
    check_valid(html)


@both_formats
def test_store_chart_and_dedup_ratio(cli, store_format, tmp_path):
    now = int(time.time())
    for d in (3, 2, 1, 0):
        cli.run("create", now=now - d * DAY)
    stats = json.loads(cli.run("--json", "stats").stdout)
    html = report(cli, "--html", "-", now=now).stdout
    p = check_valid(html)
    assert f"dedup ratio {stats['dedup_ratio']:.2f}" in html
    # A sample per create (the audit log's) collapses to one per day; and now.
    assert len(p.classes("circle", "sample", inside="store")) >= 2
    if store_format == "pages":
        assert stats["dedup_ratio"] > 1.5
    text = report(cli, now=now).stdout
    assert f"{store_format} format" in text and f"dedup ratio {stats['dedup_ratio']:.2f}" in text


def test_text_report_fits_80_columns(cli, history):
    now, failed = history
    p = report(cli, now=now)
    lines = p.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80, max(lines, key=len)
    assert any(ln.startswith("Health: warning - ") for ln in lines)
    assert any("1 failed" in ln for ln in lines)
    head = next(i for i, ln in enumerate(lines) if ln.startswith("Last 90 days"))
    cal = lines[head + 1:head + 3]
    assert all(re.match(r"  \d{4}-\d\d-\d\d [█▒✗·]+$", ln) for ln in cal), cal
    assert sum(len(ln.split()[1]) for ln in cal) == 90
    assert "".join(ln.split()[1] for ln in cal).count("✗") == 1
    assert any("▁" in ln or "█" in ln for ln in lines[lines.index(next(
        ln for ln in lines if ln.startswith("Backup size"))) + 1:])


def test_report_without_a_store_and_bad_usage(cli, tmp_path):
    p = cli.run("report", check=False)
    assert p.returncode == 0 and "Health: critical" in p.stdout  # no backup at all
    page = check_valid(cli.run("report", "--html", "-").stdout)
    assert len(page.classes("rect", "day")) == 90 and not page.classes("rect", "bar")
    assert cli.run("report", "--bogus", check=False).returncode == 2
    assert cli.run("report", "extra", check=False).returncode == 2
    assert cli.run("report", "--max-age-hours", "-1", check=False).returncode == 2
    link = tmp_path / "link.html"
    link.symlink_to(tmp_path / "elsewhere.html")
    p = cli.run("report", "--html", str(link), check=False)
    assert p.returncode == 1 and "symbolic link" in p.stderr
    assert not (tmp_path / "elsewhere.html").exists()


# ---- 10,000 backups ----

def synthetic_store(live_db, store, n, step):
    """n real small backups (one tiny SQLite database, copied), the newest
    now, one every step seconds, with seed-shaped metas."""
    store.mkdir(mode=0o700, exist_ok=True)
    src = store.parent / "tiny.db"
    con = sqlite3.connect(src)
    con.execute("pragma page_size=512")
    con.execute("create table videos(id integer primary key, title text)")
    con.execute("insert into videos(title) values ('a'), ('b')")
    con.commit()
    con.close()
    data = src.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    now = int(time.time())
    names = []
    for i in range(n):
        t = now - i * step
        name = datetime.fromtimestamp(t).strftime("bri_backup_%Y%m%d_%H%M%S")
        names.append((name, t))
        db = store / f"{name}.db"
        db.write_bytes(data)
        os.chmod(db, 0o600)
        meta = {"backup_time": datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S"),
                "source_db": str(live_db), "backup_path": str(db), "size_bytes": len(data),
                "size_mb": round(len(data) / 2**20, 2), "checksum": digest,
                "tables": {"videos": 2}, "kind": "auto",
                "backup_time_utc": datetime.utcfromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "duration_s": 0.01 + (i % 7) / 100}
        (store / f"{name}.db.meta").write_text(json.dumps(meta))
        os.chmod(store / f"{name}.db.meta", 0o600)
    return now, names


@pytest.mark.parametrize("spread", ["hourly", "within-90-days"])
def test_ten_thousand_backups_stay_under_2_mb(cli, live_db, store, spread):
    step = 3600 if spread == "hourly" else 89 * DAY // 10000
    now, names = synthetic_store(live_db, store, 10000, step)
    start = window_start(now)
    p = report(cli, "--html", "-", now=now)
    html = p.stdout
    assert len(html.encode()) < 2_000_000, len(html.encode())
    page = check_valid(html)
    bars = page.classes("rect", "bar", inside="sizes")
    assert len(bars) == sum(t >= start for _, t in names)
    old_days = {datetime.fromtimestamp(t).date() for _, t in names if t < start}
    assert len(page.classes("rect", "mark", inside="history")) == len(old_days)
    assert len(page.classes("rect", "day")) == 90
    assert "10000 (auto 10000" in html
    text = report(cli, now=now).stdout
    assert max(len(ln) for ln in text.splitlines()) <= 80


# ---- Grafana ----

def exported_families(metrics):
    return {ln.split()[2] for ln in metrics.splitlines() if ln.startswith("# TYPE ")}


def exprs_of_dashboard(d):
    out = []
    for p in d["panels"]:
        out += [(p["title"], t["expr"]) for t in p.get("targets", [])]
        for sub in p.get("panels", []):
            out += [(sub["title"], t["expr"]) for t in sub.get("targets", [])]
    return out


def test_grafana_dashboard_names_only_exported_metrics(cli, live_db, store, tmp_path, rgw,
                                                      bucket):
    """With every feature on (offsite to a real RGW, a rehearsal, every
    operation once), so that every metric family has samples."""
    assert rgw.client().request("PUT", bucket).status == 200
    remote = f"s3://{bucket}/mnt"
    now = int(time.time())
    for d in (2, 1, 0):
        cli.run("create", "--verify", now=now - d * DAY)
    cli.run("restore", "latest")
    cli.run("cleanup")
    cli.run("rehearse", "latest")
    m = Mount(live_db, store, tmp_path / "mnt",
              options=[f"offsite={remote}", f"endpoint={rgw.endpoint}", "offsite_retry_max=1"],
              env=rgw.env(BRI_S3_TRIES="1"))
    m.start()
    try:
        (m.path / "ctl/create").write_text("pushed\n")
        assert wait_until(lambda: (m.path / "pushed/offsite").read_text().startswith("uploaded"),
                          60), (m.path / "pushed/offsite").read_text()
        # Every backup pushed (the older ones too), so the page has settled.
        assert wait_until(lambda: "\nbri_offsite_pending_backups 0\n" in
                          (m.path / "ctl/metrics").read_text(), 60)
        metrics = (m.path / "ctl/metrics").read_text()
        page = (m.path / "ctl/report.html").read_text()
    finally:
        m.stop()
    families = exported_families(metrics)
    assert {"bri_offsite_lag_seconds", "bri_backup_rehearsal_success"} <= families
    names = re.compile(r"\bbri_[a-z_]+\b")

    dash = json.loads((GRAFANA / "bri-backup.json").read_text())
    exprs = exprs_of_dashboard(dash)
    assert exprs
    panels_of = {}
    for title, expr in exprs:
        used = set(names.findall(expr))
        assert used, (title, expr)
        assert used <= families, (title, expr, used - families)
        for u in used:
            panels_of.setdefault(u, set()).add(title)
    assert set(panels_of) == families, families - set(panels_of)  # a panel per family
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"])

    alerts = json.loads((GRAFANA / "bri-backup-alerts.json").read_text())
    rules = [r for g in alerts["groups"] for r in g["rules"]]
    rule_exprs = {}
    for r in rules:
        for q in r["data"]:
            if q["datasourceUid"] != "__expr__":
                used = set(names.findall(q["model"]["expr"]))
                assert used and used <= families, (r["title"], used)
                rule_exprs[r["uid"]] = q["model"]["expr"]
        assert r["condition"] in {q["refId"] for q in r["data"]}
    assert any("bri_backup_newest_age_seconds" in e for e in rule_exprs.values())
    assert any('bri_backup_verification{result="failed"}' in e for e in rule_exprs.values())
    assert any("bri_backup_rehearsal_success" in e for e in rule_exprs.values())
    # The labels the exprs select exist in the metrics.
    assert 'bri_backup_verification{result="failed"}' in metrics

    # The status page shows the pushes, from the audit log: a fact, and a mark
    # under each day whose backups went offsite (all of them).
    assert "last upload " in page and f": pushed to {remote}; " in page
    p = parse(page)
    offs = p.classes("rect", "off", inside="calendar")
    with_backups = [a for a, _ in p.classes("rect", "day") if a["data-backups"] != "0"]
    assert len(offs) == len(with_backups) == 3 and all("ok" in c for _, c in offs)
    assert sorted(a["x"] for a, _ in offs) == sorted(a["x"] for a in with_backups)


def test_encrypted_store_page_reads_the_sealed_audit_log(live_db, store, tmp_path):
    """In an encrypted page store the audit log is sealed line by line: the
    page still shows the restore and the store-size samples it records, and
    the mount (with the key) gives the same bytes."""
    from conftest import Cli
    key = tmp_path / "store.key"
    key.write_bytes(os.urandom(32))
    cli = Cli(live_db, store)
    k = ["--key-file", str(key)]
    cli.run("init", "--format", "pages", *k)
    now = int(time.time())
    for d in (2, 1, 0):
        cli.run(*k, "create", "--verify", now=now - d * DAY)
    cli.run(*k, "restore", "latest")
    cli.run(*k, "verify")
    assert b'"operation"' not in (store / "audit.jsonl").read_bytes()  # sealed
    html = cli.run(*k, "report", "--html", "-", now=now).stdout
    p = check_valid(html)
    assert len(p.classes("rect", "restore", inside="restores")) == 1
    assert p.classes("circle", "sample", inside="store")
    m = Mount(live_db, store, tmp_path / "mnt", options=[f"key_file={key}"],
              env=dict(os.environ, BRI_TEST_NOW=str(now)))
    m.start()
    try:
        assert (m.path / "ctl/report.html").read_text() == html
    finally:
        m.stop()
