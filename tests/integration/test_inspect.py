"""Inspection through bri-backup (SPEC.md section 4.1): `export NAME --table
T` and `--schema`, `diff OLD NEW` (summary and per-table CSV), checked byte
for byte against their oracles, the sqlite3 shell and sqldiff, on the sample
database and on a generated database with awkward data. Also the seed's
scenario: `diff before_cleanup live --table videos | grep '^-'` lists exactly
the deleted rows."""

import csv
import io
import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import BRI_BACKUP, as_plain, backup_file, both_formats, make_sample_db

TIMEOUT = 120
SQLDIFF = shutil.which("sqldiff")
csv.field_size_limit(1 << 30)  # the big values' fields


def bri(db, store, *args, check=True):
    p = subprocess.run([str(BRI_BACKUP), "--db", str(db), "--backup-dir", str(store), *args],
                       capture_output=True, timeout=TIMEOUT)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}: {p.stderr!r}")
    return p


def shell(db, sql):
    """The sqlite3 shell in -csv -header mode on a backup (read-only), bytes."""
    p = subprocess.run(["sqlite3", "-csv", "-header", f"file:{db}?immutable=1", sql],
                       capture_output=True, timeout=TIMEOUT, check=True)
    return p.stdout


def qid(name):
    return '"' + name.replace('"', '""') + '"'


def columns(db, table):
    con = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    try:
        return [r[1] for r in con.execute(f"PRAGMA table_info({qid(table)})")]
    finally:
        con.close()


