"""The documentation against the programs: bri-backupfs's -o options as
--help lists them, as its fuse_opt table accepts them (a real mount with
every one) and as man/bri-backupfs.8 describes them are one set; every
`bri-backup COMMAND --option` and every `-o key` the READMEs and the man
pages' examples show is one the programs accept (bri-backup's from its
command table, --completion-table; the daemon's from --help, whose keys the
mount test proves real); every ctl/ file and root entry the mount lists
is described in the man page and drawn in the README's tree. An option or
file renamed, removed or misspelt in either place fails here without
changing this file."""

import re
import shlex
import subprocess

import pytest

from conftest import BRI_BACKUP, BRI_BACKUPFS, ROOT, Mount, is_mounted

README = ROOT / "README.md"
MAN_FS = ROOT / "man/bri-backupfs.8"
MAN_CLI = ROOT / "man/bri-backup.1"

# "-o key[=VALUE][, key=VALUE ...]" at the start of an option line of --help.
HELP_OPT = re.compile(r"-o ([a-z_]+)(?:=[^\s,]*)?((?:, [a-z_]+=[^\s,]*)*)")


def fs_help():
    """(ours, libfuse's): the -o keys of bri-backupfs --help, each
    {key: placeholder or None}."""
    p = subprocess.run([str(BRI_BACKUPFS), "--help"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    ours_text, sep, fuse_text = p.stdout.partition("\nFUSE options:\n")
    assert sep and "bri-backupfs options:" in ours_text

    def keys(text):
        found = {}
        for line in text.splitlines():
            m = re.match(r"\s+(?:-\w\s+)?" + HELP_OPT.pattern, line)
            if not m:
                continue
            head = line[m.start(1) - 3:m.end()]
            for item in re.findall(r"([a-z_]+)(=[^\s,]*)?(?:,|$)", head[3:]):
                found[item[0]] = item[1][1:] or None
        return found

    return keys(ours_text), keys(fuse_text)


def roff_words(line):
    """A roff line as the words it prints (font escapes and quotes dropped;
    .BI/.BR and friends join their arguments)."""
    line = line.replace("\\-", "-").replace("\\(dq", '"')
    line = re.sub(r"\\f[BIRP]", "", line)
    if not line.startswith("."):
        return line
    macro, _, rest = line.partition(" ")
    try:
        args = shlex.split(rest)
    except ValueError:
        args = rest.split()
    if macro in (".B", ".I"):
        return " ".join(args)
    return "".join(args)


def man_section(path, name):
    """The lines of section .SH NAME of a man page."""
    out, inside = [], False
    for raw in path.read_text().splitlines():
        if raw.startswith(".SH"):
            if inside:
                break
            inside = raw.strip() == f".SH {name}"
            continue
        if inside:
            out.append(raw)
    assert out, f"no section {name} in {path}"
    return out


def man_fs_options():
    """The -o keys bri-backupfs(8)'s OPTIONS section describes: those in the
    tag line of each .TP."""
    lines = man_section(MAN_FS, "OPTIONS")
    keys = set()
    for i, raw in enumerate(lines[:-1]):
        if raw.strip() == ".TP":
            tag = roff_words(lines[i + 1])
            keys |= set(re.findall(r"(?:-o |, )([a-z_]+)(?==|,|$)", tag))
    return keys


def test_daemon_help_and_man_page_list_the_same_options():
    ours, fuse = fs_help()
    assert {"backup_dir", "schedule", "rehearse", "offsite", "force"} <= set(ours)
    assert {"allow_other", "auto_unmount"} <= set(fuse)
    man = man_fs_options()
    assert set(ours) - man == set(), "in bri-backupfs --help, not in man/bri-backupfs.8"
    assert set(fuse) - man == set(), "libfuse's, not in man/bri-backupfs.8"
    assert man - set(ours) - set(fuse) == set(), "in man/bri-backupfs.8, not in --help"


def test_the_fuse_opt_table_is_what_help_lists():
    """Every key of src/fs/main.c's fuse_opt table is in --help."""
    ours, _ = fs_help()
    src = (ROOT / "src/fs/main.c").read_text()
    table = set(re.findall(r'BFS_OPT\("([a-z_]+)', src))
    assert table and table == set(ours)


# A harmless value for each placeholder --help shows; BY_KEY for a key whose
# placeholder says too little (add one there when a new key needs it).
HARMLESS = {
    None: None, "N": "7", "D": "7d", "T": "7d", "S": "30", "H": "24", "MS": "30000",
    "LEVEL": "info", "F": "plain", "PROGRAM": "/bin/true", "WHEN": "none",
    "URL": "http://127.0.0.1:9", "s3://BUCKET/PREFIX": "s3://bri-docs-test/p",
    "path|virtual": "path",
}
HARMLESS_BY_KEY = {"checks": "{tmp}/checks.sql", "log": "{tmp}/fs.log", "backup_dir": "{store}"}


def try_mount(live_db, store, tmp_path, opts):
    """None when the daemon mounted with opts (then unmounted), else its
    complaint."""
    env = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
           "HOME": str(tmp_path)}
    m = Mount(live_db, store, tmp_path / "mnt", options=opts, env=env)
    try:
        m.start()
    except AssertionError as e:
        return str(e)
    try:
        assert is_mounted(m.path)
    finally:
        m.stop()
    return None


def test_the_daemon_accepts_every_option_help_lists(live_db, store, tmp_path):
    """A mount given every key of --help mounts (a key the fuse_opt table
    lacks goes to libfuse, which refuses it: the control at the end). Should
    the values given not suit a key, each key is tried alone: it must mount,
    or be refused by the daemon itself, naming the key, never as unknown."""
    (tmp_path / "checks.sql").write_text("SELECT 1; -- expect 1\n")
    ours, _ = fs_help()
    opts = {}
    for key, placeholder in sorted(ours.items()):
        value = HARMLESS_BY_KEY.get(key) or HARMLESS.get(placeholder, "1")
        if value is not None:
            value = value.format(tmp=tmp_path, store=store)
        opts[key] = key if value is None else f"{key}={value}"
    if try_mount(live_db, store, tmp_path, list(opts.values())) is not None:
        for key, opt in opts.items():
            why = try_mount(live_db, store, tmp_path, [opt])
            assert why is None or ("unknown option" not in why and key in why), \
                (opt, why, "give the key a harmless value in HARMLESS_BY_KEY")
    p = subprocess.run([str(BRI_BACKUPFS), "-f", "-o", "backup_dir=" + str(store) +
                        ",no_such_option=1", str(live_db), str(tmp_path / "mnt")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "unknown option" in p.stderr
    assert not is_mounted(tmp_path / "mnt")


# ---- what the README and the man pages' examples show ----

def code_of(text):
    """The shell lines of a Markdown text: fenced blocks' lines and inline
    code spans."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            lines.append(line)
        else:
            lines += re.findall(r"`([^`]+)`", line)
    return lines


def man_examples(path):
    """The lines between .EX/.EE or .nf/.fi of a man page, as printed."""
    out, inside = [], False
    for raw in path.read_text().splitlines():
        if raw.startswith((".EX", ".nf")):
            inside = True
        elif raw.startswith((".EE", ".fi")):
            inside = False
        elif inside and not raw.startswith("."):
            out.append(raw.replace("\\-", "-"))
    return out


def doc_lines():
    readmes = (README, ROOT / "scripts/systemd/README.md")
    return ([(p.name, s) for p in readmes for s in code_of(p.read_text())] +
            [(p.name, s) for p in (MAN_CLI, MAN_FS) for s in man_examples(p)])


def cli_table():
    p = subprocess.run([str(BRI_BACKUP), "--completion-table"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    commands, options = set(), {}
    for line in p.stdout.splitlines():
        f = line.split("\t")
        if f[0] == "command":
            commands.add(f[1])
        elif f[0] == "option":
            scope = options.setdefault(f[1], {})
            scope[f[2]] = f[4]  # --long: its argument, or "-"
            if f[3] != "-":
                scope[f[3]] = f[4]  # the short form
    return commands, options


def cli_invocations(line):
    """The argument lists of the bri-backup commands on a shell line."""
    line = re.sub(r"(^|\s)#.*", "", line)
    try:
        words = shlex.split(line, posix=True)
    except ValueError:
        words = line.split()
    out, cur = [], None
    for w in words:
        if w in ("|", "||", "&&", ";", "&") or w.endswith(";"):
            if cur is not None:
                out.append(cur)
            cur = None
            continue
        if cur is not None:
            cur.append(w)
        elif w == "bri-backup" or w.endswith("/bri-backup"):
            cur = []
    if cur is not None:
        out.append(cur)
    return out


# Not in the table on purpose: the table itself, for completion and tests.
HIDDEN = {"--completion-table"}


def check_cli(args, commands, options):
    """Problems with one bri-backup argument list, as strings."""
    problems, cmd, i = [], None, 0
    scopes = lambda: ["main", "global"] + ([cmd] if cmd else [])  # noqa: E731
    while i < len(args):
        w = args[i]
        i += 1
        if w.startswith("-") and w not in ("-", "--"):
            name = w.split("=", 1)[0]
            arg = next((options[s][name] for s in scopes() if name in options.get(s, {})), None)
            if arg is None and name not in HIDDEN:
                problems.append(f"{w}: not an option of {cmd or 'bri-backup'}")
            elif arg not in (None, "-") and "=" not in w:
                i += 1  # its argument
        elif cmd is None:
            if w.isupper():  # a placeholder (COMMAND): an option of any command will do
                options = {"any": {k: v for o in options.values() for k, v in o.items()}}
                cmd = "any"
                continue
            if w not in commands:
                problems.append(f"{w}: not a command")
                return problems
            cmd = w
    return problems


def test_every_bri_backup_option_the_docs_show_is_in_the_table():
    commands, options = cli_table()
    seen, problems = 0, []
    for where, line in doc_lines():
        for args in cli_invocations(line):
            if not args or not re.fullmatch(r"-.*|[A-Za-z][\w-]*", args[0]):
                continue  # prose: `bri-backup` alone, "bri-backup (commands.c: ...)"
            seen += 1
            problems += [f"{where}: {line.strip()}: {p}" for p in
                         check_cli(args, commands, options)]
    assert seen >= 40, seen
    assert problems == []


def daemon_keys_shown(line):
    """The -o keys a shell line gives, and an fstab line's options."""
    keys = []
    for spec in re.findall(r"(?:^|\s)-o\s*([a-z_][^\s`'\"]*)", line):
        keys += [item.split("=", 1)[0] for item in spec.split(",") if item]
    f = line.split()
    if len(f) == 6 and f[2].startswith("fuse.bri-backupfs"):
        keys += [item.split("=", 1)[0] for item in f[3].split(",")]
    return [k for k in keys if re.fullmatch(r"[a-z_]+", k)]


def test_every_daemon_option_the_docs_show_is_accepted():
    ours, fuse = fs_help()
    fstab_only = {"noauto", "auto", "user", "nouser", "users", "owner", "group", "_netdev",
                  "nofail", "defaults"}
    known = set(ours) | set(fuse) | fstab_only
    seen, problems = 0, []
    for where, line in doc_lines():
        if re.search(r"\bbri-backup\b(?!fs)", line) and "bri-backupfs" not in line:
            continue  # bri-backup metrics -o FILE and the like
        for key in daemon_keys_shown(line):
            seen += 1
            if key not in known:
                problems.append(f"{where}: {line.strip()}: -o {key}")
    assert seen >= 30, seen
    assert problems == []


@pytest.mark.parametrize("line, problem", [
    ("bri-backup --keep-dayly 7 cleanup --dry-run", "--keep-dayly: not an option"),
    ("bri-backup cleanup --dry-rn", "--dry-rn: not an option of cleanup"),
    ("bri-backup offsite push --lock-day 30", "--lock-day: not an option of offsite"),
    ("bri-backup purge old", "purge: not a command"),
])
def test_the_checker_finds_a_wrong_line(line, problem):
    """The checks above can fail: a wrong line is reported."""
    commands, options = cli_table()
    (args,) = cli_invocations(line)
    assert any(problem in p for p in check_cli(args, commands, options))


def test_every_ctl_file_and_root_entry_is_documented(mounted):
    """What the mount's root and ctl/ list is described in bri-backupfs(8)'s
    THE VIEW and shown in the README's tree."""
    man = "\n".join(roff_words(line) for line in man_section(MAN_FS, "THE VIEW"))
    readme = README.read_text()
    tree = readme[readme.index("/mnt/bri-backups/\n├──"):]
    tree = tree[:tree.index("```")]
    (mounted / "ctl/create").write_text("docs\n")  # so that latest exists
    ctl = sorted(p.name for p in (mounted / "ctl").iterdir())
    assert {"create", "verify", "rehearse", "pin"} <= set(ctl)
    for name in ctl:
        assert re.search(rf"^ctl/{re.escape(name)}$", man, re.M), f"ctl/{name} not in the man page"
        assert re.search(rf"(^|[ ,])(ctl/)?{re.escape(name)}\b", tree, re.M), \
            f"ctl/{name} not in the README's tree"
    for entry in ("restore", "latest", "inspect", "diff", "at"):
        assert (mounted / entry).exists() or (mounted / entry).is_symlink()
        assert re.search(rf"^{entry}/?", man, re.M) and f"── {entry}" in tree, entry


def test_the_guarantees_table_names_real_tests():
    """Every test file, test function (`::name`, a bare test_name) and
    prefix (`test_prune_*`, `test_x_…`) the README's Guarantees table cites
    exists under tests/."""
    import fnmatch
    readme = README.read_text()
    table = readme[readme.index("## Guarantees"):readme.index("## Speed")]
    tests = ROOT / "tests"
    files = {p.name: p for p in tests.rglob("test_*") if p.suffix in (".py", ".c")}
    defs = "\n".join(p.read_text(errors="replace") for n, p in files.items() if n.endswith(".py"))
    missing = []
    for pattern in re.findall(r"(test_[\w*]+\.(?:py|c))", table):
        if not fnmatch.filter(files, pattern):
            missing.append(pattern)
    for file, name in re.findall(r"(test_\w+\.py)::(test_\w+)", table):
        if file not in files or not re.search(rf"def {name}\b", files[file].read_text()):
            missing.append(f"{file}::{name}")
    bare = re.sub(r"test_[\w*]+\.(?:py|c)(::[\w*]+)?", "", table)  # files, checked above
    for name, wild in re.findall(r"(?<![\w.:*])(test_\w+)(\*|…)?(?![\w.])", bare):
        end = "" if wild else r"\b"
        if not re.search(rf"def {name}{end}", defs):
            missing.append(name + wild)
    assert len(re.findall(r"test_", table)) > 50
    assert missing == []
