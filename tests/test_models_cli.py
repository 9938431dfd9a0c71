"""`recsim models` and `recsim models show` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import Result

from recsim_cli.registry import Registry

MANIFEST = {
    "kind": "als+lightgbm",
    "cutoff": "2026-01-15T00:00:00Z",
    "dataset": {"path": "recsim-data", "fingerprint": "0123456789abcdef" * 4, "version": 3},
    "config": {"als": {"factors": 64}, "ranker": "lightgbm"},
    "features": ["item_ctr", "als_score"],
    "training": {"ranker": None, "ranker_window": ["2026-01-08", "2026-01-15"]},
}


def save(folder: Path) -> None:
    (folder / "candidates").mkdir()
    (folder / "candidates" / "state.npz").write_bytes(b"arrays")


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A registry with two models, `production` pointing at the first, one corrupt folder."""
    root = tmp_path / "models"
    store = Registry(root)
    store.write("als-v1", MANIFEST, save)
    store.write("pop", {"kind": "popular"}, save)
    store.set_alias("production", "als-v1")
    (root / "broken").mkdir()
    (root / ".tmp-als-v2-0123abcd").mkdir()
    return root


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout


def fails(result: Result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == f"Error: {message}\n"
    assert "Traceback" not in result.output


def test_models_lists_every_model_with_its_aliases(runner, registry: Path) -> None:
    from recsim_cli.cli import app

    wide = {"COLUMNS": "200"}  # the temporary path is long; keep each row on one line
    out = ok(runner.invoke(app, ["models", "--registry", str(registry)], env=wide))
    assert f"models in {registry}" in out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert list(rows) == ["als-v1", "broken", "pop"]
    for text in ("als+lightgbm", "2026-01-15", "recsim-data (0123456789ab)", "production"):
        assert text in rows["als-v1"]
    assert "unreadable" in rows["broken"]
    assert "production" not in rows["pop"]
    assert out.endswith(
        f"Model 'broken' in {registry} is corrupt (manifest.json is missing); "
        "train it again with recsim train broken --force.\n"
    )


def test_models_json_parses(invoke, registry: Path) -> None:
    data = json.loads(ok(invoke(["models", "--registry", registry, "--json"])))
    assert data["registry"] == str(registry)
    assert data["aliases"] == {"production": "als-v1"}
    assert [m["name"] for m in data["models"]] == ["als-v1", "broken", "pop"]
    first, broken, pop = data["models"]
    assert first["aliases"] == ["production"]
    assert first["kind"] == "als+lightgbm"
    assert first["dataset"] == MANIFEST["dataset"]
    assert first["problem"] is None
    assert broken["problem"] == (
        f"Model 'broken' in {registry} is corrupt (manifest.json is missing); "
        "train it again with recsim train broken --force."
    )
    assert pop["aliases"] == []


def test_models_reads_the_registry_from_the_environment(runner, registry: Path) -> None:
    from recsim_cli.cli import app

    result = runner.invoke(app, ["models", "--json"], env={"RECSIM_REGISTRY": str(registry)})
    assert [m["name"] for m in json.loads(ok(result))["models"]] == ["als-v1", "broken", "pop"]


@pytest.mark.parametrize("make", [False, True])
def test_an_empty_or_missing_registry_is_friendly(invoke, tmp_path: Path, make: bool) -> None:
    root = tmp_path / "none"
    if make:
        root.mkdir()
    out = ok(invoke(["models", "--registry", root]))
    assert out == f"No models in {root}; train one with recsim train NAME.\n"
    data = json.loads(ok(invoke(["models", "--registry", root, "--json"])))
    assert data == {"registry": str(root), "models": [], "aliases": {}}
    assert root.exists() == make


def test_show_renders_the_manifest(invoke, registry: Path) -> None:
    out = ok(invoke(["models", "show", "production", "--registry", registry]))
    assert "model als-v1 (production)" in out
    for row in (
        ("config.als.factors", "64"),
        ("dataset.version", "3"),
        ("features", "item_ctr, als_score"),
        ("training.ranker", "-"),
        ("format_version", "1"),
    ):
        assert any(row[0] in line and row[1] in line for line in out.splitlines()), row


def test_show_json_is_the_stored_manifest(invoke, registry: Path) -> None:
    out = ok(invoke(["models", "show", "als-v1", "--registry", registry, "--json"]))
    assert out == (registry / "als-v1" / "manifest.json").read_text()
    assert json.loads(out)["name"] == "als-v1"


def test_show_takes_the_groups_options(invoke, registry: Path) -> None:
    out = ok(invoke(["models", "--registry", registry, "--json", "show", "pop"]))
    assert json.loads(out)["kind"] == "popular"


def test_show_of_an_unknown_model_lists_the_models(invoke, registry: Path) -> None:
    fails(
        invoke(["models", "show", "als-v9", "--registry", registry]),
        "Unknown model 'als-v9'. Available: als-v1, broken, pop.",
    )


def test_show_of_a_corrupt_model_says_to_retrain(invoke, registry: Path) -> None:
    fails(
        invoke(["models", "show", "broken", "--registry", registry]),
        f"Model 'broken' in {registry} is corrupt (manifest.json is missing); "
        "train it again with recsim train broken --force.",
    )


def test_show_of_an_invalid_name_states_the_rule(invoke, registry: Path) -> None:
    fails(
        invoke(["models", "show", "../etc", "--registry", registry]),
        "Invalid model name '../etc': use 1 to 64 lowercase letters, digits, '.', '_' or '-', "
        "starting with a letter or digit.",
    )


def test_show_in_an_empty_registry(invoke, tmp_path: Path) -> None:
    fails(
        invoke(["models", "show", "m", "--registry", tmp_path / "none"]),
        f"Unknown model 'm': {tmp_path / 'none'} holds no models; train one with recsim train m.",
    )


def test_show_of_an_unset_alias(invoke, registry: Path) -> None:
    fails(
        invoke(["models", "show", "candidate", "--registry", registry]),
        f"No model is marked 'candidate' in {registry}; give a model name "
        "(recsim models lists them).",
    )


@pytest.mark.parametrize("args", [["models", "--help"], ["models", "show", "--help"]])
def test_help(invoke, args: list[str]) -> None:
    out = ok(invoke(args))
    assert "Usage:" in out
    assert "--registry" in out
    assert "RECSIM_REGISTRY" in out
