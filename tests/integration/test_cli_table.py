"""bri-backup's command table (src/cli/commands.c) and what it drives: the
options getopt_long accepts, --help, bash completion and the man page's
synopsis all say the same as the table, which the program prints with its
hidden --completion-table. A command or option added to the table is
checked here without changing this file."""

import re
import shlex
import subprocess

import pytest

from conftest import BRI_BACKUP, ROOT
from test_operations import complete

MAN = ROOT / "man/bri-backup.1"


def bri(*args):
    return subprocess.run([str(BRI_BACKUP), *map(str, args)], capture_output=True, text=True,
                          timeout=30)


def table():
    """(commands, options): commands {name: (completes, synopsis)}, options
    {scope: {--long: (short, arg, completes)}} with scope main, global or a
    command."""
    p = bri("--completion-table")
    assert p.returncode == 0, p.stderr
    commands, options = {}, {}
    for line in p.stdout.splitlines():
        if line.startswith("#"):
            continue
        f = line.split("\t")
        if f[0] == "command":
            assert len(f) == 4, line
            commands[f[1]] = (f[2], f[3])
        else:
            assert f[0] == "option" and len(f) == 6, line
            assert f[2] not in options.setdefault(f[1], {}), f"{f[2]} twice in {f[1]}"
            options[f[1]][f[2]] = (f[3], f[4], f[5])
    assert set(commands) <= set(options)  # every command has at least --help
    return commands, options


def help_options(text):
    """The long options an option list of --help shows."""
    return set(re.findall(r"^ {2,}(?:-\w, )?(--[a-z][a-z-]*)", text, re.M))


def test_the_table_has_every_command_and_no_clash():
    commands, options = table()
    assert {"init", "create", "list", "verify", "restore", "cleanup", "delete", "rehearse",
            "pin", "unpin", "stats", "health", "metrics", "diff", "export"} <= set(commands)
    assert "--output" in options["metrics"] and "--verbose" in options["global"]
    globals_ = set(options["global"]) | set(options["main"])
    shorts_global = {o[0] for o in options["global"].values()} - {"-"}
    for cmd in commands:
        own = options[cmd]
        assert not set(own) & set(options["global"]), cmd
        shorts = [o[0] for o in own.values() if o[0] != "-"]
        assert len(shorts) == len(set(shorts)) and not set(shorts) & shorts_global, cmd
    assert "--completion-table" not in globals_  # hidden


def test_help_shows_what_the_table_declares():
    commands, options = table()
    top = bri("--help")
    assert top.returncode == 0
    assert help_options(top.stdout) == set(options["global"]) | set(options["main"])
    for cmd, (_, synopsis) in commands.items():
        assert f"  {synopsis}\n" in top.stdout, cmd
        p = bri(cmd, "--help")
        assert p.returncode == 0 and p.stderr == ""
        assert p.stdout.startswith(f"Usage: bri-backup [OPTIONS] {synopsis}\n")
        assert help_options(p.stdout) == set(options[cmd]), cmd
        assert bri("help", cmd).stdout == p.stdout


def test_getopt_accepts_exactly_the_options_of_the_table():
    """Every option of every command parses (long and short form, with its
    argument); --help after it proves the line was accepted up to there."""
    commands, options = table()
    for cmd in commands:
        for long, (short, arg, _) in options[cmd].items():
            if long == "--help":
                continue
            for form in {long, short} - {"-"}:
                line = [cmd, form] + ([] if arg == "-" else ["x1"]) + ["--help"]
                p = bri(*line)
                assert p.returncode == 0, (line, p.stderr)
                assert p.stdout.startswith(f"Usage: bri-backup [OPTIONS] {cmd}"), line
            if arg != "-":
                p = bri(cmd, long)
                assert p.returncode in (2, 3), (cmd, long)
                assert f"option '{long}' needs an argument" in p.stderr
        # Another command's option is not this one's.
        others = {o for c in commands for o in options[c]} - set(options[cmd])
        for other in sorted(others)[:3]:
            p = bri(cmd, other, "x1", "--help")
            assert p.returncode in (2, 3) and "unknown option" in p.stderr, (cmd, other)


def test_completion_offers_what_the_table_declares(tmp_path):
    commands, options = table()
    globals_ = set(options["global"])
    assert complete("bri-backup ") == set(commands) | globals_ | set(options["main"])
    assert "--verbose" in complete("bri-backup --v")
    for cmd, (completes, _) in commands.items():
        assert complete(f"bri-backup {cmd} --") == set(options[cmd]) | globals_, cmd
        assert complete(f"bri-backup --db x {cmd} --") == set(options[cmd]) | globals_, cmd
    assert "--output" in complete("bri-backup metrics --")
    # An option's argument: file names, or nothing to offer.
    (tmp_path / "metrics.prom").write_text("")
    for scope in options:
        for long, (short, arg, completes) in options[scope].items():
            if arg == "-":
                continue
            prefix = "bri-backup " + ("" if scope in ("main", "global") else scope + " ")
            got = complete(f"{prefix}{long} {tmp_path}/met")
            if "file" in completes.split(","):
                assert got == {f"{tmp_path}/metrics.prom"}, (scope, long)
            else:
                assert got == set(), (scope, long)


def roff_text(line):
    """A roff request line of the SYNOPSIS as the words it prints."""
    line = line.replace("\\-", "-").replace("\\fB", "").replace("\\fI", "") \
        .replace("\\fR", "").replace("\\fP", "")
    if not line.startswith("."):
        return line
    macro, _, rest = line.partition(" ")
    args = shlex.split(rest)
    if macro in (".B", ".I"):
        return " ".join(args)
    if macro in (".BR", ".RB", ".IR", ".RI", ".BI", ".IB"):
        return "".join(args)
    return None  # .sp, .br and the like end a line


def man_synopsis():
    """The SYNOPSIS of man/bri-backup.1 as text lines."""
    lines, cur, inside = [], [], False
    for raw in MAN.read_text().splitlines():
        if raw.startswith(".SH"):
            if inside:
                break
            inside = raw.strip() == ".SH SYNOPSIS"
            continue
        if not inside:
            continue
        text = roff_text(raw)
        if text is None:
            if cur:
                lines.append(" ".join(cur))
            cur = []
        else:
            cur.append(text)
    if cur:
        lines.append(" ".join(cur))
    return lines


def test_man_page_synopsis_matches_the_table():
    """Each command has one synopsis line in bri-backup(1) naming exactly
    the options the table gives it (global options may be repeated there);
    each option, global or not, is described in the page."""
    commands, options = table()
    globals_ = set(options["global"]) | set(options["main"])
    synopsis = {}
    for line in man_synopsis():
        m = re.match(r"bri-backup ([a-z]+)\b(.*)", line)
        if m and m.group(1) in commands:
            assert m.group(1) not in synopsis, line
            synopsis[m.group(1)] = set(re.findall(r"--[a-z][a-z-]*", m.group(2)))
    assert set(synopsis) == set(commands)
    for cmd in commands:
        own = set(options[cmd]) - {"--help"}
        assert own <= synopsis[cmd], (cmd, own - synopsis[cmd])
        assert synopsis[cmd] - own <= globals_, (cmd, synopsis[cmd] - own)
    page = MAN.read_text().replace("\\-", "-")
    for scope in options:
        for long in options[scope]:
            assert re.search(rf"^\.(B|BI|BR|TP.*)\b.*{long}\b", page, re.M) or \
                re.search(rf"\\fB{long}\b", page), (scope, long)
