"""Checks of observed series shared by the state-space families (``linear_gaussian``,
``discrete_hmm``) and the entries built on them.

Data of a state-space model is one sequence ``(T, *obs_shape)`` or S independent sequences
``(S, T, *obs_shape)``; NaN marks a missing real value, ``-1`` a missing symbol. Every check here
accepts a JAX tracer (a program traced with its data as a dynamic argument, as
``inference.fit_batch`` does): shapes are checked always, values only on concrete data
(``zoo.core.is_traced``).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from inference.validate import is_traced

__all__ = ["batched", "series_rank", "validate_series", "validate_symbols"]

_SERIES = ("optional", "required", "none")


def _shape_text(obs_shape: tuple[int, ...]) -> str:
    return "".join(f", {n}" for n in obs_shape)


def series_rank(shape: tuple[int, ...], obs_shape: tuple[int, ...]) -> bool | None:
    """Whether ``shape`` is batched ``(S, T, *obs_shape)`` (True), one sequence ``(T, *obs_shape)``
    (False) or neither (None)."""
    k = len(obs_shape)
    if len(shape) not in (k + 1, k + 2) or tuple(shape[len(shape) - k:]) != tuple(obs_shape):
        return None
    return len(shape) == k + 2


def batched(ys, obs_shape: tuple[int, ...], name: str) -> bool:
    """Whether ``ys`` holds S sequences ``(S, T, *obs_shape)`` (True) or one ``(T, *obs_shape)``
    (False); any other shape is a ``ValueError`` naming the model ``name``."""
    rank = series_rank(tuple(jnp.shape(ys)), tuple(obs_shape))
    if rank is None:
        raise ValueError(f"data: {name} expects observations of shape (time, *{tuple(obs_shape)}) or "
                         f"(series, time, *{tuple(obs_shape)}), got {tuple(jnp.shape(ys))}")
    return rank


def validate_series(data: Any, obs_shape: tuple[int, ...] = (), *, series: str = "optional",
                    name: str = "data"):
    """Real observations as a float array of shape ``(T, *obs_shape)`` or ``(S, T, *obs_shape)``.

    ``series``: ``"optional"`` accepts both ranks, ``"required"`` only ``(S, T, ...)``, ``"none"``
    only ``(T, ...)``. NaN = missing; infinite values are rejected (on concrete data). The rank is
    kept: one sequence stays one sequence.
    """
    if series not in _SERIES:
        raise ValueError(f"series: expected one of {_SERIES}, got {series!r}")
    obs_shape = tuple(obs_shape)
    traced = is_traced(data)
    if traced:
        array = jnp.asarray(data)
        if not jnp.issubdtype(array.dtype, jnp.floating):
            array = array.astype(jnp.result_type(float))
    else:
        try:
            array = np.asarray(data, dtype=float)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name}: expected an array of real observations, got {type(data).__name__}") from err
    batched = series_rank(tuple(array.shape), obs_shape)
    allowed = {"optional": (True, False), "required": (True,), "none": (False,)}[series]
    if batched is None or batched not in allowed:
        tail = _shape_text(obs_shape)
        expected = {"optional": f"(series, time{tail}) or (time{tail})", "required": f"(series, time{tail})",
                    "none": f"(time{tail})"}[series]
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(np.shape(data))}")
    if array.shape[1 if batched else 0] < 1:
        raise ValueError(f"{name}: expected at least one time step, got shape {tuple(array.shape)}")
    if not traced and np.isinf(array).any():
        raise ValueError(f"{name}: infinite values are not allowed (use NaN for missing)")
    return jnp.asarray(array)


def validate_symbols(data: Any, num_symbols: int, *, series: str = "optional", name: str = "data"):
    """Integer symbols ``0..num_symbols-1`` (``-1`` = missing) of shape ``(T,)`` or ``(S, T)``.

    Floats holding whole numbers are accepted; anything else is a ``ValueError`` naming ``name``.
    Returns an ``int32`` array (the rank is kept). Values are checked on concrete data only.
    """
    if series not in _SERIES:
        raise ValueError(f"series: expected one of {_SERIES}, got {series!r}")
    traced = is_traced(data)
    array = jnp.asarray(data) if traced else np.asarray(data)
    batched = series_rank(tuple(array.shape), ())
    allowed = {"optional": (True, False), "required": (True,), "none": (False,)}[series]
    if batched is None or batched not in allowed:
        expected = {"optional": "(series, time) or (time,)", "required": "(series, time)", "none": "(time,)"}[series]
        raise ValueError(f"{name}: expected symbols of shape {expected}, got {tuple(array.shape)}")
    if traced:
        return array.astype(jnp.int32)
    whole = np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array)) and np.all(np.mod(array, 1) == 0)
    if array.size and not np.issubdtype(array.dtype, np.integer) and not whole:
        raise ValueError(f"{name}: symbols must be integers in 0..{num_symbols - 1} (-1 = missing)")
    if array.size and (array.min() < -1 or array.max() >= num_symbols):
        bad = np.unique(array[(array < -1) | (array >= num_symbols)])
        raise ValueError(f"{name}: symbols must lie in 0..{num_symbols - 1} (or -1 for missing); found values "
                         f"outside the alphabet: {bad[:5].astype(int).tolist()}")
    return jnp.asarray(array.astype(np.int32))
