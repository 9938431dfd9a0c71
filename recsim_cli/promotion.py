"""Promotion: move a registry alias to a model its A/B test ships, keep a history, roll back.

Two aliases (`registry.ALIASES`): ``candidate``, the model a live 1% test
serves, and ``production``. `promote` moves one to a model when a gate report
(the JSON ``recsim abtest --gate ... --report`` writes) allows it (`RULES`):

=========== ======== ===================== ============ =====================
alias       verdict  evidence              mode         control
=========== ======== ===================== ============ =====================
candidate   ship     off-policy or online  any          the current production
production  ship     online                logged       the current production
=========== ======== ===================== ============ =====================

The report must name the model as its treatment with the fingerprint the
registry's model has now (a model retrained under the same name is another
model), and its control must be the current production, fingerprint too.
Those two checks and the move of the alias are one compare-and-swap under the
registry's lock (`Registry.swap_alias`), so of two jobs promoting against the
same production only the first wins. ``force`` overrides every check and is
recorded, with the checks it overrode.

Every promotion and rollback appends a `HistoryEntry` to the registry's
``history.json``. `rollback` undoes the latest promotion of an alias not yet
undone: the alias goes back to the model it named before, and with a store URL
the store serves that model's export again (exported anew if none is kept).

Nothing here prints or exits; a refusal is a `UserError` whose sentence says
what to do, an unreadable report an `InputFileError`.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from recsim_cli.errors import InputFileError, UnknownNameError, UserError
from recsim_cli.registry import ALIASES, HISTORY_FILE, ModelEntry, Registry

__all__ = [
    "RULES",
    "GateReport",
    "HistoryEntry",
    "Promotion",
    "Rule",
    "TestedModel",
    "current_user",
    "history",
    "newest_export",
    "promote",
    "read_report",
    "repoint_store",
    "report_problems",
    "rollback",
]

REPORT_KIND: Final = "recsim abtest report"
REPORT_FORMAT_VERSION: Final = 1
REPORT_MODES: Final = ("logged", "off-policy")
Action = Literal["promote", "rollback"]


@dataclass(frozen=True)
class Rule:
    """What a gate report must show to move ``alias``; the control is always production."""

    alias: str
    evidence: tuple[str, ...]
    """The evidence a ship may rest on (the decision's ``evidence``)."""
    modes: tuple[str, ...]
    """The report modes accepted: ``logged`` (a live A/B test) or ``off-policy``."""


RULES: Final = {
    "candidate": Rule("candidate", evidence=("off-policy", "online"), modes=REPORT_MODES),
    "production": Rule("production", evidence=("online",), modes=("logged",)),
}


# -- the gate report ------------------------------------------------------------------


@dataclass(frozen=True)
class TestedModel:
    """An arm of a gate report as the report names it: None where it names no model."""

    spec: str | None
    """The arm as given to ``recsim abtest``: a label, a model name or an alias."""
    name: str | None
    """The registry model it named when the report was written (an alias resolved)."""
    fingerprint: str | None
    """`ModelEntry.fingerprint` of that model then."""


@dataclass(frozen=True)
class GateReport:
    """The facts of a ``recsim abtest`` JSON report that promotion checks."""

    path: Path
    sha256: str
    mode: str
    verdict: str | None
    """The gate's verdict; None when the test ran without a gate."""
    exit_code: int | None
    evidence: str | None
    control: TestedModel
    treatment: TestedModel


def read_report(path: Path | str) -> GateReport:
    """Read a report written by ``recsim abtest --report``; raise `InputFileError` if it is not.

    The SHA-256 is of the very bytes parsed, so the history pins what was checked.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(
            f"{path}: no such gate report; write one with recsim abtest --gate GATE.toml "
            f"--report {path}."
        ) from None
    except OSError as exc:
        raise InputFileError(
            f"{path}: cannot read the gate report ({exc.strerror or exc}); give a file you can "
            "read."
        ) from None
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(
            f"{path} is not JSON ({exc}); give the file recsim abtest --report wrote."
        ) from None
    kind = document.get("kind") if isinstance(document, dict) else None
    if kind != REPORT_KIND:
        raise InputFileError(
            f"{path} is not a recsim abtest report (its kind is {kind!r}, not "
            f"'{REPORT_KIND}'); give the file recsim abtest --report wrote."
        )
    version = document.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputFileError(
            f"{path} has no valid format_version; give the file recsim abtest --report wrote."
        )
    if version > REPORT_FORMAT_VERSION:
        raise InputFileError(
            f"{path} has format version {version}, but this recsim reads only version "
            f"{REPORT_FORMAT_VERSION}; upgrade recsim to promote with it."
        )
    mode = document.get("mode")
    if mode not in REPORT_MODES:
        raise InputFileError(
            f"{path} has mode {mode!r}, not logged or off-policy; give the report of an A/B "
            "test (recsim abtest --report), not of a plan."
        )
    decision = document.get("decision")
    decision = decision if isinstance(decision, dict) else {}
    exit_code = document.get("exit_code")
    return GateReport(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        mode=mode,
        verdict=_text(decision.get("verdict")),
        exit_code=exit_code if isinstance(exit_code, int) else None,
        evidence=_text(decision.get("evidence")),
        control=_tested(document, "control"),
        treatment=_tested(document, "treatment"),
    )


def _tested(document: Mapping[str, Any], arm: str) -> TestedModel:
    """The model a report's arm names: ``arms`` in an estimate, ``models`` in a logged test."""
    if document["mode"] == "off-policy":
        entry = _object(_object(document.get("arms")).get(arm))
        return TestedModel(
            _text(entry.get("spec")),
            _text(entry.get("model")),
            _text(entry.get("model_fingerprint")),
        )
    entry = _object(_object(document.get("models")).get(arm))
    spec = _text(entry.get("spec")) or _text(_object(document.get("experiment")).get(arm))
    return TestedModel(spec, _text(entry.get("name")), _text(entry.get("fingerprint")))


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def report_problems(report: GateReport, to: str) -> list[str]:
    """The sentences refusing ``report`` for alias ``to`` on its own (no registry needed)."""
    rule = RULES[to]
    problems = []
    if report.verdict is None:
        problems.append(
            f"{report.path} holds no gate decision (recsim abtest ran without --gate); run the "
            "test with --gate GATE.toml, or pass --force."
        )
    elif report.verdict != "ship" or report.exit_code != 0:
        verdict = report.verdict.replace("_", " ")
        problems.append(
            f"{report.path} decided {verdict} (exit {report.exit_code}), not ship; promote only "
            "a model whose test ships, or pass --force."
        )
    elif report.mode not in rule.modes or report.evidence not in rule.evidence:
        if to == "production":
            problems.append(
                f"{report.path} is an {report.mode} test resting on {report.evidence} evidence, "
                "but production needs online evidence; run a logged A/B test of candidate "
                "against production (recsim abtest --arm-column ...), or pass --force."
            )
        else:
            problems.append(
                f"{report.path} ships on {report.evidence} evidence, but {to} needs "
                f"{' or '.join(rule.evidence)} evidence; gate on a metric estimated off-policy "
                "(docs/promotion.md), or pass --force."
            )
    return problems


# -- the history ----------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEntry:
    """One promotion or rollback of an alias, as ``history.json`` keeps it."""

    id: int
    """The entry's 1-based place in the history."""
    action: Action
    alias: str
    model: str
    """The model the alias names after the change."""
    fingerprint: str
    previous_model: str | None
    """The model the alias named before; None when it was unset."""
    previous_fingerprint: str | None
    when: str
    """UTC, ISO 8601, e.g. ``2026-02-01T09:30:00Z``."""
    report: str | None
    """The gate report's path as given; None for a rollback or a forced promotion without one."""
    report_sha256: str | None
    verdict: str | None
    evidence: str | None
    forced: bool
    overridden: tuple[str, ...]
    """The refusals ``--force`` overrode, one sentence each."""
    reason: str | None
    user: str
    export: dict[str, Any] | None
    """The store export involved: the one the alias pointed at, or a rollback's switch."""
    undoes: int | None = None
    """For a rollback: the id of the promotion it undid."""

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as ``history.json`` stores it."""
        return {f.name: getattr(self, f.name) for f in fields(self)} | {
            "overridden": list(self.overridden)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: Path) -> HistoryEntry:
        """Rebuild an entry of ``history.json``; a malformed one is a `UserError`."""
        try:
            values = {f.name: data[f.name] for f in fields(cls) if f.name != "undoes"}
            entry = cls(
                **values | {"overridden": tuple(data["overridden"])}, undoes=data.get("undoes")
            )
        except (KeyError, TypeError) as exc:
            raise _corrupt(source, f"an entry lacks {exc}") from None
        valid = (
            isinstance(entry.id, int)
            and entry.action in ("promote", "rollback")
            and entry.alias in ALIASES
            and isinstance(entry.model, str)
            and isinstance(entry.forced, bool)
            and (entry.undoes is None or isinstance(entry.undoes, int))
        )
        if not valid:
            raise _corrupt(source, f"entry {data.get('id')!r} has a value of the wrong type")
        return entry


def _corrupt(path: Path, detail: str) -> UserError:
    return UserError(
        f"{path} is corrupt ({detail}); restore it from a backup, or move it aside to start a "
        "new history."
    )


@dataclass(frozen=True)
class Promotion:
    """What a promotion or rollback did: the history entry it appended, in its registry."""

    registry: Path
    entry: HistoryEntry

    def to_dict(self) -> dict[str, Any]:
        """Return the registry and the entry's fields as JSON-ready values."""
        return {"registry": str(self.registry), **self.entry.to_dict()}


def history(registry: Registry | Path | str) -> list[HistoryEntry]:
    """Every promotion and rollback of ``registry``, oldest first."""
    registry = _open(registry)
    source = registry.root / HISTORY_FILE
    return [HistoryEntry.from_dict(entry, source) for entry in registry.history()]


def current_user() -> str:
    """Who runs recsim: the login name, else ``$USER``, else ``unknown``."""
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError, ImportError):
        return os.environ.get("USER") or "unknown"


