"""A dataset on any file system Hadoop reaches (``hdfs://``, ``s3a://``, ``file://``...).

``recsim ingest --engine spark --data URL`` writes, and ``recsim evaluate`` /
``recsim abtest`` with ``--engine spark`` read, a dataset at a URL through
Spark's Hadoop ``FileSystem`` (py4j; nothing of the events passes through
Python). The layout is the local one (docs/data.md, "On disk"); what differs
is how the version is published, since a rename on an object store is a copy
and not atomic (docs/scale.md, "A dataset on HDFS or an object store"):

1. A lock file ``.lock`` is created if absent (atomic on HDFS and local file
   systems; on an object store it is only a check, so run one ingest at a time).
2. Spark writes the event parts into ``.staging-vN/``; they are moved into
   ``vN/``. Files written on the driver (the catalogue, its rejects) are
   written to a local temporary folder and uploaded into ``vN/``.
3. Only then is ``manifest.json`` written, in one step: on an object store
   one PUT (an object is visible whole or not at all), elsewhere a temporary
   file renamed over it. Readers follow the manifest, so until that step they
   see version N-1, and after it version N.
4. Version N-1 is removed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from recsim_cli.dataset import (
    ITEMS_SCHEMA,
    MANIFEST_NAME,
    REJECTED_SCHEMA,
    Dataset,
    Manifest,
    manifest_from_json,
    version_dir_name,
)
from recsim_cli.errors import DatasetError, UserError
from recsim_cli.ingest.store import (
    LOCK_NAME,
    STAGING_PREFIX,
    foreign_entry,
    is_leftover,
    not_a_dataset,
    part_index,
)
from recsim_cli.io import dumps_json
from recsim_cli.spark.ingest_source import spark_error
from recsim_cli.spark.session import SparkConfig, spark_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

OBJECT_STORES: Final = frozenset(
    {"s3a", "s3", "s3n", "gs", "abfs", "abfss", "wasb", "wasbs", "oss"}
)
"""Schemes whose rename is a copy: the manifest is written in one PUT instead of renamed."""


class HadoopFS:
    """The Hadoop FileSystem of one URL, with the few operations a dataset needs."""

    def __init__(self, spark: SparkSession, url: str) -> None:
        jvm = spark._jvm
        if jvm is None:
            raise UserError(
                f"--data {url}: a dataset at a URL needs a classic (non-Connect) Spark."
            )
        self._jvm: Any = jvm
        self._conf = spark._jsc.hadoopConfiguration()
        try:
            self._fs = jvm.org.apache.hadoop.fs.Path(url).getFileSystem(self._conf)
        except Exception as exc:
            raise DatasetError(
                f"--data {url}: Spark has no file system for it ({_java_error(exc)}); "
                "check the URL and the Hadoop connector (e.g. hadoop-aws for s3a://)."
            ) from None
        self.scheme = str(self._fs.getScheme())

    def _path(self, url: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(url)

    def exists(self, url: str) -> bool:
        return bool(self._fs.exists(self._path(url)))

    def is_dir(self, url: str) -> bool:
        return bool(self.exists(url) and self._fs.getFileStatus(self._path(url)).isDirectory())

    def names(self, url: str) -> list[str]:
        """The names of the entries of a folder, sorted (none if it does not exist)."""
        if not self.exists(url):
            return []
        return sorted(str(s.getPath().getName()) for s in self._fs.listStatus(self._path(url)))

    def mkdirs(self, url: str) -> None:
        self._fs.mkdirs(self._path(url))

    def delete(self, url: str) -> None:
        """Remove a file or a folder with everything in it (nothing if absent)."""
        self._fs.delete(self._path(url), True)

    def read_bytes(self, url: str) -> bytes:
        stream = self._fs.open(self._path(url))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def write_bytes(self, url: str, data: bytes, *, overwrite: bool = True) -> None:
        """Write a file whole; with ``overwrite=False`` fail if it exists (``FileExistsError``)."""
        try:
            stream = self._fs.create(self._path(url), overwrite)
        except Exception as exc:
            if "FileAlreadyExists" in str(exc) or "already exists" in str(exc):
                raise FileExistsError(url) from None
            raise
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()

    def replace(self, source: str, target: str) -> None:
        """Rename ``source`` over ``target`` in one step (HDFS and local: atomic)."""
        jvm = self._jvm
        context = jvm.org.apache.hadoop.fs.FileContext.getFileContext(
            self._path(target).toUri(), self._conf
        )
        options = self._gateway_array(jvm.org.apache.hadoop.fs.Options.Rename, 1)
        options[0] = jvm.org.apache.hadoop.fs.Options.Rename.OVERWRITE
        context.rename(self._path(source), self._path(target), options)

    def rename(self, source: str, target: str) -> None:
        """Move a file into a folder that exists (a copy on object stores)."""
        if not self._fs.rename(self._path(source), self._path(target)):
            raise DatasetError(f"cannot move {source} to {target}; check the dataset's storage.")

    def copy(self, source: str, target: str) -> None:
        util = self._jvm.org.apache.hadoop.fs.FileUtil
        if not util.copy(
            self._fs, self._path(source), self._fs, self._path(target), False, self._conf
        ):
            raise DatasetError(f"cannot copy {source} to {target}; check the dataset's storage.")

    def upload(self, local: Path, target: str) -> None:
        self._fs.copyFromLocalFile(
            False, True, self._path(local.resolve().as_uri()), self._path(target)
        )

    def _gateway_array(self, java_class: Any, size: int) -> Any:
        from pyspark import SparkContext

        gateway = SparkContext._gateway
        if gateway is None:  # pragma: no cover - a classic session always has one
            raise UserError("Spark's py4j gateway is not running.")
        return gateway.new_array(java_class, size)


def _java_error(exc: BaseException) -> str:
    """The message of the Java exception behind a py4j error (else the error's first line)."""
    java = getattr(exc, "java_exception", None)
    if java is None:
        return spark_error(exc)
    return spark_error(RuntimeError(str(java.toString())))


def join(root: str, *parts: str) -> str:
    """``root/part/...`` for a URL (no doubled slashes)."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


def parent(url: str) -> str:
    """The folder holding ``url``."""
    return url.rsplit("/", 1)[0]


class RemoteDataset(Dataset):
    """A dataset at a URL: its files are read by Spark; the small tables are fetched whole."""

    def __init__(self, root: str, manifest: Manifest, fs: HadoopFS) -> None:
        super().__init__(root, manifest)
        self.fs = fs

    def uri(self, relative: str) -> str:
        return join(str(self.root), relative)

    def events(self) -> pl.LazyFrame:
        raise DatasetError(
            f"{self.root} is a dataset at a URL: only --engine spark reads its events; "
            "copy it to a local folder to train or run a registry model on it."
        )

    def items(self) -> pl.LazyFrame:
        return self._fetch(
            (self.manifest.items_file,) if self.manifest.items_file else (), ITEMS_SCHEMA
        )

    def rejected(self) -> pl.LazyFrame:
        return self._fetch(self.manifest.rejected_files, REJECTED_SCHEMA)

    def _fetch(self, files: tuple[str, ...] | list[str], schema: pl.Schema) -> pl.LazyFrame:
        frames = [pl.read_parquet(io.BytesIO(self.fs.read_bytes(self.uri(f)))) for f in files]
        if not frames:
            return pl.LazyFrame(schema=schema)
        return pl.concat(frames).lazy().cast(dict(schema))  # type: ignore[arg-type]


def open_remote(root: str, config: SparkConfig | None) -> RemoteDataset:
    """Open the dataset at the URL ``root``; raise `DatasetError` if there is none."""
    return _open_at(HadoopFS(spark_session(config), root), root)


def _open_at(fs: HadoopFS, root: str) -> RemoteDataset:
    """The dataset at ``root`` on ``fs``; `DatasetError` if there is none or a file is missing."""
    manifest = read_remote_manifest(fs, root)
    if manifest is None:
        raise DatasetError(
            f"{root} is not a dataset (no {MANIFEST_NAME}); create it with "
            f"recsim ingest LOGS --engine spark --data {root}."
        )
    files = (*manifest.events_files, *manifest.rejected_files, manifest.items_file)
    missing = [f for f in files if f is not None and not fs.exists(join(root, f))]
    if missing:
        raise DatasetError(
            f"{root} is incomplete: {missing[0]} is missing; re-create it with "
            "recsim ingest --replace."
        )
    return RemoteDataset(root, manifest, fs)


def read_remote_manifest(fs: HadoopFS, root: str) -> Manifest | None:
    """The manifest at ``root``, or None if there is none yet."""
    url = join(root, MANIFEST_NAME)
    if not fs.exists(url):
        return None
    try:
        data = json.loads(fs.read_bytes(url).decode("utf-8"))
    except ValueError as exc:
        raise DatasetError(
            f"{url} cannot be read ({exc}); re-create the dataset with recsim ingest --replace."
        ) from exc
    return manifest_from_json(data, url)


class RemoteStore:
    """The dataset folder at a URL, as `recsim_cli.ingest.pipeline` writes it."""

    def __init__(self, root: str, config: SparkConfig | None) -> None:
        self.root = root.rstrip("/")
        self.fs = HadoopFS(spark_session(config), self.root)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the dataset's lock file; refuse if another ingest holds it."""
        created = not self.fs.exists(self.root)
        self.fs.mkdirs(self.root)
        lock = join(self.root, LOCK_NAME)
        try:
            self.fs.write_bytes(lock, f"{os.getpid()}\n".encode(), overwrite=False)
        except FileExistsError:
            raise DatasetError(
                f"{self.root} is being written by another recsim ingest (it holds {lock}); wait "
                "for it to finish, or delete that file if no ingest is running."
            ) from None
        try:
            yield
        except BaseException:
            self.fs.delete(lock)
            if created and not self.fs.exists(join(self.root, MANIFEST_NAME)):
                self.fs.delete(self.root)
            raise
        self.fs.delete(lock)

    def read_manifest(self) -> Manifest | None:
        return read_remote_manifest(self.fs, self.root)

    def open(self) -> RemoteDataset:
        return _open_at(self.fs, self.root)

    def check_folder(self) -> None:
        """Refuse a file, or a folder holding other things than a dataset."""
        if self.fs.exists(self.root) and not self.fs.is_dir(self.root):
            raise DatasetError(
                f"{self.root} is a file, not a dataset folder; choose another --data."
            )
        names = self.fs.names(self.root)
        if MANIFEST_NAME in names:
            return
        found = foreign_entry(names)
        if found is not None:
            raise not_a_dataset(self.root, found)

    def remove_leftovers(self, current: Manifest | None) -> list[str]:
        """Remove versions the manifest does not name, staging folders and temporary manifests."""
        removed = [name for name in self.fs.names(self.root) if is_leftover(name, current)]
        for name in removed:
            self.fs.delete(join(self.root, name))
        return removed

    def writer(self, current: Manifest | None) -> RemoteVersionWriter:
        return RemoteVersionWriter(self, current)


class RemoteVersionWriter:
    """Builds version N+1 of a dataset at a URL; `commit` publishes it (module docstring)."""

    def __init__(self, store: RemoteStore, current: Manifest | None) -> None:
        self.store = store
        self.fs = store.fs
        self.root = store.root
        self.current = current
        self.version = (current.version if current else 0) + 1
        self.dir = join(self.root, version_dir_name(self.version))
        self.staging_url = join(self.root, f"{STAGING_PREFIX}{version_dir_name(self.version)}")
        self.committed = False
        self._local = Path(tempfile.mkdtemp(prefix="recsim-version-"))
        self.staging = self._local / "staging"  # driver-side scratch space

    def __enter__(self) -> RemoteVersionWriter:
        self.fs.mkdirs(self.staging_url)
        self.fs.mkdirs(self.dir)
        self.staging.mkdir()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        shutil.rmtree(self._local, ignore_errors=True)
        self.fs.delete(self.staging_url)
        if not self.committed:
            self.fs.delete(self.dir)

    def stored(self, base: Manifest) -> Dataset:
        """The current version, to read from while building the next."""
        return RemoteDataset(self.root, base, self.fs)

    def path(self, relative: str) -> Path:
        """A local file that `commit` uploads as ``relative`` of the new version."""
        target = self._local / version_dir_name(self.version) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def relative(self, path: Path) -> str:
        return path.relative_to(self._local).as_posix()

    def carry(self, relative: str) -> str:
        """Copy a file of the current version into the new one."""
        if self.current is None:
            raise ValueError("there is no current version to carry files from")
        name = Path(relative).relative_to(self.current.version_dir).as_posix()
        target = join(self.dir, name)
        self.fs.mkdirs(parent(target))
        self.fs.copy(join(self.root, relative), target)
        return f"{version_dir_name(self.version)}/{name}"

    def staging_uri(self, name: str) -> str:
        """Where Spark writes an intermediate output (beside the dataset, seen by executors)."""
        return join(self.staging_url, name)

    def adopt_parts(self, name: str, pattern: str) -> tuple[str, ...]:
        """Move the part files Spark wrote to `staging_uri` ``name`` into the version.

        Part ``part-00003-...parquet`` becomes ``pattern.format(3)``.
        """
        moved = []
        for file in self.fs.names(self.staging_uri(name)):
            index = part_index(file)
            if index is None:
                continue  # _SUCCESS and checksum files
            relative = pattern.format(index)
            target = join(self.dir, relative)
            self.fs.mkdirs(parent(target))
            self.fs.rename(join(self.staging_uri(name), file), target)
            moved.append(f"{version_dir_name(self.version)}/{relative}")
        return tuple(moved)

    def commit(self, manifest: Manifest) -> None:
        """Upload the driver's files, then write the manifest, then drop the old version."""
        if manifest.version != self.version:
            raise ValueError(f"manifest names version {manifest.version}, not {self.version}")
        local_dir = self._local / version_dir_name(self.version)
        if local_dir.is_dir():
            for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
                target = join(self.dir, path.relative_to(local_dir).as_posix())
                self.fs.mkdirs(parent(target))
                self.fs.upload(path, target)
        data = dumps_json(manifest.to_dict()).encode("utf-8")
        url = join(self.root, MANIFEST_NAME)
        if self.fs.scheme in OBJECT_STORES:
            self.fs.write_bytes(url, data)  # one PUT: the object appears whole
        else:
            temporary = join(self.root, f".{MANIFEST_NAME}.{os.getpid()}.tmp")
            self.fs.write_bytes(temporary, data)
            self.fs.replace(temporary, url)
        self.committed = True
        if self.current is not None:
            self.fs.delete(join(self.root, self.current.version_dir))
