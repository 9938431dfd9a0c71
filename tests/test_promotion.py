"""The promotion library: the rules, the compare-and-swap, the history and rollback.

Models here are registry entries written with `Registry.write` and a one-file
build: promotion reads only their names and fingerprints. The reports are
built by hand with the keys ``recsim abtest --report`` writes; the CLI tests
(test_promote_cli.py) promote with reports that recsim abtest really wrote.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import threading
import types
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from recsim_cli.errors import InputFileError, UnknownNameError, UserError
from recsim_cli.io import write_json_atomic
from recsim_cli.promotion import (
    RULES,
    HistoryEntry,
    history,
    newest_export,
    promote,
    read_report,
    rollback,
)
from recsim_cli.registry import Registry

NOW = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)


def build(text: str):
    def _build(folder: Path) -> None:
        (folder / "weights.txt").write_text(text, encoding="utf-8")

    return _build


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """Models a, b and c; no alias set."""
    reg = Registry(tmp_path / "models")
    for name in ("a", "b", "c"):
        reg.write(name, {"kind": "test"}, build(name))
    return reg


def arm(registry: Registry, name: str | None, fingerprint: str | None = None) -> dict[str, Any]:
    """The keys of one arm: the model's name and fingerprint as the registry has it now."""
    if name is None:
        return {"spec": "prod", "name": None, "fingerprint": None}
    fp = fingerprint or registry.open(name).fingerprint
    return {"spec": name, "name": name, "fingerprint": fp}


def report_dict(
    registry: Registry,
    *,
    treatment: str | None = "b",
    control: str | None = "a",
    verdict: str | None = "ship",
    evidence: str | None = "online",
    mode: str = "logged",
) -> dict[str, Any]:
    """A minimal report with the keys promotion reads, shaped as recsim abtest writes them."""
    codes = {"ship": 0, "no_ship": 1, "inconclusive": 3, "invalid": 4, None: 0}
    arms = {"control": arm(registry, control), "treatment": arm(registry, treatment)}
    data: dict[str, Any] = {
        "format_version": 1,
        "kind": "recsim abtest report",
        "mode": mode,
        "decision": None
        if verdict is None
        else {
            "verdict": verdict,
            "exit_code": codes[verdict],
            "reasons": [],
            "metrics": [],
            "evidence": evidence if verdict == "ship" else None,
        },
        "exit_code": codes[verdict],
    }
    if mode == "logged":
        data["models"] = {k: None if v["name"] is None else v for k, v in arms.items()}
        data["experiment"] = {"control": arms["control"]["spec"], "treatment": "b"}
    else:
        data["arms"] = {
            k: {
                "spec": v["spec"],
                "kind": "model",
                "model": v["name"],
                "model_fingerprint": v["fingerprint"],
            }
            for k, v in arms.items()
        }
    return data


def write_report(path: Path, registry: Registry, **options: Any) -> Path:
    write_json_atomic(path, report_dict(registry, **options))
    return path


@pytest.fixture
def production_a(registry: Registry) -> Registry:
    """Model a bootstrapped as production with --force (history entry 1)."""
    promote(registry, "a", "production", None, force=True, reason="bootstrap", now=NOW)
    return registry


# --- the rules -------------------------------------------------------------------------


def test_the_rules_table() -> None:
    assert RULES["candidate"].evidence == ("off-policy", "online")
    assert RULES["production"].evidence == ("online",)
    assert RULES["production"].modes == ("logged",)


