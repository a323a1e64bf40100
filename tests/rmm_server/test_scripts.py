"""The script library: headers good and bad, the folder's rules, reloads, the shipped scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rmm_common.errors import ConfigError, InvalidArgument, NotFound
from rmm_server.roles import Role
from rmm_server.script_params import Param, check_params
from rmm_server.scripts import ScriptLibrary, ScriptLibraryError

GOOD = """#!/usr/bin/env bash
# ---
# name: disk-usage
# description: Show filesystem usage.
# shells: [bash, sh]
# timeout: 1h30m
# min_role: tier2
# args: "[PATH]"     # optional usage hint
# ---
df -h
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def header(*lines: str, shebang: str = "#!/bin/sh") -> str:
    """A script whose header holds `lines` (each without its `# `)."""
    body = "\n".join(f"# {line}" for line in lines)
    return f"{shebang}\n# ---\n{body}\n# ---\necho hi\n"


def problems(folder: Path) -> list[str]:
    """Load `folder`, which must be refused, and return its problems."""
    with pytest.raises(ScriptLibraryError) as caught:
        ScriptLibrary.load(folder)
    assert isinstance(caught.value, ConfigError)  # what the server's start and reload expect
    for error in caught.value.errors:
        assert error in str(caught.value)
    return caught.value.errors


def test_a_good_header_gives_every_field(tmp_path: Path) -> None:
    path = write(tmp_path, "disk-usage.sh", GOOD)
    library = ScriptLibrary.load(tmp_path)
    script = library.get("disk-usage")
    assert script.description == "Show filesystem usage."
    assert script.shells == ("bash", "sh") and script.shell == "bash"
    assert script.timeout_seconds == 5400
    assert script.min_role is Role.TIER2
    assert script.args == "[PATH]"
    assert script.path == path and script.line == 2 and script.where == f"{path}:2"
    assert script.body == GOOD
    assert library.names() == ["disk-usage"] and len(library) == 1 and "disk-usage" in library


def test_defaults_name_from_file_timeout_role_and_no_shebang(tmp_path: Path) -> None:
    write(
        tmp_path, "flush-dns.ps1", "# ---\n# description: Flush.\n# shells: [powershell]\n# ---\n"
    )
    write(tmp_path, "top.py", header("description: Top.", "shells:", "  - python"))
    write(tmp_path, "seconds.sh", header("description: S.", "shells: [sh]", "timeout: 90"))
    library = ScriptLibrary.load(tmp_path)
    assert library.names() == ["flush-dns", "seconds", "top"]
    flush = library.get("flush-dns")
    assert flush.timeout_seconds == 60 and flush.min_role is Role.TIER1 and flush.args == ""
    assert flush.line == 1
    assert library.get("top").shells == ("python",)
    assert library.get("seconds").timeout_seconds == 90
    assert [script.name for script in library] == library.names()


def test_a_byte_order_mark_and_crlf_lines_are_read(tmp_path: Path) -> None:
    text = "# ---\r\n# description: Windows.\r\n# shells: [powershell]\r\n# ---\r\nexit 0\r\n"
    (tmp_path / "win.ps1").write_bytes(b"\xef\xbb\xbf" + text.encode())
    script = ScriptLibrary.load(tmp_path).get("win")
    assert script.shells == ("powershell",) and script.body == text


