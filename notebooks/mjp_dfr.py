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
# # Markov jump processes: the discrete flashing ratchet
#
# A continuous-time Markov chain (a *Markov jump process*, MJP) with generator $Q$ is observed only at
# sparse, irregular times, through label noise. This notebook follows the zoo entry `mjp_dfr`
# (spec group 1 §2; Berghaus et al., *Foundation Inference Models for Markov Jump Processes*,
# NeurIPS 2024, arXiv:2406.06419):
#
# 1. simulate the **discrete flashing ratchet** (DFR) exactly with Gillespie's algorithm,
# 2. fit its three parameters $(V, r, b)$ with NUTS on the **exact** likelihood (matrix exponential
#    per distinct observation gap + forward algorithm, vmapped over paths),
# 3. run the recovery check and look at the posterior of the **entropy production rate**,
# 4. set the **amortised zero-shot estimate** (a network trained on simulated MJPs, weights shipped
#    with the package) beside the NUTS posterior.
#
# The DFR has six states: $(i, \text{on})$ for $i = 0,1,2$ (states 0–2) and $(i, \text{off})$
# (states 3–5). With the potential on, $Q_{ij} = e^{-V (j-i)/2}$; off, $Q_{ij} = b$; switching
# $i \leftrightarrow i+3$ has rate $r$. The truth is $(V, r, b) = (1, 1, 1)$.

# %%
import os
os.environ.setdefault("MPLBACKEND", "Agg")
import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt
import arviz as az
import zoo, inference
from zoo import markov_jump as mj
from zoo.processes import ctmc

entry = zoo.get("mjp_dfr")
config = entry.configs["small"]
config

# %% [markdown]
# ## Golden values of the ratchet
#
# The stationary law solves $\pi Q = 0$; the steady-state entropy production is
# $\sigma = \sum_{i \ne j} \pi_i Q_{ij} \log\frac{\pi_i Q_{ij}}{\pi_j Q_{ji}}$ ($k_B$ per unit time).
# The spec's golden values are $\pi = (0.301, 0.137, 0.062, 0.200, 0.159, 0.141)$ and $\sigma = 0.1792$.

# %%
truth = mj.dfr_truth(config)
print("Q =\n", np.round(truth["rate_matrix"], 3))
print("stationary pi   :", np.round(truth["stationary"], 3))
print("entropy prod.   :", round(float(truth["entropy_production"]), 4))
print("mean jump rate  :", round(float(ctmc.mean_jump_rate(jnp.asarray(truth["rate_matrix"]))), 3))

# %% [markdown]
# ## Simulated data
#
# `small`: 300 paths, each observed at 50 random times of the lattice $\{0, 0.01, \dots, 1\}$, with
# label noise $\rho = 0.02$ (a wrong label is uniform over the *other* five states). Each path jumps
# about three times in $[0, 1]$, so most of the information is in a few transitions per path.

# %%
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
times, states = np.asarray(data.times), np.asarray(data.states)
print("times", times.shape, "states", states.shape, "distinct gaps:", len(data.gap_values))
fig, ax = plt.subplots(figsize=(8, 3))
for p in range(4):
    ax.step(times[p], states[p] + 0.08 * p, where="post", marker=".", label=f"path {p}")
ax.set_xlabel("time"); ax.set_ylabel("observed state"); ax.set_yticks(range(6)); ax.legend(ncol=4, fontsize=8)
plt.show()

# %% [markdown]
# ## NUTS on the exact likelihood
#
# The program `mj.dfr_model` samples $V \sim N(0, 2^2)$, $\log r, \log b \sim N(0, 1)$, builds $Q$, and adds
# `numpyro.factor("y", loglik_per_path)` with one value per path (so LOO works per path). The
# entropy production is a deterministic site, so its posterior comes with the fit.

# %%
idata = inference.fit(entry, data, method=entry.recipe.method, progress=False,
                      **entry.recipe.options_for("small"))
az.summary(idata, var_names=["V", "r", "b", "entropy_production"])

# %%
checks = entry.check(idata, truth, config)
for c in checks:
    print(("PASS" if c.passed else "FAIL"), f"{c.name:55s} value={c.value:.4f}  {c.target}")