def _open(registry: Registry | Path | str) -> Registry:
    return registry if isinstance(registry, Registry) else Registry(registry)


def _check_alias(alias: str) -> None:
    if alias not in RULES:
        raise UnknownNameError("alias", alias, ALIASES)


def _when(now: datetime | None) -> str:
    moment = datetime.now(UTC) if now is None else now.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _fingerprint_of(registry: Registry, name: str | None) -> str | None:
    """The fingerprint of model ``name``; None if unset or no longer in the registry."""
    if name is None:
        return None
    try:
        return registry.open(name).fingerprint
    except UserError:
        return None


# -- promote --------------------------------------------------------------------------


def promote(
    registry: Registry | Path | str,
    name: str,
    to: str,
    report_path: Path | str | None,
    *,
    force: bool = False,
    reason: str | None = None,
    store: str | None = None,
    now: datetime | None = None,
    user: str | None = None,
) -> Promotion:
    """Point alias ``to`` at model ``name`` if the gate report at ``report_path`` allows it.

    ``name`` may be an alias (``recsim promote candidate --to production``).
    The report's checks (`report_problems`) come first; the registry's (the
    treatment is ``name`` as it is now, the control the current production)
    and the move run as one compare-and-swap under the registry's lock.
    ``force`` promotes despite every refusal (and without a report) and
    records the refusals it overrode. With ``store`` (a store URL), the
    export of the model the alias named before is recorded in the history.
    """
    registry = _open(registry)
    _check_alias(to)
    if report_path is None and not force:
        if "production" not in registry.aliases():
            raise UserError(
                f"No model is production in {registry.root} yet; bootstrap the first production "
                "model with --force."
            )
        raise UserError(
            f"promoting to {to} needs --gate-report FILE.json, the report of recsim abtest "
            "--gate ... --report FILE.json; or pass --force to promote without one."
        )
    report = None if report_path is None else read_report(report_path)
    early = ["no gate report was given"] if report is None else report_problems(report, to)
    if early and not force:
        raise UserError(early[0])
    versions = None if store is None else _store_versions(store)

    def check(current: str | None, target: ModelEntry) -> dict[str, Any]:
        fingerprint = target.fingerprint
        if current == target.name and _recorded_fingerprint(registry, to) == fingerprint:
            raise UserError(f"'{target.name}' is already {to} in {registry.root}; nothing to do.")
        late = [] if report is None else _registry_problems(registry, report, target, fingerprint)
        if late and not force:
            raise UserError(late[0])
        previous_fingerprint = _fingerprint_of(registry, current)
        export = None
        if store is not None and versions is not None and current is not None:
            kept = newest_export(versions, current, previous_fingerprint)
            export = None if kept is None else _export_record(store, kept.version)
        return {
            "action": "promote",
            "alias": to,
            "model": target.name,
            "fingerprint": fingerprint,
            "previous_model": current,
            "previous_fingerprint": previous_fingerprint,
            "when": _when(now),
            "report": None if report is None else str(report.path),
            "report_sha256": None if report is None else report.sha256,
            "verdict": None if report is None else report.verdict,
            "evidence": None if report is None else report.evidence,
            "forced": force,
            "overridden": [*early, *late] if force else [],
            "reason": reason,
            "user": user or current_user(),
            "export": export,
            "undoes": None,
        }

    record = registry.swap_alias(to, name, check)
    return Promotion(registry.root, HistoryEntry.from_dict(record, registry.root / HISTORY_FILE))


