"""The two shared contracts of the zoo: :class:`ZooEntry` and :class:`StateSpaceModel`.

A ``ZooEntry`` is plain data describing one paper's model: its NumPyro program, simulator,
configurations, default inference recipe and recovery check.

A ``StateSpaceModel`` is three pure functions returning ``numpyro.distributions`` objects::

    x_0 ~ initial(params)
    x_t ~ transition(params, t, x_{t-1})      t = 1..T-1
    y_t ~ emission(params, t, x_t)            t = 0..T-1

plus ``prior()``, a NumPyro program that samples the static parameters and returns them as a dict.
Everything else is derived here, once: the NumPyro program over ``scan`` (NaN observations are
missing and masked out of the likelihood), ``simulate``, the exact log-joint and the Feynman–Kac
adapters consumed by ``inference.particle`` (which states its needs as Protocols in
``inference/types.py`` and never imports ``zoo``).

This module imports nothing from ``inference`` but ``inference.validate`` (the shared input
checks; ``is_traced`` is re-exported from there), and nothing from ``diagnostics``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan
from numpyro.handlers import mask, seed, substitute, trace

from inference.validate import is_traced  # the one "is this traced" test (re-exported)
from zoo._tabular import Columns

__all__ = [
    "Check",
    "Columns",
    "FixedParameter",
    "Recipe",
    "recipes_now",
    "ZooEntry",
    "StateSpaceModel",
    "FeynmanKac",
    "masked_log_prob",
    "posterior_draws",
    "interval_covers",
    "check_covers",
    "JOINT_COVERAGE",
    "check_close",
    "is_traced",
    "with_overrides",
    "check_ranges",
]


# --------------------------------------------------------------------------------------------
# Small records
# --------------------------------------------------------------------------------------------


class Check(NamedTuple):
    """One line of a recovery check: a named pass/fail with the figure that decided it.

    ``value`` is the measured figure, ``target`` says what it was held against in words
    (e.g. ``"|E[H]-0.7| < 0.08"``), ``detail`` anything a reader needs to judge it.
    """

    name: str
    passed: bool
    value: float
    target: str
    detail: str = ""


class Recipe(NamedTuple):
    """The default inference for an entry: a method name of ``inference.fit`` and its options.

    ``paper_options`` override ``options`` for the ``"paper"`` configuration.
    """

    method: str
    options: Mapping[str, Any] = {}
    paper_options: Mapping[str, Any] = {}

    def options_for(self, config_name: str) -> dict[str, Any]:
        merged = dict(self.options)
        if config_name == "paper":
            merged.update(self.paper_options)
        return merged


def recipes_now(entries) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(entry, config): {"method", "options"}}``: the recipes of ``entries`` for each of their
    configs, as ``diagnostics.calibration.calibration_table(recipes=...)`` compares them with the
    recipe a stored result ran."""
    return {(entry.name, config): {"method": entry.recipe.method, "options": entry.recipe.options_for(config)}
            for entry in entries for config in entry.configs}


class FixedParameter(NamedTuple):
    """A parameter that a configuration holds fixed instead of learning it from the data.

    ``value`` is the value the model uses (a number or nested list); ``free`` the override
    (``field=value``, as given to ``zoo fit --set`` or :meth:`ZooEntry.config`) that learns it,
    or, where the model cannot learn it, the bare name of the field that sets its value.
    A configuration declares its fixed parameters with a method
    ``fixed_parameters(self) -> dict[str, FixedParameter]`` (:meth:`ZooEntry.fixed_parameters`).
    """

    value: Any
    free: str