@pytest.mark.parametrize(
    ("file", "text", "line", "problem", "fix"),
    [
        (
            "a.sh",
            header("description: A.", "shells: [sh]", "timout: 5m"),
            5,
            "unknown header key 'timout'",
            "did you mean 'timeout'?",
        ),
        (
            "a.sh",
            header("name: Disk_Usage", "description: A.", "shells: [sh]"),
            3,
            "name 'Disk_Usage' is not lowercase letters, digits and dashes",
            "write e.g. `name: disk-usage`",
        ),
        (
            "Big_Disk.sh",
            header("description: A.", "shells: [sh]"),
            2,
            "the file name makes the script name 'Big_Disk'",
            "add `name: big-disk` to the header or rename the file",
        ),
        (
            "a.sh",
            header("shells: [sh]"),
            2,
            "the header has no description",
            "add `description: what it does`",
        ),
        ("a.sh", header("description: A."), 2, "the header has no shells", "`shells: [bash]`"),
        ("a.sh", header("description: A.", "shells: bash"), 4, "shells is a list", "[bash]"),
        (
            "a.sh",
            header("description: A.", "shells: [zsh]"),
            4,
            "unknown shell 'zsh'",
            "use bash, sh, python, powershell",
        ),
        (
            "a.sh",
            header("description: A.", "shells: [bash, bash]"),
            4,
            "shell 'bash' is listed twice",
            "list it once",
        ),
        (
            "a.py",
            header("description: A.", "shells: [powershell, python]"),
            4,
            "the first shell 'powershell' does not fit the extension '.py'",
            "rename the file to a.ps1 or list python first",
        ),
        (
            "a.sh",
            header("description: A.", "shells: [python]"),
            4,
            "does not fit the extension '.sh' (which means sh or bash)",
            "rename the file to a.py or list bash first",
        ),
        (
            "a.txt",
            header("description: A.", "shells: [bash]"),
            4,
            "the file extension '.txt' is not a script's",
            "rename the file to a.sh",
        ),
        (
            "a.sh",
            header("description: A.", "shells: [sh]", "timeout: soon"),
            5,
            "timeout 'soon' is not a duration",
            "write e.g. `timeout: 90s`, `5m` or `1h30m`",
        ),
        (
            "a.sh",
            header("description: A.", "shells: [sh]", "timeout: 2d"),
            5,
            "timeout '2d' must be more than 0 and at most 24h",
            "write e.g. `timeout: 5m`",
        ),
        (
            "a.sh",
            header("description: A.", "shells: [sh]", "timeout: 0"),
            5,
            "timeout 0 must be more than 0",
            "`timeout: 5m`",
        ),
        (
            "a.sh",
            header("description: A.", "shells: [sh]", "min_role: viewer"),
            5,
            "min_role 'viewer' would let viewers run it",
            "write tier1, tier2, tier3 or admin",
        ),
        (
            "a.sh",
            header("description: A.", "shells: [sh]", "min_role: boss"),
            5,
            "unknown min_role 'boss'",
            "write tier1, tier2, tier3 or admin",
        ),
        (
            "a.sh",
            header("description: A.", "shells: [sh]", "args: [PATH]"),
            5,
            "args is a usage hint and must be text",
            'args: "[PATH]"',
        ),
        (
            "a.sh",
            header("description: A.", "shells: [sh]", "description: B."),
            5,
            "'description' is given twice (first on line 3)",
            "keep one",
        ),
        (
            "a.sh",
            header("description: A.", "shells: [sh", "min_role: tier1"),
            5,
            "the header is not valid YAML",
            "fix the YAML",
        ),
        ("a.sh", header("- just", "- a list"), 2, "not a list", "`# description: ...`"),
        ("a.sh", "#!/bin/sh\n# ---\n# ---\necho\n", 2, "not nothing", "`# shells: [...]`"),
        (
            "a.sh",
            "#!/bin/sh\n# ---\n# description: A.\nshells: [sh]\n# ---\n",
            4,
            "header line is not a comment",
            "close the header opened on line 2",
        ),
        (
            "a.sh",
            "#!/bin/sh\n# ---\n# description: A.\n# shells: [sh]\n",
            2,
            "the header opened here is never closed",
            "end it with a `# ---` line",
        ),
        ("a.sh", "#!/bin/sh\necho hi\n", 2, "a .sh script without a header", "after the shebang"),
        ("tool", "#!/bin/sh\necho hi\n", 2, "a script (shebang) without", "docs/scripts.md"),
        (
            "a.ps1",
            "\n# ---\n# description: A.\n# shells: [powershell]\n# ---\n",
            2,
            "the header must start on line 1",
            "move the `# ---` block up",
        ),
        (
            "a.sh",
            "#!/bin/sh\nset -e\n# ---\n# description: A.\n# shells: [sh]\n# ---\n",
            3,
            "must start on line 2, right after the shebang",
            "move the `# ---` block up",
        ),
    ],
)
def test_each_bad_header_names_file_line_and_fix(
    tmp_path: Path, file: str, text: str, line: int, problem: str, fix: str
) -> None:
    path = write(tmp_path, file, text)
    errors = problems(tmp_path)
    assert len(errors) == 1, errors
    error = errors[0]
    assert error.startswith(f"{path}:{line}: "), error
    assert problem in error and fix in error, error
    assert error.index(problem) < error.index("; ") < error.rindex(fix), "problem; fix"