def user_tables(db):
    con = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    try:
        return [r[0] for r in con.execute(
            "SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    finally:
        con.close()


def csv_oracle(db, table):
    """SPEC.md 4.1's oracle: the shell selecting each column as a value or an
    X'..' literal, with the header line even when the table is empty."""
    cols = columns(db, table)
    sel = ", ".join(
        f"CASE typeof({qid(c)}) WHEN 'blob' THEN 'X''' || hex({qid(c)}) || '''' "
        f"ELSE {qid(c)} END AS {qid(c)}" for c in cols)
    body = shell(db, f"SELECT {sel} FROM {qid(table)}")
    # The header alone: one row of NULLs (n-1 commas) after it, cut off.
    nulls = shell(db, f"SELECT {', '.join(f'NULL AS {qid(c)}' for c in cols)}")
    header = nulls[: len(nulls) - len(b"," * (len(cols) - 1) + b"\n")]
    return body if body else header


def schema_oracle(db):
    p = subprocess.run(["sqlite3", f"file:{db}?immutable=1",
                        "SELECT sql || ';' FROM sqlite_schema WHERE sql IS NOT NULL "
                        "ORDER BY rowid"], capture_output=True, timeout=TIMEOUT, check=True)
    return p.stdout


AWKWARD_OLD = r'''
CREATE TABLE "weird table" ("col ""q""" TEXT, "select" INTEGER, [a,b] BLOB, x REAL);
CREATE TABLE t_pk (id INTEGER PRIMARY KEY, name TEXT, data BLOB, f REAL);
CREATE TABLE t_comp (a TEXT, b INTEGER, v TEXT, PRIMARY KEY (a, b));
CREATE TABLE t_wr (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE TABLE empty_t (a, "b c");
CREATE TABLE "ünï" (id INTEGER PRIMARY KEY, "naïve col" TEXT);
CREATE TABLE schema_add (id INTEGER PRIMARY KEY, a TEXT, b TEXT);
CREATE TABLE schema_drop (id INTEGER PRIMARY KEY, a TEXT, b TEXT);
CREATE TABLE gone (x);
CREATE TABLE "order" (id INTEGER PRIMARY KEY, "group" TEXT);
CREATE TABLE rowidcol (rowid TEXT, v);
CREATE TABLE text_pk (name TEXT PRIMARY KEY, n INTEGER);
CREATE TABLE nums (id INTEGER PRIMARY KEY, v);
CREATE INDEX t_pk_name ON t_pk(name);
CREATE VIEW a_view AS SELECT 1 AS one;
CREATE TABLE auto (id INTEGER PRIMARY KEY AUTOINCREMENT, v);
CREATE TABLE big (id INTEGER PRIMARY KEY, t TEXT, b BLOB);
INSERT INTO big VALUES (1, replace(hex(zeroblob(5000)), '00', 'a"b,'), randomblob(70000)),
  (2, replace(hex(zeroblob(9000)), '00', 'xy'), zeroblob(3000)),
  (3, 'small', randomblob(2049));
INSERT INTO auto(v) VALUES (1), (2);
INSERT INTO "weird table" VALUES
  (NULL, NULL, NULL, NULL), ('', 0, x'', 0.0), ('a,b', 1, x'00ff00', 0.1),
  ('quote"d', -1, x'00', -0.0), ('it''s', 9223372036854775807, x'DEADBEEF', 1e300),
  ('line' || char(10) || 'break', -9223372036854775808, NULL, 1.0),
  ('cr' || char(13) || 'here', 2, NULL, 1e15), ('tab' || char(9), 3, NULL, 1e16),
  (' lead', 4, NULL, 3.0e-5), ('héllo 日本', 5, NULL, 2.5), ('ab' || char(0) || 'cd', 6, NULL, 123456789.123456789),
  ('plain', 7, NULL, 9007199254740993.0), ('#~\', 8, NULL, -1e-300);
INSERT INTO t_pk VALUES (1, 'one', x'0102', 1.5), (2, 'two', NULL, NULL), (3, 'three', x'', 3.0),
  (4, 'four', 'text in blob col', 4), (5, NULL, x'00', 0.1);
INSERT INTO t_comp VALUES ('a', 1, 'x'), ('a', 2, 'y'), ('b', 1, 'z'), (NULL, 1, 'null key');
INSERT INTO t_wr VALUES ('k1', 1), ('k2', 'two'), ('k,3', x'33');
INSERT INTO "ünï" VALUES (1, 'ça'), (2, '"q"');
INSERT INTO schema_add VALUES (1, 'a', 'b'), (2, 'c', 'd');
INSERT INTO schema_drop VALUES (1, 'a', 'b'), (2, 'c', 'd');
INSERT INTO gone VALUES (1), (2);
INSERT INTO "order" VALUES (1, 'g1'), (2, 'g2');
INSERT INTO rowidcol VALUES ('r1', 1), ('r2', 2);
INSERT INTO text_pk VALUES ('alpha', 1), ('beta', 2), ('gamma', 3);
INSERT INTO nums VALUES (1, 1), (2, 1.0), (3, '1'), (4, 0.30000000000000004), (5, 1e-7), (6, 100.0),
  (7, 1.7976931348623157e308), (8, 4.9e-324), (9, -123.456), (10, 12345678901234567890);
'''

AWKWARD_CHANGE = r'''
DELETE FROM t_pk WHERE id = 2;
UPDATE t_pk SET name = 'ONE', data = x'0103' WHERE id = 1;
UPDATE t_pk SET f = 3 WHERE id = 3;
INSERT INTO t_pk VALUES (6, 'six,' || char(10) || 'lines', x'0006', 6.25);
UPDATE t_comp SET v = 'x2' WHERE a = 'a' AND b = 1;
DELETE FROM t_comp WHERE a = 'b';
INSERT INTO t_comp VALUES ('c', 3, 'new');
UPDATE t_wr SET v = NULL WHERE k = 'k1';
INSERT INTO t_wr VALUES ('k4', 4);
DELETE FROM "weird table" WHERE "select" = 7;
UPDATE "weird table" SET x = 0.2 WHERE "select" = 1;
ALTER TABLE schema_add ADD COLUMN c TEXT;
UPDATE schema_add SET c = 'new col' WHERE id = 1;
UPDATE schema_add SET a = 'A' WHERE id = 2;
INSERT INTO schema_add VALUES (3, 'e', 'f', 'g');
ALTER TABLE schema_drop DROP COLUMN b;
UPDATE schema_drop SET a = 'A' WHERE id = 1;
DROP TABLE gone;
CREATE TABLE "new one" (x, y);
INSERT INTO "new one" VALUES (1, 'fresh');
UPDATE "order" SET "group" = 'G2' WHERE id = 2;
UPDATE rowidcol SET v = 20 WHERE rowid = 'r2';
UPDATE text_pk SET n = 20 WHERE name = 'beta';
DELETE FROM text_pk WHERE name = 'alpha';
UPDATE nums SET v = 2 WHERE id = 1;
INSERT INTO auto(v) VALUES (3);
UPDATE big SET t = t || '"' WHERE id = 1;
UPDATE big SET b = randomblob(5000) WHERE id = 3;
'''


@pytest.fixture
def awkward(tmp_path, store_format):
    """A live database with awkward data and two backups: 'old' and, after
    changes (rows, columns, tables), 'new'; in a store of store_format."""
    db = tmp_path / "data" / "bri.db"
    db.parent.mkdir()
    store = tmp_path / "data" / "backups"
    con = sqlite3.connect(db)
    con.executescript(AWKWARD_OLD)
    con.close()
    if store_format != "plain":
        bri(db, store, "init", "--format", store_format)
    bri(db, store, "create", "--name", "old")
    con = sqlite3.connect(db)
    con.executescript(AWKWARD_CHANGE)
    con.close()
    bri(db, store, "create", "--name", "new")
    return db, store


@both_formats
def test_export_matches_the_shell(awkward):
    db, store = awkward
    for name in ("old", "new"):
        path = as_plain(backup_file(store, name))  # the plain database it serves
        tables = user_tables(path)
        assert "weird table" in tables and "empty_t" in tables
        for t in tables:
            got = bri(db, store, "export", name, "--table", t).stdout
            assert got == csv_oracle(path, t), (name, t)
        assert bri(db, store, "export", name, "--schema").stdout == schema_oracle(path)


def test_export_empty_table_has_a_header(awkward):
    db, store = awkward
    assert bri(db, store, "export", "old", "--table", "empty_t").stdout == b'a,"b c"\n'


def test_export_blob_and_nul(awkward):
    db, store = awkward
    out = bri(db, store, "export", "old", "--table", "weird table").stdout
    assert b'"X\'00FF00\'"' in out and b'"X\'\'"' in out
    # text is shown as the shell shows it: up to its first NUL byte
    assert b"\nab,6," in out


@pytest.mark.skipif(not SQLDIFF, reason="sqldiff (sqlite3-tools) not installed")
@both_formats
def test_diff_summary_matches_sqldiff(awkward):
    db, store = awkward
    for a, b in (("old", "new"), ("new", "old"), ("old", "old")):
        want = subprocess.run([SQLDIFF, "--primarykey", "--summary", str(as_plain(backup_file(store, a))),
                               str(as_plain(backup_file(store, b)))], capture_output=True, check=True,
                              timeout=TIMEOUT).stdout
        assert bri(db, store, "diff", a, b).stdout == want, (a, b)
        assert bri(db, store, "diff", a, b, "--summary").stdout == want
    summary = bri(db, store, "diff", "old", "new").stdout.decode()
    assert "schema_drop: incompatible schema\n" in summary
    assert "gone: missing from second database\n" in summary
    assert "new one: missing from first database\n" in summary


def diff_lines(db, store, a, b, table):
    out = bri(db, store, "diff", a, b, "--table", table).stdout.decode()
    return out.split("\n")[:-1]


@both_formats
def test_diff_table_csv(awkward):
    db, store = awkward
    assert diff_lines(db, store, "old", "new", "t_pk") == [
        "op,id,name,data,f",
        "-,2,two,,",
        "~-,1,one,\"X'0102'\",1.5",
        "~+,1,ONE,\"X'0103'\",1.5",
        "+,6,\"six,", "lines\",\"X'0006'\",6.25",
    ]
    # 3.0 -> 3 is no change (sqldiff compares values with IS NOT)
    assert diff_lines(db, store, "old", "new", "t_comp") == [
        "op,a,b,v", "-,b,1,z", "-,,1,\"null key\"", "~-,a,1,x", "~+,a,1,x2", "+,,1,\"null key\"",
        "+,c,3,new"]
    assert diff_lines(db, store, "old", "new", "t_wr") == [
        "op,k,v", "~-,k1,1", "~+,k1,", "+,k4,4"]
    assert diff_lines(db, store, "old", "new", "gone") == ["op,x", "-,1", "-,2"]
    assert diff_lines(db, store, "old", "new", "new one") == ["op,x,y", "+,1,fresh"]
    # a column added: the shared columns are shown and compared
    assert diff_lines(db, store, "old", "new", "schema_add") == [
        "op,id,a,b", "~-,2,c,d", "~+,2,A,d", "+,3,e,f"]
    assert diff_lines(db, store, "old", "new", "schema_drop") == [
        "op,id,a", "~-,1,a", "~+,1,A"]
    assert diff_lines(db, store, "old", "new", "rowidcol") == [
        "op,rowid,v", "~-,r2,2", "~+,r2,20"]
    assert diff_lines(db, store, "old", "new", "weird table") == [
        'op,"col ""q""",select,"a,b",x',
        "-,plain,7,,9.00719925474099e+15",
        "~-,\"a,b\",1,\"X'00FF00'\",0.1", "~+,\"a,b\",1,\"X'00FF00'\",0.2"]
    assert diff_lines(db, store, "old", "old", "t_pk") == ["op,id,name,data,f"]


@pytest.mark.skipif(not SQLDIFF, reason="sqldiff (sqlite3-tools) not installed")
def test_diff_csv_counts_agree_with_sqldiff(awkward):
    """For every table sqldiff compares, the CSV has as many -, + and ~ pairs
    as sqldiff counts deletes, inserts and changes."""
    db, store = awkward
    summary = bri(db, store, "diff", "old", "new").stdout.decode().splitlines()
    checked = 0
    for line in summary:
        if " changes, " not in line:
            continue
        table, counts = line.rsplit(": ", 1)
        ch, ins, dels = [int(x.split()[0]) for x in counts.split(", ")[:3]]
        out = bri(db, store, "diff", "old", "new", "--table", table).stdout
        # count ops by the rows sqlite3 would parse: use the csv module
        import csv
        import io
        rows = list(csv.reader(io.StringIO(out.decode(), newline="")))[1:]
        ops = [r[0] for r in rows]
        assert (ops.count("~-"), ops.count("+"), ops.count("-")) == (ch, ins, dels), line
        assert ops.count("~+") == ch
        checked += 1
    assert checked >= 8


@both_formats
def test_diff_json(awkward):
    db, store = awkward
    out = json.loads(bri(db, store, "diff", "old", "new", "--json").stdout)
    by = {t["table"]: t for t in out["tables"]}
    assert out["old"] == "old" and out["new"] == "new"
    assert by["t_pk"] == {"table": "t_pk", "status": "compared", "changes": 1, "inserts": 1,
                          "deletes": 1, "unchanged": 3}
    assert by["gone"]["status"] == "missing_from_new"
    assert by["new one"]["status"] == "missing_from_old"
    assert by["schema_drop"]["status"] == "incompatible_schema"


def test_bad_arguments(awkward):
    db, store = awkward
    assert bri(db, store, "diff", "old", check=False).returncode == 2
    assert bri(db, store, "export", "old", check=False).returncode == 2
    p = bri(db, store, "export", "nope", "--table", "t_pk", check=False)
    assert p.returncode == 1 and b"no backup called 'nope'" in p.stderr
    p = bri(db, store, "export", "old", "--table", "no_such", check=False)
    assert p.returncode == 1 and b"no table" in p.stderr
    p = bri(db, store, "diff", "old", "new", "--table", "no_such", check=False)
    assert p.returncode == 1


@pytest.mark.skipif(not SQLDIFF, reason="sqldiff (sqlite3-tools) not installed")
def test_sample_db_and_the_seed_scenario(tmp_path):
    """The seed's 'Accidental Data Deletion': a backup before the cleanup,
    rows deleted from the live database, and `diff before_cleanup live
    --table videos | grep '^-'` lists exactly the deleted rows."""
    db = make_sample_db(tmp_path / "data" / "bri.db", rows=300)
    store = tmp_path / "data" / "backups"
    bri(db, store, "create", "--name", "before_cleanup")
    path = store / "before_cleanup.db"
    for t in user_tables(path):
        assert bri(db, store, "export", "before_cleanup", "--table", t).stdout == \
            csv_oracle(path, t), t
    assert bri(db, store, "export", "latest", "--schema").stdout == schema_oracle(path)
    old_lines = bri(db, store, "export", "before_cleanup", "--table", "videos").stdout \
        .decode().splitlines()[1:]
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM videos WHERE id % 5 = 0")
        con.execute("UPDATE videos SET title = 'renamed' WHERE id = 1")
        con.execute("INSERT INTO videos(title) VALUES ('added')")
    con.close()
    out = bri(db, store, "diff", "before_cleanup", "live", "--table", "videos").stdout.decode()
    deleted = [ln for ln in out.splitlines() if ln.startswith("-")]
    assert deleted == ["-," + ln for ln in old_lines if int(ln.split(",")[0]) % 5 == 0]
    assert len(deleted) == 8
    # the live snapshot is removed after
    assert not [p for p in store.iterdir() if p.name.startswith(".")
                and p.name.endswith(".tmp")]
    # the summary against a plain copy of the live database, by sqldiff
    bri(db, store, "create", "--name", "after")
    want = subprocess.run([SQLDIFF, "--primarykey", "--summary", str(path),
                           str(store / "after.db")], capture_output=True, check=True,
                          timeout=TIMEOUT).stdout
    assert bri(db, store, "diff", "before_cleanup", "live").stdout == want
    assert bri(db, store, "diff", "before_cleanup", "latest").stdout == want


def random_value(rng):
    k = rng.randrange(9)
    if k == 0:
        return None
    if k == 1:
        return rng.randrange(-2**63, 2**63)
    if k == 2:
        return rng.choice([0.1, -0.0, 1.0, 1e300, 2.5e-8, 123456.789, float(rng.randrange(10**6)),
                           rng.random() * 10 ** rng.randrange(-20, 20)])
    if k == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(6)))
    if k == 4:
        return "".join(rng.choice('ab ,"\'\n\r\t\x7fé日\\x') for _ in range(rng.randrange(6)))
    return rng.choice(["", "plain", "a,b", "x" * rng.randrange(40), str(rng.randrange(100))])


