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
from zoo.core import Columns, StateSpaceModel


COLUMNS = Columns("y", series=None, time=None, validate=lambda data, config: validate_series(data),
                  describe="one series")
"""The CSV format both entries share: a column ``y``, one row per time step (rows in time order; a
``time`` column, if given, orders them)."""


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


def prior_predictive(ssm: StateSpaceModel, params: dict, num_steps: int) -> None:
    key = numpyro.prng_key()
    if key is None:  # inside an unseeded trace (shape inference)
        return
    xs, ys = ssm.simulate(key, params, num_steps)
    numpyro.deterministic("x", xs)
    numpyro.deterministic("y", ys)