def with_overrides(config: Any, overrides: Mapping[str, Any], *, argument: str = "config") -> Any:
    """``config`` (a frozen dataclass) with the fields in ``overrides`` replaced.

    ``dataclasses.replace`` builds the new object, so the configuration's own ``__post_init__``
    validation runs. Each value is first checked against the field's annotation (``bool``,
    ``int``, ``float`` (an int is accepted and converted), ``str``, ``tuple`` (a list is
    converted, nested lists too, so the configuration stays hashable), ``X | None``); fields
    whose annotation cannot be resolved take the value as given. Errors are ``ValueError``
    whose one line starts with ``argument`` (``"--set"`` on the command line): an unknown key
    names the known fields; a bad value names ``argument KEY``.
    """
    if not overrides:
        return config
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ValueError(f"{argument}: the configuration ({type(config).__name__}) is not a dataclass "
                         "and takes no overrides")
    fields = {f.name: f for f in dataclasses.fields(config) if f.init}
    try:
        hints = typing.get_type_hints(type(config))
    except Exception:  # noqa: BLE001 - an annotation that cannot be evaluated: no type check
        hints = {}
    values = {}
    for key, value in overrides.items():
        if key not in fields:
            raise ValueError(f"{argument}: {type(config).__name__} has no field {key!r}; "
                             f"known fields: {', '.join(fields)}")
        ok, coerced = _coerce(hints.get(key), value)
        if not ok:
            raise ValueError(f"{argument} {key}: expected {_hint_name(hints[key])}, got {value!r}")
        problem = _outside_every_domain(coerced)
        if problem:
            raise ValueError(f"{argument} {key}: {problem}")
        values[key] = coerced
    try:
        return dataclasses.replace(config, **values)
    except (ValueError, TypeError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise ValueError(f"{argument} {', '.join(values)}: {' '.join(str(message).split())}") from None


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def _coerce(hint: Any, value: Any) -> tuple[bool, Any]:
    """(whether ``value`` fits the annotation ``hint``, the value converted to it)."""
    if hint is None or hint is Any:
        return True, _hashable(value)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            ok, coerced = _coerce(arg, value)
            if ok:
                return True, coerced
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    base = origin or hint
    if base is tuple:
        return isinstance(value, (tuple, list)), _hashable(value)
    if isinstance(base, type) and base is not object:
        return isinstance(value, base), value
    return True, _hashable(value)


def check_ranges(config: Any) -> None:
    """The range checks a configuration declares, for its ``__post_init__`` to call.

    A configuration class lists its fields by kind in two class attributes (``typing.ClassVar``,
    not fields): ``COUNTS``, integers that must be at least 1 (numbers of series, steps, particles,
    sizes), and ``POSITIVE``, numbers that must be finite and above 0 (scales, time steps,
    horizons, volumes); a tuple-valued field is checked element by element (an empty tuple, e.g. no
    hidden layers, passes). A ``ValueError`` names the first field out of its range (``with_overrides`` adds the ``--set`` key in front).
    Every integer field is a size, count, index or seed, so negative integers and non-finite
    numbers are refused for every field by :func:`with_overrides`; zero is refused only where
    ``COUNTS`` says so (a ReLU count, a burn-in or an index may be 0).
    """
    for name in getattr(config, "COUNTS", ()):
        value = getattr(config, name)
        items = tuple(_flat(value)) if isinstance(value, tuple) else (value,)
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in items):
            raise ValueError(f"{name}: expected {'integers' if isinstance(value, tuple) else 'an integer'} >= 1, "
                             f"got {value!r}")
    for name in getattr(config, "POSITIVE", ()):
        value = getattr(config, name)
        items = tuple(_flat(value)) if isinstance(value, tuple) else (value,)
        if any(isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))
               or not (math.isfinite(v) and v > 0) for v in items):
            what = "positive finite numbers" if isinstance(value, tuple) else "a positive finite number"
            raise ValueError(f"{name}: expected {what}, got {value!r}")


