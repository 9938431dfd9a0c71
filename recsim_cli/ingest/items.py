"""The item catalogue: validate, resolve repeated item ids, merge with the stored one.

A catalogue is small next to the log (one row per item), so it is held in
memory. Within one file, a row repeating an earlier row's item_id with the
same values is a duplicate (dropped and counted); with different values it is
refused with `CONFLICT`, and the first row in file order wins. On ``--append``
the new file's rows replace stored rows with the same item_id: a newer
catalogue knows better.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import polars as pl

from recsim_cli.dataset import ITEMS_SCHEMA
from recsim_cli.errors import InputFileError
from recsim_cli.ingest.events import rejected_frame
from recsim_cli.ingest.parse import REASON, parse_items
from recsim_cli.ingest.values import sniff_ts_formats
from recsim_cli.readers import ROW, SourceTable, first_line

CONFLICT: Final = "item_id repeats an earlier row with different values"


@dataclass(frozen=True)
class ParsedItems:
    """A validated catalogue file: its good rows, its refused rows, its duplicates."""

    items: pl.DataFrame
    rejected: pl.DataFrame
    rows_read: int
    duplicates: int

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        """Refused rows counted by reason."""
        counts = self.rejected.group_by("reason").len()
        return dict(zip(counts["reason"].to_list(), counts["len"].to_list(), strict=True))


def read_items(source: SourceTable) -> ParsedItems:
    """Validate a catalogue file and resolve its repeated item ids."""
    schema = source.frame.collect_schema()
    formats = sniff_ts_formats(
        source.frame.select("published_ts").head(2_000).collect().to_series()
        if "published_ts" in schema
        else pl.Series([], dtype=pl.String)
    )
    try:
        parsed = parse_items(source.frame, formats, source=str(source.path)).collect(
            engine="streaming"
        )
    except pl.exceptions.PolarsError as exc:
        raise InputFileError(
            f"{source.path} cannot be read as {source.format.label} ({first_line(exc)}); "
            "fix the file or convert it to Parquet."
        ) from exc
    if parsed.is_empty():
        raise InputFileError(f"{source.path} has no rows; give a file with at least one item.")
    good = parsed.filter(pl.col(REASON).is_null()).sort(ROW)
    if good.is_empty():
        counts = parsed.group_by(REASON).len().sort(["len", REASON], descending=True)
        reason, count = counts.row(0)
        raise InputFileError(
            f"{source.path}: none of its {parsed.height:,} rows is usable ({count:,} with "
            f"'{reason}'); check its columns and formats against docs/data.md."
        )
    columns = ITEMS_SCHEMA.names()
    ordered = good.sort(["item_id", ROW])
    first = pl.col("item_id") != pl.col("item_id").shift(1)
    same_as_first = pl.all_horizontal(
        pl.col(c).eq_missing(pl.when(first.fill_null(True)).then(pl.col(c)).forward_fill())
        for c in columns[1:]
    )
    ordered = ordered.with_columns(
        _first=first.fill_null(True), _same=same_as_first.fill_null(True)
    )
    kept = ordered.filter(pl.col("_first")).select(columns)
    duplicates = ordered.filter(~pl.col("_first") & pl.col("_same")).height
    conflicts = ordered.filter(~pl.col("_first") & ~pl.col("_same")).with_columns(
        pl.lit(CONFLICT).alias(REASON)
    )
    refused = pl.concat(
        [parsed.filter(pl.col(REASON).is_not_null()), conflicts.select(parsed.columns)],
        how="vertical_relaxed",
    ).sort(ROW)
    return ParsedItems(
        items=kept.sort("item_id"),
        rejected=rejected_frame(refused.lazy(), "items", source.name).collect(),
        rows_read=parsed.height,
        duplicates=duplicates,
    )


def merge_items(stored: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """Return the catalogue with ``new`` rows replacing stored rows of the same item_id."""
    kept = stored.filter(~pl.col("item_id").is_in(new["item_id"].implode()))
    return pl.concat([kept, new]).sort("item_id")