def test_yaml_errors_point_at_the_file_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.sh",
        "#!/bin/sh\n# ---\n# description: A.\n# shells: [sh]\n# args: x: y\n# ---\n",
    )
    [error] = problems(tmp_path)
    assert error.startswith(f"{path}:5: the header is not valid YAML"), error


def test_not_utf8_and_oversized_scripts_are_refused(tmp_path: Path) -> None:
    (tmp_path / "latin.sh").write_bytes(b"#!/bin/sh\n# caf\xe9\n")
    write(tmp_path, "big.sh", header("description: B.", "shells: [sh]") + "#" * 1024 * 1024)
    errors = problems(tmp_path)
    assert any(e.startswith(f"{tmp_path / 'latin.sh'}:1: not UTF-8") for e in errors), errors
    assert any(e.startswith(f"{tmp_path / 'big.sh'}:1: the file is") for e in errors), errors
    assert any("make it smaller" in e for e in errors), errors


def test_every_problem_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, "ok.sh", header("description: Fine.", "shells: [sh]"))
    write(tmp_path, "one.sh", header("description: A.", "shells: [zsh]", "min_role: viewer"))
    write(tmp_path, "two.py", header("shells: [python]", "colour: red"))
    write(tmp_path, "three.sh", "#!/bin/sh\necho no header\n")
    errors = problems(tmp_path)
    assert len(errors) == 5, errors
    assert sum("one.sh:" in e for e in errors) == 2  # both problems of one file
    # an unknown key does not hide the missing description
    assert sum("two.py:" in e for e in errors) == 2
    assert any("two.py:4: unknown header key 'colour'" in e for e in errors), errors
    assert any("two.py:2: the header has no description" in e for e in errors), errors
    assert sum("three.sh:2:" in e for e in errors) == 1
    assert not any("ok.sh" in e for e in errors)


def test_duplicate_names_name_both_places(tmp_path: Path) -> None:
    first = write(tmp_path, "a.sh", header("name: clean", "description: A.", "shells: [sh]"))
    second = write(tmp_path, "b.sh", header("name: clean", "description: B.", "shells: [sh]"))
    [error] = problems(tmp_path)
    assert error.startswith(f"{second}:2: script name 'clean' is taken by {first}:2; "), error
    assert "give one of them another `name:`" in error


def test_non_scripts_hidden_files_and_sub_folders_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "README.md", "# Scripts\n\nSee docs.\n")
    write(tmp_path, "notes.txt", "no header here\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    write(tmp_path, ".hidden.sh", "#!/bin/sh\n")
    write(tmp_path, "a.sh~", "#!/bin/sh\n")
    write(tmp_path / "tests", "broken.sh", "#!/bin/sh\n")
    write(tmp_path, "a.sh", header("description: A.", "shells: [sh]"))
    assert ScriptLibrary.load(tmp_path).names() == ["a"]


def test_an_empty_folder_is_an_empty_library(tmp_path: Path) -> None:
    library = ScriptLibrary.load(tmp_path)
    assert library.names() == [] and len(library) == 0
    with pytest.raises(NotFound, match="the script library is empty"):
        library.get("anything")


def test_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is not a directory: create it or pass --script-lib"):
        ScriptLibrary.load(tmp_path / "nowhere")


def test_get_an_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path, "disk-usage.sh", GOOD)
    write(tmp_path, "flush.sh", header("description: F.", "shells: [sh]"))
    library = ScriptLibrary.load(tmp_path)
    with pytest.raises(NotFound) as caught:
        library.get("disk-usag")
    message = str(caught.value)
    assert "no script 'disk-usag'" in message and "did you mean 'disk-usage'?" in message
    assert "known: disk-usage, flush" in message and "rmm scripts list" in message