RANDOM_SHAPES = [
    ("CREATE TABLE {t} (id INTEGER PRIMARY KEY, a, b, c)", 4),
    ("CREATE TABLE {t} (a, b, c)", 3),
    ("CREATE TABLE {t} (k TEXT, n INT, v, PRIMARY KEY (k, n))", 3),
    ("CREATE TABLE {t} (k TEXT PRIMARY KEY, v, w) WITHOUT ROWID", 3),
    ('CREATE TABLE {t} ("x y", "select", [z"q])', 3),
]


@pytest.mark.skipif(not SQLDIFF, reason="sqldiff (sqlite3-tools) not installed")
@pytest.mark.parametrize("seed", range(6))
def test_random_databases_match_the_oracles(tmp_path, seed):
    """Random tables of every shape, random values of every type, random
    inserts, updates and deletes: the summary is sqldiff's, every export the
    shell's, and the CSV's op counts sqldiff's counts."""
    import csv
    import io
    import random
    rng = random.Random(seed)
    db = tmp_path / "data" / "bri.db"
    db.parent.mkdir()
    store = tmp_path / "data" / "backups"
    con = sqlite3.connect(db)
    names = []
    for i, (shape, ncol) in enumerate(RANDOM_SHAPES):
        t = rng.choice(["t{}", "T {}", 'q"{}', "ü{}", "[{}]"]).format(i)
        names.append((t, ncol))
        con.execute(shape.format(t=qid(t)))
    def insert(t, ncol):
        row = [random_value(rng) for _ in range(ncol)]
        sql = con.execute("SELECT sql FROM sqlite_schema WHERE name=?", (t,)).fetchone()[0]
        if "WITHOUT" in sql and row[0] is None:
            row[0] = "k"
        if "INTEGER PRIMARY KEY" in sql:
            row[0] = rng.choice([None, rng.randrange(1, 40)])
        con.execute(f"INSERT OR REPLACE INTO {qid(t)} VALUES ({','.join('?' * ncol)})", row)
    for t, ncol in names:
        for _ in range(rng.randrange(0, 25)):
            insert(t, ncol)
    con.commit()
    if seed % 2:
        con.execute("ANALYZE")
        con.commit()
    con.close()
    bri(db, store, "create", "--name", "a")
    con = sqlite3.connect(db)
    for t, ncol in names:
        cols = columns(db, t)
        for _ in range(rng.randrange(0, 8)):
            op = rng.randrange(3)
            if op == 0:
                insert(t, ncol)
            elif op == 1:
                con.execute(f"DELETE FROM {qid(t)} WHERE {qid(cols[0])} IN (SELECT "
                            f"{qid(cols[0])} FROM {qid(t)} ORDER BY random() LIMIT 1)")
            else:
                c = rng.choice(cols[1:])
                con.execute(f"UPDATE OR IGNORE {qid(t)} SET {qid(c)} = ? WHERE {qid(cols[0])} IN "
                            f"(SELECT {qid(cols[0])} FROM {qid(t)} ORDER BY random() LIMIT 2)",
                            (random_value(rng),))
    con.commit()
    con.close()
    bri(db, store, "create", "--name", "b")
    for name in ("a", "b"):
        path = store / f"{name}.db"
        for t, _ in names:
            assert bri(db, store, "export", name, "--table", t).stdout == csv_oracle(path, t), \
                (name, t)
        assert bri(db, store, "export", name, "--schema").stdout == schema_oracle(path)
    want = subprocess.run([SQLDIFF, "--primarykey", "--summary", str(store / "a.db"),
                           str(store / "b.db")], capture_output=True, check=True,
                          timeout=TIMEOUT).stdout
    assert bri(db, store, "diff", "a", "b").stdout == want
    assert re.search(rb"[1-9]\d* (changes|inserts|deletes)", want), want
    for line in want.decode().splitlines():
        table, counts = line.rsplit(": ", 1)
        if " changes, " not in line:
            continue
        ch, ins, dels = [int(x.split()[0]) for x in counts.split(", ")[:3]]
        out = bri(db, store, "diff", "a", "b", "--table", table).stdout
        ops = [r[0] for r in csv.reader(io.StringIO(out.decode("utf-8", "surrogateescape"),
                                                   newline=""))][1:]
        assert (ops.count("~-"), ops.count("~+"), ops.count("+"), ops.count("-")) == \
            (ch, ch, ins, dels), line


