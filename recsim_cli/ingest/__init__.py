"""Ingest: turn users' logs into a dataset folder of the data contract (docs/data.md).

The stages, one module each, in the order data flows: `values` (parse one
raw column), `parse` (a raw table to typed columns, and the reason a row is
refused), `events` (stage 1: stream a log into user partitions),
`partitions` (stage 2: store one user partition at a time), `sessions`
(order, de-duplicate, sessionise), `items` (the catalogue),
`build` (every file of a new version), `store` (versions and the atomic
swap), `pipeline` (the `ingest` function that plans a run), `summary` (what
a run returns).
"""

from recsim_cli.ingest.pipeline import Mode, ingest
from recsim_cli.ingest.sessions import DEFAULT_GAP, format_duration, parse_duration
from recsim_cli.ingest.summary import IngestSummary, Status, TableReport

__all__ = [
    "DEFAULT_GAP",
    "IngestSummary",
    "Mode",
    "Status",
    "TableReport",
    "format_duration",
    "ingest",
    "parse_duration",
]
