"""The unconstrained parameter space of a state-space model's ``prior()``, from NumPyro's transforms.

PMMH, particle Gibbs and SMC² move the static parameters ``θ`` in the same unconstrained space
NUTS uses: each sample site ``s`` of ``prior()`` with support ``S`` is mapped by
``biject_to(S)`` from ``R^{d_s}``; the sites' unconstrained values are flattened into one vector
``z ∈ R^d`` (``jax.flatten_util.ravel_pytree``, sites in the prior's order). The log prior density
in ``z`` includes the Jacobian::

    log p(z) = sum_s [ log p_s(T_s(z_s)) + log |det dT_s(z_s)/dz_s| ]  =  -potential_energy(z)

(``numpyro.infer.util.potential_energy`` on the prior program). The starting point is the prior
median (``init_to_median``) or any NumPyro init strategy.

What the particle runners (PMMH, particle Gibbs, PPG, SMC²) share about the space: chains start
at :func:`initial_positions` (the prior median or given values, jittered) and their
unconstrained draws are reported by :func:`constrained_draws`.

Public API: :class:`ParameterSpace`, :func:`build_space`, :func:`site_shapes` (the sites without
the start-point search), :func:`returned_params`, :func:`initial_positions`,
:func:`constrained_draws`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer import init_to_mean, init_to_median, init_to_sample, init_to_uniform
from numpyro.infer.util import constrain_fn, initialize_model, potential_energy, unconstrain_fn

from inference._sites import abstract_sites
from inference.types import Array, PRNGKey
from inference.validate import is_traced

__all__ = ["ParameterSpace", "build_space", "site_shapes", "returned_params", "initial_positions",
           "constrained_draws"]

_INIT_STRATEGIES = {
    # The median of 101 prior draws per site (NumPyro's default uses 15).
    "median": init_to_median(num_samples=101),
    "mean": init_to_mean(),
    "uniform": init_to_uniform(),
    "sample": init_to_sample(),
}


class ParameterSpace(NamedTuple):
    """The unconstrained space ``R^d`` of a prior program's sample sites.

    names: sample-site names, in the prior's order.
    shapes: ``{name: shape}`` of each site's (constrained) value.
    dim: ``d``, the length of a flat unconstrained vector.
    init_position: ``(d,)`` the starting point (prior median by default).
    ravel: ``dict of unconstrained values -> (d,)``; unravel: the inverse.
    to_constrained: ``(d,) -> {name: constrained value}`` (sample sites only).
    to_unconstrained: ``{name: constrained value} -> (d,)``.
    to_params: ``(d,) -> dict``: what ``prior()`` returns at those values (the dict the state-space
        model's ``initial/transition/emission`` take).
    params_from_constrained: ``{name: constrained value} -> dict`` returned by ``prior()``.
    log_prior: ``(d,) -> scalar`` ``log p(z)`` including ``log |Jacobian|``.
    to_posterior: ``(d,) -> {name: value}``: the constrained sample sites and the prior's
        ``numpyro.deterministic`` sites (what runners store in ``posterior``).
    """

    names: tuple[str, ...]
    shapes: Mapping[str, tuple[int, ...]]
    dim: int
    init_position: Array
    ravel: Callable[[dict], Array]
    unravel: Callable[[Array], dict]
    to_constrained: Callable[[Array], dict]
    to_unconstrained: Callable[[Mapping[str, Any]], Array]
    to_params: Callable[[Array], dict]
    params_from_constrained: Callable[[Mapping[str, Any]], dict]
    log_prior: Callable[[Array], Array]
    to_posterior: Callable[[Array], dict]

    def sample_init(self, key: PRNGKey, radius: float = 0.5) -> Array:
        """``init_position + U(-radius, radius)^d``: a dispersed start for one chain."""
        return self.init_position + jax.random.uniform(key, (self.dim,), minval=-radius, maxval=radius)


def build_space(prior: Callable[[], Any], *, init_strategy: str | Callable = "median",
                key: PRNGKey | None = None) -> ParameterSpace:
    """Build the :class:`ParameterSpace` of the NumPyro program ``prior()``.

    Args:
        prior: NumPyro program without arguments sampling the static parameters and returning
            them as a dict.
        init_strategy: ``"median"``, ``"mean"``, ``"uniform"``, ``"sample"`` or a NumPyro init
            strategy callable; decides ``init_position``.
        key: PRNG key for random init strategies (default ``PRNGKey(0)``).

    Raises:
        ValueError: the prior has no sample site, a discrete site, or an observed site, or its log
            density is not finite at any start the strategy found.
    """
    if isinstance(init_strategy, str):
        if init_strategy not in _INIT_STRATEGIES:
            raise ValueError(f"init_strategy: unknown {init_strategy!r}; expected one of {sorted(_INIT_STRATEGIES)}")
        strategy = _INIT_STRATEGIES[init_strategy]
    else:
        strategy = init_strategy
    key = jax.random.PRNGKey(0) if key is None else key

    shapes = site_shapes(prior, key)
    names = tuple(shapes)

    z0, potential = _initial_point(prior, strategy, key, names)
    if not is_traced(potential) and not np.isfinite(potential):  # under a caller's jit: unchecked
        start = {name: np.asarray(v).tolist() for name, v in z0.items()}
        raise ValueError(f"prior: log density not finite at the initial point {start} (unconstrained; "
                         "init_strategy found no finite start); check the prior's parameters")
    init_flat, unravel = ravel_pytree(z0)

    def ravel(z: dict) -> Array:
        return ravel_pytree({name: jnp.asarray(z[name]) for name in names})[0]

    def to_constrained(flat: Array) -> dict:
        return constrain_fn(prior, (), {}, unravel(flat))

    def to_unconstrained(params: Mapping[str, Any]) -> Array:
        return ravel(unconstrain_fn(prior, (), {}, {name: params[name] for name in names}))

    params_from_constrained = returned_params(prior, names)

    def to_params(flat: Array) -> dict:
        return params_from_constrained(to_constrained(flat))

    def log_prior(flat: Array) -> Array:
        return -potential_energy(prior, (), {}, unravel(flat))

    def to_posterior(flat: Array) -> dict:
        return constrain_fn(prior, (), {}, unravel(flat), return_deterministic=True)

    return ParameterSpace(names=names, shapes=shapes, dim=int(init_flat.shape[0]),
                          init_position=init_flat, ravel=ravel, unravel=unravel,
                          to_constrained=to_constrained, to_unconstrained=to_unconstrained,
                          to_params=to_params, params_from_constrained=params_from_constrained,
                          log_prior=log_prior, to_posterior=to_posterior)


def site_shapes(prior: Callable[[], Any], key: PRNGKey | None = None) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the prior's sample sites, in its order, from one abstract trace
    (:func:`inference._sites.abstract_sites`); the site checks of :func:`build_space` (no observed
    or discrete site, at least one site) without its start-point search.

    Raises:
        TypeError: ``prior`` is not callable.
        ValueError: the prior has no sample site, a discrete site, or an observed site.
    """
    if not callable(prior):
        raise TypeError(f"prior: expected a NumPyro program prior() -> dict, got {type(prior).__name__}")
    sites = {name: site for name, site in abstract_sites(prior, key=key).items() if site.type == "sample"}
    for name, site in sites.items():
        if site.is_observed:
            raise ValueError(f"prior: site {name!r} is observed; a prior program has only latent sites")
        if site.is_discrete:
            raise ValueError(
                f"prior: site {name!r} is discrete; particle methods move continuous "
                "parameters only (marginalise or fix it)")
    if not sites:
        raise ValueError("prior: the program has no sample site; nothing to infer")
    return {name: site.shape for name, site in sites.items()}


def returned_params(prior: Callable[[], Any], names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], dict]:
    """``{name: constrained value} -> dict``: what ``prior()`` returns with its sample sites at
    those values (the sites themselves if it returns no dict)."""
    def params_from_constrained(values: Mapping[str, Any]) -> dict:
        returned = handlers.substitute(handlers.seed(prior, jax.random.PRNGKey(0)), data=dict(values))()
        if isinstance(returned, Mapping):
            return dict(returned)
        return {name: values[name] for name in names}

    return params_from_constrained


