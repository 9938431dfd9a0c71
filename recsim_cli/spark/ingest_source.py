"""Open a log for ``recsim ingest --engine spark``: a local file, or any URL Spark reads.

A local file is opened exactly as the polars engine opens it (`scan_table`:
format by content, the same column checks and messages), so both engines
refuse the same files with the same sentence. A URL (``s3a://``,
``hdfs://``, ``file://``...) is opened through Spark and the Hadoop
FileSystem API: the format is decided by the file name (Parquet, JSON lines
or delimited text, gzip by a ``.gz`` suffix, as Spark decides it), the
separator by the header line, the sha256 by streaming the file in the JVM.

Nothing here imports pyspark at module level: `build` imports `SparkSource`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import polars as pl

from recsim_cli.errors import InputFileError, UserError
from recsim_cli.locations import is_url
from recsim_cli.readers import FileFormat, SourceTable, contract_names, first_line, scan_table
from recsim_cli.spark.session import SparkConfig, spark_session

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType

_SEPARATORS: Final = ("\t", ",", ";", "|")


@dataclass(frozen=True)
class SparkSource:
    """A user's log as Spark reads it: where, in which format, and which columns.

    ``schema`` holds the contract columns the file provides (after ``--map``)
    with the types polars gives them (all strings for text), so type checks
    and parsing rules are decided exactly as on the polars engine;
    ``positions`` are those columns' places among the file's columns.
    """

    path: str
    format: FileFormat
    found_columns: tuple[str, ...]
    unknown_columns: tuple[str, ...]
    schema: pl.Schema
    positions: Mapping[str, int]
    estimated_rows: int
    config: SparkConfig = field(default_factory=SparkConfig)

    @property
    def name(self) -> str:
        """The file name, as recorded in the manifest and in rejected rows."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def columns(self) -> tuple[str, ...]:
        """The contract columns the file provides (after mapping)."""
        return tuple(self.schema.names())

    @property
    def local(self) -> bool:
        """Whether the file is a local path (not a URL)."""
        return not is_url(self.path)


def open_source(
    path: str | Path,
    *,
    known: Sequence[str],
    required: Sequence[str],
    column_map: Mapping[str, str],
    config: SparkConfig,
) -> SparkSource:
    """Open ``path`` for Spark with the contract's column names (see `scan_table`)."""
    if not is_url(path):
        source = scan_table(Path(path), known=known, required=required, column_map=column_map)
        return _from_local(source, column_map, config)
    url = str(path)
    spark = spark_session(config)
    _check_exists(spark, url)
    fmt = _format_from_name(spark, url)
    frame = read_raw(spark, url, fmt)
    found = tuple(frame.columns)
    names = contract_names(url, found, column_map=column_map, required=required)
    types = dict(zip(names, (f.dataType for f in frame.schema.fields), strict=True))
    positions = {n: i for i, n in enumerate(names)}
    present = [c for c in known if c in names]
    return SparkSource(
        path=url,
        format=fmt,
        found_columns=found,
        unknown_columns=tuple(c for c, n in zip(found, names, strict=True) if n not in known),
        schema=pl.Schema({c: polars_type(types[c]) for c in present}),
        positions={c: positions[c] for c in present},
        estimated_rows=0,
        config=config,
    )


def _from_local(
    source: SourceTable, column_map: Mapping[str, str], config: SparkConfig
) -> SparkSource:
    from recsim_cli.readers import ROW

    schema = source.frame.collect_schema()
    originals = {new: old for new, old in column_map.items() if old in source.found_columns}
    names = [n for n in schema.names() if n != ROW]
    return SparkSource(
        path=str(source.path),
        format=source.format,
        found_columns=source.found_columns,
        unknown_columns=source.unknown_columns,
        schema=pl.Schema({n: schema[n] for n in names}),
        positions={n: source.found_columns.index(originals.get(n, n)) for n in names},
        estimated_rows=source.estimated_rows,
        config=config,
    )


