"""Refits for exact leave-future-out cross-validation (``diagnostics.compare.psis_lfo``).

``diagnostics.compare.psis_lfo(..., refit=refit)`` needs, for a block start ``i``, draws of
``p(θ | y_{<i})`` with the per-step log-likelihood evaluated on the **full** series. Here:

1. the data are cut to their first ``i`` time steps along ``time_axis`` (explicit: the layout of
   an entry's data is its own, e.g. ``(series, time, obs)`` for ``lgssm``);
2. ``inference.fit`` fits the prefix with the given method and options;
3. ``numpyro.infer.log_likelihood`` evaluates the observed site ``var_name`` of the program on the
   full data at those draws; every axis but the time axis of that site (named ``"time"`` in the
   target's ``dims``, or given as ``loglik_time_axis``) is summed, giving ``(draws, T)``.

For a state-space program whose per-step terms are ``log p(y_t | y_{<t}, θ)`` (the zoo's
``numpyro.factor("y", increments)`` convention) step 3 is exact: the terms for ``t < i`` do not
see the future and those for ``t ≥ i`` are the predictive factors LFO needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["lfo_refit", "loglik_on"]


def _flat_samples(idata) -> dict[str, np.ndarray]:
    out = {}
    for name, da in idata.posterior.data_vars.items():
        values = np.asarray(da.transpose("chain", "draw", ...).values)
        out[name] = values.reshape((-1,) + values.shape[2:])
    return out


def loglik_on(model: Callable, idata, data: Any, *, var_name: str = "y", time_axis: int) -> np.ndarray:
    """``(draws, T)``: the per-step log-likelihood of ``model(data)``'s site ``var_name`` at the
    posterior draws of ``idata``, summed over every axis but ``time_axis`` (an axis of the
    site's value, without the draw axis)."""
    from numpyro.infer import log_likelihood

    values = log_likelihood(model, _flat_samples(idata), data)
    if var_name not in values:
        raise KeyError(f"var_name: the program has no observed site {var_name!r}; it has {sorted(values)}")
    site = np.asarray(values[var_name])  # (draws, *site_shape)
    if not -(site.ndim - 1) <= time_axis < site.ndim - 1:
        raise ValueError(f"time_axis: site {var_name!r} has shape {site.shape[1:]}; axis {time_axis} is out of range")
    moved = np.moveaxis(site, 1 + (time_axis % (site.ndim - 1)), 1)
    return np.nan_to_num(moved.reshape(moved.shape[:2] + (-1,)), nan=0.0).sum(axis=-1)


def lfo_refit(target: Any, data: Any, *, time_axis: int, method: str = "smc", config: Any = "small",
              seed: int = 0, var_name: str = "y", loglik_time_axis: int | None = None,
              **options: Any) -> Callable[[int], np.ndarray]:
    """``refit(i) -> (draws, T)`` for :func:`diagnostics.compare.psis_lfo` (module docstring).

    Args:
        target: what ``inference.fit`` takes (a zoo entry, a StateSpaceModel, a NumPyro program).
        data: the full observations (an array with a time axis).
        time_axis: the time axis of ``data``.
        method, config, seed, options: passed to ``inference.fit`` for every refit (the seed
            is offset by ``i`` so refits are independent).
        var_name: the observed site holding the per-step log-likelihood.
        loglik_time_axis: the time axis of that site's value; default: where ``"time"`` is in
            the target's ``dims[var_name]``.
    """
    import inference

    full = np.asarray(data)
    if not -full.ndim <= time_axis < full.ndim:
        raise ValueError(f"time_axis: data has shape {full.shape}; axis {time_axis} is out of range")
    resolved = inference.resolve_target(target, full, config=config)
    if loglik_time_axis is None:
        names = tuple(dict(resolved.dims or {}).get(var_name, ()))
        if "time" not in names:
            raise ValueError(f"loglik_time_axis: the target's dims[{var_name!r}] = {names} name no 'time'; "
                             "give the time axis of the per-step log-likelihood")
        loglik_time_axis = names.index("time")
    num_steps = full.shape[time_axis]

    def refit(i: int) -> np.ndarray:
        if not 1 <= i <= num_steps:
            raise ValueError(f"i: expected 1 <= i <= {num_steps}, got {i}")
        prefix = np.take(full, np.arange(i), axis=time_axis)
        idata = inference.fit(target, prefix, method=method, config=config, seed=seed + 7919 * i,
                              progress=False, **options)
        return loglik_on(resolved.model, idata, full, var_name=var_name, time_axis=loglik_time_axis)

    return refit
