"""Write a new dataset version beside the current one and swap it in atomically.

The protocol (docs/data.md, "On disk"):

1. Take an exclusive lock on ``DIR/.lock`` so two ingests never interleave.
2. Remove leftovers of crashed runs: version folders the manifest does not
   name, staging folders, temporary manifests.
3. Write every file of version N+1 into ``DIR/v<N+1>/`` (invisible to readers:
   no manifest names it) and fsync them.
4. Write the new manifest to a temporary file and ``os.replace`` it over
   ``manifest.json``: the one atomic step. Before it, readers see version N;
   after it, N+1.
5. Remove version N.

A crash or Ctrl-C before step 4 leaves version N current and intact; the
half-written folder is removed at once, or by step 2 of the next run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Protocol

from recsim_cli.dataset import (
    MANIFEST_NAME,
    Dataset,
    Manifest,
    parse_version_dir,
    version_dir_name,
)
from recsim_cli.errors import DatasetError
from recsim_cli.io import fsync_tree, write_json_atomic

LOCK_NAME: Final = ".lock"
STAGING_PREFIX: Final = ".staging-"
_PART: Final = re.compile(r"^part-(\d+)-.*\.parquet$")


def part_index(name: str) -> int | None:
    """The index of a Spark part file (``part-00003-<id>.parquet`` is 3); None for other files."""
    match = _PART.match(name)
    return None if match is None else int(match.group(1))


class VersionTarget(Protocol):
    """What builds a version's files: `VersionWriter` here, or one for a dataset at a URL."""

    version: int
    staging: Path  # local scratch space

    def stored(self, base: Manifest) -> Dataset: ...
    def path(self, relative: str) -> Path: ...
    def relative(self, path: Path) -> str: ...
    def carry(self, relative: str) -> str: ...
    def staging_uri(self, name: str) -> str: ...
    def adopt_parts(self, name: str, pattern: str) -> tuple[str, ...]: ...
    def commit(self, manifest: Manifest) -> None: ...


class VersionWriter:
    """Context manager that builds the next version of a dataset and commits it.

    Use `path` to write files of the new version and `staging` for temporary
    files; call `commit` with the manifest naming them. Leaving the context
    without committing removes everything written.
    """

    def __init__(self, root: Path, current: Manifest | None) -> None:
        self.root = root
        self.current = current
        self.version = (current.version if current else 0) + 1
        self.dir = root / version_dir_name(self.version)
        self.staging = root / f"{STAGING_PREFIX}{version_dir_name(self.version)}"
        self.committed = False

    def __enter__(self) -> VersionWriter:
        self.staging.mkdir(parents=True)
        self.dir.mkdir()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        if not self.committed:
            shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, relative: str) -> Path:
        """Return the absolute path of a file of the new version, creating its folder."""
        target = self.dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def relative(self, path: Path) -> str:
        """Return ``path`` relative to the dataset folder, as the manifest records it."""
        return path.relative_to(self.root).as_posix()

    def stored(self, base: Manifest) -> Dataset:
        """The current version, to read from while building the next."""
        return Dataset(self.root, base)

    def staging_uri(self, name: str) -> str:
        """Where Spark writes an intermediate output ``name`` (a file URI in the staging folder)."""
        return (self.staging / name).resolve().as_uri()

    def adopt_parts(self, name: str, pattern: str) -> tuple[str, ...]:
        """Move the part files Spark wrote to `staging_uri` ``name`` into the version.

        Part ``part-00003-...parquet`` becomes ``pattern.format(3)``.
        """
        moved = []
        for path in sorted((self.staging / name).iterdir()):
            index = part_index(path.name)
            if index is None:
                continue  # _SUCCESS and checksum files
            target = self.path(pattern.format(index))
            path.replace(target)
            moved.append(self.relative(target))
        return tuple(moved)

    def carry(self, relative: str) -> str:
        """Bring a file of the current version into the new one (hard link, else copy)."""
        if self.current is None:
            raise ValueError("there is no current version to carry files from")
        source = self.root / relative
        name = Path(relative).relative_to(self.current.version_dir)
        target = self.path(name.as_posix())
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return self.relative(target)

    def commit(self, manifest: Manifest) -> None:
        """Make ``manifest`` (naming this version) current, then remove the old version."""
        if manifest.version != self.version:
            raise ValueError(f"manifest names version {manifest.version}, not {self.version}")
        fsync_tree(self.dir)
        write_json_atomic(self.root / MANIFEST_NAME, manifest.to_dict())
        self.committed = True
        if self.current is not None:
            shutil.rmtree(self.root / self.current.version_dir, ignore_errors=True)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the dataset folder ``root`` (created if needed).

    If the folder is created here and the work fails before a manifest is
    written, the folder is removed again: a failed first ingest leaves nothing.
    """
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    try:
        with (root / LOCK_NAME).open("a+b") as handle:
            _lock(handle, root)
            yield
    except BaseException:
        if created and not (root / MANIFEST_NAME).exists():
            shutil.rmtree(root, ignore_errors=True)
        raise


def _lock(handle: IO[bytes], root: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover - no flock; ingest runs unlocked
        return
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise DatasetError(
            f"{root} is being written by another recsim ingest; wait for it to finish."
        ) from exc


def remove_leftovers(root: Path, current: Manifest | None) -> list[str]:
    """Remove what crashed runs left in ``root``; return the names removed.

    Call only while holding `locked`. Leftovers are version folders the
    manifest does not name, staging folders and temporary manifests.
    """
    removed = []
    for entry in sorted(root.iterdir()):
        if is_leftover(entry.name, current):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def is_leftover(name: str, current: Manifest | None) -> bool:
    """Whether an entry of a dataset folder is left over from a crashed run (`remove_leftovers`)."""
    stray_version = parse_version_dir(name) is not None and (
        current is None or name != current.version_dir
    )
    stray_temp = name.startswith(STAGING_PREFIX) or (
        name.startswith(f".{MANIFEST_NAME}.") and name.endswith(".tmp")
    )
    return stray_version or stray_temp


def foreign_entry(names: Iterable[str]) -> str | None:
    """The first of ``names`` (sorted) that no dataset folder holds, or None.

    A folder without a manifest may hold only what an ingest writes: version
    folders, the lock, staging folders and temporary manifests.
    """
    ours = (LOCK_NAME, STAGING_PREFIX, f".{MANIFEST_NAME}.")
    foreign = sorted(n for n in names if parse_version_dir(n) is None and not n.startswith(ours))
    return foreign[0] if foreign else None


def not_a_dataset(root: Path | str, found: str) -> DatasetError:
    """The error for writing a dataset into a folder that holds other things."""
    return DatasetError(
        f"{root} is not empty and holds no dataset (found {found}); "
        "choose an empty or new --data folder."
    )