@pytest.mark.parametrize(
    ("to", "mode", "evidence"),
    [
        ("candidate", "off-policy", "off-policy"),
        ("candidate", "logged", "online"),
        ("production", "logged", "online"),
    ],
)
def test_a_ship_on_enough_evidence_promotes(
    production_a: Registry, tmp_path: Path, to: str, mode: str, evidence: str
) -> None:
    path = write_report(tmp_path / "r.json", production_a, mode=mode, evidence=evidence)
    done = promote(production_a, "b", to, path, reason="better", now=NOW, user="ci")
    assert production_a.aliases()[to] == "b"
    entry = done.entry
    assert entry.action == "promote"
    assert (entry.alias, entry.model, entry.evidence, entry.verdict) == (to, "b", evidence, "ship")
    assert entry.fingerprint == production_a.open("b").fingerprint
    assert entry.report == str(path)
    assert entry.report_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (entry.forced, entry.overridden, entry.reason, entry.user) == (False, (), "better", "ci")
    assert entry.when == "2026-02-01T09:30:00Z"
    assert done.to_dict()["registry"] == str(production_a.root)


def test_model_based_evidence_cannot_make_a_candidate(
    production_a: Registry, tmp_path: Path
) -> None:
    path = write_report(
        tmp_path / "r.json", production_a, mode="off-policy", evidence="model-based"
    )
    with pytest.raises(UserError) as info:
        promote(production_a, "b", "candidate", path)
    assert str(info.value) == (
        f"{path} ships on model-based evidence, but candidate needs off-policy or online "
        "evidence; gate on a metric estimated off-policy (docs/promotion.md), or pass --force."
    )
    assert "candidate" not in production_a.aliases()


@pytest.mark.parametrize(
    ("mode", "evidence"), [("off-policy", "off-policy"), ("off-policy", "online")]
)
def test_production_needs_a_logged_online_test(
    production_a: Registry, tmp_path: Path, mode: str, evidence: str
) -> None:
    path = write_report(tmp_path / "r.json", production_a, mode=mode, evidence=evidence)
    with pytest.raises(UserError) as info:
        promote(production_a, "b", "production", path)
    assert str(info.value) == (
        f"{path} is an off-policy test resting on {evidence} evidence, but production needs "
        "online evidence; run a logged A/B test of candidate against production (recsim abtest "
        "--arm-column ...), or pass --force."
    )
    assert production_a.aliases()["production"] == "a"


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        ("no_ship", "decided no ship (exit 1), not ship; promote only a model whose test ships"),
        ("inconclusive", "decided inconclusive (exit 3), not ship"),
        ("invalid", "decided invalid (exit 4), not ship"),
        (None, "holds no gate decision (recsim abtest ran without --gate); run the test with"),
    ],
)
def test_only_a_ship_promotes(
    production_a: Registry, tmp_path: Path, verdict: str | None, expected: str
) -> None:
    path = write_report(tmp_path / "r.json", production_a, verdict=verdict)
    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        promote(production_a, "b", "candidate", path)
    assert len(history(production_a)) == 1


def test_a_model_trained_again_is_not_the_model_tested(
    production_a: Registry, tmp_path: Path
) -> None:
    path = write_report(tmp_path / "r.json", production_a)
    production_a.write("b", {"kind": "test"}, build("b, retrained"), force=True)
    with pytest.raises(UserError) as info:
        promote(production_a, "b", "production", path)
    assert str(info.value) == (
        f"Model 'b' in {production_a.root} changed since {path} was written (it was trained "
        "again); test it again with recsim abtest and promote with the new report."
    )


def test_the_report_must_test_the_model_promoted(production_a: Registry, tmp_path: Path) -> None:
    path = write_report(tmp_path / "r.json", production_a, treatment="c")
    with pytest.raises(UserError) as info:
        promote(production_a, "b", "production", path)
    assert str(info.value) == (
        f"{path} tests 'c' as its treatment, not 'b'; promote 'c', or give the report of b's test."
    )
    labels = write_report(tmp_path / "labels.json", production_a, treatment=None)
    with pytest.raises(UserError, match="names no registry model as its treatment"):
        promote(production_a, "b", "production", labels)


def test_a_report_against_an_old_production_is_refused(
    production_a: Registry, tmp_path: Path
) -> None:
    path = write_report(tmp_path / "r.json", production_a)  # b against a
    promote(production_a, "c", "production", None, force=True)
    with pytest.raises(UserError) as info:
        promote(production_a, "b", "production", path)
    assert str(info.value) == (
        f"production changed since {path} was written: it names 'c' now, but the report's "
        "control is 'a'; test 'b' against the current production again."
    )
    assert production_a.aliases()["production"] == "c"