# %% [markdown]
# ### ArviZ's standard views
#
# Trace and rank plots per chain (overlapping chains, uniform ranks) and the energy plot of NUTS
# (the marginal energy and its transitions should overlap; a much narrower transition
# distribution means slow exploration). The pointwise log-likelihood has one term per path (its
# whole sequence of irregular observations), and the paths are independent given the
# parameters: PSIS-LOO leaves out one path, and the Pareto k below say whether importance
# sampling can do that. There is no posterior predictive plot: the entry's recipe runs with
# `posterior_predictive=False`, so the result has no such group. LOO-PIT needs one term per
# observed number (here a term covers a whole path) and does not apply.

# %%
az.plot_trace(idata, var_names=["V", "r", "b"], compact=True);
az.plot_rank(idata, var_names=["V", "r", "b"]);
az.plot_energy(idata);
az.plot_khat(az.loo(idata, pointwise=True));

# %%
ep = np.asarray(idata.posterior["entropy_production"]).ravel()
fig, axes = plt.subplots(1, 4, figsize=(13, 2.8))
for ax, name in zip(axes[:3], ["V", "r", "b"]):
    ax.hist(np.asarray(idata.posterior[name]).ravel(), bins=40, color="C0", alpha=0.7)
    ax.axvline(float(truth[name]), color="k", lw=2); ax.set_title(name)
axes[3].hist(ep, bins=40, color="C1", alpha=0.7)
axes[3].axvline(float(truth["entropy_production"]), color="k", lw=2)
axes[3].set_title("entropy production")
plt.tight_layout(); plt.show()
print("90% interval of the entropy production:", np.round(np.quantile(ep, [0.05, 0.95]), 4))

# %% [markdown]
# ## The amortised zero-shot estimate
#
# The paper's idea at our scale: a recognition network is trained once on MJPs simulated from a broad
# prior over rate matrices ($C \in 2..6$ padded to 6, random irreducible adjacency, log-normal rates,
# Dirichlet $\pi_0$, regular and irregular grids, label noise up to 5%). It sees the observed paths,
# never the DFR's equations, and returns a Gaussian over every log-rate, link probabilities and
# $\pi_0$ in one forward pass. The `small` weights ship in `zoo/data/mjp_estimator_small.npz`.
#
# Time is normalised by the observation window, so the estimate is rescaled back to the data's units.
# It was trained on datasets of 16 to 300 paths, so it reads all 300 DFR paths at once.

# %%
est = mj.load_estimator("small")
amortised = mj.dfr_amortised_estimate(est, data, config)
rows = []
for name in ["V", "r", "b", "entropy_production"]:
    draws = np.asarray(idata.posterior[name]).ravel()
    lo, hi = np.quantile(draws, [0.05, 0.95])
    rows.append((name, float(truth[name]), draws.mean(), lo, hi, amortised[name]))
print(f"{'':20s}{'truth':>8s}{'NUTS mean':>11s}{'NUTS 90% interval':>22s}{'zero-shot':>11s}")
for name, t, m, lo, hi, a in rows:
    print(f"{name:20s}{t:8.3f}{m:11.3f}     [{lo:7.3f}, {hi:7.3f}]{a:11.3f}")

# %% [markdown]
# Per link, the NUTS posterior of each log-rate (mean ± 2 sd) next to the network's Gaussian
# (mean ± 2 sd) and the truth. The 18 links are the DFR's adjacency (6 within the *on* block,
# 6 within the *off* block, 6 switching).

# %%
V, r, b = (np.asarray(idata.posterior[k]).ravel() for k in ("V", "r", "b"))
Qs = np.asarray(jax.vmap(mj.dfr_rate_matrix)(jnp.asarray(V), jnp.asarray(r), jnp.asarray(b)))
ri, ci = np.nonzero(mj.dfr_mask())
nuts_log = np.log(Qs[:, ri, ci])
e = amortised["estimate"]
x = np.arange(len(ri))
fig, ax = plt.subplots(figsize=(11, 3.2))
ax.errorbar(x - 0.12, nuts_log.mean(0), 2 * nuts_log.std(0), fmt="o", label="NUTS posterior")
ax.errorbar(x + 0.12, e.log_rate_mean[ri, ci], 2 * e.log_rate_sd[ri, ci], fmt="s", label="zero-shot network")
ax.plot(x, np.log(truth["rate_matrix"][ri, ci]), "k_", ms=14, mew=2, label="truth")
ax.set_xticks(x); ax.set_xticklabels([f"{i}→{j}" for i, j in zip(ri, ci)], rotation=60, fontsize=8)
ax.set_ylabel("log rate"); ax.legend(fontsize=8)
plt.tight_layout(); plt.show()
print("estimated pi0 (truth uniform):", np.round(e.initial_probs, 3))

