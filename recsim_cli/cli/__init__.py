"""The ``recsim`` command line: a thin Typer shell over the library.

This is the only place that maps errors to exit codes. Each command lives in
its own module under ``recsim_cli.cli`` and imports the library inside its
function body, so ``recsim --help`` never loads implicit, lightgbm or scipy.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from recsim_cli import __version__
from recsim_cli.errors import ExitCode, RecsimError, RecsimWarning

DEBUG_ENV = "RECSIM_DEBUG"


def _debug_enabled(ctx: Any) -> bool:
    obj = getattr(ctx, "obj", None)
    if isinstance(obj, dict) and obj.get("debug"):
        return True
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _fail(message: str, code: int) -> typer.Exit:
    print(f"Error: {message}", file=sys.stderr)
    return typer.Exit(code)


def _show_warning(  # noqa: PLR0917 - the signature of warnings.showwarning
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Print a warning as one ``Warning: <sentence>`` line on stderr (no file or line)."""
    print(f"Warning: {message}", file=sys.stderr)


class RecsimGroup(TyperGroup):
    """The top-level group: turns every exception into a documented exit code.

    A ``RecsimError`` prints ``Error: <sentence>`` and exits with its code; an
    unexpected exception prints one line and exits 70, never 0 or 1, so a CI
    gate fails closed.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", RecsimWarning)
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as exc:
            if exc.exit_code == ExitCode.USAGE:
                raise  # Typer prints usage errors itself, with the usage line.
            raise _fail(exc.format_message(), ExitCode.USAGE) from exc
        except RecsimError as exc:
            if _debug_enabled(ctx):
                traceback.print_exc(file=sys.stderr)
            raise _fail(str(exc), int(exc.exit_code)) from exc
        except KeyboardInterrupt as exc:
            raise _fail("interrupted; nothing already stored was changed.", 130) from exc
        except Exception as exc:
            if _debug_enabled(ctx):
                traceback.print_exc(file=sys.stderr)
                raise _fail(
                    f"internal error: {type(exc).__name__}: {exc}", ExitCode.INTERNAL
                ) from exc
            raise _fail(
                f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                ExitCode.INTERNAL,
            ) from exc


app = typer.Typer(
    cls=RecsimGroup,
    name="recsim",
    help="Train, evaluate and A/B-test two-stage recommenders from interaction logs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        print(f"recsim {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", help=f"Show tracebacks of errors (or set {DEBUG_ENV}=1)."),
    ] = False,
) -> None:
    """Train, evaluate and A/B-test two-stage recommenders from interaction logs.

    Exit codes: 0 success (a gate: ship), 1 do not ship, 2 usage or input error,
    3 inconclusive, 4 invalid experiment, 70 internal error.
    """
    ctx.ensure_object(dict)["debug"] = debug


def _register() -> None:
    from recsim_cli.cli import (
        abtest,
        evaluate,
        export,
        ingest,
        models,
        promote,
        recommend,
        report,
        serve_check,
        simulate,
        train,
    )

    app.add_typer(simulate.app, name="simulate")
    app.command("ingest")(ingest.ingest_command)
    app.command("train")(train.train_command)
    app.add_typer(models.app, name="models")
    app.command("recommend")(recommend.recommend_command)
    app.command("evaluate")(evaluate.evaluate_command)
    app.command("abtest")(abtest.abtest_command)
    app.command("export")(export.export_command)
    app.command("serve-check")(serve_check.serve_check_command)
    app.command("promote")(promote.promote_command)
    app.command("report")(report.report_command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console-script entry point)."""
    try:
        app(args=argv, prog_name="recsim")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else ExitCode.INTERNAL
    return 0
