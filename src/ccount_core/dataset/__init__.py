"""Training-set generation: specs, a dask sweep, a resumable Zarr store with a hash split.

``generate(spec, out)`` runs a spec (:mod:`.spec`) on dask (:mod:`.sweep`) into a Zarr store
(:mod:`.store`); ``open_dataset(out)`` reads it back for training with no other file.
"""

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
from ccount_core.dataset.store import (
    Dataset,
    StoreLock,
    StoreLockedError,
    count_column,
    open_dataset,
)
from ccount_core.dataset.sweep import GenerateSummary, generate

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