def test_new_names_that_inspection_takes_are_refused(awkward):
    """New backup names may not contain '..' (diff/OLD..NEW) nor be inspect,
    diff, at or live; an old backup called live stays reachable as live.db."""
    db, store = awkward
    for name in ("a..b", "x..", "live", "inspect", "diff", "at"):
        p = bri(db, store, "create", "--name", name, check=False)
        assert p.returncode == 1, name
        assert not (store / f"{name}.db").exists()
    assert b"may not contain '..'" in bri(db, store, "create", "--name", "a..b",
                                           check=False).stderr
    assert b"reserved" in bri(db, store, "create", "--name", "live", check=False).stderr
    # A backup called live, made before the rule: reached as live.db.
    for suffix in (".db", ".db.meta"):
        shutil.copyfile(store / f"old{suffix}", store / f"live{suffix}")
    assert bri(db, store, "export", "live.db", "--table", "t_pk").stdout == \
        bri(db, store, "export", "old", "--table", "t_pk").stdout
    assert bri(db, store, "diff", "live.db", "old").stdout == \
        bri(db, store, "diff", "old", "old").stdout


def test_bash_completion_of_diff_and_export(awkward):
    from test_operations import complete
    db, store = awkward
    assert {"diff", "export"} <= complete("bri-backup ")
    assert {"--table", "--summary", "--json"} <= complete("bri-backup diff --")
    assert {"--table", "--schema"} <= complete("bri-backup export --")
    assert complete(f"bri-backup --db {db} --backup-dir {store} diff ") >= {
        "old", "new", "latest", "live"}
    assert complete(f"bri-backup --db {db} --backup-dir {store} export ol") == {"old"}


