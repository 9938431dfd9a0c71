"""The model registry: one folder per trained model, replaced atomically.

A registry is a folder (``--registry``, default ``./recsim-models``)::

    recsim-models/
      .lock                 held (flock) by every writer, so writes never interleave
      aliases.json          {"production": "als-v2"}; optional
      history.json          every promotion and rollback of an alias, append-only; optional
      als-v2/
        manifest.json       the trainer's keys plus format_version, recsim_version,
                            name and created, stamped by the registry
        candidates/ ...     whatever the trainer's ``build`` wrote; never a pickle
      .tmp-als-v3-1a2b3c4d/ a model being written
      .old-als-v2-5e6f7a8b/ a replaced model being removed

Model names match `MODEL_NAME` and start with a letter or digit, so they never
collide with the dot-folders, and never climb out of the registry. The alias
names (`ALIASES`) are reserved: a model may not be called ``production`` or
``candidate``, so ``open("production")`` means one thing only.

`Registry.write` builds the new model in a ``.tmp-`` folder; only when it is
complete does it rename an existing model aside (``.old-``), rename the new
one in and delete the old. A failed build removes its folder and leaves the
old model untouched. A crash between the two renames leaves the old model as
``.old-NAME-*``; the next write to the registry renames it back. Readers take
no lock: they see the old model or the new one.

`Registry.swap_alias` is the compare-and-swap that promotion needs: under one
hold of the lock it reads what the alias names, lets the caller check that
state (and refuse), points the alias and appends a record to the history.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import re
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final

from recsim_cli import __version__
from recsim_cli.errors import ConfigError, UnknownNameError, UserError
from recsim_cli.io import fsync_path, fsync_tree, write_json_atomic

__all__ = [
    "ALIASES",
    "FORMAT_VERSION",
    "HISTORY_FILE",
    "MODEL_NAME",
    "ModelEntry",
    "Registry",
    "model_fingerprint",
    "validate_name",
]

MODEL_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
FORMAT_VERSION: Final = 1
ALIASES: Final = ("production", "candidate")
MANIFEST_FILE: Final = "manifest.json"
ALIASES_FILE: Final = "aliases.json"
HISTORY_FILE: Final = "history.json"
HISTORY_FORMAT_VERSION: Final = 1
LOCK_FILE: Final = ".lock"
LOCK_TIMEOUT_S: Final = 60.0
STAMPED_KEYS: Final = ("format_version", "recsim_version", "name", "created")
"""Keys the registry writes into every manifest; they override the trainer's."""

_WORK_DIR: Final = re.compile(r"\.(?P<kind>tmp|old)-(?P<name>.+)-[0-9a-f]{8}")


def validate_name(name: str) -> str:
    """Return ``name`` if it may name a model; raise `ConfigError` saying the rule otherwise."""
    if name in ALIASES:
        raise ConfigError(
            f"'{name}' is an alias ({', '.join(ALIASES)}), not a model name; choose another name."
        )
    if MODEL_NAME.fullmatch(name) is None:
        raise ConfigError(
            f"Invalid model name {name!r}: use 1 to 64 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit."
        )
    return name


def _corrupt(name: str, root: Path, detail: str) -> UserError:
    return UserError(
        f"Model '{name}' in {root} is corrupt ({detail}); train it again with "
        f"recsim train {name} --force."
    )


