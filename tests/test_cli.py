"""The CLI shell: exit codes, error lines, --version, --help and lazy imports."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from recsim_cli import __version__
from recsim_cli.cli import RecsimGroup, main
from recsim_cli.errors import (
    ConfigError,
    ExitCode,
    ExperimentInvalidError,
    InputFileError,
    UnknownNameError,
)

HEAVY = ("implicit", "lightgbm", "scipy.stats")


def test_exit_codes_are_the_documented_ones() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "NO_SHIP": 1,
        "USAGE": 2,
        "INCONCLUSIVE": 3,
        "INVALID": 4,
        "INTERNAL": 70,
    }


def test_version(invoke) -> None:
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"recsim {__version__}\n"


def test_help_lists_every_command(invoke) -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    for command in ("ingest", "simulate"):
        assert command in result.stdout


def test_importing_the_cli_loads_no_heavy_library() -> None:
    # A fresh interpreter: this test process may have imported them already.
    code = (
        "import sys, recsim_cli.cli\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_help_and_version_run_without_heavy_imports() -> None:
    code = (
        "import sys\n"
        "from recsim_cli.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "    main(['ingest', '--help'])\n"
        "    main(['simulate', '--help'])\n"
        "finally:\n"
        f"    print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    ).stdout
    assert "HEAVY=\n" in out


def test_console_script_entry_point_returns_exit_code() -> None:
    assert main(["--version"]) == 0
    assert main(["no-such-command"]) == ExitCode.USAGE


# A private app with the same group class, to exercise every error path.
probe = typer.Typer(cls=RecsimGroup, pretty_exceptions_enable=False)


@probe.callback()
def _probe_root(ctx: typer.Context, debug: bool = False) -> None:
    ctx.ensure_object(dict)["debug"] = debug


@probe.command()
def fail(kind: Annotated[str, typer.Argument()]) -> None:
    if kind == "input":
        raise InputFileError("events.csv does not exist; check the path.")
    if kind == "config":
        raise ConfigError("epsilon must be in (0, 1]; got 1.5.")
    if kind == "unknown":
        raise UnknownNameError("metric", "ndgc", ["ndcg", "map", "mrr"])
    if kind == "invalid":
        raise ExperimentInvalidError("sample-ratio mismatch (p = 1e-9).")
    if kind == "bug":
        raise RuntimeError("something broke")
    if kind == "keyerror":
        raise KeyError("x")
    if kind == "click":
        raise typer.BadParameter("bad value")


@pytest.mark.parametrize(
    ("kind", "code", "message"),
    [
        ("input", 2, "Error: events.csv does not exist; check the path.\n"),
        ("config", 2, "Error: epsilon must be in (0, 1]; got 1.5.\n"),
        ("unknown", 2, "Error: Unknown metric 'ndgc'. Available: map, mrr, ndcg.\n"),
        ("invalid", 4, "Error: sample-ratio mismatch (p = 1e-9).\n"),
        (
            "bug",
            70,
            "Error: internal error: RuntimeError: something broke "
            "(run with --debug for the traceback)\n",
        ),
        (
            "keyerror",
            70,
            "Error: internal error: KeyError: 'x' (run with --debug for the traceback)\n",
        ),
    ],
)
def test_errors_map_to_exit_codes_with_one_line(kind: str, code: int, message: str) -> None:
    result = CliRunner().invoke(probe, ["fail", kind])
    assert result.exit_code == code
    assert result.stderr == message
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback() -> None:
    result = CliRunner().invoke(probe, ["--debug", "fail", "bug"])
    assert result.exit_code == 70
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("Error: internal error: RuntimeError: something broke")


def test_usage_errors_exit_2() -> None:
    result = CliRunner().invoke(probe, ["fail"])
    assert result.exit_code == 2
    result = CliRunner().invoke(probe, ["fail", "click"])
    assert result.exit_code == 2


def test_unknown_command_exits_2(invoke) -> None:
    result = invoke(["frobnicate"])
    assert result.exit_code == 2
