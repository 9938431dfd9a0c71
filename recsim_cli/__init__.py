"""recsim: train, evaluate and A/B-test two-stage recommenders from interaction logs."""

__version__ = "0.1.0"

REPORT_SCHEMA_VERSION = 1
"""The schema of the JSON reports of evaluate and abtest (docs/reports.md); `recsim report`
reads this version. Raise it when a key the pages read changes meaning or goes away."""
