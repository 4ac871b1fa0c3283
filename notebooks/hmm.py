# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # `hmm`: hidden Markov models with an exact marginal
#
# The forward algorithm (`inference.exact.hmm_filter`) sums the discrete path out, so NUTS samples
# the transition matrix and emission parameters; ordered means keep the states identifiable. After
# the fit, Viterbi and forward-filter backward-sampling (FFBS) decode the path.

# %%
import jax, jax.numpy as jnp, numpy as np, arviz as az, matplotlib.pyplot as plt
import zoo, inference
from inference import exact
from diagnostics import checks
from zoo.hmm import gaussian_log_likelihoods

entry = zoo.get("hmm")
config = entry.configs["small"]
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
idata = inference.fit(entry, data, method="nuts", progress=False, **entry.recipe.options)
print(checks.format_verdicts(checks.run_checks(idata)))
for c in entry.check(idata, truth, config):
    print("PASS" if c.passed else "FAIL", "|", c.name, "|", c.target)

# %% [markdown]
# ## Decoding the first sequence at the posterior mean

# %%
post = {k: jnp.asarray(idata.posterior[k].mean(("chain", "draw")).values) for k in ["transition_matrix", "means", "scales"]}
ll = gaussian_log_likelihoods(post["means"], post["scales"], data[0])
init = jnp.full(2, 0.5)
viterbi = exact.hmm_viterbi(init, post["transition_matrix"], ll)
smoothed = exact.hmm_smoother(init, post["transition_matrix"], ll).smoothed_probs
ffbs = jax.vmap(lambda k: exact.hmm_posterior_sample(k, init, post["transition_matrix"], ll))(jax.random.split(jax.random.PRNGKey(2), 500))
print("Viterbi agrees with the true path on", float(jnp.mean(viterbi == truth["z"][0])) * 100, "% of steps")
print("max |FFBS frequency - smoothed marginal| =", float(jnp.max(jnp.abs(ffbs.mean(0) - smoothed[:, 1]))))
fig, ax = plt.subplots(figsize=(9, 3))
ax.plot(np.asarray(data[0, :, 0]), "k.", ms=3, label="y")
ax.plot(np.asarray(post["means"][viterbi, 0]), label="Viterbi state mean")
ax.plot(np.asarray(smoothed[:, 1]) * 3 - 1.5, alpha=.6, label="P(state 1 | y) (rescaled)")
ax.legend(loc="upper right"); ax.set_xlabel("time")

# %% [markdown]
# ## ArviZ's standard views
#
# Trace and rank plots per chain, the energy plot (NUTS: the marginal energy and its transitions
# should overlap; a narrow transition distribution means the sampler explores slowly), the
# posterior predictive against the data, and LOO-PIT. The pointwise log-likelihood is one term
# per time step, the one-step predictive `p(y_t | y_0..y_(t-1))` (the hidden path is summed out);
# the observations are univariate here, so the term is stored with the observation's dims and
# `az.plot_loo_pit` pairs them. PSIS-LOO then leaves out that one-step factor; for forecasting
# questions use leave-future-out (`diagnostics.compare.psis_lfo`).

# %%
az.plot_trace(idata, var_names=["transition_matrix", "means", "scales"], compact=True);
az.plot_rank(idata, var_names=["means", "scales"]);
az.plot_energy(idata);

# %%
az.plot_ppc(idata, var_names=["y"], num_pp_samples=100);
az.plot_loo_pit(idata, y="y");
az.plot_khat(az.loo(idata, pointwise=True));

# %% [markdown]
# The posterior predictive draws above are new series from the model at posterior draws; they
# are not conditioned on the observed path, so they judge the marginal distribution of `y`, not the
# fit step by step. `zoo.posterior_paths` does that: at 200 posterior draws it draws the state
# path from `p(z | y)` and each observation's one-step-ahead predictive; the share of observations
# inside their 90 % band is about 0.9 when the model fits.

# %%
from diagnostics import plots

paths = zoo.posterior_paths(entry, idata)
print(f"one-step 90% bands cover {plots.one_step_coverage(paths):.1%} of the observations")
plots.plot_smoothed_paths(paths, truth={"x": truth["z"]}, max_series=1)

# %% [markdown]
# ## Categorical emissions

# %%
cat = entry.configs["categorical"]
symbols, truth_cat = entry.simulate(jax.random.PRNGKey(3), cat)
idata_cat = inference.fit(entry, symbols, method="nuts", config="categorical", progress=False, **entry.recipe.options)
for c in entry.check(idata_cat, truth_cat, cat):
    print("PASS" if c.passed else "FAIL", "|", c.name, "|", c.target)
az.summary(idata_cat, var_names=["transition_matrix", "emission_probs"])

# %% [markdown]
# On these symbol data all four chains agree (none dropped, no warning above). Where chains do
# settle in a local mode far below the others (on Gaussian data, when one state's scale is tiny:
# see the card), a run that kept them would show R-hat far above 1; the NUTS runner drops a chain
# whose mean log density sits far below the median chain's and says so
# (`attrs["dropped_chains"]`; `checks.run_checks` gives a `warn` verdict for it), so the summary
# is from the chains in the main mode. Starting more chains, or from the posterior mode
# (`--option init=...`), are the remedies when fewer than half the chains agree.