@dataclass(frozen=True)
class ModelEntry:
    """A model folder of a registry and its manifest.

    `Registry.list` returns an entry with an empty manifest and ``problem`` set
    (the one-sentence error `Registry.open` would raise) for a model it cannot
    read; `Registry.open` never returns such an entry.
    """

    name: str
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def kind(self) -> str | None:
        """What the trainer built, e.g. ``als+lightgbm``."""
        return _text(self.manifest.get("kind"))

    @property
    def cutoff(self) -> str | None:
        """The ISO time the training data ends at."""
        return _text(self.manifest.get("cutoff"))

    @property
    def created(self) -> str | None:
        """When the registry wrote the model, ISO 8601 UTC."""
        return _text(self.manifest.get("created"))

    @property
    def dataset(self) -> dict[str, Any] | None:
        """The dataset the model was trained on: at least ``path`` and ``fingerprint``."""
        value = self.manifest.get("dataset")
        return value if isinstance(value, dict) else None

    @property
    def fingerprint(self) -> str:
        """SHA-256 over every file of the model folder (relative path and content digest).

        The manifest is one of the files and carries ``created``, so a model
        trained again under the same name, even to identical weights, gets a
        new fingerprint: a gate report about the old one does not promote it.
        """
        return model_fingerprint(self.path)

    def file(self, relpath: str) -> Path:
        """Return the path of a file or folder of the model; a missing one means corruption."""
        relative = PurePosixPath(relpath)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"{relpath!r} is not a path inside a model folder")
        path = self.path / relative
        if not path.exists():
            raise _corrupt(self.name, self.path.parent, f"{relpath} is missing")
        return path

    def to_dict(self) -> dict[str, Any]:
        """The entry as a listing shows it: the manifest's main facts, not all of it."""
        return {
            "name": self.name,
            "path": str(self.path),
            "kind": self.kind,
            "created": self.created,
            "cutoff": self.cutoff,
            "dataset": self.dataset,
            "fingerprint": None if self.problem is not None else self.fingerprint,
            "problem": self.problem,
        }