def test_a_production_trained_again_is_a_changed_production(
    production_a: Registry, tmp_path: Path
) -> None:
    path = write_report(tmp_path / "r.json", production_a)
    production_a.write("a", {"kind": "test"}, build("a, retrained"), force=True)
    with pytest.raises(UserError, match=r"production changed since .*'a' was trained again"):
        promote(production_a, "b", "candidate", path)


def test_without_production_only_force_bootstraps(registry: Registry, tmp_path: Path) -> None:
    path = write_report(tmp_path / "r.json", registry, control=None)
    with pytest.raises(UserError) as info:
        promote(registry, "b", "candidate", path)
    assert str(info.value) == (
        f"No model is production in {registry.root} yet, so {path}'s control cannot be "
        "checked; bootstrap the first production model with --force."
    )
    with pytest.raises(UserError) as bare:
        promote(registry, "a", "production", None)
    assert str(bare.value) == (
        f"No model is production in {registry.root} yet; bootstrap the first production model "
        "with --force."
    )
    done = promote(registry, "a", "production", None, force=True, reason="first model", now=NOW)
    assert registry.aliases() == {"production": "a"}
    assert done.entry.forced
    assert done.entry.overridden == ("no gate report was given",)
    assert (done.entry.previous_model, done.entry.previous_fingerprint) == (None, None)
    assert done.entry.reason == "first model"


def test_force_overrides_every_check_and_records_them(
    production_a: Registry, tmp_path: Path
) -> None:
    path = write_report(tmp_path / "r.json", production_a, verdict="no_ship", treatment="c")
    done = promote(production_a, "b", "production", path, force=True, reason="hotfix")
    assert production_a.aliases()["production"] == "b"
    [recorded] = [e for e in history(production_a) if e.id == done.entry.id]
    assert recorded.forced
    assert recorded.verdict == "no_ship"
    assert len(recorded.overridden) == 2
    assert "decided no ship" in recorded.overridden[0]
    assert "tests 'c' as its treatment" in recorded.overridden[1]
    assert recorded.previous_model == "a"
    assert recorded.previous_fingerprint == production_a.open("a").fingerprint


def test_promoting_the_model_that_holds_the_alias_does_nothing(
    production_a: Registry, tmp_path: Path
) -> None:
    path = write_report(tmp_path / "r.json", production_a, treatment="a")
    with pytest.raises(UserError, match=r"^'a' is already production in .*; nothing to do\.$"):
        promote(production_a, "a", "production", path)
    assert len(history(production_a)) == 1


def test_a_model_retrained_under_the_name_the_alias_holds_is_promoted_anew(
    production_a: Registry,
) -> None:
    production_a.write("a", {"kind": "test"}, build("a, retrained"), force=True)
    done = promote(production_a, "a", "production", None, force=True, reason="retrained")
    assert done.entry.model == done.entry.previous_model == "a"
    assert done.entry.fingerprint == production_a.open("a").fingerprint
    assert done.entry.fingerprint != history(production_a)[0].fingerprint
    with pytest.raises(UserError, match="nothing to do"):
        promote(production_a, "a", "production", None, force=True)


def test_an_alias_names_the_model_to_promote(production_a: Registry, tmp_path: Path) -> None:
    promote(production_a, "b", "candidate", write_report(tmp_path / "c.json", production_a))
    done = promote(production_a, "candidate", "production", tmp_path / "c.json")
    assert done.entry.model == "b"
    assert production_a.aliases() == {"candidate": "b", "production": "b"}


def test_unknown_aliases_and_models(production_a: Registry, tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="Unknown alias 'staging'"):
        promote(production_a, "b", "staging", None, force=True)
    with pytest.raises(UnknownNameError, match=r"Unknown model 'zz'\. Available: a, b, c\."):
        promote(production_a, "zz", "candidate", None, force=True)


