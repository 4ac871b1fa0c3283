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
# ## Categorical emissions

# %%
cat = entry.configs["categorical"]
symbols, truth_cat = entry.simulate(jax.random.PRNGKey(3), cat)
idata_cat = inference.fit(entry, symbols, method="nuts", config="categorical", progress=False, **entry.recipe.options)
for c in entry.check(idata_cat, truth_cat, cat):
    print("PASS" if c.passed else "FAIL", "|", c.name, "|", c.target)
az.summary(idata_cat, var_names=["transition_matrix", "emission_probs"])