def _recorded_fingerprint(registry: Registry, alias: str) -> str | None:
    """The fingerprint the last promotion or rollback of ``alias`` recorded; None if none did.

    A model retrained under the name an alias already holds is promoted anew
    (its history entry records the new fingerprint); the very same model is not.
    """
    for entry in reversed(registry.history()):
        if entry.get("alias") == alias:
            value = entry.get("fingerprint")
            return value if isinstance(value, str) else None
    return None


def _registry_problems(
    registry: Registry, report: GateReport, target: ModelEntry, fingerprint: str
) -> list[str]:
    """The sentences refusing ``report`` against the registry as it is (under its lock)."""
    problems = []
    path, treatment, control = report.path, report.treatment, report.control
    if treatment.name is None:
        problems.append(
            f"{path} names no registry model as its treatment ({treatment.spec!r}); test "
            f"'{target.name}' by its name or alias with --registry {registry.root}, or pass "
            "--force."
        )
    elif treatment.name != target.name:
        problems.append(
            f"{path} tests '{treatment.name}' as its treatment, not '{target.name}'; promote "
            f"'{treatment.name}', or give the report of {target.name}'s test."
        )
    elif treatment.fingerprint != fingerprint:
        problems.append(
            f"Model '{target.name}' in {registry.root} changed since {path} was written (it was "
            "trained again); test it again with recsim abtest and promote with the new report."
        )
    production = registry.aliases().get("production")
    if production is None:
        problems.append(
            f"No model is production in {registry.root} yet, so {path}'s control cannot be "
            f"checked; bootstrap the first production model with --force."
        )
    elif control.name != production:
        problems.append(
            f"production changed since {path} was written: it names '{production}' now, but "
            f"the report's control is {_named(control)}; test '{target.name}' against the "
            "current production again."
        )
    elif control.fingerprint != _fingerprint_of(registry, production):
        problems.append(
            f"production changed since {path} was written: '{production}' was trained again; "
            f"test '{target.name}' against the current production again."
        )
    return problems