def test_unknown_scripts_checks_names_and_file_names(tmp_path: Path) -> None:
    write(tmp_path, "disk-usage.sh", GOOD)
    library = ScriptLibrary.load(tmp_path)
    found = library.unknown_scripts(["disk-usage", "disk-usage.sh", "cleanup.sh", "x", "x"])
    assert found == ["cleanup.sh", "x"]
    assert library.unknown_scripts([]) == []


def test_reload_takes_a_clean_folder_and_keeps_the_old_library_on_a_broken_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "a.sh", header("description: A.", "shells: [sh]"))
    library = ScriptLibrary.load(tmp_path)
    old = library.get("a")
    write(tmp_path, "b.sh", header("description: B.", "shells: [sh]"))
    assert library.reload() == []
    assert library.names() == ["a", "b"]

    path.write_text(header("description: A.", "shells: [sh]", "min_role: viewer"))
    errors = library.reload()
    assert len(errors) == 1 and errors[0].startswith(f"{path}:5: min_role 'viewer'")
    assert library.names() == ["a", "b"] and library.get("a") == old
    assert "the previous script library (2 scripts) stays" in caplog.text
    assert f"{path}:5: min_role 'viewer'" in caplog.text

    shutil.rmtree(tmp_path)
    [error] = library.reload()
    assert "is not a directory" in error and library.names() == ["a", "b"]
    assert ScriptLibrary().reload() == []  # a library without a folder has nothing to reload


# --- the shipped library ------------------------------------------------------------------

# The folder itself, not the server's constant: the e2e tests check that the server serves it.
SHIPPED_SCRIPT_LIBRARY = Path(__file__).resolve().parents[2] / "script-library"
SHIPPED = ScriptLibrary.load(SHIPPED_SCRIPT_LIBRARY)
BASH = shutil.which("bash") or "/bin/bash"


