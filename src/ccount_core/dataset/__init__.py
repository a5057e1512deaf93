"""Training-set generation: specs, a dask sweep, a resumable Zarr store with a hash split.

``generate(spec, out)`` runs a spec (:mod:`.spec`) on dask (:mod:`.sweep`) into a Zarr store
(:mod:`.store`); ``open_dataset(out)`` reads it back for training with no other file.
"""

import importlib
from typing import Any

from ccount_core.dataset.spec import (
    SPLIT_NAMES,
    MdPoint,
    Plan,
    canonical_key,
    load_spec,
    normalise_spec,
    plan,
    split_of,
    stable_hash,
)

#: The store's and the sweep's names, imported on first use: a spec and its renders need
#: neither zarr nor dask (``scripts/device_train.py`` renders on a machine without them).
_LAZY = {
    "Dataset": "store",
    "StoreLock": "store",
    "StoreLockedError": "store",
    "count_column": "store",
    "open_dataset": "store",
    "GenerateSummary": "sweep",
    "generate": "sweep",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"ccount_core.dataset.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ccount_core.dataset' has no attribute {name!r}")


__all__ = [
    "SPLIT_NAMES",
    "Dataset",
    "GenerateSummary",
    "MdPoint",
    "Plan",
    "StoreLock",
    "StoreLockedError",
    "canonical_key",
    "count_column",
    "generate",
    "load_spec",
    "normalise_spec",
    "open_dataset",
    "plan",
    "split_of",
    "stable_hash",
]
