"""HTML reports of recsim's JSON reports: evaluate and abtest.

`render_report` renders any JSON report written earlier; the renderers read
the JSON dict only, so a saved report renders the same page as the command
that wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recsim_cli.errors import InputFileError, UserError
from recsim_cli.report.render import check_schema

EVALUATE_KIND = "recsim evaluate report"
ABTEST_KIND = "recsim abtest report"


def read_report(path: Path) -> dict[str, Any]:
    """Read a JSON report; a missing, unreadable or non-JSON file is an `InputFileError`."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputFileError(f"{path} does not exist; give a JSON report to render.") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(
            f"{path} cannot be read as a JSON report ({exc}); give the file written by "
            "`recsim evaluate --json` or `recsim abtest --report`."
        ) from exc
    if not isinstance(document, dict):
        raise InputFileError(
            f"{path} holds JSON but not a report (expected an object at the top level)."
        )
    return document


def render_report(report: Mapping[str, Any], source: str) -> str:
    """Return the HTML page of a JSON report, chosen by its ``kind``.

    Raises `UserError` (exit 2) for a report of an unknown kind or schema
    version; ``source`` names the report in the message.
    """
    kind = report.get("kind")
    if kind not in (EVALUATE_KIND, ABTEST_KIND):
        raise UserError(
            f"{source} is not a recsim report (kind {kind!r}); expected "
            f"'{ABTEST_KIND}' or '{EVALUATE_KIND}'."
        )
    check_schema(report, source)
    if kind == EVALUATE_KIND:
        from recsim_cli.report.evaluate import render_evaluate

        return render_evaluate(report)
    from recsim_cli.report.abtest import render_abtest

    return render_abtest(report)
