"""Helpers shared by the runners: site bookkeeping and non-finite log-density reports."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.handlers import seed, substitute, trace

__all__ = ["merge_init_rest", "nonfinite_sites", "raise_if_nonfinite", "NonFiniteLogDensityError"]


class NonFiniteLogDensityError(FloatingPointError):
    """The model's log density is NaN or infinite; the message names the offending sites."""


def merge_init_rest(values: Mapping[str, Any], *, lead: int, series_axis_after_time: bool = False) -> dict:
    """Join ``name_init`` and ``name_rest`` (a StateSpaceModel program's sites) into ``name``.

    ``lead`` is the number of leading sample axes (e.g. 2 for (chain, draw)). ``name_rest`` has
    time right after them; with several sequences it is ``(..., T-1, S, ...)`` (scan puts time
    first) and ``name_init`` is ``(..., S, ...)``; the result is ``(..., S, T, ...)`` then.
    Where ``name`` already exists (the program's deterministic full path) the parts are dropped.
    """
    out = dict(values)
    for key in list(values):
        if not key.endswith("_init"):
            continue
        base = key[: -len("_init")]
        rest_key = base + "_rest"
        if rest_key not in values:
            continue
        del out[key], out[rest_key]
        if base in values:
            continue
        first = np.expand_dims(np.asarray(values[key]), lead)
        rest = np.asarray(values[rest_key])
        joined = np.concatenate([first, rest], axis=lead)
        if series_axis_after_time:
            joined = np.moveaxis(joined, lead, lead + 1)
        out[base] = joined
    return out


def nonfinite_sites(model: Callable, params: Mapping[str, Any], *args, **kwargs) -> list[tuple[str, float]]:
    """Sites whose log-density is not finite when ``model`` is run with ``params`` substituted.

    Returns ``[(site_name, total_log_prob), ...]``; empty when everything is finite.
    """
    tr = trace(substitute(seed(model, jax.random.PRNGKey(0)), data=dict(params))).get_trace(*args, **kwargs)
    bad = []
    for name, site in tr.items():
        if site["type"] != "sample":
            continue
        value = site["value"]
        lp = site["fn"].log_prob(value)
        if site.get("scale") is not None:
            lp = lp * site["scale"]
        mask = site.get("mask")
        if mask is not None:
            lp = jnp.where(mask, lp, 0.0)
        total = float(jnp.sum(lp))
        if not np.isfinite(total):
            bad.append((name, total))
        elif not site["is_observed"] and not np.all(np.isfinite(np.asarray(value))):
            bad.append((name, float("nan")))
    return bad


def raise_if_nonfinite(model: Callable, params: Mapping[str, Any], *args, where: str = "", **kwargs) -> None:
    """Raise :class:`NonFiniteLogDensityError` naming the sites with a non-finite log density."""
    bad = nonfinite_sites(model, params, *args, **kwargs)
    if bad:
        detail = ", ".join(f"{name} (log density {value})" for name, value in bad)
        raise NonFiniteLogDensityError(
            f"non-finite log density{(' ' + where) if where else ''} at site(s): {detail}. "
            "Check the data (NaN/inf where not allowed, values outside the support) and the priors."
        )