def _outside_every_domain(value: Any) -> str | None:
    """What no configuration field accepts, whatever its meaning: a NaN or infinite number (also
    inside a tuple), a negative integer (every integer field of the zoo's configurations is a size,
    a count, an index or a seed). ``None`` when ``value`` passes; the field's own range (a count of
    at least 1, a positive scale) is its configuration's ``__post_init__``'s to check."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return f"expected a non-negative integer (a size, count or index), got {value!r}"
    if isinstance(value, tuple):
        bad = [v for v in _flat(value) if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            return f"expected finite numbers, got {bad[0]!r} in {value!r}"
    return None


def _flat(value: tuple) -> Iterator[Any]:
    for item in value:
        if isinstance(item, tuple):
            yield from _flat(item)
        else:
            yield item


def _hint_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One zoo entry per paper. Plain data; behaviour lives in the functions it points to.

    Attributes:
        name: registry key (``zoo.get(name)``).
        title, reference, summary: the paper's title, arXiv id or DOI, one paragraph in our words.
        model: ``model(data=None, *, config)``, the NumPyro program; with ``data=None`` it is the
            prior predictive.
        simulate: ``simulate(key, config) -> (data, truth)``; ``truth`` maps parameter (and,
            where useful, latent) names to their true values.
        configs: named presets, at least ``"small"`` and ``"paper"``.
        recipe: default :class:`Recipe` that makes the recovery check pass on ``"small"``.
        check: ``check(idata, truth, config) -> list[Check]``, the recovery check.
        ssm: ``ssm(config) -> StateSpaceModel`` where the model is a state-space model, else None.
        exact_loglik: ``exact_loglik(params, data, config) -> scalar`` where a tractable marginal
            likelihood exists, else None.
        paths: ``paths(key, params, data, config) -> {"x": latent path, "y_one_step": draws}``,
            one draw of the latent path from ``p(x | y, params)`` and of each ``y_t`` from its
            one-step-ahead predictive, where the model is a state-space model with an exact
            smoother (the family builders' ``path_draws``); :func:`zoo.posterior_paths` calls it
            at posterior draws. None where there is none.
        dims: InferenceData dimension names for sites, e.g. ``{"y": ("series", "time")}``.
        data_doc: what ``data`` is, and the CSV columns ``zoo fit --data`` accepts (generated
            from ``columns`` when left empty).
        columns: the CSV format declared (:class:`~zoo._tabular.Columns`: which columns are
            series, time and observation channels); it generates ``load_columns``,
            ``dump_columns`` and ``data_doc``. Entries whose data is not one long table leave it
            None and write the pair by hand.
        load_columns: ``load_columns(columns: dict[str, np.ndarray], config) -> data`` for a
            user's CSV (None: CSV input not supported); generated from ``columns``.
        dump_columns: ``dump_columns(data, config) -> dict[str, np.ndarray]`` (for ``zoo simulate``);
            generated from ``columns``.
        prior_data: ``prior_data(values: dict, config) -> data``: the data a fit takes, made from
            the values of the prior predictive's sample and deterministic sites (simulation-based
            calibration, ``inference.prior_predictive.prior_simulate``); None: the site ``y`` is
            the data. For entries whose data is a record (observation times with the counts).
        rank_sites: the sites whose true values simulation-based calibration ranks among the
            posterior draws (``zoo sbc``; sample or deterministic sites of the prior predictive,
            recorded by the fit too); None: the latent sample sites of ``model(data)``. For
            entries that sample a reparameterisation built from the data, whose prior draw
            (without data) is not the same variable: they rank the site the prior draws.
        estimands: ``estimands(idata, data, config) -> {name: value}`` for a recipe that returns a
            point estimate (a trained network, a flow; ``data``: what the fit was given, for a
            forecaster scored on its test part): quantities the fit implies whose true values
            ``simulate``'s truth names with the same shape (a reconstructed attractor's moments, a
            sampler's basin occupancies), computed by the same functions as ``check``. ``zoo
            estimates`` pairs them with the truth as it pairs a fit's estimated parameters
            (``diagnostics.estimates``); a name both give is the estimand's. None: the point
            estimate's parameters alone.
    """

    name: str
    title: str
    reference: str
    summary: str
    model: Callable[..., Any]
    simulate: Callable[..., tuple[Any, dict]]
    configs: Mapping[str, Any]
    recipe: Recipe
    check: Callable[..., list[Check]]
    ssm: Callable[[Any], "StateSpaceModel"] | None = None
    exact_loglik: Callable[..., Any] | None = None
    paths: Callable[..., dict] | None = None
    dims: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    data_doc: str = ""
    load_columns: Callable[..., Any] | None = None
    dump_columns: Callable[..., dict] | None = None
    columns: Columns | None = None
    prior_data: Callable[[dict, Any], Any] | None = None
    rank_sites: tuple[str, ...] | None = None
    estimands: Callable[[Any, Any, Any], dict] | None = None

    def __post_init__(self) -> None:
        for required in ("small", "paper"):
            if required not in self.configs:
                raise ValueError(
                    f"ZooEntry {self.name!r}: configs must contain {required!r}; "
                    f"got {sorted(self.configs)}"
                )
        if self.rank_sites is not None:
            sites = self.rank_sites
            if isinstance(sites, str) or not sites or not all(isinstance(n, str) and n for n in sites):
                raise ValueError(f"ZooEntry {self.name!r}: rank_sites: expected a non-empty tuple of site names, "
                                 f"got {sites!r}")
            object.__setattr__(self, "rank_sites", tuple(sites))
        if self.columns is not None:
            if self.load_columns is not None or self.dump_columns is not None:
                raise ValueError(f"ZooEntry {self.name!r}: give columns (a Columns spec) or a hand-written "
                                 "load_columns/dump_columns pair, not both")
            object.__setattr__(self, "load_columns", self.columns.load)
            object.__setattr__(self, "dump_columns", self.columns.dump)
            if not self.data_doc:
                object.__setattr__(self, "data_doc", self.columns.doc())

    def prepare_data(self, data: Any, config: Any, *, allow_all_missing: bool = False) -> Any:
        """``data`` as given in Python, in the form :attr:`model` takes it (``inference.fit``
        calls this after its own screening): with a column spec, the spec's rules
        (:meth:`Columns.prepare`: NaN is missing in integer data too, whole numbers only, one
        array where the data is one array); without one, ``data`` unchanged."""
        if self.columns is None:
            return data
        return self.columns.prepare(data, self.config(config), allow_all_missing=allow_all_missing)

    def read_data(self, table: Any, config: Any = "small") -> Any:
        """A user's table in the entry's CSV format (a pandas ``DataFrame`` or a dict of 1-D
        columns; ``data_doc`` states the columns) -> :class:`zoo._tabular.Loaded` ``(data,
        times)``: the data as :attr:`model` takes it and the real times of its time axis, which
        ``inference.fit(entry, frame)`` puts in the result's ``time`` coordinate. Entries without
        a column spec have no table format: ``ValueError``."""
        if self.columns is None:
            raise ValueError(f"data: entry {self.name!r} does not read tabular data; its data_doc says what it takes")
        if hasattr(table, "columns") and hasattr(table, "to_numpy"):  # a pandas DataFrame
            columns = {}
            for name in table.columns:
                try:
                    columns[str(name)] = table[name].to_numpy(dtype=float)
                except (TypeError, ValueError):
                    raise ValueError(f"data: column {name!r} holds values that are not numbers") from None
        elif isinstance(table, Mapping):
            columns = {str(name): np.asarray(values, dtype=float) for name, values in table.items()}
        else:
            raise TypeError(f"data: expected a pandas DataFrame or a dict of columns, got {type(table).__name__}")
        return self.columns.read(columns, self.config(config))

    def config(self, name_or_config: Any = "small", /, **overrides: Any) -> Any:
        """The configuration called ``name_or_config`` (or the object itself if not a string),
        with any field replaced by ``overrides`` (:func:`with_overrides`: the configuration's own
        validation runs), e.g. ``entry.config("scalar", fixed_noise=False, num_steps=400)``."""
        if not isinstance(name_or_config, str):
            return with_overrides(name_or_config, overrides)
        if name_or_config not in self.configs:
            raise ValueError(
                f"config: entry {self.name!r} has no config {name_or_config!r}; "
                f"expected one of {sorted(self.configs)}"
            )
        return with_overrides(self.configs[name_or_config], overrides)

    def fixed_parameters(self, config: Any = "small") -> dict[str, FixedParameter]:
        """The parameters ``config`` holds fixed rather than learns (name -> :class:`FixedParameter`),
        as the configuration declares them (its ``fixed_parameters()`` method); empty when it
        declares none. ``zoo fit --data`` says so on stderr and records them in the result."""
        declared = getattr(self.config(config), "fixed_parameters", None)
        return dict(declared()) if callable(declared) else {}