def _initial_point(prior: Callable[[], Any], strategy: Callable, key: PRNGKey,
                   names: tuple[str, ...]) -> tuple[dict, Array]:
    """NumPyro's initial point of ``prior()`` (``initialize_model``) and the potential there, as
    one compiled program (op by op the search compiles each operation: seconds, per process)."""
    def search(k):
        info = initialize_model(k, prior, init_strategy=strategy)[0]
        return {name: info.z[name] for name in names}, info.potential_energy

    return jax.jit(search)(key)


def initial_positions(key: PRNGKey, space: ParameterSpace, num_chains: int,
                      init_params: Mapping[str, Any] | None, init_radius: float) -> Array:
    """``(num_chains, d)`` starts: prior median (or ``init_params``) jittered by ``U(-r, r)``."""
    if init_params is None:
        centre = space.init_position
    else:
        if not isinstance(init_params, Mapping):
            raise TypeError(f"init_params: expected a dict of parameter values, got {type(init_params).__name__}")
        missing = sorted(set(space.names) - set(init_params))
        if missing:
            raise KeyError(f"init_params: missing parameters {missing}; the prior has {list(space.names)}")
        centre = space.to_unconstrained({k: jnp.asarray(init_params[k], float) for k in space.names})
        if not bool(jnp.all(jnp.isfinite(centre))):
            raise ValueError(f"init_params: values outside the prior's support: {dict(init_params)}")
    jitter = jax.random.uniform(key, (num_chains, space.dim), minval=-init_radius, maxval=init_radius)
    return centre[None] + jitter


def constrained_draws(space: ParameterSpace, positions: Array) -> dict[str, np.ndarray]:
    """``(chain, draw, d)`` unconstrained positions -> ``{name: (chain, draw, *shape)}``: constrained
    sample sites and the prior's deterministic sites (what runners store in ``posterior``)."""
    c, n = positions.shape[:2]
    flat = jnp.asarray(positions).reshape((c * n, space.dim))
    values = jax.jit(jax.vmap(space.to_posterior))(flat)
    return {k: np.asarray(v).reshape((c, n) + tuple(np.shape(v)[1:])) for k, v in values.items()}