def read_source(spark: SparkSession, source: SparkSource, row_id: str) -> DataFrame:
    """Read ``source`` in Spark: ``row_id`` plus the contract columns, in their stored types.

    ``row_id`` is `monotonically_increasing_id`: increasing in file order (a
    file's splits are read in order), so the 1-based record number is found
    later from it and the per-split counts, for the few rows that need one.
    """
    from pyspark.sql import functions as F

    frame = _read(spark, source)
    columns = frame.columns
    if len(columns) != len(source.found_columns):
        raise InputFileError(
            f"{source.path} cannot be read as {source.format.label} (Spark finds "
            f"{len(columns)} columns, not {len(source.found_columns)}); "
            "fix the file or convert it to Parquet."
        )
    row = F.monotonically_increasing_id()
    if source.local and Path(source.path).is_dir():
        frame, row = _numbered_parts(spark, frame, Path(source.path))
    return frame.select(
        row.alias(row_id),
        *(F.col(_quote(columns[pos])).alias(name) for name, pos in source.positions.items()),
    )


def _numbered_parts(
    spark: SparkSession, frame: DataFrame, folder: Path
) -> tuple[DataFrame, Column]:
    """Number the rows of a folder of Parquet parts: the part's number above bit 33, then the row.

    Parts are numbered in `parquet_parts` order, the order polars reads them
    in, so ingest's per-"split" counts and offsets give every row the record
    number polars gives it (1-based across the parts, in that order).
    """
    from pyspark.sql import functions as F

    from recsim_cli.readers import parquet_parts

    root = str(folder.resolve()).rstrip("/") + "/"
    parts = [(p.relative_to(folder).as_posix(), i) for i, p in enumerate(parquet_parts(folder))]
    table = spark.createDataFrame(parts, "_relative string, _part bigint")
    path = F.col("_metadata.file_path")
    numbered = (
        frame.withColumn("_relative", path.substr(F.instr(path, root) + len(root), F.lit(1 << 30)))
        .withColumn("_row_index", F.col("_metadata.row_index"))
        .join(F.broadcast(table), "_relative")
    )
    row = F.shiftleft(F.col("_part"), 33).bitwiseOR(F.col("_row_index"))
    return numbered, row


def _read(spark: SparkSession, source: SparkSource) -> DataFrame:
    from pyspark.sql.types import StringType, StructField, StructType

    fmt = source.format
    location = source.path if not source.local else Path(source.path).resolve().as_uri()
    if source.local and Path(source.path).is_dir():
        from recsim_cli.readers import parquet_parts

        folder = Path(source.path).resolve()
        files = [f"file://{p.resolve()}" for p in parquet_parts(folder)]
        try:
            return spark.read.option("basePath", f"file://{folder}").parquet(*files)
        except Exception as exc:  # AnalysisException, Py4JJavaError: Spark's own message
            raise InputFileError(
                f"{source.path} cannot be read as {fmt.label} ({spark_error(exc)}); "
                "fix the files or convert them to one Parquet file."
            ) from None
    if source.local and fmt.gzip != source.path.lower().endswith(".gz"):
        state = "is" if fmt.gzip else "is not"
        raise InputFileError(
            f"{source.path} {state} gzip-compressed but its name says otherwise, and Spark "
            "decides by the name; rename it (with or without .gz) or use --engine polars."
        )
    try:
        if fmt.kind == "parquet":
            return spark.read.parquet(location)
        if fmt.kind == "jsonl":
            schema = StructType([StructField(c, StringType()) for c in source.found_columns])
            return spark.read.schema(schema).json(location)
        return (
            spark.read.option("header", True)
            .option("inferSchema", False)
            .option("sep", fmt.separator)
            .option("quote", '"')
            .option("escape", '"')
            .option("mode", "PERMISSIVE")
            .option("encoding", "UTF-8")
            .csv(location)
        )
    except Exception as exc:  # AnalysisException, Py4JJavaError: Spark's own message
        raise InputFileError(
            f"{source.path} cannot be read as {fmt.label} ({spark_error(exc)}); "
            "fix the file or convert it to Parquet."
        ) from None


def read_raw(spark: SparkSession, url: str, fmt: FileFormat) -> DataFrame:
    """Read a URL's columns (for their names and types) as `_read` will."""
    if fmt.kind == "jsonl":
        raise UserError(
            f"{url}: --engine spark reads JSON lines only from a local file; "
            "convert it to Parquet or CSV, or copy it here."
        )
    source = SparkSource(url, fmt, (), (), pl.Schema(), {}, 0)
    return _read(spark, source)