def _named(model: TestedModel) -> str:
    if model.name is not None:
        return f"'{model.name}'"
    return f"{model.spec!r}, which names no registry model" if model.spec else "not a model"


# -- rollback -------------------------------------------------------------------------


@dataclass(frozen=True)
class _RollbackPlan:
    undo: HistoryEntry
    restore: ModelEntry
    fingerprint: str
    overridden: tuple[str, ...]


def _plan_rollback(registry: Registry, to: str, *, force: bool) -> _RollbackPlan:
    """Find the promotion of ``to`` to undo and check its previous model can come back."""
    entries = history(registry)
    undone = {e.undoes for e in entries if e.action == "rollback"}
    open_ = [e for e in entries if e.alias == to and e.action == "promote" and e.id not in undone]
    if not open_:
        raise UserError(
            f"The history of {registry.root} has no promotion of {to} to roll back; point "
            f"{to} at a model with recsim promote NAME --to {to}."
        )
    undo = open_[-1]
    previous = undo.previous_model
    if previous is None:
        raise UserError(
            f"No model was {to} before '{undo.model}' (promotion {undo.id} set it first), so "
            f"there is none to roll back to; promote another model with recsim promote NAME "
            f"--to {to}."
        )
    try:
        restore = registry.open(previous)
    except UnknownNameError:
        raise UserError(
            f"'{previous}', the {to} model before '{undo.model}', was deleted from "
            f"{registry.root}; promote another model with recsim promote NAME --to {to}."
        ) from None
    fingerprint = restore.fingerprint
    problems = []
    if fingerprint != undo.previous_fingerprint:
        problems.append(
            f"'{previous}' was trained again since it was {to} (its fingerprint is not the one "
            "in the history); roll back to it anyway with --force, or promote another model."
        )
    current = registry.aliases().get(to)
    if current != undo.model:
        problems.append(
            f"{to} names {'no model' if current is None else repr(current)} now, not "
            f"'{undo.model}' that promotion {undo.id} set; check recsim promote --history, then "
            "roll back with --force."
        )
    if problems and not force:
        raise UserError(problems[0])
    return _RollbackPlan(undo, restore, fingerprint, tuple(problems))


