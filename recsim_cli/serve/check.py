"""Measure how fast a store serves lists, as a client would read them.

`serve_check` reads the lists of users sampled from the live version twice:
through one `Reader` with one persistent connection (how a service should
read), and with a new connection per read (what a careless client pays).
Each read is timed with ``time.perf_counter_ns`` after a warm-up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from recsim_cli.errors import ConfigError
from recsim_cli.progress import Progress, no_progress
from recsim_cli.serve.reader import Reader
from recsim_cli.serve.store import backend_errors, no_live_version
from recsim_cli.serve.urls import parse_url

if TYPE_CHECKING:
    import numpy as np

AIM_P99_MS: Final = {"sqlite": 0.2, "redis": 1.0}
"""The p99 latency a persistent connection should stay under, on loopback."""
PER_REQUEST_MAX: Final = 1000
WARMUP: Final = 200


@dataclass(frozen=True)
class Latency:
    """Latency and throughput of one way of reading."""

    mode: str
    connections: int
    reads: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    reads_per_s: float

    @classmethod
    def of(cls, mode: str, durations_ns: list[int], elapsed_ns: int, connections: int) -> Latency:
        """Summarise per-read durations and the wall time of the whole loop."""
        import numpy as np

        ms = np.asarray(durations_ns, dtype=np.float64) / 1e6
        p50, p95, p99 = (float(v) for v in np.percentile(ms, [50, 95, 99]))
        return cls(
            mode=mode,
            connections=connections,
            reads=len(durations_ns),
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            max_ms=float(ms.max()),
            reads_per_s=len(durations_ns) / (elapsed_ns / 1e9) if elapsed_ns else 0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "connections": self.connections,
            "reads": self.reads,
            "p50_ms": round(self.p50_ms, 4),
            "p95_ms": round(self.p95_ms, 4),
            "p99_ms": round(self.p99_ms, 4),
            "max_ms": round(self.max_ms, 4),
            "reads_per_s": round(self.reads_per_s, 1),
        }


@dataclass(frozen=True)
class ServeCheck:
    """What `serve_check` measured, and against which version."""

    url: str
    backend: str
    version: str
    model: str
    fingerprint: str
    k: int
    users: int
    """Users with a list in the version (the sample is drawn from them)."""
    persistent: Latency
    per_request: Latency
    empty_lists: int
    version_changed: bool
    """Whether an export switched the pointer while the check ran."""

    @property
    def aim_p99_ms(self) -> float:
        return AIM_P99_MS[self.backend]

    @property
    def meets_aim(self) -> bool:
        return self.persistent.p99_ms < self.aim_p99_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "backend": self.backend,
            "version": self.version,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "k": self.k,
            "users": self.users,
            "persistent": self.persistent.to_dict(),
            "per_request": self.per_request.to_dict(),
            "aim_p99_ms": self.aim_p99_ms,
            "meets_aim": self.meets_aim,
            "empty_lists": self.empty_lists,
            "version_changed": self.version_changed,
        }


def serve_check(
    url: str,
    *,
    reads: int,
    rng: np.random.Generator,
    per_request: int | None = None,
    warmup: int = WARMUP,
    progress: Progress = no_progress,
) -> ServeCheck:
    """Time ``reads`` reads of users drawn by ``rng`` from the live version's users.

    The persistent-connection pass makes all ``reads``; the
    connection-per-read pass the first ``per_request`` of them (default
    ``min(reads, 1000)``: each read pays a connect).
    """
    if reads < 1:
        raise ConfigError(f"--users must be at least 1; got {reads}.")
    backend = parse_url(url).scheme
    per_request = min(reads, PER_REQUEST_MAX) if per_request is None else per_request
    with Reader(url) as reader, backend_errors(reader.url):
        info = reader.store.live()
        if info is None:
            raise no_live_version(reader.url)
        population = reader.store.user_ids(info.version)
        if not population:
            raise ConfigError(f"Version {info.version} in {reader.url} holds no users to read.")
        replace = reads > len(population)
        picks = rng.choice(len(population), size=reads, replace=replace)
        sample = [population[i] for i in picks]
        for user in sample[: min(warmup, reads)]:
            reader.get(user)
        durations: list[int] = []
        empty = 0
        clock = time.perf_counter_ns
        started = clock()
        for i, user in enumerate(sample):
            t0 = clock()
            items = reader.get(user)
            durations.append(clock() - t0)
            empty += not items
            if i % 1000 == 999:
                progress("persistent", i + 1, reads)
        persistent = Latency.of("persistent", durations, clock() - started, connections=1)
        progress("persistent", reads, reads)
        per_read = _connect_per_read(url, sample[:per_request], progress)
        changed = reader.version() != info.version
    return ServeCheck(
        url=reader.url,
        backend=backend,
        version=info.version,
        model=info.model,
        fingerprint=info.fingerprint,
        k=info.k,
        users=len(population),
        persistent=persistent,
        per_request=per_read,
        empty_lists=empty,
        version_changed=changed,
    )


def _connect_per_read(url: str, sample: list[str], progress: Progress) -> Latency:
    """Open a `Reader`, read one list and close it, for every user of ``sample``."""
    for user in sample[:10]:  # warm the import and the server's accept path
        with Reader(url) as reader:
            reader.get(user)
    clock = time.perf_counter_ns
    durations: list[int] = []
    started = clock()
    for i, user in enumerate(sample):
        t0 = clock()
        with Reader(url) as reader:
            reader.get(user)
        durations.append(clock() - t0)
        if i % 100 == 99:
            progress("new connection", i + 1, len(sample))
    progress("new connection", len(sample), len(sample))
    return Latency.of("connection per read", durations, clock() - started, len(sample))
