"""Shared pieces of the markov_jump tests: a tiny DFR layout, the jitted exact reference, the
shortened NUTS fit of the small DFR data."""

import jax

import inference
import zoo
from inference import exact
from zoo import markov_jump as mj


__all__ = ["TINY", "FAST_NUTS", "exact_loglik", "fit_dfr_small"]

TINY = mj.DFRConfig(num_paths=4, num_obs=6, t_end=1.0, resolution=0.05, noise=0.1)


@jax.jit
def exact_loglik(Q, pi0, times, states, E):
    """inference.exact.mjp_log_likelihood with the process started at time 0 (jitted reference)."""
    return exact.mjp_log_likelihood(Q, pi0, times, states, E, initial_time=0.0)


# The default-run fit is the recipe's NUTS on the `small` data with one chain of 150 + 200
# iterations (about half the recipe's cost); the recipe itself (2 chains of 200 + 250) runs in the
# slow test below and in `zoo check mjp_dfr`.
FAST_NUTS = {"num_chains": 1, "num_warmup": 150, "num_samples": 200}


def fit_dfr_small(**overrides):
    entry = zoo.get("mjp_dfr")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    options = dict(entry.recipe.options_for("small"), **overrides)
    idata = inference.fit(entry, data, method=entry.recipe.method, progress=False, **options)
    return entry, config, data, truth, idata
