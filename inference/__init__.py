"""Shared, model-agnostic inference backends and the one facade :func:`fit`.

``fit(target, data, *, method, seed=0, progress=True, **options) -> arviz.InferenceData``

``target`` is a zoo entry (anything with ``name``, ``model``, ``configs``), a state-space model
(anything with ``prior``, ``feynman_kac``, ``model``) or a plain NumPyro program
``model(data=None, ...)``. Each method's runner lives in its own module and is imported lazily,
so that importing :mod:`inference` stays cheap and a missing optional piece fails only when used.

``fit_batch(target, datasets, *, method, seeds=None, **options) -> list[InferenceData]`` fits many
data sets of one shape (simulation-based calibration, refits); NUTS runs them in one compiled loop.

Errors that name the site of the model: :class:`NonFiniteLogDensityError` (the log density is
NaN/inf) and :class:`InvalidParameterError` (a distribution's parameter breaks its constraint,
NumPyro's check with the site named); both are defined in :mod:`inference.validate`.

Importing :mod:`inference` applies the project's one precision policy (float64 unless
``DYNAMICS_ZOO_X64=0``; defined once in :mod:`diagnostics.precision`), so a plain NumPyro program
runs in the same precision whether or not ``zoo`` was imported first; every result records it in
``idata.attrs["precision"]``. It also turns on JAX's persistent compilation cache
(:mod:`diagnostics.compile_cache`; ``DYNAMICS_ZOO_COMPILE_CACHE=0`` keeps it off), so a program
compiled by one process is loaded, not compiled again, by the next. And it asks JAX, before JAX
starts, for several CPU devices (:mod:`diagnostics.devices`, ``DYNAMICS_ZOO_HOST_DEVICES``), so that
NUTS runs its chains in parallel (``chain_method="auto"``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
from collections.abc import Callable
from typing import Any

from diagnostics import compile_cache as _compile_cache
from diagnostics import devices as _devices
from diagnostics import precision as _precision

_precision.apply()
_compile_cache.apply()
_devices.apply()

from inference.types import Target  # noqa: E402
from inference.validate import InvalidParameterError, NonFiniteLogDensityError, screen_data  # noqa: E402

__all__ = ["fit", "fit_batch", "methods", "get_runner", "resolve_target", "record_entry", "Target",
           "NonFiniteLogDensityError", "InvalidParameterError"]

# method name -> "module:function"; every runner has the signature
#     runner(target: Target, *, seed: int, progress: bool, **options) -> arviz.InferenceData
_METHODS: dict[str, str] = {
    "nuts": "inference.nuts:run_numpyro_nuts",
    "blackjax-nuts": "inference.nuts:run_blackjax_nuts",
    "svi": "inference.svi:run_svi",
    "pf": "inference.particle.filter:run_filter",
    "pmmh": "inference.particle.pmmh:run_pmmh",
    "pgibbs": "inference.particle.gibbs:run_particle_gibbs",
    "ppg": "inference.particle.paris:run_ppg",
    "smc2": "inference.particle.smc2:run_smc2",
    "smc": "inference.smc:run_tempered_smc",
    "quadrature": "inference.quadrature:run_quadrature",
    "tf": "inference.train:run_teacher_forcing",
    "map": "inference.map:run_map",
    "flow": "inference.train:run_flow",
    "vae": "inference.vae:run_vae",
}


# methods that fit several data sets of one shape in one compiled run:
#     batch_runner(targets: list[Target], *, seeds: list[int], progress: bool, **options) -> list
_BATCH_METHODS: dict[str, str] = {
    "nuts": "inference.nuts_batch:run_numpyro_nuts_batch",
}


def methods() -> list[str]:
    """Names accepted by ``fit(..., method=...)``."""
    return sorted(_METHODS)


def get_runner(method: str) -> Callable[..., Any]:
    """The runner function of ``method`` (its signature lists the method's options)."""
    if method not in _METHODS:
        raise ValueError(f"method: unknown method {method!r}; expected one of {methods()}")
    module_name, func_name = _METHODS[method].split(":")
    module = importlib.import_module(module_name)
    return getattr(module, func_name)


def resolve_target(target: Any, data: Any = None, *, config: Any = "small", allow_all_missing: bool = False) -> Target:
    """Normalise an entry, a state-space model or a model function into a :class:`Target`.

    The data are screened first, the same way for every target and method
    (:func:`inference.validate.screen_data`: real numbers only, not empty, not all NaN unless
    ``allow_all_missing``; infinities are left to the model's own checks); an entry then puts them in the form its program takes
    (``entry.prepare_data``: e.g. NaN symbols become the missing stand-in of integer data, and
    non-integer symbols are refused), so that every backend sees the same data.
    """
    data = screen_data(data, allow_all_missing=allow_all_missing)
    if isinstance(target, Target):
        return target if data is None else target._replace(data=data)
    if hasattr(target, "configs") and hasattr(target, "model") and hasattr(target, "name"):
        cfg = target.config(config) if hasattr(target, "config") else target.configs[config]
        if data is not None and hasattr(target, "prepare_data"):
            data = target.prepare_data(data, cfg, allow_all_missing=allow_all_missing)
        model = functools.partial(target.model, config=cfg)
        ssm = target.ssm(cfg) if getattr(target, "ssm", None) is not None else None
        exact = None
        if getattr(target, "exact_loglik", None) is not None:
            exact = functools.partial(target.exact_loglik, config=cfg)
        observed = _observed_arrays(data)
        return Target(model=model, data=data, ssm=ssm, exact_loglik=exact,
                      dims=dict(getattr(target, "dims", {}) or {}), observed=observed, name=target.name)
    if hasattr(target, "feynman_kac") and hasattr(target, "prior") and hasattr(target, "model"):
        dims = {"x": ("time",) + tuple(f"state_dim_{i}" for i in range(len(target.state_shape))),
                "y": ("time",) + tuple(f"obs_dim_{i}" for i in range(len(target.obs_shape)))}
        return Target(model=target.model, data=data, ssm=target, dims=dims,
                      observed=_observed_arrays(data), name=getattr(target, "name", "ssm"))
    if callable(target):
        if data is not None:
            _check_accepts_data(target)
        return Target(model=target, data=data, name=getattr(target, "__name__", "model"),
                      observed=_observed_arrays(data))
    raise TypeError(
        "target: expected a zoo entry, a StateSpaceModel or a NumPyro model function; "
        f"got {type(target).__name__}"
    )


def _observed_arrays(data: Any) -> dict:
    """What goes into ``observed_data``: the data array as ``y``, or the arrays of a dict/NamedTuple."""
    import numpy as np

    if data is None:
        return {}
    if hasattr(data, "_asdict"):
        data = data._asdict()
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            array = np.asarray(value)
            if array.dtype != object and np.issubdtype(array.dtype, np.number):
                out[key] = array
        return out
    array = np.asarray(data)
    return {"y": array} if array.dtype != object and np.issubdtype(array.dtype, np.number) else {}


def _check_accepts_data(model: Callable) -> None:
    try:
        params = list(inspect.signature(model).parameters.values())
    except (TypeError, ValueError):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    if not positional:
        raise TypeError(
            f"target: model function {getattr(model, '__name__', model)!r} takes no positional "
            "argument for the data; expected model(data=None, ...)"
        )


def fit(target: Any, data: Any = None, *, method: str = "nuts", seed: int = 0, config: Any = "small",
        progress: bool = True, allow_all_missing: bool = False, **options: Any):
    """Run ``method`` on ``target`` given ``data``; return ``arviz.InferenceData``.

    Args:
        target: a ``zoo`` entry, a ``StateSpaceModel`` or a NumPyro program ``model(data=None)``.
        data: the observations (entry-specific; ``zoo show NAME`` documents it); for an entry
            with a CSV format also a pandas ``DataFrame`` of those columns (``entry.read_data``),
            whose real times become the result's ``time`` coordinate.
        method: one of :func:`methods`.
        seed: integer seed of the run's PRNG key.
        config: configuration name or object, for entries.
        progress: show a progress bar on long loops.
        allow_all_missing: accept data in which every value is NaN (missing): the likelihood is
            then masked out and the fit samples the prior. Without it such data is an error.
        **options: passed to the method's runner; unknown options raise ``TypeError`` naming them.

    Bad data is refused before any runner starts, with an error naming ``data``
    (:func:`resolve_target`).
    """
    runner = get_runner(method)
    times = None
    if _is_frame(data) and hasattr(target, "read_data"):  # a table: keep its real times
        loaded = target.read_data(data, config)
        data, times = loaded.data, loaded.times
        config = config if loaded.config is None else loaded.config  # the grid of the data's times
    resolved = resolve_target(target, data, config=config, allow_all_missing=allow_all_missing)
    _check_options(runner, method, options)
    try:
        idata = runner(resolved, seed=int(seed), progress=bool(progress), **options)
    except ValueError as error:
        named = _named_site_error(error, resolved)
        if named is error:
            raise
        raise named from None
    record_entry(idata, target, config)
    if times is not None:
        from diagnostics.convert import with_time_coord

        with_time_coord(idata, times)
    return idata


def _is_frame(data: Any) -> bool:
    """A pandas DataFrame (checked without importing pandas)."""
    return type(data).__name__ == "DataFrame" and hasattr(data, "columns") and hasattr(data, "to_numpy")


def record_entry(idata: Any, target: Any, config: Any) -> None:
    """For a zoo entry, ``idata.attrs`` ``entry``, ``config`` (the preset's name, or ``"custom"``
    for a config object) and, when the configuration holds parameters fixed instead of learning
    them (the entry's ``fixed_parameters(config)``), ``fixed_parameters`` (JSON name -> value): a
    fit never fixes a parameter without saying so in its result. Other targets: nothing."""
    if not (hasattr(target, "configs") and hasattr(target, "name")):
        return
    idata.attrs["entry"] = str(target.name)
    idata.attrs["config"] = config if isinstance(config, str) else "custom"
    fixed = target.fixed_parameters(config) if hasattr(target, "fixed_parameters") else {}
    if fixed:
        idata.attrs["fixed_parameters"] = json.dumps({name: p.value for name, p in fixed.items()}, default=str)


def _named_site_error(error: ValueError, target: Target) -> ValueError:
    """NumPyro's argument-check error ("Normal distribution got invalid loc parameter.") with the
    site, the parameter and its values named, found at the prior median or a prior draw; any other
    error unchanged."""
    from inference._sites import is_invalid_parameter_error, name_invalid_parameters

    if not is_invalid_parameter_error(error):
        return error
    from numpyro.infer import init_to_median

    import jax

    attempts = [{"substitute_fn": init_to_median(num_samples=15)}]
    attempts += [{"key": jax.random.PRNGKey(i)} for i in range(8)]
    return name_invalid_parameters(error, target.model, target.data, attempts=attempts)


def fit_batch(target: Any, datasets, *, method: str = "nuts", seeds=None, seed: int = 0, config: Any = "small",
              progress: bool = False, allow_all_missing: bool = False, **options: Any) -> list:
    """Fit ``target`` to each of ``datasets``; return one ``arviz.InferenceData`` per data set.

    For ``method="nuts"`` the data sets (one shape) run in ONE compiled NumPyro NUTS loop vmapped
    over them (:func:`inference.nuts_batch.run_numpyro_nuts_batch`; the program must accept
    traced data); every other method, and NUTS with ``precondition="laplace"`` (a host-side mode
    search per data set), fits them one by one through :func:`fit`.

    Args:
        datasets: a sequence of data sets.
        seeds: one integer seed per data set (default ``seed + i``).
        method, config, progress, allow_all_missing, options: as in :func:`fit`; every data set is
            screened as :func:`fit` screens one (an error names ``datasets[i]``).
    """
    if isinstance(datasets, (str, bytes, dict)) or not hasattr(datasets, "__iter__"):
        raise TypeError(f"datasets: expected a sequence of data sets, got {type(datasets).__name__}")
    datasets = list(datasets)
    if not datasets:
        raise ValueError("datasets: expected at least one data set")
    seeds = [seed + i for i in range(len(datasets))] if seeds is None else [int(s) for s in seeds]
    if len(seeds) != len(datasets):
        raise ValueError(f"seeds: expected one seed per data set ({len(datasets)}), got {len(seeds)}")
    resolved = []
    for i, data in enumerate(datasets):
        try:
            resolved.append(resolve_target(target, data, config=config, allow_all_missing=allow_all_missing))
        except (ValueError, TypeError) as error:
            raise type(error)(f"datasets[{i}]: {error}") from None
    # NUTS's Laplace preconditioning searches each data set's mode on the host (SciPy's L-BFGS-B):
    # those fits run one by one, as the other methods' do
    if method not in _BATCH_METHODS or options.get("precondition", "none") != "none":
        return [fit(one, None, method=method, seed=s, progress=progress, **options)
                for one, s in zip(resolved, seeds)]
    module_name, func_name = _BATCH_METHODS[method].split(":")
    runner = getattr(importlib.import_module(module_name), func_name)
    _check_options(runner, method, options)
    targets = [one._replace(observed=_observed_arrays(one.data)) for one in resolved]
    results = runner(targets, seeds=seeds, progress=bool(progress), **options)
    for idata in results:
        record_entry(idata, target, config)
    return results


def _check_options(runner: Callable, method: str, options: dict) -> None:
    params = inspect.signature(runner).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        accepted = sorted(name for name, p in params.items()
                          if p.kind == p.KEYWORD_ONLY and name not in ("seed", "progress"))
        raise TypeError(f"options: method {method!r} does not accept {unknown}; accepted options: {accepted}")
