"""recsim: train, evaluate and A/B-test two-stage recommenders from interaction logs."""

__version__ = "0.1.0"
