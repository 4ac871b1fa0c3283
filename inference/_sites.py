"""Helpers shared by the runners: site bookkeeping and non-finite log-density reports.

The errors they raise are public in :mod:`inference.validate` (and :mod:`inference`);
they are re-exported here for the runners."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.handlers import seed, substitute, trace

from inference.validate import InvalidParameterError, NonFiniteLogDensityError

__all__ = ["SiteInfo", "abstract_sites", "merge_init_rest", "nonfinite_sites", "site_log_densities",
           "raise_if_nonfinite", "NonFiniteLogDensityError",
           "InvalidParameterError", "invalid_parameters", "is_invalid_parameter_error", "name_invalid_parameters"]


class SiteInfo(NamedTuple):
    """What a program's trace says about one site, without its value: ``type`` (``"sample"`` or
    ``"deterministic"``), ``is_observed``, the value's ``shape`` and whether its distribution is
    discrete (``False`` for a deterministic site)."""

    type: str
    is_observed: bool
    shape: tuple[int, ...]
    is_discrete: bool


def abstract_sites(model: Callable, *args, key=None, **kwargs) -> dict[str, SiteInfo]:
    """``{name: SiteInfo}`` of the sample and deterministic sites of ``model(*args, **kwargs)``, in
    trace order, from one abstract trace (``jax.eval_shape`` with the PRNG key abstract, the
    arguments as given): an eager trace runs every operation of the program one at a time, each
    compiled on first use (seconds for a diffrax solve or a network's initialisation). A program
    that needs concrete values of its own draws is traced eagerly instead."""
    key = jax.random.PRNGKey(0) if key is None else key
    found: dict[str, SiteInfo] = {}

    def read(k):
        found.clear()
        for name, site in trace(seed(model, k)).get_trace(*args, **kwargs).items():
            if site["type"] in ("sample", "deterministic"):
                discrete = site["type"] == "sample" and bool(site["fn"].is_discrete)
                found[name] = SiteInfo(site["type"], bool(site.get("is_observed", False)),
                                       tuple(jnp.shape(site["value"])), discrete)

    try:
        jax.eval_shape(read, key)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
            jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError):
        read(key)
    return dict(found)


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


def _site_totals(tr) -> dict[str, jax.Array]:
    """Each sample site's summed log density (scaled, masked) in a trace."""
    out = {}
    for name, site in tr.items():
        if site["type"] != "sample":
            continue
        lp = site["fn"].log_prob(site["value"])
        if site.get("scale") is not None:
            lp = lp * site["scale"]
        mask = site.get("mask")
        if mask is not None:
            lp = jnp.where(mask, lp, 0.0)
        out[name] = jnp.sum(lp)
    return out


def site_log_densities(model: Callable, params: Mapping[str, Any], *args, **kwargs) -> dict[str, np.ndarray]:
    """``{site: (n,)}``: every sample site's log density at ``n`` points (``params`` with a leading
    axis of length ``n``), in one jitted, vmapped call (the data in ``args`` held fixed)."""
    def one(point):
        return _site_totals(trace(substitute(seed(model, jax.random.PRNGKey(0)), data=point)).get_trace(*args, **kwargs))

    return {name: np.asarray(v) for name, v in jax.jit(jax.vmap(one))(dict(params)).items()}


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


def _values(value, limit: int = 4) -> str:
    array = np.asarray(value)
    if array.ndim == 0:
        return f"{array.item():.6g}" if array.dtype.kind in "fc" else str(array.item())
    flat = array.reshape(-1)
    shown = ", ".join(f"{v:.6g}" for v in flat[:limit].astype(float))
    return f"[{shown}{', ...' if flat.size > limit else ''}] (shape {array.shape})"


def _base_distributions(fn):
    """``fn`` and the distributions it wraps (Independent, Expanded, Masked, ...)."""
    while fn is not None:
        yield fn
        fn = getattr(fn, "base_dist", None)


def invalid_parameters(model: Callable, *args, params: Mapping[str, Any] | None = None, substitute_fn=None,
                       key=None, **kwargs) -> list[str]:
    """The model's distributions whose parameters break their constraints, as messages.

    The model is traced with NumPyro's argument checks off (so the trace completes), with
    ``params`` (constrained values) or ``substitute_fn`` (an init strategy) substituted; every
    sample site's distribution (and those it wraps) is then checked against its
    ``arg_constraints``. Each message names the site, the distribution, the parameter, its
    offending values and the latent values of the sites before it. Empty when all are valid.
    """
    import numpyro
    from numpyro.distributions.util import lazy_property

    key = jax.random.PRNGKey(0) if key is None else key
    program = seed(model, key)
    if params:
        program = substitute(program, data=dict(params))
    if substitute_fn is not None:
        program = substitute(program, substitute_fn=substitute_fn)
    with numpyro.validation_enabled(False):
        tr = trace(program).get_trace(*args, **kwargs)
    found, latent = [], {}
    for name, site in tr.items():
        if site["type"] != "sample":
            continue
        for fn in _base_distributions(site["fn"]):
            for param, constraint in getattr(fn, "arg_constraints", {}).items():
                if param not in fn.__dict__ and isinstance(getattr(type(fn), param, None), lazy_property):
                    continue  # a parameter computed from another one (probs from logits)
                try:
                    value = getattr(fn, param)
                    valid = np.asarray(constraint(value))
                except Exception:  # noqa: BLE001 - a parameter the check cannot read is not reported
                    continue
                if valid.all():
                    continue
                bad = np.asarray(value)
                if bad.shape == valid.shape and bad.ndim:
                    bad = bad[~valid]
                where = ", ".join(f"{k} = {_values(v)}" for k, v in latent.items())
                found.append(f"site {name!r}: {type(fn).__name__} got {param} = {_values(bad)}, outside its "
                             f"constraint {constraint}" + (f" (where {where})" if where else ""))
        if not site["is_observed"]:
            latent[name] = site["value"]
    return found


def is_invalid_parameter_error(error: BaseException) -> bool:
    """True for NumPyro's argument-check error ("Normal distribution got invalid loc parameter.")."""
    return isinstance(error, ValueError) and not isinstance(error, InvalidParameterError) \
        and "distribution got invalid" in str(error)


def name_invalid_parameters(error: ValueError, model: Callable, *args, where: str = "", attempts=(), **kwargs):
    """NumPyro's argument-check ``error`` with the site named: :class:`InvalidParameterError`.

    ``attempts`` are keyword sets for :func:`invalid_parameters` (``params=...`` or
    ``substitute_fn=...``, ``key=...``), tried in turn until one shows the offending site; if
    none does, ``error`` itself is returned (the caller raises it).
    """
    for attempt in attempts:
        try:
            found = invalid_parameters(model, *args, **attempt, **kwargs)
        except Exception:  # noqa: BLE001 - the model fails differently there: try the next point
            continue
        if found:
            return InvalidParameterError(
                f"invalid distribution parameter{(' ' + where) if where else ''}: " + "; ".join(found[:3])
                + f". NumPyro's check said: {error}")
    return error
