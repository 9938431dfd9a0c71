"""The one comparison of the parity suites: what both engines (or both paths) must agree on.

Import it as ``from parity import REL, ABS, assert_close`` (tests/ is on the path).
"""

from __future__ import annotations

import math
from typing import Any

REL, ABS = 1e-9, 1e-12
"""Floats agree within relative 1e-9 or absolute 1e-12: Spark adds in partition order, so the
last bits of a sum may differ; counts, text and structure must be equal."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def assert_close(a: Any, b: Any, where: str = "report") -> None:
    """Equal dicts (same keys), lists and scalars; floats within `REL` / `ABS`, NaN equal to NaN.

    A float on either side is compared as a number with the other side (an
    int there is allowed); every other value must be equal and of the same type.
    """
    if isinstance(a, dict):
        assert isinstance(b, dict), (where, a, b)
        assert a.keys() == b.keys(), (where, sorted(a.keys() ^ b.keys(), key=str))
        for key in a:
            assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif _number(a) and _number(b) and (isinstance(a, float) or isinstance(b, float)):
        same = math.isclose(a, b, rel_tol=REL, abs_tol=ABS)
        assert same or (math.isnan(a) and math.isnan(b)), (where, a, b)
    else:
        assert a == b, (where, a, b)
        assert type(a) is type(b), (where, type(a), type(b))


def rounded(value: Any, drop: tuple[str, ...] = ("elapsed",)) -> Any:
    """A JSON value with every float rounded to 9 significant digits (`REL`), for ``==``.

    Keys starting with one of ``drop`` (timings, paths) are left out of dicts.
    """
    if isinstance(value, dict):
        return {k: rounded(v, drop) for k, v in value.items() if not k.startswith(drop)}
    if isinstance(value, list):
        return [rounded(v, drop) for v in value]
    if isinstance(value, float):
        return float(f"{value:.9g}")
    return value