# --------------------------------------------------------------------------------------------
# State-space models
# --------------------------------------------------------------------------------------------


class FeynmanKac(NamedTuple):
    """Per-particle adapters of a state-space model for one observation sequence.

    All functions act on ONE particle; particle backends ``vmap`` them.

    sample_initial(key) -> x_0
    initial_log_density(x_0) -> scalar
    sample_transition(key, t, x_prev) -> x_t                (t = 1..T-1)
    transition_log_density(t, x_prev, x_t) -> scalar
    emission_log_weight(t, x_t) -> log p(y_t | x_t); 0 where y_t is missing (NaN)
    num_steps: T
    initial_dist() -> Distribution of x_0; transition_dist(t, x_prev) -> Distribution of x_t
        (optional, may be None): the constructors behind the samplers, still for ONE particle;
        a backend may vmap them into one batched distribution and draw the whole cloud with one key.
    """

    sample_initial: Callable
    initial_log_density: Callable
    sample_transition: Callable
    transition_log_density: Callable
    emission_log_weight: Callable
    num_steps: int
    initial_dist: Callable | None = None
    transition_dist: Callable | None = None


def _is_missing(y: jax.Array, obs_ndim: int) -> jax.Array:
    """Boolean mask over the batch part of ``y``: True where an element is NaN."""
    return jnp.isnan(y)