def run(
    script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a shipped script with the interpreter its header declares, as the agent would."""
    found = SHIPPED.get(script)
    interpreter = {"bash": BASH, "sh": "/bin/sh", "python": sys.executable}[found.shell]
    return subprocess.run(
        [interpreter, str(found.path), *args],
        capture_output=True,
        text=True,
        timeout=found.timeout_seconds,
        env=env,
    )


def test_the_shipped_library_loads_clean() -> None:
    assert set(SHIPPED.names()) == {
        "clear-package-cache",
        "clear-temp",
        "disk-usage",
        "failed-units",
        "flush-dns",
        "restart-service",
        "restart-windows-service",
        "top-processes",
    }
    for script in SHIPPED:
        assert script.path.parent == SHIPPED_SCRIPT_LIBRARY
        assert script.description.endswith(".") and len(script.description) <= 140
        assert script.min_role >= Role.TIER1
        assert script.body.isascii(), f"{script.path}: keep it ASCII for Windows PowerShell 5.1"
    # Anything that changes a host's state needs more than the least role.
    for name in ("restart-service", "restart-windows-service", "clear-temp"):
        assert SHIPPED.get(name).min_role is Role.TIER2


@pytest.mark.parametrize("name", sorted(SHIPPED.names()))
def test_each_shipped_script_is_well_formed(name: str) -> None:
    script = SHIPPED.get(name)
    if script.shell in ("bash", "sh"):
        assert script.body.startswith("#!/usr/bin/env bash\n")
        checked = subprocess.run([BASH, "-n", str(script.path)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
    elif script.shell == "python":
        checked = subprocess.run(
            [sys.executable, "-m", "py_compile", str(script.path)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr
    else:  # PowerShell cannot run here: its header says what it is and it takes no shebang
        assert script.shells == ("powershell",) and script.path.suffix == ".ps1"
        assert script.body.startswith("# ---\n")
        assert "$ErrorActionPreference = 'Stop'" in script.body
    if script.args:
        assert script.args.strip("[]").isupper(), script.args


def test_disk_usage_lists_filesystems_and_the_biggest_directories(tmp_path: Path) -> None:
    for name, size in (("big", 3_000_000), ("middle", 1_000_000), ("small", 10_000)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data").write_bytes(os.urandom(size))
    result = run("disk-usage", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "== Filesystems ==" in result.stdout and "Mounted on" in result.stdout
    listing = result.stdout.split("== Biggest directories")[1].splitlines()[1:]
    paths = [line.split(maxsplit=1)[1] for line in listing if line.strip()]
    assert paths == [str(tmp_path)] + [str(tmp_path / n) for n in ("big", "middle", "small")]
    assert listing[1].split()[0].endswith("M")  # human sizes, not kilobytes


def test_disk_usage_refuses_a_path_that_is_not_a_directory(tmp_path: Path) -> None:
    result = run("disk-usage", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "is not a directory" in result.stderr


def test_top_processes_lists_by_cpu_and_by_memory() -> None:
    result = run("top-processes", "3")
    assert result.returncode == 0, result.stderr
    assert "processes; CPU" in result.stdout
    cpu, memory = result.stdout.split("== Top 3 by CPU")[1].split("== Top 3 by memory")
    for section in (cpu, memory):
        rows = [line for line in section.splitlines()[2:] if line.strip()]
        assert len(rows) == 3, section
        assert all(row.split()[0].isdigit() for row in rows), section
    rss = [line.split()[3] for line in memory.splitlines()[2:] if line.strip()]
    assert rss[0][-1] in "BKMGT"
    bad = run("top-processes", "lots")
    assert bad.returncode == 2 and "COUNT must be a whole number" in bad.stderr


def test_failed_units_reports_or_says_systemd_is_absent() -> None:
    result = run("failed-units")
    if Path("/run/systemd/system").is_dir():
        assert result.returncode in (0, 1), result.stderr
        assert "no failed units" in result.stdout or "journal lines" in result.stdout
    else:
        assert result.returncode == 3
        assert "this host does not run systemd" in result.stderr
    bad = run("failed-units", "twenty")
    assert bad.returncode == 2 and "LINES must be a whole number" in bad.stderr


def test_restart_service_checks_its_argument_before_acting() -> None:
    for args in ((), ("a", "b")):
        result = run("restart-service", *args)
        assert result.returncode == 2 and "exactly one service name" in result.stderr
    for name in ("--all", "ng*", "a b"):
        result = run("restart-service", name)
        assert result.returncode == 2 and "is not a unit name" in result.stderr
    if not Path("/run/systemd/system").is_dir():
        result = run("restart-service", "rmm-test-no-such-unit")
        assert result.returncode == 3 and "does not run systemd" in result.stderr


def test_clear_package_cache_refuses_without_a_package_manager(tmp_path: Path) -> None:
    # A PATH with no package manager: the script must say so, never clean this host's cache.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("id",):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    result = run("clear-package-cache", env={"PATH": str(bin_dir)})
    if os.geteuid() == 0:
        assert result.returncode == 4, result.stderr
        assert "no apt-get, dnf or yum on this host" in result.stderr
    else:
        assert result.returncode == 3 and "must run as root" in result.stderr


def test_a_header_value_yaml_cannot_construct_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    lines = ("name: bad", "description: x", "shells: [sh]", "timeout: !!int z")
    write(tmp_path, "bad.sh", header(*lines))
    assert problems(tmp_path) == [
        f"{tmp_path / 'bad.sh'}:6: timeout: ValueError: invalid literal for int() with base "
        "10: 'z'; write a plain value"
    ]


# --- declared parameters ------------------------------------------------------------------

PARAMS = header(
    "description: P.",
    "shells: [sh]",
    "params:",
    "  - name: path",
    "    type: path",
    "    default: /var",
    "    description: where to look",
    "  - name: count",
    "    type: int",
    "    min: 1",
    "    max: 100",
    "    default: 10",
    "  - name: mode",
    "    type: choice",
    "    choices: [fast, thorough]",
    "    required: true",
    "  - name: dry_run",
    "    type: bool",
    "    default: false",
    "  - name: unit",
    "    pattern: '[a-z]+'",
)


def test_params_are_read_with_their_types_defaults_and_rules(tmp_path: Path) -> None:
    write(tmp_path, "p.sh", PARAMS)
    script = ScriptLibrary.load(tmp_path).get("p")
    by_name = {param.name: param for param in script.params}
    assert list(by_name) == ["path", "count", "mode", "dry_run", "unit"]
    assert by_name["path"] == Param("path", "path", "where to look", default="/var")
    assert (by_name["count"].minimum, by_name["count"].maximum) == (1, 100)
    assert by_name["count"].default == "10"
    assert by_name["mode"].required and by_name["mode"].choices == ("fast", "thorough")
    assert by_name["dry_run"].default == "false"  # YAML's false, as the script will read it
    assert by_name["unit"].type == "string" and by_name["unit"].pattern == "[a-z]+"
    assert by_name["dry_run"].env_name == "RMM_PARAM_DRY_RUN"


@pytest.mark.parametrize(
    ("lines", "line", "problem"),
    [
        (("params: path",), 5, "params must be a list of parameters"),
        (("params:", "  - path"), 6, "each param is a mapping"),
        (("params:", "  - type: int"), 6, "a param has no name"),
        (("params:", "  - name: Path"), 6, "param name 'Path' is not a lowercase letter"),
        (("params:", "  - name: env", "    type: float"), 7, "unknown type 'float'; use string"),
        (
            ("params:", "  - name: a", "    typ: int"),
            7,
            "unknown param key 'typ'; did you mean 'type'",
        ),
        (("params:", "  - name: a", "    type: choice"), 6, "type choice needs `choices"),
        (("params:", "  - name: a", "    choices: [x]"), 7, "choices is for type choice"),
        (("params:", "  - name: a", "    type: int", "    pattern: x"), 8, "pattern is for type"),
        (("params:", "  - name: a", "    min: 1"), 7, "min is for type int, not string"),
        (("params:", "  - name: a", "    type: int", "    min: one"), 8, "min must be a whole"),
        (
            ("params:", "  - name: a", "    type: int", "    min: 5", "    max: 1"),
            8,
            "min 5 is more than max 1",
        ),
        (("params:", "  - name: a", "    pattern: '[a-'"), 7, "pattern is not a regular expr"),
        (("params:", "  - name: a", "    required: yes please"), 7, "required must be true or"),
        (
            ("params:", "  - name: a", "    required: true", "    default: x"),
            8,
            "a required param has no default",
        ),
        (
            ("params:", "  - name: a", "    type: int", "    max: 9", "    default: 10"),
            9,
            "default '10' is out of range; it must be a whole number to 9",
        ),
        (("params:", "  - name: a", "    type: path", "    default: tmp"), 8, "absolute path"),
        (("params:", "  - name: a", "    type: bool", "    default: maybe"), 8, "true or false"),
        (("params:", "  - name: a", "  - name: a"), 7, "param 'a' is declared twice (first on"),
    ],
)
def test_each_bad_param_names_file_line_and_problem(
    tmp_path: Path, lines: tuple[str, ...], line: int, problem: str
) -> None:
    path = write(tmp_path, "p.sh", header("description: P.", "shells: [sh]", *lines))
    errors = problems(tmp_path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}:{line}: "), errors
    assert problem in errors[0], errors


def test_a_run_gets_checked_params_as_rmm_param_variables_and_defaults(tmp_path: Path) -> None:
    write(tmp_path, "p.sh", PARAMS)
    script = ScriptLibrary.load(tmp_path).get("p")
    env = check_params("p", script.params, {"mode": "fast", "count": "+7", "dry_run": "YES"})
    assert env == {
        "RMM_PARAM_PATH": "/var",
        "RMM_PARAM_COUNT": "7",
        "RMM_PARAM_MODE": "fast",
        "RMM_PARAM_DRY_RUN": "true",
    }
    assert (
        check_params("p", script.params, {"mode": "thorough", "unit": "nginx"})["RMM_PARAM_UNIT"]
        == "nginx"
    )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "--param mode is required: give --param mode=VALUE, one of fast, thorough"),
        ({"mode": "slow"}, "--param mode=slow is not one of the choices; mode takes one of fast"),
        (
            {"mode": "fast", "count": "0"},
            "--param count=0 is out of range; count takes a whole number from 1 to 100",
        ),
        ({"mode": "fast", "count": "1e3"}, "--param count=1e3 is not a whole number"),
        ({"mode": "fast", "path": "var"}, "--param path=var is not an absolute path"),
        ({"mode": "fast", "path": "/var/../etc"}, "--param path=/var/../etc has a .. part"),
        ({"mode": "fast", "path": "/var\n/etc"}, "holds a control character"),
        ({"mode": "fast", "unit": "a;b"}, "does not match the pattern; unit takes one line"),
        ({"mode": "fast", "unit": "x" * 5000}, "characters long, more than 4096"),
        (
            {"mode": "fast", "BASH_ENV": "$(id)"},
            "--param BASH_ENV: the script declares no such parameter",
        ),
        ({"mode": "fast", "cuont": "3"}, "did you mean 'count'? its parameters: path, count"),
    ],
)
def test_bad_params_are_refused_naming_the_param_the_problem_and_what_it_takes(
    tmp_path: Path, given: dict[str, str], message: str
) -> None:
    write(tmp_path, "p.sh", PARAMS)
    script = ScriptLibrary.load(tmp_path).get("p")
    with pytest.raises(InvalidArgument) as caught:
        check_params("p", script.params, given)
    assert str(caught.value).startswith("library script 'p': ")
    assert message in str(caught.value)


ROOTED = header(
    "description: Rooted.",
    "shells: [sh]",
    "params:",
    "  - name: path",
    "    type: path",
    "    default: /var/",
    "    roots: [/var, /home/, /tmp//, 'C:/Temp']",
)


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("/var", "/var"),
        ("/var/log", "/var/log"),
        ("/var/log/", "/var/log"),
        ("/var//log/./nginx/", "/var/log/nginx"),
        ("//var/log", "/var/log"),
        ("/home/alice", "/home/alice"),
        ("c:\\temp\\logs\\", "C:\\temp\\logs"),
        ("C:/Temp/x", "C:\\Temp\\x"),
    ],
)
def test_a_rooted_path_is_sent_normalised_when_inside_a_root(
    tmp_path: Path, value: str, sent: str
) -> None:
    write(tmp_path, "r.sh", ROOTED)
    script = ScriptLibrary.load(tmp_path).get("r")
    assert script.params[0].roots == ("/var", "/home", "/tmp", "C:\\Temp")
    assert script.params[0].default == "/var"
    assert check_params("r", script.params, {"path": value}) == {"RMM_PARAM_PATH": sent}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("/root", "is outside the directories the script allows (/root)"),
        ("/root/", "is outside the directories the script allows (/root)"),
        ("/var/../root", "has a .. part"),
        ("/var/./../root", "has a .. part"),
        ("/variable", "is outside the directories the script allows (/variable)"),
        ("/", "is outside the directories the script allows (/)"),
        ("/etc/shadow", "is outside"),
        ("D:\\Temp", "is outside"),
        ("C:\\Windows", "is outside"),
    ],
)
def test_a_rooted_path_outside_every_root_is_refused(
    tmp_path: Path, value: str, problem: str
) -> None:
    write(tmp_path, "r.sh", ROOTED)
    script = ScriptLibrary.load(tmp_path).get("r")
    with pytest.raises(InvalidArgument) as caught:
        check_params("r", script.params, {"path": value})
    assert problem in str(caught.value)
    assert "path takes an absolute path (no .. parts) under /var, /home, /tmp" in str(caught.value)


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        (("    roots: [var]",), "root 'var' is not an absolute path without .. parts"),
        (("    roots: [/var/../etc]",), "is not an absolute path without .. parts"),
        (("    roots: /var",), "roots must be a list of 1 to 32 directories"),
        (("    roots: []",), "roots must be a list of 1 to 32 directories"),
        (("    roots: [/var]", "    default: /"), "default '/' is outside the directories"),
    ],
)
def test_bad_roots_are_refused_at_load(
    tmp_path: Path, lines: tuple[str, ...], problem: str
) -> None:
    write(
        tmp_path,
        "r.sh",
        header(
            "description: R.", "shells: [sh]", "params:", "  - name: p", "    type: path", *lines
        ),
    )
    errors = problems(tmp_path)
    assert len(errors) == 1 and problem in errors[0], errors
    write(
        tmp_path,
        "r.sh",
        header("description: R.", "shells: [sh]", "params:", "  - name: p", "    roots: [/var]"),
    )
    assert "roots is for type path, not string" in problems(tmp_path)[0]


def test_shipped_disk_usage_keeps_tier1_inside_its_roots_even_through_a_link(
    tmp_path: Path,
) -> None:
    params = SHIPPED.get("disk-usage").params
    for value in ("/root", "/var/../root", "/etc", "/"):
        with pytest.raises(InvalidArgument, match="--param path="):
            check_params("disk-usage", params, {"path": value})
    # The script's own list is the header's roots.
    body = (SHIPPED_SCRIPT_LIBRARY / "disk-usage.sh").read_text()
    assert "roots=(" + " ".join(params[0].roots) + ")" in body
    # A link inside a root that leads out of them passes the server's check of the words, and
    # the script refuses where it leads.
    link = tmp_path / "link"
    link.symlink_to("/etc")
    env = {**os.environ, **check_params("disk-usage", params, {"path": str(link)})}
    result = run("disk-usage", env=env)
    assert result.returncode == 2 and f"{link} is /etc, outside" in result.stderr, result.stderr
    assert "Biggest directories" not in result.stdout


def test_shipped_scripts_read_their_params_from_rmm_param_variables(tmp_path: Path) -> None:
    # As the agent runs them: the server's checked values arrive as RMM_PARAM_<NAME>.
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "data").write_bytes(os.urandom(100_000))
    env = {**os.environ, **check_params("disk-usage", SHIPPED.get("disk-usage").params, {
        "path": str(tmp_path)})}  # fmt: skip
    result = run("disk-usage", env=env)
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "only") in result.stdout
    params = check_params("top-processes", SHIPPED.get("top-processes").params, {"count": "2"})
    result = run("top-processes", env={**os.environ, **params})
    assert result.returncode == 0 and "== Top 2 by CPU" in result.stdout, result.stderr
    params = check_params("restart-service", SHIPPED.get("restart-service").params, {"name": "x"})
    assert params == {"RMM_PARAM_NAME": "x"}
    with pytest.raises(InvalidArgument, match="--param name=ng\\* does not match the pattern"):
        check_params("restart-service", SHIPPED.get("restart-service").params, {"name": "ng*"})
    with pytest.raises(InvalidArgument, match="--param name is required"):
        check_params("restart-service", SHIPPED.get("restart-service").params, {})
    # Every shipped script that takes input declares it as params.
    for name in ("disk-usage", "failed-units", "restart-service", "top-processes", "clear-temp",
                 "restart-windows-service"):  # fmt: skip
        assert SHIPPED.get(name).params, name
