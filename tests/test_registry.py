"""The model registry: names, atomic writes, manifests, aliases and listing."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recsim_cli import __version__
from recsim_cli.errors import ConfigError, ExitCode, UnknownNameError, UserError
from recsim_cli.io import write_json_atomic
from recsim_cli.registry import (
    ALIASES,
    FORMAT_VERSION,
    MODEL_NAME,
    ModelEntry,
    Registry,
    validate_name,
)

MANIFEST = {
    "kind": "als+lightgbm",
    "cutoff": "2026-01-15T00:00:00Z",
    "dataset": {"path": "recsim-data", "fingerprint": "ab" * 32},
}


def build(payload: str = "v1"):
    """A build that writes a small model: a sub-folder and an array file."""

    def _build(folder: Path) -> None:
        (folder / "candidates").mkdir()
        (folder / "candidates" / "state.npz").write_text(payload)
        (folder / "ranker.txt").write_text(f"tree {payload}")

    return _build


def digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (the lock file aside) with its sha256."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def dot_entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".") and p.name != ".lock")


# --- names -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["als-v2", "a", "0", "bpr_2026.01", "a" * 64, "x..y"])
def test_valid_names_are_returned(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "..", ".", ".hidden", "a/b", "a/../b", "/abs", "A", "Als", "a" * 65, "-a", "_a", "a b",
     "a\n", "é", "a\\b"],
)  # fmt: skip
def test_invalid_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_name(name)
    assert info.value.exit_code == ExitCode.USAGE
    assert str(info.value) == (
        f"Invalid model name {name!r}: use 1 to 64 lowercase letters, digits, '.', '_' or '-', "
        "starting with a letter or digit."
    )


@pytest.mark.parametrize("alias", ALIASES)
def test_alias_names_are_reserved(alias: str) -> None:
    with pytest.raises(ConfigError, match=f"'{alias}' is an alias"):
        validate_name(alias)


@given(st.text(max_size=80) | st.from_regex(MODEL_NAME, fullmatch=True))
def test_any_accepted_name_matches_the_rule_and_stays_inside(name: str) -> None:
    root = PurePosixPath("/registry")
    try:
        validate_name(name)
    except ConfigError:
        return
    assert MODEL_NAME.fullmatch(name)
    assert name not in ALIASES
    assert PurePosixPath(os.path.normpath(root / name)).parent == root


@given(st.from_regex(MODEL_NAME, fullmatch=True).filter(lambda n: n not in ALIASES))
def test_every_name_of_the_rule_is_accepted(name: str) -> None:
    assert validate_name(name) == name


# --- write and open ----------------------------------------------------------


def test_write_then_open_round_trips(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    written = registry.write("als-v1", MANIFEST, build())
    opened = registry.open("als-v1")
    assert opened == written
    assert opened.path == tmp_path / "reg" / "als-v1"
    assert opened.problem is None
    assert opened.kind == "als+lightgbm"
    assert opened.cutoff == "2026-01-15T00:00:00Z"
    assert opened.dataset == MANIFEST["dataset"]
    assert opened.created is not None
    assert opened.created.endswith("Z")
    manifest = json.loads((opened.path / "manifest.json").read_text())
    assert manifest == {
        **MANIFEST,
        "format_version": FORMAT_VERSION,
        "recsim_version": __version__,
        "name": "als-v1",
        "created": opened.created,
    }
    assert opened.file("candidates/state.npz").read_text() == "v1"
    assert opened.file("candidates").is_dir()
    assert dot_entries(tmp_path / "reg") == []


def test_registry_keys_override_the_trainers(tmp_path: Path) -> None:
    entry = Registry(tmp_path).write("m", {"name": "other", "format_version": 99}, build())
    assert entry.manifest["name"] == "m"
    assert entry.manifest["format_version"] == FORMAT_VERSION


def test_absent_manifest_keys_read_as_none(tmp_path: Path) -> None:
    entry = Registry(tmp_path).write("m", {"dataset": "not a dict"}, build())
    assert (entry.kind, entry.cutoff, entry.dataset) == (None, None, None)


def test_existing_model_needs_force(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.write("m", MANIFEST, build("v1"))
    before = digest(tmp_path)
    with pytest.raises(UserError) as info:
        registry.write("m", MANIFEST, build("v2"))
    assert str(info.value) == f"Model 'm' already exists in {tmp_path}; pass --force to replace it."
    assert info.value.exit_code == ExitCode.USAGE
    with pytest.raises(UserError, match="already exists"):
        registry.check_writable("m")
    assert digest(tmp_path) == before


def test_force_replaces_the_model(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.write("m", {"kind": "old"}, build("v1"))
    (tmp_path / "m" / "stale.txt").write_text("from the old model")
    assert registry.check_writable("m", force=True) == "m"
    entry = registry.write("m", {"kind": "new"}, build("v2"), force=True)
    assert entry.kind == "new"
    assert entry.file("candidates/state.npz").read_text() == "v2"
    assert not (tmp_path / "m" / "stale.txt").exists()
    assert dot_entries(tmp_path) == []


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failed_build_leaves_the_old_model_and_no_work_folder(
    tmp_path: Path, error: BaseException
) -> None:
    registry = Registry(tmp_path)
    registry.write("m", MANIFEST, build("v1"))
    before = digest(tmp_path)

    def half_then_fail(folder: Path) -> None:
        build("v2")(folder)
        raise error

    with pytest.raises(type(error)):
        registry.write("m", MANIFEST, half_then_fail, force=True)
    assert digest(tmp_path) == before
    assert dot_entries(tmp_path) == []
    assert registry.open("m").file("candidates/state.npz").read_text() == "v1"


def test_a_failed_first_build_leaves_no_model(tmp_path: Path) -> None:
    registry = Registry(tmp_path)

    def fail(folder: Path) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        registry.write("m", MANIFEST, fail)
    assert registry.names() == []
    assert dot_entries(tmp_path) == []


def test_a_crash_between_the_renames_is_undone_by_the_next_write(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.write("m", {"kind": "old"}, build("v1"))
    # The crash: the old model renamed aside, the new one never renamed in.
    (tmp_path / "m").rename(tmp_path / ".old-m-0123abcd")
    (tmp_path / ".tmp-m-89abcdef").mkdir()
    # A crash after the swap: the old folder left behind beside the new model.
    registry.write("n", MANIFEST, build())
    (tmp_path / ".old-n-00000000").mkdir()
    write_json_atomic(tmp_path / ".old-n-00000000" / "manifest.json", {"stale": True})
    registry.write("other", MANIFEST, build())
    assert registry.open("m").kind == "old"
    assert registry.open("n").kind == "als+lightgbm"
    assert dot_entries(tmp_path) == []


def test_writers_are_serialised(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def slow(folder: Path) -> None:
        order.append("first starts")
        inside.set()
        assert release.wait(10)
        order.append("first ends")

    def fast(folder: Path) -> None:
        order.append("second")

    first = threading.Thread(target=registry.write, args=("a", {}, slow))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=Registry(tmp_path).write, args=("b", {}, fast))
    second.start()
    time.sleep(0.3)
    release.set()
    first.join(10)
    second.join(10)
    assert order == ["first starts", "first ends", "second"]
    assert registry.names() == ["a", "b"]


def test_a_writer_gives_up_on_a_held_lock(tmp_path: Path) -> None:
    holder = Registry(tmp_path)
    with holder._locked(), pytest.raises(UserError) as info:
        Registry(tmp_path, lock_timeout_s=0.1).write("m", {}, build())
    assert str(info.value) == (
        f"{tmp_path} is being written by another recsim process; try again when it has finished."
    )
    assert holder.names() == []


# --- reading: errors ---------------------------------------------------------


def test_missing_model_lists_the_available_ones(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.write("b", {}, build())
    registry.write("a", {}, build())
    with pytest.raises(UnknownNameError) as info:
        registry.open("c")
    assert str(info.value) == "Unknown model 'c'. Available: a, b."
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("exists", [True, False])
def test_missing_model_in_an_empty_registry_says_to_train(tmp_path: Path, exists: bool) -> None:
    root = tmp_path / "reg"
    if exists:
        root.mkdir()
    with pytest.raises(UnknownNameError) as info:
        Registry(root).open("m")
    assert str(info.value) == (
        f"Unknown model 'm': {root} holds no models; train one with recsim train m."
    )
    assert root.exists() == exists


def test_a_file_as_registry_is_a_user_error(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    root.write_text("")
    message = f"{root} is a file, not a model registry; point --registry at a folder."
    for call in (Registry(root).list, lambda: Registry(root).write("m", {}, build())):
        with pytest.raises(UserError) as info:
            call()
        assert str(info.value) == message


def test_a_newer_format_version_asks_to_upgrade(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    entry = registry.write("m", MANIFEST, build())
    write_json_atomic(entry.path / "manifest.json", {**entry.manifest, "format_version": 2})
    with pytest.raises(UserError) as info:
        registry.open("m")
    assert str(info.value) == (
        f"Model 'm' in {tmp_path} has format version 2, but recsim {__version__} reads only "
        "version 1; upgrade recsim to use it."
    )


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (None, "manifest.json is missing"),
        ("{", "manifest.json is not valid JSON"),
        ("\xff", "manifest.json is not valid JSON"),
        ("[1, 2]", "manifest.json is not a JSON object"),
        ('{"name": "m"}', "manifest.json has no valid format_version"),
        ('{"format_version": "1"}', "manifest.json has no valid format_version"),
        ('{"format_version": true}', "manifest.json has no valid format_version"),
        ('{"format_version": 0}', "manifest.json has no valid format_version"),
        ('{"format_version": 1, "name": "m"}', "manifest.json lacks recsim_version, created"),
    ],
)
def test_a_corrupt_manifest_says_to_retrain(
    tmp_path: Path, content: str | None, detail: str
) -> None:
    registry = Registry(tmp_path)
    entry = registry.write("m", MANIFEST, build())
    manifest = entry.path / "manifest.json"
    if content is None:
        manifest.unlink()
    else:
        manifest.write_text(content, encoding="utf-8")
    expected = (
        f"Model 'm' in {tmp_path} is corrupt ({detail}); "
        "train it again with recsim train m --force."
    )
    with pytest.raises(UserError) as info:
        registry.open("m")
    assert str(info.value) == expected
    [listed] = registry.list()
    assert listed == ModelEntry("m", entry.path, {}, problem=expected)


def test_undecodable_manifest_bytes_are_corruption(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    entry = registry.write("m", MANIFEST, build())
    (entry.path / "manifest.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(UserError, match=r"corrupt \(manifest.json is unreadable\)"):
        registry.open("m")


def test_a_missing_model_file_is_corruption(tmp_path: Path) -> None:
    entry = Registry(tmp_path).write("m", MANIFEST, build())
    with pytest.raises(UserError) as info:
        entry.file("ranker/model.txt")
    assert str(info.value) == (
        f"Model 'm' in {tmp_path} is corrupt (ranker/model.txt is missing); "
        "train it again with recsim train m --force."
    )
    with pytest.raises(ValueError):
        entry.file("../other/manifest.json")


# --- listing -----------------------------------------------------------------


def test_list_is_sorted_and_skips_work_folders_and_strays(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.list() == []
    registry.write("b", {"kind": "pop"}, build())
    registry.write("a", MANIFEST, build())
    registry.set_alias("production", "a")
    (tmp_path / ".tmp-c-0123abcd").mkdir()
    (tmp_path / ".old-a-0123abcd").mkdir()
    (tmp_path / "Upper").mkdir()
    (tmp_path / "production").mkdir()
    (tmp_path / "notes.txt").write_text("")
    assert [e.name for e in registry.list()] == ["a", "b"]
    assert [e.kind for e in registry.list()] == ["als+lightgbm", "pop"]
    assert registry.list()[0].to_dict() == {
        "name": "a",
        "path": str(tmp_path / "a"),
        "kind": "als+lightgbm",
        "created": registry.open("a").created,
        "cutoff": "2026-01-15T00:00:00Z",
        "dataset": MANIFEST["dataset"],
        "fingerprint": registry.open("a").fingerprint,
        "problem": None,
    }


def test_fingerprint_pins_the_files_and_changes_on_every_retrain(tmp_path: Path) -> None:
    import hashlib

    registry = Registry(tmp_path)
    first = registry.write("a", MANIFEST, build())
    again = registry.open("a")
    assert first.fingerprint == again.fingerprint
    # An independent computation over (relative path, file SHA-256), sorted.
    lines = [
        f"{p.relative_to(first.path).as_posix()}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n"
        for p in sorted(q for q in first.path.rglob("*") if q.is_file())
    ]
    assert first.fingerprint == hashlib.sha256("".join(lines).encode()).hexdigest()
    # Retrained under the same name (same files): the manifest's `created` differs.
    import time

    time.sleep(1.1)
    before = first.fingerprint
    retrained = registry.write("a", MANIFEST, build(), force=True)
    assert retrained.fingerprint != before


def test_list_of_a_missing_registry_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    assert Registry(tmp_path / "none").list() == []
    assert not (tmp_path / "none").exists()


# --- aliases -----------------------------------------------------------------


def test_alias_set_resolve_and_open(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.aliases() == {}
    registry.write("als-v1", MANIFEST, build())
    registry.write("als-v2", MANIFEST, build())
    assert registry.set_alias("production", "als-v1") == "als-v1"
    assert registry.set_alias("candidate", "als-v2") == "als-v2"
    assert registry.aliases() == {"candidate": "als-v2", "production": "als-v1"}
    assert registry.resolve("production") == "als-v1"
    assert registry.resolve("als-v2") == "als-v2"
    assert registry.open("production").name == "als-v1"
    # Promoting the candidate: the alias takes the model the other alias names.
    assert registry.set_alias("production", "candidate") == "als-v2"
    assert json.loads((tmp_path / "aliases.json").read_text()) == {
        "candidate": "als-v2",
        "production": "als-v2",
    }
    # Replacing a model keeps the aliases that name it.
    registry.write("als-v2", {"kind": "new"}, build(), force=True)
    assert registry.open("production").kind == "new"


def test_set_alias_refuses_unknown_aliases_and_models(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.write("m", {}, build())
    with pytest.raises(UnknownNameError) as info:
        registry.set_alias("staging", "m")
    assert str(info.value) == "Unknown alias 'staging'. Available: candidate, production."
    with pytest.raises(UnknownNameError) as unknown:
        registry.set_alias("production", "x")
    assert str(unknown.value) == "Unknown model 'x'. Available: m."
    with pytest.raises(UserError, match="No model is marked 'candidate'"):
        registry.set_alias("production", "candidate")
    assert not (tmp_path / "aliases.json").exists()


def test_an_unset_alias_says_so(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        Registry(tmp_path).open("production")
    assert str(info.value) == (
        f"No model is marked 'production' in {tmp_path}; give a model name "
        "(recsim models lists them)."
    )


def test_an_alias_to_a_vanished_model_says_so(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "aliases.json", {"production": "gone"})
    with pytest.raises(UserError) as info:
        Registry(tmp_path).open("production")
    assert str(info.value) == (
        f"Alias 'production' in {tmp_path} names model 'gone', which does not exist; "
        "point the alias at an existing model."
    )


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("{", "not readable JSON"),
        ('["production"]', "not a JSON object"),
        ('{"staging": "m"}', "unknown alias 'staging'"),
        ('{"production": "../m"}', "alias 'production' names no valid model"),
        ('{"production": 3}', "alias 'production' names no valid model"),
        ('{"production": "candidate"}', "alias 'production' names another alias"),
    ],
)
def test_a_corrupt_aliases_file_is_a_user_error(tmp_path: Path, content: str, detail: str) -> None:
    path = tmp_path / "aliases.json"
    path.write_text(content)
    with pytest.raises(UserError) as info:
        Registry(tmp_path).aliases()
    assert str(info.value) == f"{path} is corrupt ({detail}); delete it and set the aliases again."