_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def normal_log_prob(loc, scale, value):
    """``log N(value; loc, scale²) = -((value - loc) / scale)² / 2 - log(scale) - log(2π) / 2``.

    The density of NumPyro's ``Normal(loc, scale).log_prob`` (tested equal to it to rounding), with
    ``log(scale)`` kept alone rather than NumPyro's ``log(sqrt(2π) scale)``: when ``scale`` is
    ``exp(z)`` (stochastic volatility's ``exp(x / 2)``) XLA folds ``log(exp(z))`` to ``z``. What
    :func:`masked_log_prob` evaluates for a ``Normal`` (the particle filters' emission weights).
    """
    z = (value - loc) / scale
    return -0.5 * z * z - jnp.log(scale) - _HALF_LOG_2PI


def _log_prob(d: dist.Distribution, value: jax.Array) -> jax.Array:
    """``d.log_prob(value)``, through :func:`normal_log_prob` when ``d`` is a ``Normal``."""
    if type(d) is dist.Normal:
        return normal_log_prob(d.loc, d.scale, value)
    return d.log_prob(value)


def masked_log_prob(d: dist.Distribution, y: jax.Array) -> jax.Array:
    """``log p(y)`` with NaN entries of ``y`` treated as missing.

    For an ``Independent`` distribution over a vector the NaN components are dropped one by one
    (the base distribution's log-density is summed over observed components only); for any other
    distribution a NaN anywhere in ``y`` makes the whole observation missing (log-weight 0).
    Shapes: ``y`` has ``d.batch_shape + d.event_shape``; returns ``d.batch_shape``.
    """
    missing = jnp.isnan(y)
    y_filled = jnp.where(missing, _safe_fill(d), y)
    if isinstance(d, dist.Independent):
        elementwise = _log_prob(d.base_dist, y_filled)
        elementwise = jnp.where(missing, 0.0, elementwise)
        axes = tuple(range(-d.reinterpreted_batch_ndims, 0))
        return elementwise.sum(axis=axes) if axes else elementwise
    if getattr(d.support, "is_discrete", False):  # integer-valued laws take integer values
        y_filled = y_filled.astype(jnp.int32)
    lp = _log_prob(d, y_filled)
    event_axes = tuple(range(-len(d.event_shape), 0)) if d.event_shape else ()
    any_missing = missing.any(axis=event_axes) if event_axes else missing
    return jnp.where(any_missing, 0.0, lp)


def _safe_fill(d: dist.Distribution):
    """A value inside the support of ``d`` used in place of NaN before masking."""
    try:
        return jax.lax.stop_gradient(d.mean)
    except (NotImplementedError, AttributeError):
        return 0.0


