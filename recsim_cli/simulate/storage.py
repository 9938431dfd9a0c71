"""Save and load a world: parameters in ``world.json``, latent arrays in ``world.npz``.

The ``.npz`` is written by hand with fixed zip timestamps, so the same world
gives the same bytes (``numpy.savez`` stamps the current time), and it is read
with ``allow_pickle=False``. ``world.json`` records the array file's SHA-256;
``load_world`` checks it, the format version, and every array's dtype and shape.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from recsim_cli.errors import DatasetError
from recsim_cli.io import sha256_file, write_bytes_atomic, write_json_atomic
from recsim_cli.simulate.config import CATEGORIES, DEVICES, WorldConfig
from recsim_cli.simulate.world import ARRAY_DTYPES, World

FORMAT_VERSION = 1
WORLD_JSON = "world.json"
WORLD_NPZ = "world.npz"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time zip can record


def world_metadata(
    world: World, arrays_sha256: str, continuation: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return the content of ``world.json``.

    ``continuation`` (what ``recsim simulate --continue`` logged, see
    ``simulate.continuation``) is recorded under its own key, only when given.
    The back catalogue is counted from the arrays (items published before the
    first day), which for a new world is ``back_catalogue_size``.
    """
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": "recsim simulated world",
        "config": world.config.to_dict(),
        "categories": list(CATEGORIES),
        "devices": list(DEVICES),
        "back_catalogue_items": int(
            np.searchsorted(world.item_published_ts, world.start_ts, side="left")
        ),
        "arrays": {"file": WORLD_NPZ, "sha256": arrays_sha256, "names": sorted(ARRAY_DTYPES)},
    }
    if continuation is not None:
        meta["continuation"] = continuation
    return meta


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Return a deterministic, deflated ``.npz`` of ``arrays`` (sorted by name)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(
                member, np.ascontiguousarray(arrays[name]), allow_pickle=False
            )
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the platform, for identical bytes
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def save_world(
    world: World, folder: Path | str, continuation: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``world.npz`` then ``world.json`` into ``folder`` atomically; return both paths."""
    folder = Path(folder)
    npz_path, json_path = folder / WORLD_NPZ, folder / WORLD_JSON
    write_bytes_atomic(npz_path, npz_bytes(world.arrays()))
    write_json_atomic(json_path, world_metadata(world, sha256_file(npz_path), continuation))
    return json_path, npz_path


def load_world(folder: Path | str) -> World:
    """Read the world saved in ``folder``, exactly as it was built."""
    return load_world_metadata(folder)[0]


def load_world_metadata(folder: Path | str) -> tuple[World, dict[str, Any]]:
    """Read the world saved in ``folder`` and the whole of its ``world.json``."""
    folder = Path(folder)
    json_path = folder / WORLD_JSON
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(
            f"{json_path} does not exist; point at a folder written by `recsim simulate`."
        ) from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{json_path} is not readable JSON ({exc}).") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise DatasetError(
            f"{json_path} has format_version {version!r}; this recsim reads {FORMAT_VERSION}."
        )
    config = WorldConfig.from_dict(meta["config"])
    npz_path = folder / meta["arrays"]["file"]
    if not npz_path.is_file():
        raise DatasetError(f"{npz_path} does not exist; the world folder is incomplete.")
    if sha256_file(npz_path) != meta["arrays"]["sha256"]:
        raise DatasetError(f"{npz_path} does not match the SHA-256 recorded in {json_path}.")
    with np.load(npz_path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    _check_arrays(arrays, config, npz_path)
    return World(config=config, **arrays), meta


def _check_arrays(arrays: dict[str, np.ndarray], config: WorldConfig, path: Path) -> None:
    if set(arrays) != set(ARRAY_DTYPES):
        raise DatasetError(
            f"{path} holds arrays {', '.join(sorted(arrays))}; "
            f"expected {', '.join(sorted(ARRAY_DTYPES))}."
        )
    k = config.population.n_factors
    rows = {"category": len(CATEGORIES), "user": config.users, "item": config.items}
    for name, dtype in ARRAY_DTYPES.items():
        array = arrays[name]
        length = rows[name.split("_", 1)[0]]
        ndim = 2 if name in ("category_centroid", "user_taste", "item_topic") else 1
        shape = (length, k) if ndim == 2 else (length,)
        if array.dtype != np.dtype(dtype) or array.shape != shape:
            raise DatasetError(
                f"{path}: array {name} is {array.dtype}{list(array.shape)}; "
                f"expected {np.dtype(dtype)}{list(shape)}."
            )
