"""Serving: export top-K lists to a key-value store, read them back, measure the reads.

``recsim export`` writes a model's lists for every user as a new version of
a store (SQLite or Redis) and switches a pointer to it atomically; readers
follow the pointer (`Reader`, `read_export`); ``recsim serve-check`` times
them. The layout of both stores is the reader protocol of docs/serving.md.

Only light modules load here; polars, numpy and redis load where needed.
"""

from __future__ import annotations

from recsim_cli.serve.export import ExportResult, export_model, write_version
from recsim_cli.serve.reader import Export, Reader, read_export
from recsim_cli.serve.store import Store, VersionInfo, open_store
from recsim_cli.serve.urls import StoreUrl, mask_url, parse_url

__all__ = [
    "Export",
    "ExportResult",
    "Reader",
    "Store",
    "StoreUrl",
    "VersionInfo",
    "export_model",
    "mask_url",
    "open_store",
    "parse_url",
    "read_export",
    "write_version",
]