@dataclasses.dataclass(frozen=True)
class StateSpaceModel:
    """A state-space model given by three distribution-returning pure functions and a prior.

    Attributes:
        prior: NumPyro program ``prior() -> dict`` of static parameters (site names are the
            parameter names used everywhere: NUTS, PMMH, particle Gibbs, InferenceData).
        initial: ``initial(params) -> Distribution`` over ``x_0`` (event shape ``state_shape``).
        transition: ``transition(params, t, x_prev) -> Distribution`` over ``x_t``.
        emission: ``emission(params, t, x) -> Distribution`` over ``y_t`` (event shape
            ``obs_shape``).
        state_shape: shape of one latent state, e.g. ``(2,)`` or ``()``.
        obs_shape: shape of one observation; data of shape ``(T, *obs_shape)`` is one sequence,
            ``(S, T, *obs_shape)`` is S independent sequences sharing the parameters.
        name: used in messages.
    """

    prior: Callable[[], dict]
    initial: Callable[[dict], dist.Distribution]
    transition: Callable[[dict, Any, jax.Array], dist.Distribution]
    emission: Callable[[dict, Any, jax.Array], dist.Distribution]
    state_shape: tuple[int, ...] = ()
    obs_shape: tuple[int, ...] = ()
    name: str = "ssm"

    # -- data handling ---------------------------------------------------------------------
    def split_series(self, ys: jax.Array) -> jax.Array:
        """Return ``ys`` as ``(S, T, *obs_shape)``, validating its trailing shape."""
        ys = jnp.asarray(ys)
        k = len(self.obs_shape)
        if ys.ndim not in (k + 1, k + 2) or tuple(ys.shape[ys.ndim - k :]) != tuple(self.obs_shape):
            raise ValueError(
                f"ys: {self.name} expects observations of shape (T, *{self.obs_shape}) or "
                f"(S, T, *{self.obs_shape}); got shape {tuple(ys.shape)}"
            )
        return ys if ys.ndim == k + 2 else ys[None]

    # -- derived NumPyro program -------------------------------------------------------------
    def model(self, ys: jax.Array | None = None, *, num_steps: int | None = None) -> None:
        """The NumPyro program: parameters, then latent path ``x`` and observations ``y``.

        Sites: the prior's parameter sites; ``x_init``/``y_init`` (t=0) and ``x_rest``/``y_rest``
        (t=1..T-1, inside ``scan``; NaN observations masked), and the deterministic ``x`` = full
        path ``(T, *state)`` (``(S, T, *state)`` for S sequences) and, for the prior
        predictive, ``y``. Backends join ``*_init``/``*_rest`` arrays into one time axis.
        With several sequences ``(S, T, ...)`` a plate ``series`` wraps the latent path.
        """
        params = self.prior()
        if ys is None:
            if num_steps is None:
                raise ValueError("num_steps: required when ys is None (prior predictive)")
            self._path(params, None, num_steps)
            return
        ys = jnp.asarray(ys)
        k = len(self.obs_shape)
        if ys.ndim == k + 2:
            self._path(params, ys, ys.shape[1], batched=True)
        else:
            self.split_series(ys)
            self._path(params, ys, ys.shape[0])

    def _path(self, params, ys, num_steps, batched: bool = False):
        # NumPyro forbids scan under a plate, so the plate over sequences opens inside each step.
        def series_plate():
            if batched:
                return numpyro.plate("series", ys.shape[0], dim=-1)
            return contextlib.nullcontext()

        def emit(site, t, x):
            with series_plate():
                return _emit(site, t, x)

        def _emit(site, t, x):
            d = self.emission(params, t, x)
            if ys is None:
                return numpyro.sample(site, d)
            y_t = _take_time(ys, t, batched)
            observed = ~jnp.isnan(y_t)
            if d.event_shape:
                observed_step = observed.reshape(observed.shape[: observed.ndim - len(d.event_shape)] + (-1,)).all(-1)
            else:
                observed_step = observed
            y_fill = jnp.where(observed, y_t, _safe_fill(d))
            if getattr(d.support, "is_discrete", False):  # integer-valued laws take integer values
                y_fill = y_fill.astype(jnp.int32)
            with mask(mask=observed_step):
                return numpyro.sample(site, d, obs=y_fill)

        with series_plate():
            x0 = numpyro.sample("x_init", self.initial(params))
        y0 = emit("y_init", 0, x0)

        def step(x_prev, t):
            with series_plate():
                x = numpyro.sample("x_rest", self.transition(params, t, x_prev))
            y = emit("y_rest", t, x)
            return x, (x, y)

        if num_steps > 1:
            _, (xs, ys_sim) = scan(step, x0, jnp.arange(1, num_steps))
            axis = 1 if batched else 0
            path = jnp.concatenate([jnp.expand_dims(x0, axis), jnp.moveaxis(xs, 0, axis)], axis=axis)
            y_path = jnp.concatenate([jnp.expand_dims(y0, axis), jnp.moveaxis(ys_sim, 0, axis)], axis=axis)
        else:
            path = jnp.expand_dims(x0, 0)
            y_path = jnp.expand_dims(y0, 0)
        numpyro.deterministic("x", path)
        if ys is None:
            numpyro.deterministic("y", y_path)

    # -- simulation --------------------------------------------------------------------------
    def simulate(self, key: jax.Array, params: dict, num_steps: int) -> tuple[jax.Array, jax.Array]:
        """Draw ``(xs, ys)`` of shapes ``(T, *state_shape)``, ``(T, *obs_shape)`` given params."""
        if num_steps < 1:
            raise ValueError(f"num_steps: expected a positive integer, got {num_steps}")
        k_init, k_obs0, k_rest = jax.random.split(key, 3)
        x0 = self.initial(params).sample(k_init)
        y0 = self.emission(params, 0, x0).sample(k_obs0)

        def step(x_prev, inputs):
            t, k = inputs
            k_x, k_y = jax.random.split(k)
            x = self.transition(params, t, x_prev).sample(k_x)
            y = self.emission(params, t, x).sample(k_y)
            return x, (x, y)

        ts = jnp.arange(1, num_steps)
        _, (xs, ys) = jax.lax.scan(step, x0, (ts, jax.random.split(k_rest, num_steps - 1)))
        xs = jnp.concatenate([x0[None], xs], axis=0)
        ys = jnp.concatenate([y0[None], ys], axis=0)
        return xs, ys

    def sample_prior(self, key: jax.Array) -> dict:
        """One draw of the static parameters: the dict ``prior()`` returns (deterministic
        parameters such as transformed means included)."""
        return dict(seed(self.prior, key)())

    # -- exact log-joint ---------------------------------------------------------------------
    def log_joint(self, params: dict, xs: jax.Array, ys: jax.Array) -> jax.Array:
        """``log p(x_{0:T-1}, y_{0:T-1} | params)`` for one sequence (missing y masked)."""
        num_steps = xs.shape[0]
        lp = self.initial(params).log_prob(xs[0])
        if num_steps > 1:
            ts = jnp.arange(1, num_steps)
            lp_trans = jax.vmap(lambda t, xp, x: self.transition(params, t, xp).log_prob(x))(ts, xs[:-1], xs[1:])
            lp = lp + lp_trans.sum()
        ts_all = jnp.arange(num_steps)
        lp_obs = jax.vmap(lambda t, x, y: masked_log_prob(self.emission(params, t, x), y))(ts_all, xs, ys)
        return lp + lp_obs.sum()

    def prior_log_density(self, params: dict) -> jax.Array:
        """``log p(params)`` under ``prior()`` (constrained space, no Jacobian)."""
        tr = trace(substitute(seed(self.prior, jax.random.PRNGKey(0)), data=params)).get_trace()
        return sum(
            jnp.sum(site["fn"].log_prob(site["value"]))
            for site in tr.values()
            if site["type"] == "sample" and not site["is_observed"]
        )

    # -- Feynman–Kac adapters ----------------------------------------------------------------
    def feynman_kac(self, params: dict, ys: jax.Array) -> FeynmanKac:
        """Bootstrap Feynman–Kac adapters for ONE sequence ``ys`` of shape ``(T, *obs_shape)``."""
        ys = jnp.asarray(ys)
        if ys.ndim != len(self.obs_shape) + 1:
            raise ValueError(
                f"ys: feynman_kac takes one sequence of shape (T, *{self.obs_shape}); got "
                f"{tuple(ys.shape)} (loop or vmap over sequences outside)"
            )

        def sample_initial(key):
            return self.initial(params).sample(key)

        def initial_log_density(x):
            return self.initial(params).log_prob(x)

        def sample_transition(key, t, x_prev):
            return self.transition(params, t, x_prev).sample(key)

        def transition_log_density(t, x_prev, x):
            return self.transition(params, t, x_prev).log_prob(x)

        def emission_log_weight(t, x):
            return masked_log_prob(self.emission(params, t, x), ys[t])

        return FeynmanKac(
            sample_initial=sample_initial,
            initial_log_density=initial_log_density,
            sample_transition=sample_transition,
            transition_log_density=transition_log_density,
            emission_log_weight=emission_log_weight,
            num_steps=int(ys.shape[0]),
            initial_dist=lambda: self.initial(params),
            transition_dist=lambda t, x_prev: self.transition(params, t, x_prev),
        )


