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
# # `cellular_automaton_hmm`: a probabilistic cellular automaton with a real wave function
#
# In Wetterich's probabilistic world (arXiv:2011.02867) a deterministic automaton with a random
# start is a quantum system: its step operator `Ŝ` is a permutation (a unique jump), hence
# orthogonal, and the real wave function `q(t) = √p_t` evolves linearly, `q(t+1) = Ŝ q(t)`, with
# `‖q(t)‖ = 1`. Here six bits on a ring move one site right per step; each run starts with site `i`
# occupied with probability `p_i` and is read through bit flips with probability ε. As a transfer
# chain in Markov form it is a hidden Markov model on the 64 configurations, so the likelihood is
# exact and NUTS recovers `p` and ε.

# %%
import jax, jax.numpy as jnp, numpy as np, matplotlib.pyplot as plt
import zoo, inference
from diagnostics import checks
from zoo.probabilistic_world import cellular_automaton as ca
from zoo.processes import transfer_matrix as tm

entry = zoo.get("cellular_automaton_hmm")
config = entry.configs["small"]
print(config)

# %% [markdown]
# ## The real wave function
# `q(t)` keeps unit norm; `q(t)²` equals the local probabilities `f_τ(t) f̄_τ(t)/Z` of the transfer
# chain, and the per-site occupation rotates with the bits.

# %%
params = ca.true_params(config)
q = ca.wave_functions(params, config)
p = tm.local_probabilities(ca.transfer_chain(params, config), config.num_steps)
print("max | ||q(t)|| - 1 |        :", float(jnp.abs(jnp.linalg.norm(q, axis=1) - 1).max()))
print("max | q(t)^2 - p_t |         :", float(jnp.abs(q**2 - p).max()))
occupation = np.asarray(p @ ca.configuration_bits(config.num_sites))
fig, ax = plt.subplots(figsize=(8, 2.8))
ax.imshow(occupation.T, aspect="auto", cmap="viridis", vmin=0, vmax=1)
ax.set_xlabel("step t"); ax.set_ylabel("site"); ax.set_title("occupation probability per site (moves right on the ring)")

# %% [markdown]
# ## Data and the exact posterior (the recipe: NUTS on the forward-algorithm likelihood)

# %%
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
print("data", data.shape, "flipped bits:", float(np.mean(np.asarray(data) != np.asarray(truth["x"]))))
idata = inference.fit(entry, data, method=entry.recipe.method, progress=False, **entry.recipe.options_for("small"))
print(checks.format_verdicts(checks.run_checks(idata)))
for c in entry.check(idata, truth, config):
    print("PASS" if c.passed else "FAIL", c.name, c.target, c.detail)
occ = idata.posterior["occupation"].values.reshape(-1, config.num_sites)
eps = idata.posterior["epsilon"].values.ravel()
for i in range(config.num_sites):
    print(f"p_{i}: truth {config.true_occupation[i]:.2f}  mean {occ[:, i].mean():.3f}  "
          f"90% [{np.quantile(occ[:, i], .05):.3f}, {np.quantile(occ[:, i], .95):.3f}]")
print(f"epsilon: truth {config.true_epsilon}  mean {eps.mean():.4f}  90% [{np.quantile(eps, .05):.4f}, {np.quantile(eps, .95):.4f}]")

# %% [markdown]
# ### ArviZ's standard views
#
# Trace and rank plots per chain (overlapping chains, uniform ranks), the energy plot of NUTS (the
# marginal energy and its transitions should overlap; a much narrower transition distribution
# means slow exploration), and the posterior predictive bits against the data: each draw is a
# fresh set of noisy automaton runs at posterior parameters (the bits are 0/1 stored as numbers,
# so ArviZ draws a smoothed density whose two bumps compare the share of ones). The pointwise
# log-likelihood has one term per series and step, the forward algorithm's one-step predictive of
# the whole row of sites given the earlier rows: PSIS-LOO leaves out that one factor (for
# forecasting, leave-future-out: `diagnostics.compare.psis_lfo`), and the Pareto k below say
# whether importance sampling can do that. LOO-PIT needs one continuous term per observed number
# (here a term covers a row of discrete bits) and does not apply.

# %%
import arviz as az
az.plot_trace(idata, var_names=["occupation", "epsilon"], compact=True);
az.plot_rank(idata, var_names=["occupation", "epsilon"]);
az.plot_energy(idata);
az.plot_ppc(idata, var_names=["y"], num_pp_samples=100);
az.plot_khat(az.loo(idata, pointwise=True));

# %% [markdown]
# Every Pareto k of the 1600 one-step terms is below 0.3. The convergence verdict above is WARN,
# not FAIL: R-hat of the occupation probabilities reaches 1.011 (at site 5), just over the 1.01
# warn line (fail above 1.05); two chains of 500 draws sit at the edge of that line here (an
# earlier execution of the same recipe gave 1.007), the other checks are ok and the recovery
# checks pass. More draws are the remedy where the occupations need R-hat below 1.01.