def rollback(
    registry: Registry | Path | str,
    to: str = "production",
    *,
    force: bool = False,
    reason: str | None = None,
    store: str | None = None,
    now: datetime | None = None,
    user: str | None = None,
) -> Promotion:
    """Point alias ``to`` back at the model it named before its latest promotion not undone.

    Refused when the history has no such promotion, the promotion set the
    alias first, or the model was deleted; ``force`` overrides only a model
    trained again since, or an alias moved outside ``promote``. With ``store``
    the store serves that model again first: its newest kept export, or a new
    export when none is kept; then the alias moves, checked again under the lock.
    """
    registry = _open(registry)
    _check_alias(to)
    plan = _plan_rollback(registry, to, force=force)
    export = None if store is None else repoint_store(store, registry, plan.restore)

    def check(current: str | None, target: ModelEntry) -> dict[str, Any]:
        again = _plan_rollback(registry, to, force=force)
        if again.undo.id != plan.undo.id or again.fingerprint != plan.fingerprint:
            served = "" if export is None else f" (the store now serves '{target.name}')"
            raise UserError(
                f"{to} changed while rolling back{served}; check recsim promote --history and "
                "roll back again."
            )
        return {
            "action": "rollback",
            "alias": to,
            "model": target.name,
            "fingerprint": target.fingerprint,
            "previous_model": current,
            "previous_fingerprint": _fingerprint_of(registry, current),
            "when": _when(now),
            "report": None,
            "report_sha256": None,
            "verdict": None,
            "evidence": None,
            "forced": force,
            "overridden": list(again.overridden),
            "reason": reason,
            "user": user or current_user(),
            "export": export,
            "undoes": plan.undo.id,
        }

    record = registry.swap_alias(to, plan.restore.name, check)
    return Promotion(registry.root, HistoryEntry.from_dict(record, registry.root / HISTORY_FILE))


# -- the store ------------------------------------------------------------------------


class _Version(Protocol):
    """What promotion reads of a store's `VersionInfo`."""

    @property
    def version(self) -> Any: ...
    @property
    def model(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def live(self) -> bool: ...
    @property
    def created(self) -> Any: ...


def newest_export(
    versions: Sequence[_Version], model: str, fingerprint: str | None
) -> _Version | None:
    """The newest complete version of a store that holds ``model`` with ``fingerprint``."""
    matches = [
        v
        for v in versions
        if v.model == model
        and v.fingerprint == fingerprint
        and getattr(v, "complete", True)
        and not getattr(v, "deleting", False)
    ]
    return max(matches, key=lambda v: (str(v.created), str(v.version)), default=None)


def _store_versions(url: str) -> list[_Version]:
    from recsim_cli.serve import open_store

    store = open_store(url)
    try:
        return list(store.versions())
    finally:
        store.close()


def _export_record(url: str, version: object, **more: Any) -> dict[str, Any]:
    from recsim_cli.serve import mask_url

    return {"url": mask_url(url), "version": _plain(version), **more}


def _plain(value: object) -> object:
    return value if isinstance(value, int | str) and not isinstance(value, bool) else str(value)


def repoint_store(url: str, registry: Registry, model: ModelEntry) -> dict[str, Any]:
    """Make the store at ``url`` serve ``model``: its newest kept export, else a new export.

    Returns what the history records: the (masked) URL, the version now live,
    whether it was exported anew, and the version it replaced.
    """
    from recsim_cli.serve import export_model, open_store

    store = open_store(url)
    try:
        live = store.live()
        kept = newest_export(store.versions(), model.name, model.fingerprint)
        if kept is None:
            version = export_model(model.name, registry=registry.root, url=url).version
        else:
            version = kept.version
        now_live = store.live()
        if now_live is None or now_live.version != version:
            store.switch(version)
    finally:
        store.close()
    return _export_record(
        url,
        version,
        reexported=kept is None,
        replaced=None if live is None else _plain(live.version),
    )