# --- the report file -------------------------------------------------------------------


def test_reports_that_are_not_reports(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such gate report; write one with recsim abtest"):
        read_report(tmp_path / "missing.json")
    text = tmp_path / "text.json"
    text.write_text("ship!", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"text.json is not JSON \(.*\); give the file"):
        read_report(text)
    other = tmp_path / "other.json"
    other.write_text('{"kind": "recsim evaluate report"}', encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        read_report(other)
    assert str(info.value) == (
        f"{other} is not a recsim abtest report (its kind is 'recsim evaluate report', not "
        "'recsim abtest report'); give the file recsim abtest --report wrote."
    )
    newer = tmp_path / "newer.json"
    newer.write_text('{"kind": "recsim abtest report", "format_version": 9}', encoding="utf-8")
    with pytest.raises(InputFileError, match=r"format version 9.*upgrade recsim"):
        read_report(newer)
    plan = tmp_path / "plan.json"
    plan.write_text(
        '{"kind": "recsim abtest report", "format_version": 1, "mode": "plan"}', encoding="utf-8"
    )
    with pytest.raises(InputFileError, match="has mode 'plan', not logged or off-policy"):
        read_report(plan)


def test_read_report_takes_each_mode_s_arms(registry: Registry, tmp_path: Path) -> None:
    for mode in ("logged", "off-policy"):
        path = write_report(tmp_path / f"{mode}.json", registry, mode=mode, evidence="off-policy")
        report = read_report(path)
        assert report.mode == mode
        assert (report.treatment.name, report.control.name) == ("b", "a")
        assert report.treatment.fingerprint == registry.open("b").fingerprint
        assert (report.verdict, report.exit_code, report.evidence) == ("ship", 0, "off-policy")


# --- the compare-and-swap ---------------------------------------------------------------


def test_two_racing_promotions_against_one_production_one_wins(
    production_a: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = {
        name: write_report(tmp_path / f"{name}.json", production_a, treatment=name)
        for name in ("b", "c")
    }
    # Both jobs have read their report and passed its checks before either takes the lock.
    both_ready = threading.Barrier(2, timeout=10)
    swap = Registry.swap_alias

    def racing_swap(self: Registry, *args: Any) -> dict[str, Any]:
        both_ready.wait()
        return swap(self, *args)

    monkeypatch.setattr(Registry, "swap_alias", racing_swap)
    outcomes: dict[str, object] = {}

    def job(name: str) -> None:
        try:
            outcomes[name] = promote(Registry(production_a.root), name, "production", reports[name])
        except UserError as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=job, args=(name,)) for name in reports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [o for o in outcomes.values() if isinstance(o, UserError)]
    winners = [name for name, o in outcomes.items() if not isinstance(o, UserError)]
    assert len(winners) == 1 and len(errors) == 1
    assert str(errors[0]).startswith("production changed since ")
    assert f"it names '{winners[0]}' now" in str(errors[0])
    assert production_a.aliases()["production"] == winners[0]
    assert [e.model for e in history(production_a)] == ["a", winners[0]]


# --- the history ------------------------------------------------------------------------


def test_history_is_appended_and_read_back(production_a: Registry, tmp_path: Path) -> None:
    path = write_report(tmp_path / "r.json", production_a)
    promote(production_a, "b", "production", path, now=NOW, user="ci")
    entries = history(production_a)
    assert [e.id for e in entries] == [1, 2]
    assert [(e.model, e.previous_model) for e in entries] == [("a", None), ("b", "a")]
    stored = json.loads((production_a.root / "history.json").read_text(encoding="utf-8"))
    assert stored["format_version"] == 1
    assert stored["entries"][1] == entries[1].to_dict()
    assert HistoryEntry.from_dict(stored["entries"][1], Path("h")) == entries[1]
    assert not list(production_a.root.glob(".history.json.*"))


def test_an_empty_and_a_corrupt_history(registry: Registry) -> None:
    assert history(registry) == []
    (registry.root / "history.json").write_text("[1, 2", encoding="utf-8")
    with pytest.raises(UserError) as info:
        history(registry)
    assert str(info.value) == (
        f"{registry.root / 'history.json'} is corrupt (not readable JSON); restore it from a "
        "backup, or move it aside to start a new history."
    )
    with pytest.raises(UserError, match="is corrupt"):
        promote(registry, "a", "production", None, force=True)
    assert registry.aliases() == {}


def test_the_user_falls_back_to_the_environment(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    from recsim_cli import promotion

    def no_login() -> str:
        raise OSError("no login name")

    monkeypatch.setattr(getpass, "getuser", no_login)
    monkeypatch.setenv("USER", "robot")
    assert promotion.current_user() == "robot"
    monkeypatch.delenv("USER")
    assert promotion.current_user() == "unknown"
    assert promote(registry, "a", "production", None, force=True).entry.user == "unknown"


# --- rollback ---------------------------------------------------------------------------


def test_rollback_restores_the_previous_model_and_records_it(
    production_a: Registry, tmp_path: Path
) -> None:
    promote(production_a, "b", "production", write_report(tmp_path / "r.json", production_a))
    done = rollback(production_a, reason="watch time fell", now=NOW, user="oncall")
    assert production_a.aliases()["production"] == "a"
    entry = done.entry
    assert (entry.id, entry.action, entry.undoes) == (3, "rollback", 2)
    assert (entry.model, entry.previous_model) == ("a", "b")
    assert entry.fingerprint == production_a.open("a").fingerprint
    assert (entry.reason, entry.user, entry.report, entry.export) == (
        "watch time fell",
        "oncall",
        None,
        None,
    )
    # The bootstrap promotion had no model before it: nothing further to roll back to.
    with pytest.raises(UserError) as info:
        rollback(production_a)
    assert str(info.value) == (
        "No model was production before 'a' (promotion 1 set it first), so there is none to "
        "roll back to; promote another model with recsim promote NAME --to production."
    )


def test_rollbacks_undo_promotions_newest_first(production_a: Registry, tmp_path: Path) -> None:
    promote(production_a, "b", "production", None, force=True)
    promote(production_a, "c", "production", None, force=True)
    assert rollback(production_a).entry.model == "b"
    assert rollback(production_a).entry.model == "a"
    assert [e.undoes for e in history(production_a)] == [None, None, None, 3, 2]


def test_rollback_without_a_promotion(registry: Registry) -> None:
    with pytest.raises(UserError) as info:
        rollback(registry, "candidate")
    assert str(info.value) == (
        f"The history of {registry.root} has no promotion of candidate to roll back; point "
        "candidate at a model with recsim promote NAME --to candidate."
    )


def test_rollback_to_a_deleted_model_is_refused(production_a: Registry) -> None:
    promote(production_a, "b", "production", None, force=True)
    shutil.rmtree(production_a.root / "a")
    with pytest.raises(UserError) as info:
        rollback(production_a, force=True)
    assert str(info.value) == (
        f"'a', the production model before 'b', was deleted from {production_a.root}; promote "
        "another model with recsim promote NAME --to production."
    )
    assert production_a.aliases()["production"] == "b"


def test_rollback_to_a_retrained_model_needs_force(production_a: Registry) -> None:
    promote(production_a, "b", "production", None, force=True)
    production_a.write("a", {"kind": "test"}, build("a, retrained"), force=True)
    with pytest.raises(UserError, match="'a' was trained again since it was production"):
        rollback(production_a)
    done = rollback(production_a, force=True)
    assert done.entry.forced and len(done.entry.overridden) == 1
    assert production_a.aliases()["production"] == "a"


def test_rollback_of_an_alias_moved_outside_promote_needs_force(production_a: Registry) -> None:
    promote(production_a, "b", "production", None, force=True)
    production_a.set_alias("production", "c")
    with pytest.raises(UserError, match="production names 'c' now, not 'b' that promotion 2 set"):
        rollback(production_a)
    assert rollback(production_a, force=True).entry.previous_model == "c"


# --- the store (a stand-in for recsim_cli.serve's contract) --------------------------------


@dataclass
class FakeVersion:
    version: str
    model: str
    fingerprint: str
    live: bool
    created: str


class FakeStore:
    def __init__(self, versions: list[FakeVersion]) -> None:
        self.kept = versions
        self.switched: list[str] = []

    def versions(self) -> list[FakeVersion]:
        return list(self.kept)

    def live(self) -> FakeVersion | None:
        return next((v for v in self.kept if v.live), None)

    def switch(self, version: str) -> str | None:
        before = self.live()
        for v in self.kept:
            v.live = v.version == version
        self.switched.append(version)
        return None if before is None else before.version

    def close(self) -> None:
        return None


@pytest.fixture
def fake_serve(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    """Install a stand-in ``recsim_cli.serve`` whose store is a list of versions."""
    store = FakeStore([])
    module = types.ModuleType("recsim_cli.serve")
    exported: list[str] = []

    def export_model(name: str, *, registry: Path, url: str, **_: Any) -> Any:
        fingerprint = Registry(registry).open(name).fingerprint
        version = f"v{len(store.kept) + 1}"
        for v in store.kept:
            v.live = False
        store.kept.append(FakeVersion(version, name, fingerprint, True, "2026-02-01T10:00:00Z"))
        exported.append(name)
        return types.SimpleNamespace(version=version)

    module.open_store = lambda url: store  # type: ignore[attr-defined]
    module.export_model = export_model  # type: ignore[attr-defined]
    module.mask_url = lambda url: url.replace("secret", "***")  # type: ignore[attr-defined]
    module.exported = exported  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "recsim_cli.serve", module)
    return store


def test_rollback_switches_the_store_to_the_newest_kept_export(
    production_a: Registry, fake_serve: FakeStore
) -> None:
    fp = {name: production_a.open(name).fingerprint for name in "ab"}
    fake_serve.kept += [
        FakeVersion("v1", "a", fp["a"], False, "2026-01-01T00:00:00Z"),
        FakeVersion("v2", "a", fp["a"], False, "2026-01-02T00:00:00Z"),
        FakeVersion("v3", "a", "an older a", False, "2026-01-03T00:00:00Z"),
        FakeVersion("v4", "b", fp["b"], True, "2026-01-04T00:00:00Z"),
    ]
    done = promote(production_a, "b", "production", None, force=True, store="redis://:secret@h")
    assert done.entry.export == {"url": "redis://:***@h", "version": "v2"}
    back = rollback(production_a, store="redis://:secret@h")
    assert fake_serve.switched == ["v2"]
    assert back.entry.export == {
        "url": "redis://:***@h",
        "version": "v2",
        "reexported": False,
        "replaced": "v4",
    }


def test_rollback_exports_the_model_again_when_no_export_is_kept(
    production_a: Registry, fake_serve: FakeStore
) -> None:
    promote(production_a, "b", "production", None, force=True)
    back = rollback(production_a, store="sqlite:///store.db")
    assert sys.modules["recsim_cli.serve"].exported == ["a"]  # type: ignore[attr-defined]
    assert back.entry.export == {
        "url": "sqlite:///store.db",
        "version": "v1",
        "reexported": True,
        "replaced": None,
    }
    assert fake_serve.live() is not None and fake_serve.live().model == "a"  # type: ignore[union-attr]


def test_newest_export_skips_incomplete_versions() -> None:
    @dataclass
    class Version(FakeVersion):
        complete: bool = True

    versions = [
        Version("v1", "a", "f", False, "2026-01-01T00:00:00Z"),
        Version("v2", "a", "f", False, "2026-01-02T00:00:00Z", complete=False),
    ]
    assert newest_export(versions, "a", "f") is versions[0]
    assert newest_export(versions, "a", "g") is None
