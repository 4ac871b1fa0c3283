"""The one checkpoint format: a pytree of arrays in an ``.npz``, written atomically, no pickle.

Every resumable loop of ``inference`` (``train.train``'s optimisation, ``svi.run_svi``'s ELBO
steps) writes its state with :func:`save_pytree` and reads it back with :func:`load_pytree`::

    save_pytree(path, {"state": state}, step=step, losses=losses)
    tree, extra = load_pytree(path, {"state": fresh_state})   # extra["step"], extra["losses"]

File layout (NumPy ``.npz``, read with ``allow_pickle=False``):

=====================  =====================================================================
``leaf_00000``, ...    the leaves of the pytree, in ``jax.tree_util`` order (a typed PRNG key
                       is stored as its ``key_data``)
``__paths__``          the leaves' key paths (``jax.tree_util.keystr``), checked on load
``__treedef__``        the tree structure's string form (for a reader's eyes; not parsed)
``__version__``        the format version (1)
``extra_<name>``       the caller's named arrays (step counters, loss traces, seeds)
=====================  =====================================================================

No Python object is pickled: on load the structure comes from a live ``template`` pytree (the
freshly initialised state), and the stored key paths, shapes and dtypes are checked against it (a
mismatch is a ``ValueError`` naming the first offending leaf). The file is written to a
temporary file in the same folder and moved into place (``diagnostics.convert.atomic_write``),
so a crash mid-write leaves the previous checkpoint intact.

Why our own, not orbax or flax serialization: orbax writes a directory of tensorstore files per
checkpoint, with asynchronous machinery, for sharded models far larger than ours, and
``flax.serialization.from_bytes`` restores into a template without checking leaf shapes or
dtypes; a single ``.npz`` with checked key paths is the smaller tool that does the job here.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diagnostics.convert import atomic_write

__all__ = ["save_pytree", "load_pytree", "FORMAT_VERSION"]

FORMAT_VERSION = 1


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _stored(leaf: Any) -> np.ndarray:
    return np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)


def _flatten(tree: Any) -> tuple[list[str], list[np.ndarray], str]:
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [jax.tree_util.keystr(path) for path, _ in with_path]
    leaves = [_stored(leaf) for _, leaf in with_path]
    return paths, leaves, str(treedef)


def _unflatten_like(template: Any, paths: list[str], leaves: list[np.ndarray], what: str) -> Any:
    t_with_path, treedef = jax.tree_util.tree_flatten_with_path(template)
    t_paths = [jax.tree_util.keystr(path) for path, _ in t_with_path]
    if t_paths != paths:
        missing = sorted(set(t_paths) - set(paths))
        extra = sorted(set(paths) - set(t_paths))
        raise ValueError(
            f"{what}: stored pytree does not match the expected structure "
            f"(missing leaves {missing[:5]}, unexpected leaves {extra[:5]}, or a different order)"
        )
    out = []
    for path, (_, t_leaf), leaf in zip(paths, t_with_path, leaves):
        expected = _stored(t_leaf)
        if expected.shape != leaf.shape or expected.dtype != leaf.dtype:
            raise ValueError(
                f"{what}: leaf {path} has shape {leaf.shape} dtype {leaf.dtype} in the file but "
                f"{expected.shape} {expected.dtype} is expected"
            )
        if _is_key(t_leaf):
            out.append(jax.random.wrap_key_data(jnp.asarray(leaf), impl=jax.random.key_impl(t_leaf)))
        else:
            out.append(jnp.asarray(leaf))
    return jax.tree_util.tree_unflatten(treedef, out)


def _atomic_savez(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: str) -> None:
        # through a handle: np.savez would append ".npz" to a temporary name
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)


def save_pytree(path: str | os.PathLike, tree: Any, **extra: Any) -> None:
    """Write a pytree of arrays (plus named ``extra`` arrays) atomically to ``path`` (.npz)."""
    paths, leaves, treedef = _flatten(tree)
    arrays = {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}
    arrays["__paths__"] = np.asarray(paths, dtype=np.str_)
    arrays["__treedef__"] = np.asarray(treedef, dtype=np.str_)
    arrays["__version__"] = np.asarray(FORMAT_VERSION)
    for name, value in extra.items():
        arrays[f"extra_{name}"] = np.asarray(value)
    _atomic_savez(path, arrays)


def _read_npz(path: str) -> tuple[list[str], list[np.ndarray], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as archive:
        if "__paths__" not in archive.files:
            raise ValueError(f"path: {path!r} is not a dynamics-zoo pytree file (no __paths__ field)")
        paths = [str(p) for p in archive["__paths__"]]
        leaves = [archive[f"leaf_{i:05d}"] for i in range(len(paths))]
        extra = {name[len("extra_"):]: archive[name] for name in archive.files if name.startswith("extra_")}
    return paths, leaves, extra


def load_pytree(path: str | os.PathLike, template: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """Read a file written by :func:`save_pytree` into the structure of ``template``.

    Returns ``(tree, extra)``. Key paths, shapes and dtypes must match ``template`` exactly.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no pytree file at {path!r}")
    paths, leaves, extra = _read_npz(path)
    return _unflatten_like(template, paths, leaves, f"load_pytree({path!r})"), extra