def model_fingerprint(folder: Path) -> str:
    """SHA-256 of a model folder: its files' POSIX relative paths and SHA-256s, sorted."""
    import hashlib

    from recsim_cli.io import sha256_file

    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        relative = path.relative_to(folder).as_posix()
        digest.update(f"{relative}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


class Registry:
    """A folder of trained models, written under a lock and read without one."""

    def __init__(self, root: Path | str, *, lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.root = Path(root)
        self.lock_timeout_s = lock_timeout_s

    # -- writing ---------------------------------------------------------------------

    def check_writable(self, name: str, *, force: bool = False) -> str:
        """Raise now if `write` would refuse ``name``, so a trainer fails before training."""
        validate_name(name)
        if not force and (self.root / name).exists():
            raise UserError(
                f"Model '{name}' already exists in {self.root}; pass --force to replace it."
            )
        return name

    def write(
        self,
        name: str,
        manifest: Mapping[str, Any],
        build: Callable[[Path], None],
        *,
        force: bool = False,
    ) -> ModelEntry:
        """Write model ``name``: ``build(folder)`` writes its files, then it replaces the old.

        The manifest is ``manifest`` plus the `STAMPED_KEYS`. Any exception in
        ``build`` (or Ctrl-C) removes what it wrote and leaves an existing model
        of that name as it was.
        """
        self.check_writable(name, force=force)
        with self._locked():
            self._recover()
            # Checked again under the lock: another writer may have won the race.
            self.check_writable(name, force=force)
            target = self.root / name
            work = self.root / f".tmp-{name}-{secrets.token_hex(4)}"
            old = self.root / f".old-{name}-{secrets.token_hex(4)}"
            work.mkdir()
            try:
                build(work)
                stamped = {
                    **manifest,
                    "format_version": FORMAT_VERSION,
                    "recsim_version": __version__,
                    "name": name,
                    "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                write_json_atomic(work / MANIFEST_FILE, stamped)
                fsync_tree(work)
                if target.exists():
                    target.rename(old)
                work.rename(target)
                fsync_path(self.root)
            except BaseException:
                if old.exists() and not target.exists():
                    old.rename(target)
                shutil.rmtree(work, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)
        return ModelEntry(name, target, self._read_manifest(name, target))

    def set_alias(self, alias: str, name: str) -> str:
        """Point ``alias`` at model ``name`` (or at the model another alias names); return it."""
        if alias not in ALIASES:
            raise UnknownNameError("alias", alias, ALIASES)
        target = self.open(name).name
        with self._locked():
            self._recover()
            aliases = self.aliases()
            aliases[alias] = target
            write_json_atomic(self.root / ALIASES_FILE, dict(sorted(aliases.items())))
        return target

    def swap_alias(
        self,
        alias: str,
        name: str,
        check: Callable[[str | None, ModelEntry], Mapping[str, Any]],
    ) -> dict[str, Any]:
        """Point ``alias`` at model ``name`` and append a history record, as one locked step.

        ``check(current, target)`` runs under the lock with the model name the
        alias holds now (None when unset) and the model ``name`` opens to (an
        alias resolved); it raises to refuse, or returns the record to append to
        ``history.json``. No other writer can move an alias, replace a model or
        append to the history between the check and the swap. The record is
        returned with its ``id``, its 1-based place in the history.
        """
        if alias not in ALIASES:
            raise UnknownNameError("alias", alias, ALIASES)
        with self._locked():
            self._recover()
            target = self.open(name)
            aliases = self.aliases()
            entries = self.history()
            record = {**check(aliases.get(alias), target), "id": len(entries) + 1}
            # The history first: a crash between the two writes leaves a record of a
            # promotion that did not happen, never an alias moved without a record.
            self._write_history([*entries, record])
            aliases[alias] = target.name
            write_json_atomic(self.root / ALIASES_FILE, dict(sorted(aliases.items())))
        return record

    # -- reading ---------------------------------------------------------------------

    def open(self, name_or_alias: str) -> ModelEntry:
        """Return the model a name or alias names, its manifest read and checked."""
        name = self.resolve(name_or_alias)
        path = self.root / name
        if not path.is_dir():
            if name != name_or_alias:
                raise UserError(
                    f"Alias '{name_or_alias}' in {self.root} names model '{name}', which does "
                    "not exist; point the alias at an existing model."
                )
            raise self._unknown(name)
        return ModelEntry(name, path, self._read_manifest(name, path))

    def list(self) -> builtins.list[ModelEntry]:
        """Every model, sorted by name; an unreadable one has ``problem`` set instead of failing."""
        entries = []
        for name in self.names():
            path = self.root / name
            try:
                entries.append(ModelEntry(name, path, self._read_manifest(name, path)))
            except UserError as exc:
                entries.append(ModelEntry(name, path, problem=str(exc)))
        return entries

    def names(self) -> builtins.list[str]:
        """The names of the model folders, sorted; none if the registry does not exist."""
        if not self._exists():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir() and entry.name not in ALIASES and MODEL_NAME.fullmatch(entry.name)
        )

    def aliases(self) -> dict[str, str]:
        """The aliases set, e.g. ``{"production": "als-v2"}``; empty if none is."""
        path = self.root / ALIASES_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise _corrupt_aliases(path, "not readable JSON") from exc
        if not isinstance(data, dict):
            raise _corrupt_aliases(path, "not a JSON object")
        for alias, target in data.items():
            if alias not in ALIASES:
                raise _corrupt_aliases(path, f"unknown alias {alias!r}")
            if not (isinstance(target, str) and MODEL_NAME.fullmatch(target)):
                raise _corrupt_aliases(path, f"alias '{alias}' names no valid model")
            if target in ALIASES:
                raise _corrupt_aliases(path, f"alias '{alias}' names another alias")
        return dict(sorted(data.items()))

    def history(self) -> builtins.list[dict[str, Any]]:
        """The records of ``history.json``, oldest first; empty if nothing was ever promoted."""
        path = self.root / HISTORY_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise _corrupt_history(path, "not readable JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
            raise _corrupt_history(path, "not an object with a list of entries")
        version = data.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise _corrupt_history(path, "no valid format_version")
        if version > HISTORY_FORMAT_VERSION:
            raise UserError(
                f"{path} has format version {version}, but recsim {__version__} reads only "
                f"version {HISTORY_FORMAT_VERSION}; upgrade recsim to use it."
            )
        entries: builtins.list[dict[str, Any]] = data["entries"]
        if not all(isinstance(entry, dict) for entry in entries):
            raise _corrupt_history(path, "an entry is not a JSON object")
        return entries

    def resolve(self, name_or_alias: str) -> str:
        """Return the model name an alias points at, or a valid model name itself."""
        if name_or_alias in ALIASES:
            target = self.aliases().get(name_or_alias)
            if target is None:
                raise UserError(
                    f"No model is marked '{name_or_alias}' in {self.root}; give a model name "
                    "(recsim models lists them)."
                )
            return target
        return validate_name(name_or_alias)

    # -- internals -------------------------------------------------------------------

    def _exists(self) -> bool:
        """Whether the registry folder exists; a file in its place is an error."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(
                f"{self.root} is a file, not a model registry; point --registry at a folder."
            )
        return self.root.is_dir()

    def _unknown(self, name: str) -> UnknownNameError:
        available = self.names()
        error = UnknownNameError("model", name, available)
        if not available:
            # "Available: ." would read badly; say what to do instead.
            error.args = (
                f"Unknown model '{name}': {self.root} holds no models; train one with "
                f"recsim train {name}.",
            )
        return error

    def _read_manifest(self, name: str, path: Path) -> dict[str, Any]:
        file = path / MANIFEST_FILE
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise _corrupt(name, self.root, f"{MANIFEST_FILE} is missing") from exc
        except (OSError, ValueError) as exc:
            raise _corrupt(name, self.root, f"{MANIFEST_FILE} is unreadable") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise _corrupt(name, self.root, f"{MANIFEST_FILE} is not valid JSON") from exc
        if not isinstance(data, dict):
            raise _corrupt(name, self.root, f"{MANIFEST_FILE} is not a JSON object")
        version = data.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise _corrupt(name, self.root, f"{MANIFEST_FILE} has no valid format_version")
        if version > FORMAT_VERSION:
            raise UserError(
                f"Model '{name}' in {self.root} has format version {version}, but recsim "
                f"{__version__} reads only version {FORMAT_VERSION}; upgrade recsim to use it."
            )
        missing = [key for key in STAMPED_KEYS if key not in data]
        if missing:
            raise _corrupt(name, self.root, f"{MANIFEST_FILE} lacks {', '.join(missing)}")
        return data

    def _write_history(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Replace ``history.json`` atomically; call only while holding the lock."""
        document = {"format_version": HISTORY_FORMAT_VERSION, "entries": list(entries)}
        write_json_atomic(self.root / HISTORY_FILE, document)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the registry's write lock (creating the registry), waiting up to the timeout."""
        self._exists()
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / LOCK_FILE).open("a+b") as handle:
            _lock(handle, self.root, self.lock_timeout_s)
            yield

    def _recover(self) -> None:
        """Clean up after crashed writers; call only while holding the lock.

        A ``.old-NAME-*`` folder whose NAME is missing is a model whose
        replacement never got in: rename it back. Every other work folder and
        temporary aliases or history file is removed.
        """
        for entry in sorted(self.root.iterdir()):
            match = _WORK_DIR.fullmatch(entry.name)
            if match is not None:
                home = self.root / match["name"]
                restorable = MODEL_NAME.fullmatch(match["name"]) and not home.exists()
                if match["kind"] == "old" and restorable and entry.is_dir():
                    entry.rename(home)
                else:
                    shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith((f".{ALIASES_FILE}.", f".{HISTORY_FILE}.")) and (
                entry.name.endswith(".tmp")
            ):
                entry.unlink(missing_ok=True)


def _corrupt_aliases(path: Path, detail: str) -> UserError:
    return UserError(f"{path} is corrupt ({detail}); delete it and set the aliases again.")


def _corrupt_history(path: Path, detail: str) -> UserError:
    return UserError(
        f"{path} is corrupt ({detail}); restore it from a backup, or move it aside to start "
        "a new history."
    )


def _lock(handle: IO[bytes], root: Path, timeout_s: float) -> None:
    if sys.platform == "win32":  # pragma: no cover - no flock; writes run unlocked
        return
    import fcntl

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            if time.monotonic() >= deadline:
                raise UserError(
                    f"{root} is being written by another recsim process; try again when it "
                    "has finished."
                ) from exc
            time.sleep(0.05)
        else:
            return
