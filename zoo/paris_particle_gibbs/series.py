r"""One scalar series observed at T regular steps: the data format both PaRIS benchmarks share.

Validation (NaN = missing, inf rejected, traced data checked by shape only), the CSV columns
(``y``, optionally ``time`` to order the rows) and the prior-predictive sites ``x``, ``y`` of a
:class:`~zoo.core.StateSpaceModel`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro

from inference.validate import is_traced
from zoo.core import StateSpaceModel


DATA_DOC = ("One series: float array (T,), NaN = missing. CSV: column 'y' (one row per time step; an "
            "optional 'time' column orders the rows).")


def validate_series(data, num_steps: int | None = None) -> jax.Array:
    """Observations as a float ``(T,)`` array; NaN = missing, inf rejected."""
    array = data if is_traced(data) else np.asarray(data, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"data: expected one series of shape (T,), got shape {tuple(array.shape)}")
    if array.shape[0] < 1:
        raise ValueError("data: expected at least one observation")
    if not is_traced(array) and np.isinf(array).any():
        raise ValueError("data: infinite values are not allowed (use NaN for a missing observation)")
    return jnp.asarray(array)


def load_columns(columns: dict, config) -> np.ndarray:
    """CSV column ``y`` (one row per time step, in time order; NaN or empty = missing)."""
    if "y" not in columns:
        raise ValueError(f"columns: expected a column 'y'; got {sorted(columns)}")
    y = np.asarray(columns["y"], dtype=float)
    if y.ndim != 1:
        raise ValueError(f"columns['y']: expected a 1-D column, got shape {y.shape}")
    if "time" in columns:
        order = np.argsort(np.asarray(columns["time"], dtype=float), kind="stable")
        y = y[order]
    return y


def dump_columns(data, config) -> dict:
    """Inverse of :func:`load_columns`: one column ``y`` (rows in time order)."""
    y = np.asarray(data, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"data: expected shape (T,), got {y.shape}")
    return {"y": y}


def prior_predictive(ssm: StateSpaceModel, params: dict, num_steps: int) -> None:
    key = numpyro.prng_key()
    if key is None:  # inside an unseeded trace (shape inference)
        return
    xs, ys = ssm.simulate(key, params, num_steps)
    numpyro.deterministic("x", xs)
    numpyro.deterministic("y", ys)
