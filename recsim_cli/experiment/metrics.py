"""The experiment metric registry: every metric is a ratio of per-user sums.

A metric ``m`` arrives in the sufficient-statistics frame as two columns,
``m_num`` and ``m_den``, the sums of its numerator and denominator over one
user's units. The metric's value in an arm is ``sum(num) / sum(den)`` over the
arm's users, so clicks per impression, watch time per session and videos per
session are all the same kind of object; a plain per-user mean is the ratio
with ``den = 1``.

Later work registers its own metrics with :func:`register_metric`, or passes a
:class:`MetricDef` straight to ``analyse``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from recsim_cli.errors import ConfigError, UnknownNameError

Direction = Literal["higher", "lower"]
DIRECTIONS: tuple[Direction, ...] = ("higher", "lower")
# What a metric's numbers rest on: a logged A/B test, reweighted logs of another
# policy, or a fitted model of user behaviour (docs/offpolicy.md). Strongest first.
Evidence = Literal["online", "off-policy", "model-based"]
EVIDENCE: tuple[Evidence, ...] = ("online", "off-policy", "model-based")


def weakest_evidence(levels: Iterable[Evidence]) -> Evidence | None:
    """Return the weakest of ``levels`` (model-based < off-policy < online), None if empty."""
    ranks = [EVIDENCE.index(level) for level in levels]
    return EVIDENCE[max(ranks)] if ranks else None


@dataclass(frozen=True)
class MetricDef:
    """One experiment metric: ``sum(numerator) / sum(denominator)`` over users."""

    name: str
    label: str
    description: str
    numerator: str
    denominator: str
    better: Direction = "higher"

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ConfigError(
                f"metric name '{self.name}' must be a lower-case identifier (letters, digits, _)."
            )
        if self.better not in DIRECTIONS:
            raise ConfigError(
                f"metric '{self.name}': better must be 'higher' or 'lower'; got {self.better!r}."
            )

    @property
    def num_column(self) -> str:
        """Name of the per-user numerator column in the frame."""
        return f"{self.name}_num"

    @property
    def den_column(self) -> str:
        """Name of the per-user denominator column in the frame."""
        return f"{self.name}_den"

    @property
    def pre_num_column(self) -> str:
        """Name of the optional pre-period numerator column (the CUPED covariate)."""
        return f"{self.name}_pre_num"

    @property
    def pre_den_column(self) -> str:
        """Name of the optional pre-period denominator column (the CUPED covariate)."""
        return f"{self.name}_pre_den"

    def to_dict(self) -> dict[str, str]:
        """Return the definition as plain JSON-ready values."""
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "better": self.better,
        }


class MetricRegistry(Mapping[str, MetricDef]):
    """Metric definitions by name; unknown names raise with the list of known ones."""

    def __init__(self, definitions: tuple[MetricDef, ...] = ()) -> None:
        self._defs: dict[str, MetricDef] = {}
        for definition in definitions:
            self.register(definition)

    def register(self, definition: MetricDef) -> None:
        """Add ``definition``; a name may be registered once only."""
        if definition.name in self._defs:
            raise ConfigError(f"metric '{definition.name}' is already registered.")
        self._defs[definition.name] = definition

    def get(self, name: str) -> MetricDef:  # type: ignore[override]
        """Return the metric called ``name`` or raise ``UnknownNameError``."""
        try:
            return self._defs[name]
        except KeyError:
            raise UnknownNameError("metric", name, list(self._defs)) from None

    def __getitem__(self, name: str) -> MetricDef:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._defs

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._defs))

    def __len__(self) -> int:
        return len(self._defs)


METRICS = MetricRegistry(
    (
        MetricDef(
            name="ctr",
            label="CTR",
            description="clicks per impression, over each arm's users",
            numerator="clicks",
            denominator="impressions",
        ),
        MetricDef(
            name="watch_time",
            label="Watch time per session",
            description="watch time per session, over each arm's users",
            numerator="watch time",
            denominator="sessions",
        ),
        MetricDef(
            name="session_depth",
            label="Session depth",
            description="videos watched per session, over each arm's users",
            numerator="videos watched",
            denominator="sessions",
        ),
        MetricDef(
            name="slates_per_session",
            label="Slates per session",
            description="slates (pages of recommendations) shown per session",
            numerator="slates",
            denominator="sessions",
        ),
        # Per-slate metrics: what off-policy estimators reach without a session model.
        MetricDef(
            name="first_slate_ctr",
            label="First-slate CTR",
            description="clicks per impression on the first slate of a session (the homepage)",
            numerator="clicks on first slates",
            denominator="impressions on first slates",
        ),
        MetricDef(
            name="first_slate_clicks",
            label="Clicks per first slate",
            description="clicks on the first slate of a session, per session",
            numerator="clicks on first slates",
            denominator="first slates",
        ),
        MetricDef(
            name="first_slate_watch_time",
            label="Watch time per first slate",
            description="watch time from the first slate of a session, per session",
            numerator="watch time from first slates",
            denominator="first slates",
        ),
        MetricDef(
            name="slate_ctr",
            label="Slate CTR",
            description="clicks per impression over every slate of the logged sessions",
            numerator="clicks",
            denominator="impressions",
        ),
        MetricDef(
            name="slate_watch_time",
            label="Watch time per slate",
            description="watch time per slate over every slate of the logged sessions",
            numerator="watch time",
            denominator="slates",
        ),
    )
)


def get_metric(name: str) -> MetricDef:
    """Return the registered metric ``name`` (``Unknown metric 'x'. Available: ...``)."""
    return METRICS.get(name)


def register_metric(definition: MetricDef) -> None:
    """Register a new experiment metric so ``analyse`` and gates accept its name."""
    METRICS.register(definition)


def resolve_metric(metric: str | MetricDef) -> MetricDef:
    """Return ``metric`` itself if it is a definition, else look its name up."""
    return metric if isinstance(metric, MetricDef) else get_metric(metric)