def spark_error(exc: BaseException) -> str:
    """The first line of a Spark or py4j error, without the JVM's class-name prefixes."""
    text = first_line(exc)
    text = re.sub(r"^(\[[A-Z_.]+\]\s*)", "", text)
    text = re.sub(r"^([\w.$]+(Exception|Error):\s*)+", "", text)
    return text[:200]


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _hadoop_path(spark: SparkSession, url: str) -> tuple[object, object]:
    """The Hadoop FileSystem and Path of ``url`` (through py4j)."""
    jvm = _jvm(spark)
    conf = spark._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(url)
    try:
        return path.getFileSystem(conf), path
    except Exception as exc:
        raise InputFileError(
            f"{url} cannot be opened ({spark_error(exc)}); check the URL and the Spark "
            "settings of its file system (--spark-conf)."
        ) from None


def _jvm(spark: SparkSession) -> Any:
    """The py4j gateway to Spark's JVM (classic Spark; not Spark Connect)."""
    jvm = spark._jvm
    if jvm is None:
        raise UserError("--engine spark reads URLs only with a classic (non-Connect) session.")
    return jvm


def _check_exists(spark: SparkSession, url: str) -> None:
    fs, path = _hadoop_path(spark, url)
    try:
        exists = fs.exists(path)  # type: ignore[attr-defined]
        directory = exists and fs.getFileStatus(path).isDirectory()  # type: ignore[attr-defined]
    except Exception as exc:
        raise InputFileError(
            f"{url} cannot be read ({spark_error(exc)}); check its permissions."
        ) from None
    if not exists:
        raise InputFileError(f"{url} does not exist; check the path.")
    if directory:
        raise InputFileError(
            f"{url} is a directory; give a CSV, TSV, Parquet or JSON-lines file instead."
        )


def sha256_url(url: str, config: SparkConfig) -> str:
    """Return the sha256 of a file Spark reads, streamed in the JVM (nothing reaches Python)."""
    spark = spark_session(config)
    fs, path = _hadoop_path(spark, url)
    stream = fs.open(path)  # type: ignore[attr-defined]
    try:
        return str(_jvm(spark).org.apache.commons.codec.digest.DigestUtils.sha256Hex(stream))
    finally:
        stream.close()


def _format_from_name(spark: SparkSession, url: str) -> FileFormat:
    """Decide a URL's format from its name, and a text file's separator from its header."""
    lower = url.lower()
    gzip = lower.endswith(".gz")
    base = lower.removesuffix(".gz")
    kind: Literal["csv", "parquet", "jsonl"]
    if base.endswith((".parquet", ".pq")):
        return FileFormat("parquet")
    if base.endswith((".jsonl", ".ndjson", ".json")):
        kind = "jsonl"
        return FileFormat(kind, gzip=gzip)
    try:
        head = spark.read.text(url).limit(1).collect()
    except Exception as exc:
        raise InputFileError(
            f"{url} cannot be read ({spark_error(exc)}); check the file."
        ) from None
    if not head:
        raise InputFileError(f"{url} is empty; give a file with a header and at least one row.")
    header = str(head[0][0]).lstrip("\ufeff")
    counts = {sep: header.count(sep) for sep in _SEPARATORS}
    separator = max(_SEPARATORS, key=lambda sep: counts[sep])
    if counts[separator] == 0:
        separator = "\t" if base.endswith((".tsv", ".tab")) else ","
    return FileFormat("csv", separator=separator, gzip=gzip)


def polars_type(dtype: DataType) -> pl.DataType:
    """The polars type of a Spark column type, so `check_types` judges both engines alike."""
    from pyspark.sql import types as T

    simple: list[tuple[type, pl.DataType]] = [
        (T.StringType, pl.String()),
        (T.VarcharType, pl.String()),
        (T.CharType, pl.String()),
        (T.BooleanType, pl.Boolean()),
        (T.ByteType, pl.Int8()),
        (T.ShortType, pl.Int16()),
        (T.IntegerType, pl.Int32()),
        (T.LongType, pl.Int64()),
        (T.FloatType, pl.Float32()),
        (T.DoubleType, pl.Float64()),
        (T.TimestampType, pl.Datetime("us", "UTC")),
        (T.TimestampNTZType, pl.Datetime("us")),
        (T.DateType, pl.Date()),
        (T.NullType, pl.Null()),
        (T.BinaryType, pl.Binary()),
    ]
    for spark_type, polars in simple:
        if isinstance(dtype, spark_type):
            return polars
    if isinstance(dtype, T.DecimalType):
        return pl.Decimal(dtype.precision, dtype.scale)
    if isinstance(dtype, T.ArrayType):
        return pl.List(polars_type(dtype.elementType))
    if isinstance(dtype, T.StructType):
        return pl.Struct({f.name: polars_type(f.dataType) for f in dtype.fields})
    return pl.Object()
