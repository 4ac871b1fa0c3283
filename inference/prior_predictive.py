"""Prior-predictive replicates of a NumPyro program: true parameters and the data they generate.

Used by simulation-based calibration (``zoo sbc``): ``prior_simulate(model, key)`` runs the
program without data (its prior predictive) and returns ``(params, data)``.

The rule, for a program ``model(data=None)``:

1. trace ``model(None)`` under ``seed(key)``;
2. the data is the value of the site named ``data_site`` (default ``"y"``) in that trace: a
   ``numpyro.deterministic("y", ...)`` (what the zoo's marginalised and state-space programs
   record when simulating) or a sample site ``numpyro.sample("y", ..., obs=None)``;
3. the parameters are the latent sample sites of ``model(data)`` (the sites a fit of that data
   samples), with the values they took in the prior-predictive trace of step 1.

A program whose data is a record (observation times with the counts, say) gives ``assemble``,
``assemble(values) -> data`` from the values of the trace's sample and deterministic sites
(``ZooEntry.prior_data``), in place of step 2.

A program that samples a reparameterisation depending on the data (``β = Lᵀ w / σ`` with ``L``
from the data, so that ``L = I`` in the prior draw and the prior's ``β`` is not the fit's) names
the sites that are ranked instead, ``sites`` (``ZooEntry.rank_sites``): sample or deterministic
sites of the prior-predictive trace, with the values they took there, in place of step 3. The fit
must record them too (a deterministic site is in the posterior).

A program whose prior predictive records no ``data_site`` raises ``KeyError`` naming the sites
it has; a name in ``sites`` that it does not record, ``ValueError`` naming them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import Distribution

__all__ = ["prior_simulate", "latent_site_names", "rejection_draw", "draw_priors", "MAX_TRIES"]

#: The most draws :func:`rejection_draw` tries by default before it gives up (the last draw is then
#: returned with ``accepted`` False). The restricted priors of the zoo reject one draw in ten to one
#: in three, so 1000 tries fail with probability below 1e-400 there; an entry passes its own
#: ``max_tries`` only with a reason.
MAX_TRIES = 1000


def draw_priors(key: jax.Array, priors: Mapping[str, Distribution], sample_shape: tuple[int, ...] = ()) -> dict:
    """One draw of every prior in a dict of NumPyro distributions, each from a key of its own.

    The keys are ``jax.random.split(key, len(priors))``, given out in the dict's order, so the same
    key and dict give the same draws. ``sample_shape`` is passed to each ``sample``. The ``draw`` of
    :func:`rejection_draw` for a restricted prior.
    """
    keys = jax.random.split(key, len(priors))
    return {name: prior.sample(k, sample_shape) for (name, prior), k in zip(priors.items(), keys)}


def rejection_draw(key: jax.Array, draw: Callable[[jax.Array], Any], accept: Callable[[Any], jax.Array], *,
                   max_tries: int = MAX_TRIES) -> tuple[Any, jax.Array]:
    """``(value, accepted)``: the first of the draws ``draw(k)`` (fresh keys split from ``key``) for
    which ``accept(value)`` (a scalar bool) holds, an exact sampler of ``draw``'s law restricted to
    the accepted set; after ``max_tries`` draws the last one with ``accepted`` False. A
    ``lax.while_loop``: it runs traced (jit, vmap) too. For a program whose prior (or prior
    predictive) is restricted to a domain it can only test, not sample directly."""
    if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
        raise ValueError(f"max_tries: expected an integer >= 1, got {max_tries!r}")

    def attempt(k):
        value = draw(k)
        return value, jnp.asarray(accept(value), dtype=bool)

    def body(state):
        k, tries, _, _ = state
        k, sub = jax.random.split(k)
        return (k, tries + 1, *attempt(sub))

    key, sub = jax.random.split(key)
    _, _, value, accepted = jax.lax.while_loop(lambda state: ~state[3] & (state[1] < max_tries), body,
                                               (key, 1, *attempt(sub)))
    return value, accepted


def latent_site_names(model: Callable, data: Any, key: jax.Array | None = None) -> list[str]:
    """Names of the latent (not observed) sample sites of ``model(data)``, in program order (one
    abstract trace: :func:`inference._sites.abstract_sites`)."""
    from inference._sites import abstract_sites

    return [name for name, site in abstract_sites(model, data, key=key).items()
            if site.type == "sample" and not site.is_observed]


def prior_simulate(model: Callable, key: jax.Array, *, data_site: str = "y",
                   assemble: Callable[[dict], Any] | None = None,
                   sites: Sequence[str] | None = None) -> tuple[dict, Any]:
    """One prior-predictive replicate ``(params, data)`` of ``model`` (see the module rule).

    Args:
        assemble: ``assemble(values) -> data`` from ``{site: value}`` of the prior-predictive
            trace's sample and deterministic sites; None: the value of ``data_site``.
        sites: the sites whose true values are returned (sample or deterministic sites of the
            prior-predictive trace); None: the latent sample sites of ``model(data)``.
    Returns:
        ``params``: ``{site: numpy value}`` of ``sites`` (by default the latent sites a fit
        samples); ``data``: the
        simulated observations (numpy arrays, in the structure the program takes as its first
        argument).
    """
    trace = handlers.trace(handlers.seed(model, key)).get_trace(None)
    if assemble is not None:
        values = {n: s["value"] for n, s in trace.items() if s["type"] in ("sample", "deterministic")}
        data = jax.tree.map(np.asarray, assemble(values))
    elif data_site not in trace:
        available = [n for n, s in trace.items() if s["type"] in ("sample", "deterministic")]
        raise KeyError(f"data_site: the prior predictive of the program records no site {data_site!r} "
                       f"(neither numpyro.deterministic nor sample); it has {available}")
    else:
        data = np.asarray(trace[data_site]["value"])
    if sites is not None:
        if isinstance(sites, str) or not sites:
            raise ValueError(f"sites: expected a non-empty sequence of site names, got {sites!r}")
        recorded = [n for n, s in trace.items() if s["type"] in ("sample", "deterministic")]
        unknown = [n for n in sites if n not in recorded]
        if unknown:
            raise ValueError(f"sites: the prior predictive of the program records no site(s) {unknown} to rank "
                             f"(neither numpyro.deterministic nor sample); it has {recorded}")
        return {n: np.asarray(trace[n]["value"]) for n in sites}, data
    names = latent_site_names(model, data, key)
    missing = [n for n in names if n not in trace]
    if missing:
        raise KeyError(f"model: latent site(s) {missing} of model(data) do not appear in the prior "
                       "predictive model(None); cannot know their true values")
    params = {n: np.asarray(trace[n]["value"]) for n in names}
    return params, data