def test_diff_table_json_lines(awkward):
    """--table with --json: the CSV's rows, in its order, as JSON lines."""
    db, store = awkward
    out = bri(db, store, "diff", "old", "new", "--table", "t_pk", "--json").stdout
    rows = [json.loads(ln) for ln in out.decode().splitlines()]
    assert rows == [
        {"op": "-", "old": {"id": 2, "name": "two", "data": None, "f": None}},
        {"op": "~", "old": {"id": 1, "name": "one", "data": {"hex": "0102"}, "f": 1.5},
         "new": {"id": 1, "name": "ONE", "data": {"hex": "0103"}, "f": 1.5}},
        {"op": "+", "new": {"id": 6, "name": "six,\nlines", "data": {"hex": "0006"},
                            "f": 6.25}},
    ]
    out = bri(db, store, "diff", "old", "new", "--table", "weird table", "--json").stdout
    rows = [json.loads(ln) for ln in out.decode().splitlines()]
    assert [r["op"] for r in rows] == ["-", "~"]
    assert rows[0]["old"] == {'col "q"': "plain", "select": 7, "a,b": None,
                              "x": 9.00719925474099e+15}
    # every table's JSON has as many rows as its CSV has ops
    for t in ("t_comp", "t_wr", "big", "gone", "new one", "schema_add", "nums"):
        js = bri(db, store, "diff", "old", "new", "--table", t, "--json").stdout
        ops = [json.loads(ln)["op"] for ln in js.decode().splitlines()]
        csv_out = bri(db, store, "diff", "old", "new", "--table", t).stdout.decode()
        csv_ops = [r[0] for r in csv.reader(io.StringIO(csv_out, newline=""))][1:]
        assert len(ops) == len([o for o in csv_ops if o != "~+"]), t
    # text with a NUL byte is whole in JSON
    con = sqlite3.connect(db)
    con.execute("""UPDATE "weird table" SET x = 5 WHERE "select" = 6""")
    con.commit()
    con.close()
    out = bri(db, store, "diff", "old", "live", "--table", "weird table", "--json").stdout
    texts = [json.loads(ln)["old"]['col "q"'] for ln in out.decode().splitlines()
             if json.loads(ln)["op"] == "~"]
    assert "ab\x00cd" in texts