def _take_time(ys, t, batched):
    return ys[:, t] if batched else ys[t]


# --------------------------------------------------------------------------------------------
# Helpers for recovery checks (read an InferenceData's posterior; no diagnostics import)
# --------------------------------------------------------------------------------------------


def posterior_draws(idata, var: str) -> np.ndarray:
    """All posterior draws of ``var`` flattened over (chain, draw): shape ``(n, *var_shape)``."""
    if var not in idata.posterior:
        raise KeyError(f"var: {var!r} is not in the posterior; have {sorted(idata.posterior.data_vars)}")
    values = np.asarray(idata.posterior[var].values)
    return values.reshape((-1,) + values.shape[2:])


#: The level of an entry's ONE joint coverage statement (``check_covers(prob=JOINT_COVERAGE,
#: num_comparisons=...)`` over every parameter it checks): a declared false-alarm budget of 1% per
#: data set, so that ``zoo check`` at a fixed seed fails by chance on about one entry in a hundred
#: rather than one in ten (separate 90% intervals over three parameters: up to 27%).
JOINT_COVERAGE = 0.99


def interval_covers(idata, var: str, truth, prob: float = 0.9, *,
                    num_comparisons: int = 1) -> tuple[bool, np.ndarray, np.ndarray]:
    """Whether central intervals of ``var`` cover ``truth`` jointly with probability ``prob``.

    For a variable with ``n`` elements each element gets a central interval of level
    ``1 - (1 - prob) / (n * num_comparisons)`` (Bonferroni), so that under a calibrated posterior
    all ``n`` elements are covered together with probability at least ``prob``; for a scalar this
    is the plain central ``prob`` interval. ``num_comparisons > 1`` shares the ``1 - prob``
    false-alarm budget with that many other variables checked the same way (one joint statement
    over several parameters: with three separate 90% intervals a calibrated posterior misses at
    least one in up to 27% of data sets).
    """
    if not (isinstance(num_comparisons, (int, np.integer)) and num_comparisons >= 1):
        raise ValueError(f"num_comparisons: expected an integer >= 1, got {num_comparisons!r}")
    draws = posterior_draws(idata, var)
    truth = np.asarray(truth)
    n = max(int(np.prod(draws.shape[1:])), 1) * int(num_comparisons)
    level = 1 - (1 - prob) / n
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return bool(np.all((lo <= truth) & (truth <= hi))), lo, hi


