"""Shared fixtures: a CLI runner and the path of the committed sample data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from recsim_cli.cli import app

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "sample_data"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def invoke(runner: CliRunner):
    """Run ``recsim ARGS`` in-process and return the result (stdout and stderr apart)."""

    def _invoke(args: Sequence[str]) -> Result:
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return _invoke
