"""Writing files atomically and deterministically.

Every file recsim writes goes to a temporary file in the same folder first and
is then renamed over the target with ``os.replace``, which is atomic on POSIX:
a crash leaves either the old file or the new one, never half of either.
Outputs are byte-identical for identical inputs: JSON with sorted keys, gzip
with mtime 0 and no file name in its header.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import polars as pl

_CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``.

    On any exception (including KeyboardInterrupt) the temporary file is removed
    and ``target`` is left exactly as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 & ~umask).
        tmp.chmod(0o666 & ~_umask())
        yield tmp
        _fsync_file(tmp)
        tmp.replace(target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` (and itself) to disk, deepest first.

    Called before a freshly written folder is renamed into place or named by a
    manifest, so a crash right after cannot expose files that never reached disk.
    """
    for path in sorted(folder.rglob("*"), reverse=True):
        fsync_path(path)
    fsync_path(folder)


def fsync_path(path: Path) -> None:
    """Flush one file or folder (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(target: Path | str, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def dumps_json(obj: Any) -> str:
    """Serialise ``obj`` deterministically: sorted keys, two-space indent, final newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def write_json_atomic(target: Path | str, obj: Any) -> None:
    """Write ``obj`` as deterministic JSON to ``target`` atomically."""
    write_bytes_atomic(target, dumps_json(obj).encode("utf-8"))


def gzip_bytes(data: bytes) -> bytes:
    """Compress ``data`` with gzip, mtime 0 and no file name, so output is reproducible."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def write_csv_gz_atomic(frame: pl.DataFrame, target: Path | str) -> None:
    """Write ``frame`` as gzipped CSV, reproducibly (mtime 0) and atomically.

    The CSV is streamed through the compressor so the whole text never sits in
    memory twice.
    """
    with (
        atomic_path(target) as tmp,
        tmp.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz,
    ):
        frame.write_csv(cast(IO[bytes], gz))


def write_parquet_atomic(frame: pl.DataFrame, target: Path | str) -> None:
    """Write ``frame`` as Parquet (zstd, statistics on) atomically."""
    with atomic_path(target) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True)


def sha256_file(path: Path | str) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks.

    A folder of Parquet parts (a partitioned table) is hashed as the SHA-256 of
    its parts' relative paths and digests, one ``<sha256>  <path>`` line each, in
    path order: the same parts give the same digest wherever the folder lies.
    """
    path = Path(path)
    if path.is_dir():
        from recsim_cli.readers import parquet_parts

        lines = "".join(
            f"{sha256_file(part)}  {part.relative_to(path).as_posix()}\n"
            for part in parquet_parts(path)
        )
        return hashlib.sha256(lines.encode("utf-8")).hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
