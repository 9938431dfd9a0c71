"""The shared machinery of recsim's HTML reports: figures, SVG, pages, schema.

A report page is one self-contained HTML file: inline CSS, plots inlined as
SVG with their text kept as text, no scripts, fonts or images fetched from
anywhere. The same inputs give byte-identical pages: matplotlib draws with a
fixed ``svg.hashsalt`` and no date, and the house style below replaces
whatever a local ``matplotlibrc`` says about the things a report draws.

matplotlib and Jinja2 are the optional extra ``recsim[report]``; they are
imported inside the functions that need them, so the rest of recsim runs
without them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from recsim_cli import REPORT_SCHEMA_VERSION, __version__
from recsim_cli.errors import UserError
from recsim_cli.io import write_bytes_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SCHEMA_VERSION: Final = REPORT_SCHEMA_VERSION
"""The version of the JSON report schema this recsim writes."""

READABLE_SCHEMA_VERSIONS: Final = (1,)
"""The JSON report schema versions this recsim can render."""

# Verdict colours, shared by every report (and readable by colour-blind people
# because each verdict is also written out in words next to its colour).
SHIP_COLOUR: Final = "#1a7f37"
NO_SHIP_COLOUR: Final = "#cf222e"
INCONCLUSIVE_COLOUR: Final = "#b07d00"
INVALID_COLOUR: Final = "#6e7781"
VERDICT_COLOURS: Final = {
    "ship": SHIP_COLOUR,
    "no_ship": NO_SHIP_COLOUR,
    "inconclusive": INCONCLUSIVE_COLOUR,
    "invalid": INVALID_COLOUR,
}

# One colour per model or arm, in order (Okabe-Ito, distinguishable under the
# common colour-vision deficiencies).
SERIES_COLOURS: Final = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#56b4e9",
    "#d55e00",
    "#f0e442",
    "#000000",
)
INK: Final = "#24292f"
MUTED: Final = "#57606a"
GRID: Final = "#d0d7de"

_EXTRA_MESSAGE = "--html needs the report extra: pip install 'recsim[report]'."

# rcParams every report figure is drawn with. They are applied on top of
# matplotlib's defaults, never of a local matplotlibrc, so a report looks (and
# hashes) the same on every machine with the same matplotlib.
_HOUSE_STYLE: Final[dict[str, Any]] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 9.0,
    "axes.labelcolor": INK,
    "axes.edgecolor": GRID,
    "axes.linewidth": 0.8,
    "axes.grid": True,
    "axes.axisbelow": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": None,  # set below from SERIES_COLOURS
    "axes.formatter.use_mathtext": False,
    "grid.color": GRID,
    "grid.linewidth": 0.6,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "legend.fontsize": 8.0,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 4.0,
    "text.color": INK,
    "text.usetex": False,
    "text.parse_math": True,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "svg.fonttype": "none",
    "svg.hashsalt": "recsim",
    "svg.image_inline": True,
}


def require_report_extra() -> None:
    """Raise `UserError` (exit 2) unless matplotlib and Jinja2 are installed."""
    for module in ("matplotlib", "jinja2"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise UserError(_EXTRA_MESSAGE)


def _house_rc() -> dict[str, Any]:
    import matplotlib as mpl
    from cycler import cycler

    rc: dict[str, Any] = {**cast(dict[str, Any], mpl.rcParamsDefault), **_HOUSE_STYLE}
    rc["axes.prop_cycle"] = cycler(color=list(SERIES_COLOURS))
    # Deprecated or backend-only keys would warn or fail on assignment.
    rc.pop("backend", None)
    return rc


def apply_house_style() -> None:
    """Set matplotlib's rcParams to the house style (matplotlib's defaults plus ours).

    Called by `new_figure`: artists read rcParams when they are created, so
    the style must hold while a figure is being built. Only report code draws
    with matplotlib in a recsim process, so owning the global settings is safe.
    """
    import warnings

    import matplotlib as mpl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cast(dict[str, Any], mpl.rcParams).update(_house_rc())


def new_figure(width: float, height: float) -> Figure:
    """Return an empty figure of ``width`` x ``height`` inches in the house style.

    The figure belongs to no pyplot state (nothing to close, no GUI backend):
    it is a plain ``Figure`` on an SVG canvas.
    """
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    apply_house_style()
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasSVG(fig)
    return fig


def svg(fig: Figure) -> str:
    """Return the figure as SVG markup to inline in a page, and close it.

    Text stays text (``svg.fonttype = "none"``), element ids come from a fixed
    salt and no date is written, so the same figure gives the same bytes.
    matplotlib escapes ``<``, ``>`` and ``&`` in the text it writes, so the
    result is safe to mark up as HTML. The XML declaration and DOCTYPE are
    dropped: they are not allowed inside an HTML document.
    """
    import matplotlib as mpl

    buffer = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": "recsim"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    fig.clear()
    text = buffer.getvalue()
    return _own_ids(text[text.index("<svg") :].strip() + "\n")


_ID_REFERENCE = re.compile(r'(\bid="|url\(#|href="#)')


def _own_ids(markup: str) -> str:
    """Prefix the SVG's element ids, and the references to them, with a hash of the SVG.

    matplotlib numbers ids per figure (``figure_1``, ``axes_1``...), so two
    figures inlined in one page would share ids, which HTML forbids. The
    prefix is derived from the content: the same figure keeps the same bytes.
    """
    prefix = "f" + hashlib.sha256(markup.encode()).hexdigest()[:10] + "-"
    return _ID_REFERENCE.sub(lambda m: m.group(1) + prefix, markup)


def mpl_text(s: str) -> str:
    """Return a user-supplied name that matplotlib will draw exactly as written.

    matplotlib reads text between two unescaped ``$`` as mathtext (where
    ``x$\\frac$y`` raises); every ``$`` is escaped as ``\\$``, which it draws as
    a plain ``$``, so mathtext never starts. A label that starts with ``_`` is
    hidden from legends; it gets a zero-width space in front.
    """
    s = s.replace("$", r"\$")
    if s.startswith("_"):
        s = "\u200b" + s
    return s


def render_page(template: str, **context: Any) -> str:
    """Render the Jinja2 ``template`` from ``recsim_cli/report/templates``.

    Every value is autoescaped; only SVG from `svg` may be passed as
    ``markupsafe.Markup``. A name missing from ``context`` is an error, not an
    empty string. The templates see ``recsim_version``.
    """
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("recsim_cli.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["recsim_version"] = __version__
    return env.get_template(template).render(**context)


def write_html(path: Path | str, html: str) -> None:
    """Write ``html`` to ``path`` atomically, as UTF-8."""
    write_bytes_atomic(path, html.encode("utf-8"))


def check_schema(report: Mapping[str, Any], source: str) -> None:
    """Raise `UserError` (exit 2) unless ``report`` has a schema version this recsim reads."""
    readable = ", ".join(str(v) for v in READABLE_SCHEMA_VERSIONS)
    if "schema_version" not in report:
        raise UserError(
            f"{source} has no schema_version; this recsim reads report schema version "
            f"{readable} (write the report again with this recsim)."
        )
    found = report["schema_version"]
    if isinstance(found, bool) or found not in READABLE_SCHEMA_VERSIONS:
        raise UserError(
            f"{source} has report schema version {found!r}; this recsim reads schema version "
            f"{readable} (write the report again with this recsim, or upgrade recsim)."
        )
