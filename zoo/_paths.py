"""Latent paths and one-step-ahead predictive draws of a fitted state-space entry.

A marginalised state-space fit (NUTS on the Kalman or forward-algorithm marginal) samples the
parameters only; what a modeller looks at next is the latent path given the data and how well
each observation was predicted from the ones before it. :func:`posterior_paths` draws both at a
thinned set of posterior draws, through the entry's ``paths`` (from its family builder:
:meth:`zoo.processes.linear_gaussian.LinearGaussian.path_draws`,
:meth:`zoo.processes.discrete_hmm.DiscreteHMM.path_draws`), and returns an ``xarray.Dataset``
that :func:`diagnostics.plots.plot_paths` draws and the report shows.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import xarray as xr

__all__ = ["posterior_paths"]


def posterior_paths(entry, idata, data: Any = None, config: Any = "small", *, num_draws: int = 200,
                    seed: int = 0) -> xr.Dataset:
    """Latent paths ``x`` and one-step-ahead predictive draws ``y_one_step`` at up to ``num_draws``
    posterior draws of ``idata`` (evenly spaced over chains and draws), one joint draw each.

    Args:
        entry: a zoo entry with a latent-path form (``entry.paths``, from its family builder).
        idata: the fit (its ``posterior`` group; ``observed_data`` gives the data and coordinates).
        data: the data the fit saw (default: ``idata.observed_data["y"]``).
        config: the configuration of the fit (name or object).
        num_draws: how many posterior draws to use (all when there are fewer).
        seed: seed of the path draws.

    Returns:
        an ``xarray.Dataset`` with ``x`` ``(sample, [series,] time, ...)`` and ``y_one_step``
        shaped like the observations after ``sample``, the observations as ``y`` and the time
        and series coordinates of ``observed_data``; ``attrs["draw_indices"]`` are the flat
        (chain-major) indices of the posterior draws used.
    """
    from inference.validate import positive_int

    paths = getattr(entry, "paths", None)
    if paths is None:
        raise ValueError(f"entry: {getattr(entry, 'name', entry)!r} has no latent-path form "
                         "(ZooEntry.paths; entries built on a family builder have one)")
    if "posterior" not in idata.groups():
        raise KeyError(f"idata: has no posterior group (groups {idata.groups()})")
    num_draws = positive_int("num_draws", num_draws)
    cfg = entry.config(config) if isinstance(config, str) else config
    observed = idata.observed_data["y"] if "observed_data" in idata.groups() and "y" in idata.observed_data else None
    if data is None:
        if observed is None:
            raise ValueError("data: not given and the fit has no observed_data['y']")
        data = observed.values
    data = entry.prepare_data(data, cfg)
    post = idata.posterior
    total = post.sizes["chain"] * post.sizes["draw"]
    index = np.unique(np.linspace(0, total - 1, min(num_draws, total)).round().astype(int))
    params = {}
    for name, da in post.data_vars.items():
        values = np.asarray(da.transpose("chain", "draw", ...).values)
        if np.issubdtype(values.dtype, np.number):
            params[name] = values.reshape((total,) + values.shape[2:])[index]
    keys = jax.random.split(jax.random.PRNGKey(int(seed)), len(index))
    draws = jax.jit(jax.vmap(lambda k, p: paths(k, p, data, cfg)))(keys, params)
    draws = {k: np.asarray(v) for k, v in draws.items()}
    obs_dims = list(observed.dims) if observed is not None else None
    coords = {d: observed[d].values for d in obs_dims} if observed is not None else {}
    data_vars = {}
    y_one = draws["y_one_step"]
    y_dims = obs_dims if obs_dims and len(obs_dims) == y_one.ndim - 1 else [f"y_dim_{i}" for i in range(y_one.ndim - 1)]
    data_vars["y_one_step"] = (["sample", *y_dims], y_one)
    x = draws["x"]
    lead = [d for d in (obs_dims or []) if d in ("series", "time")]
    lead = lead[: x.ndim - 1]
    x_dims = lead + [f"x_dim_{i}" for i in range(x.ndim - 1 - len(lead))]
    declared = tuple(getattr(entry, "dims", {}).get("x", ()))
    if len(declared) == x.ndim - 1:
        x_dims = list(declared)
    data_vars["x"] = (["sample", *x_dims], x)
    if observed is not None:
        data_vars["y"] = (obs_dims, np.asarray(observed.values))
    coords = {d: v for d, v in coords.items() if d in set(x_dims) | set(y_dims)}
    coords["sample"] = np.arange(len(index))
    attrs = {"entry": getattr(entry, "name", ""), "draw_indices": index, "seed": int(seed)}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
