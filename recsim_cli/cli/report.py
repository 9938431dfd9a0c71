"""`recsim report`: render a JSON report written earlier as a self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report_command(
    report_file: Annotated[
        Path,
        typer.Argument(
            metavar="REPORT.json",
            help="A JSON report of `recsim evaluate --json` or `recsim abtest --report`.",
            show_default=False,
        ),
    ],
    *,
    html: Annotated[
        Path,
        typer.Option(
            "--html",
            metavar="FILE",
            help="Where to write the HTML page.",
            dir_okay=False,
            show_default=False,
        ),
    ],
) -> None:
    """Render a saved evaluate or abtest JSON report as one self-contained HTML page.

    The page is the one `--html` of the command would have written: plots
    inline as SVG, nothing fetched from the network, the same bytes for the
    same report. A report of an unknown schema version is exit 2. Needs the
    report extra: pip install 'recsim[report]'.

    Example: recsim report evaluate.json --html evaluate.html
    """
    from recsim_cli.cli import console
    from recsim_cli.report import read_report, render_report
    from recsim_cli.report.render import require_report_extra, write_html

    require_report_extra()
    document = read_report(report_file)
    write_html(html, render_report(document, str(report_file)))
    console.out.print(f"HTML report written to {html}", markup=False, highlight=False)