# %% [markdown]
# ## Does the network beat a constant guess?
#
# On fresh draws from its training prior (held out: a seed never used in training), the network's
# mean log-rate is compared with the constant prediction $E[\log q]$ of the prior.

# %%
errors = mj.heldout_errors(est, jax.random.PRNGKey(12345), num_datasets=64)
ok = errors.valid
print("RMSE of log-rates, network :", round(float(np.sqrt(errors.mse_net[ok].mean())), 3))
print("RMSE of log-rates, constant:", round(float(np.sqrt(errors.mse_baseline[ok].mean())), 3))
print("NLL per link, network / prior:", round(float(errors.nll_net[ok].mean()), 3), "/",
      round(float(errors.nll_baseline[ok].mean()), 3))

# %% [markdown]
# ## A generic chain: the `mjp_generic` entry
#
# The same exact likelihood serves any chain. The entry `mjp_generic` puts a prior
# $\log Q_{ij} \sim N(0, 1)$ on the links of a given mask (site `log_rates`, one value per link) and
# keeps the rate matrix, the stationary law and the entropy production as deterministic sites. Its
# `small` config is a 3-state chain with all six links, 100 paths observed at 50 lattice times on
# $[0, 10]$ with label noise $\rho = 0.01$. The recovery check asks for a relative RMSE of the
# posterior-mean rates below 15%.

# %%
gen = zoo.get("mjp_generic")
gconfig = gen.configs["small"]
gdata, gtruth = gen.simulate(jax.random.PRNGKey(1), gconfig)
gidata = inference.fit(gen, gdata, method=gen.recipe.method, progress=False,
                       **gen.recipe.options_for("small"))
for c in gen.check(gidata, gtruth, gconfig):
    print(("PASS" if c.passed else "FAIL"), c.name, f"value={c.value:.4f}", c.target)
print(az.summary(gidata, var_names=["log_rates"])[["mean", "sd", "r_hat", "ess_bulk"]])

# %% [markdown]
# The zero-shot network reads the same paths (times divided by the window length 10) and is
# told the link mask. It was trained on chains of 2 to 6 states with 16 to 300 paths, so this 3-state
# chain is inside its training prior; its per-link Gaussian is set beside the NUTS posterior.

# %%
g_est = mj.estimate_rates(est, gdata, gconfig.num_states, horizon=gconfig.t_end, mask=mj.generic_mask(gconfig))
gri, gci = np.nonzero(mj.generic_mask(gconfig))
g_rates = np.asarray(gidata.posterior["rates"]).reshape(-1, 3, 3)[:, gri, gci]
print(f"{'link':6s}{'truth':>8s}{'NUTS mean':>11s}{'NUTS 90% interval':>22s}{'zero-shot':>11s}")
for j, (i, k) in enumerate(zip(gri, gci)):
    lo, hi = np.quantile(g_rates[:, j], [0.05, 0.95])
    print(f"{i}→{k:<4d}{gtruth['rates'][i, k]:8.3f}{g_rates[:, j].mean():11.3f}     [{lo:7.3f}, {hi:7.3f}]"
          f"{np.exp(g_est.log_rate_mean[i, k]):11.3f}")

# %% [markdown]
# ## Retraining
#
# The weights come from `python scripts/train_mjp_estimator.py --config small --weights PATH`
# (a few CPU minutes; the script runs `inference.train` on `mj.estimator_training_problem("small")`,
# checkpoints with `--checkpoint FILE` and resumes from an existing checkpoint with the same result as
# an uninterrupted run). The `paper` estimator config (GRU encoder of width 256, 16 attention queries,
# 100 observations per path, 200k steps) is for an accelerator.
#
# **Reading the comparison.** The NUTS posterior uses the exact likelihood with the known label-noise
# level and the known DFR structure; the network knows neither and was trained at a small scale, so its
# intervals are wider and it can be biased on links whose rates sit at the edge of its training prior.
# The entropy production is a sensitive function of the rates (it weighs the log-ratios of forward and
# backward fluxes), so the zero-shot value is the roughest of the four numbers.
