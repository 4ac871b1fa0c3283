"""The one checkpoint format: a pytree of arrays in an ``.npz``, written atomically, no pickle.

Every resumable loop of ``inference`` (``train.train``'s optimisation, ``svi.run_svi``'s ELBO
steps, the samplers' chunks through :class:`RunCheckpoint`) writes its state with
:func:`save_pytree` and reads it back with :func:`load_pytree`::

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
temporary file in the same folder, flushed to disk and moved into place by the project's one
``.npz`` writer, ``diagnostics.convert.atomic_savez``, so a crash mid-write leaves the previous
checkpoint intact.

Why our own, not orbax or flax serialization: orbax writes a directory of tensorstore files per
checkpoint, with asynchronous machinery, for sharded models far larger than ours, and
``flax.serialization.from_bytes`` restores into a template without checking leaf shapes or
dtypes; a single ``.npz`` with checked key paths is the smaller tool that does the job here.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diagnostics.convert import atomic_savez

__all__ = ["save_pytree", "load_pytree", "read_extras", "RunCheckpoint", "Progress", "settings_of",
           "FORMAT_VERSION"]

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


def save_pytree(path: str | os.PathLike, tree: Any, **extra: Any) -> None:
    """Write a pytree of arrays (plus named ``extra`` arrays) atomically to ``path`` (.npz)."""
    paths, leaves, treedef = _flatten(tree)
    arrays = {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}
    arrays["__paths__"] = np.asarray(paths, dtype=np.str_)
    arrays["__treedef__"] = np.asarray(treedef, dtype=np.str_)
    arrays["__version__"] = np.asarray(FORMAT_VERSION)
    for name, value in extra.items():
        arrays[f"extra_{name}"] = np.asarray(value)
    atomic_savez(path, **arrays)


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


def read_extras(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The named ``extra`` arrays of a file written by :func:`save_pytree` (no template needed):
    e.g. the draws a sampler had kept when it was interrupted (:class:`RunCheckpoint`)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no pytree file at {path!r}")
    return _read_npz(path)[2]


# --------------------------------------------------------------------------------------------
# Samplers: progress at chunk boundaries
# --------------------------------------------------------------------------------------------


def _data_digest(data: Any) -> str:
    """A digest of the data's arrays (dict/tuple/array pytree; None for no data)."""
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(data):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def settings_of(method: str, seed: int, data: Any, **settings: Any) -> dict[str, str]:
    """What a resumed run must share with the run that wrote the checkpoint: the method, the
    seed, a digest of the data and the options that shape the draws (as strings)."""
    out = {"method": str(method), "seed": str(int(seed)), "data": _data_digest(data)}
    out.update({name: json.dumps(value, sort_keys=True, default=str) for name, value in settings.items()})
    return out


class Progress(NamedTuple):
    """A sampler's progress read back: the loop's carry, the outputs kept so far (leaves in
    ``jax.tree_util`` order, the iteration axis full up to ``done``; None when nothing is kept),
    the iterations done in the phase, and whether the phase was already complete."""

    carry: Any
    kept: list[np.ndarray] | None
    done: int
    complete: bool


class RunCheckpoint:
    """The progress of a chunked sampler (NUTS, PMMH, particle Gibbs, SMC²) in the one format.

    After every chunk the runner calls :meth:`save` with the loop's carry (the chains' states:
    positions, PRNG keys, adaptation) and every output kept so far; the file is replaced
    atomically, so an interrupted run (Ctrl-C, SIGTERM, a crash, even mid-write) leaves the last
    complete chunk's checkpoint. Given the same ``checkpoint_path``, the same settings and seed, a
    rerun calls :meth:`restore` per phase and continues from the stored carry with the keys the
    uninterrupted run would have used at that iteration: the draws are the same, bit for bit on
    one machine (tested in ``tests/inference/test_checkpoint_runs.py``).

    File contents (:func:`save_pytree`): the tree ``{"carry": carry}`` and the extras ``phase``
    (index in ``phases``), ``done`` (iterations of that phase), ``num_kept`` and ``kept_<k>``
    (the kept outputs, iteration axis first after the chain axis as the runner keeps them),
    ``settings`` (JSON of :func:`settings_of`). :func:`read_extras` reads them without a template.

    A checkpoint written with other settings, seed or data is refused (``ValueError`` naming
    ``checkpoint_path`` and the settings that differ): resuming it would reproduce neither run.
    """

    def __init__(self, path: str | os.PathLike, settings: Mapping[str, str], phases: Sequence[str]):
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            raise ValueError(f"checkpoint_path: expected a file, got the directory {self.path!r}")
        self.settings = dict(settings)
        self.phases = tuple(phases)
        self.resumed_at: tuple[str, int] | None = None

    def _stored(self) -> tuple[dict[str, np.ndarray], list[str], list[np.ndarray]] | None:
        if not os.path.exists(self.path):
            return None
        try:
            paths, leaves, extra = _read_npz(self.path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"checkpoint_path: {self.path!r} is not a readable checkpoint ({error})") from None
        if "settings" not in extra or "phase" not in extra:
            raise ValueError(f"checkpoint_path: {self.path!r} is not a sampler checkpoint (no settings/phase)")
        stored = json.loads(str(extra["settings"]))
        differ = sorted(k for k in set(stored) | set(self.settings) if stored.get(k) != self.settings.get(k))
        if differ:
            detail = ", ".join(f"{k}: {stored.get(k)} in the file, {self.settings.get(k)} now" for k in differ[:4])
            raise ValueError(f"checkpoint_path: {self.path!r} was written by a run with other settings ({detail}); "
                             "resuming would reproduce neither run: delete the file or rerun with the same settings")
        return extra, paths, leaves

    def restore(self, phase: str, carry: Any) -> Progress:
        """The progress of ``phase`` given the fresh ``carry`` (its structure is the template):
        nothing stored or an earlier phase stored: ``(carry, None, 0, False)``; this phase:
        the stored carry, kept outputs and iteration count; a later phase: this one is complete
        (the carry returned is the stored one, of the later phase)."""
        stored = self._stored()
        if stored is None:
            return Progress(carry, None, 0, False)
        extra, paths, leaves = stored
        index, wanted = int(extra["phase"]), self.phases.index(phase)
        if index < wanted:
            return Progress(carry, None, 0, False)
        tree = _unflatten_like({"carry": carry}, paths, leaves, f"checkpoint_path {self.path!r}")
        kept = [extra[f"kept_{k}"] for k in range(int(extra["num_kept"]))] or None
        done = int(extra["done"])
        if index == wanted:
            self.resumed_at = (phase, done)
            return Progress(tree["carry"], kept, done, False)
        return Progress(tree["carry"], None, done, True)

    def save(self, phase: str, done: int, carry: Any, kept: Sequence[np.ndarray] | None) -> None:
        """Replace the file with ``phase``'s progress: ``done`` iterations, the ``carry`` after
        them and the outputs kept so far (leaves; None when nothing is kept)."""
        extras = {"phase": self.phases.index(phase), "done": int(done),
                  "num_kept": -1 if kept is None else len(kept),
                  "settings": json.dumps(self.settings, sort_keys=True)}
        for k, leaf in enumerate(kept or ()):
            extras[f"kept_{k}"] = np.asarray(leaf)
        save_pytree(self.path, {"carry": carry}, **extras)
