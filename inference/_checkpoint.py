"""Atomic pytree checkpoints: leaves in an ``.npz``, structure taken from a template on load.

No pickled code: a checkpoint holds arrays only, and is restored into the structure of a
``like`` pytree (the freshly initialised state), which also validates it.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diagnostics.convert import atomic_write

__all__ = ["save_pytree", "load_pytree"]


def save_pytree(path: str | os.PathLike, tree: Any) -> None:
    """Write the leaves of ``tree`` to ``path`` (npz) atomically: temp file, then rename."""
    leaves = [np.asarray(_key_data(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]

    def write(tmp: str) -> None:
        with open(tmp, "wb") as stream:
            np.savez(stream, *leaves)

    atomic_write(path, write)


def _key_data(leaf):
    if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(leaf)
    return leaf


def load_pytree(path: str | os.PathLike, like: Any) -> Any | None:
    """Restore a checkpoint into the structure of ``like``; ``None`` when ``path`` does not exist."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return None
    template, treedef = jax.tree_util.tree_flatten(like)
    with np.load(path) as stored:
        arrays = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    if len(arrays) != len(template):
        raise ValueError(
            f"checkpoint_path: {path!r} holds {len(arrays)} arrays but the run's state has "
            f"{len(template)}; it belongs to a different model or configuration"
        )
    leaves = []
    for stored_leaf, ref in zip(arrays, template):
        if np.shape(stored_leaf) != np.shape(ref) and not (np.ndim(ref) == 0 and np.ndim(stored_leaf) == 0):
            if not (isinstance(ref, np.ndarray) and ref.size == 0):  # growing arrays (loss traces)
                raise ValueError(
                    f"checkpoint_path: {path!r} has an array of shape {np.shape(stored_leaf)} where the "
                    f"run expects {np.shape(ref)}"
                )
        leaves.append(jnp.asarray(stored_leaf) if isinstance(ref, jax.Array) else stored_leaf)
    return jax.tree_util.tree_unflatten(treedef, leaves)