def check_covers(idata, var: str, truth, prob: float = 0.9, *, num_comparisons: int = 1) -> Check:
    """A :class:`Check` that the joint ``prob`` intervals of ``var`` cover ``truth`` (see
    :func:`interval_covers`; ``num_comparisons`` variables share the ``1 - prob`` budget)."""
    ok, lo, hi = interval_covers(idata, var, truth, prob, num_comparisons=num_comparisons)
    joint = np.size(truth) > 1 or num_comparisons > 1
    return Check(
        name=(f"joint {int(round(prob * 100))}% interval of {var} covers truth" if num_comparisons > 1
              else f"{int(round(prob * 100))}% interval of {var} covers truth"),
        passed=ok,
        value=float(np.mean(np.asarray(truth))),
        target=f"[{np.round(lo, 4).tolist()}, {np.round(hi, 4).tolist()}] ∋ {np.round(np.asarray(truth), 4).tolist()}",
        detail=(f"Bonferroni levels over {np.size(truth) * num_comparisons} element(s), joint coverage >= "
                f"{prob:g}" if joint else ""),
    )


def check_close(idata, var: str, truth, tol: float, *, relative: bool = False) -> Check:
    """A :class:`Check` that ``|E[var] - truth| < tol`` (or relative error < tol), max over elements."""
    mean = posterior_draws(idata, var).mean(axis=0)
    truth = np.asarray(truth)
    err = np.abs(mean - truth)
    if relative:
        err = err / np.abs(truth)
    worst = float(np.max(err))
    kind = "relative error" if relative else "|E - truth|"
    return Check(
        name=f"posterior mean of {var} close to truth",
        passed=worst < tol,
        value=worst,
        target=f"{kind} < {tol}",
        detail=f"E[{var}] = {np.round(mean, 4).tolist()}, truth = {np.round(truth, 4).tolist()}",
    )
