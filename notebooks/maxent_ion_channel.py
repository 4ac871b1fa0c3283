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
# # A MaxEnt ion channel: equilibrium law, kinetics, and fluctuation relations
#
# This notebook follows the zoo entry `maxent_ion_channel` (spec group 1 §10; Rogers, Beck & Rempe,
# *Information Theory and Statistical Mechanics Revisited*, arXiv:1105.5662). The paper's programme
# (build a channel description by adding information, derive a kinetic theory with a *process free
# energy*) is made concrete by the zoo; the specific model below is the zoo's, not the paper's.
#
# A channel of $M$ binding sites between a left and a right reservoir; a configuration
# $\sigma \in \{0,1\}^M$ has energy $E(\sigma) = \sum_j (\varepsilon + \phi_j)\sigma_j + J\sum_j
# \sigma_j\sigma_{j+1}$ with the voltage dropping linearly, $\phi_j = qV(1/2 - j/(M+1))$. Every
# transition has rate $k\,e^{-\Delta F/2}$, so local detailed balance holds **by construction**.
#
# 1. the equilibrium (MaxEnt) occupancy law, and how occupancy moves with the voltage;
# 2. the process free energy $\Psi(\lambda)$ (Perron eigenvalue of the tilted generator), its
#    Gallavotti–Cohen symmetry and the current–voltage curve;
# 3. NUTS on the exact likelihood of paths observed every $\Delta = 0.5$ (hidden Markov model with
#    $e^{Q\Delta}$), the recovery check, and the detailed fluctuation theorem on Gillespie paths;
# 4. equilibrium snapshots: the Gibbs likelihood with the exact partition function (no degeneracy
#    factor inserted by hand).

# %%
import os, dataclasses
os.environ.setdefault("MPLBACKEND", "Agg")
import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt
import arviz as az
import zoo, inference
from zoo import maxent_ion_channel as mic
from zoo.processes import ctmc, fluctuations

entry = zoo.get("maxent_ion_channel")
config = entry.configs["small"]
config

# %% [markdown]
# ## Equilibrium: the MaxEnt occupancy law
#
# At $qV = 0$ and $\mu_L = \mu_R = \mu$ the stationary law is the grand-canonical Gibbs law
# $p(\sigma) \propto e^{-E(\sigma) + \mu n(\sigma)}$. The occupancy law $p(n)$ sums it over the
# configurations with $n$ ions, so the degeneracy ($\binom{M}{n}$ when $J = 0$) comes out of the sum.
# With a repulsion $J > 0$ the doubly occupied states are suppressed. Below, $M = 4$ sites.

# %%
eq4 = dataclasses.replace(entry.configs["equilibrium"], num_sites=4)
from scipy import stats
fig, ax = plt.subplots(figsize=(6, 3))
n = np.arange(5)
for J in (0.0, 1.0, 3.0):
    ax.plot(n, np.asarray(mic.occupancy_law(J, 0.3, eq4)), "o-", label=f"J = {J}")
ax.plot(n, stats.binom.pmf(n, 4, 1 / (1 + np.exp(-0.3))), "k+", ms=12, label="binomial (J = 0, by hand)")
ax.set_xlabel("ions in the channel n"); ax.set_ylabel("p(n)"); ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Driven channel: occupancy and current against the voltage
#
# Away from equilibrium the stationary law $\pi$ of the kinetics is no longer Gibbs. The mean current
# $J = \Psi'(0)$ and its variance rate $\Psi''(0)$ come from the tilted generator by a linear solve
# (`fluctuations.current_cumulants`); the mean occupancy from $\pi$. At the small config's truth
# ($k_0 = 1$, $k_h = 2$, $J_{nn} = 1$, $\mu_L = 0.5$, $\mu_R = -0.5$).

# %%
truth_params = {k: jnp.asarray(v) for k, v in mic.true_params(config).items()}
nsite = mic.configurations(config.num_sites).sum(axis=1)
volts = np.linspace(-6, 6, 49)
current, noise, occupancy = [], [], []
for v in volts:
    c = dataclasses.replace(config, voltage=float(v))
    Q, _, d = mic.channel_rates(truth_params, c)
    J, D = fluctuations.current_cumulants(Q, d)
    current.append(float(J)); noise.append(float(D))
    occupancy.append(float(ctmc.stationary_distribution(Q) @ nsite))
fig, axes = plt.subplots(1, 3, figsize=(13, 3))
axes[0].plot(volts, current); axes[0].axhline(0, color="k", lw=0.5); axes[0].set_title("mean current J (I–V curve)")
axes[1].plot(volts, noise); axes[1].set_title("variance rate Psi''(0)")
axes[2].plot(volts, occupancy); axes[2].set_title("mean occupancy")
for ax in axes: ax.set_xlabel("qV (k_B T)")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## The process free energy and the Gallavotti–Cohen symmetry
#
# $\Psi(\lambda)$ is the largest eigenvalue of $L_\lambda$, the generator with the rates of jumps that
# carry an ion across the right boundary multiplied by $e^{\pm\lambda}$. Local detailed balance makes
# $\Psi(\lambda) = \Psi(-\lambda - A)$ with the affinity $A = \mu_L - \mu_R + qV$: the curve is
# symmetric about $-A/2$. The entropy production rate is $A J$.

# %%
Q, _, d = mic.channel_rates(truth_params, config)
A = float(mic.affinity(truth_params, config))
lams = np.linspace(-4, 2, 121)
psi = fluctuations.scgf(Q, d, lams)
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(lams, psi, label="Psi(lambda)")
ax.plot(-lams - A, psi, "--", label="Psi(-lambda - A) reflected")
ax.axvline(-A / 2, color="k", lw=0.5)
ax.set_xlabel("lambda"); ax.legend(fontsize=8); plt.show()
print("affinity A =", A)
print("GC defect max|Psi(l) - Psi(-l-A)| =", fluctuations.gallavotti_cohen_defect(Q, d, A, lams))
J, D = fluctuations.current_cumulants(Q, d)
print("J =", float(J), " Psi''(0) =", float(D), " sigma =", float(ctmc.entropy_production_rate(Q)), " A J =", A * float(J))

# %% [markdown]
# ## Data: stationary paths observed every $\Delta = 0.5$
#
# `small`: 50 Gillespie paths from the stationary law, each observed at 100 times $k\Delta$ as its
# configuration (4 states for $M = 2$). The simulator also records each path's net crossing rate and
# the total entropy production of windows of length 2, for the checks.

# %%
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
labels = np.asarray(data)
print("labels", labels.shape, "state frequencies", np.bincount(labels.ravel(), minlength=4) / labels.size)
print("simulated current", truth["empirical_current"], "+-", truth["current_se"])
fig, ax = plt.subplots(figsize=(8, 2.5))
for p in range(3):
    ax.step(config.obs_times, labels[p] + 0.1 * p, where="post", label=f"path {p}")
ax.set_xlabel("time"); ax.set_ylabel("configuration"); ax.set_yticks(range(4)); ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## NUTS on the exact likelihood
#
# The program samples $\log k_0, \log k_h \sim N(0, 0.5^2)$ and $J_{nn}, \mu_L, \mu_R \sim N(0, 1)$
# ($\varepsilon = 0$ is the pinned reference: only $\mu - \varepsilon$ is identifiable), builds $Q$,
# and adds `numpyro.factor("y", (paths, times) increments)` from the forward algorithm with
# $e^{Q\Delta}$ and the stationary law at $t = 0$.

# %%
idata = inference.fit(entry, data, method=entry.recipe.method, progress=False,
                      **entry.recipe.options_for("small"))
names = ["log_k0", "log_kh", "coupling", "mu_left", "mu_right"]
az.summary(idata, var_names=names)

# %%
checks = entry.check(idata, truth, config)
for c in checks:
    print(("PASS" if c.passed else "FAIL"), f"{c.name:62s} {c.detail}")

# %%
fig, axes = plt.subplots(1, 5, figsize=(15, 2.6))
for ax, name in zip(axes, names):
    ax.hist(np.asarray(idata.posterior[name]).ravel(), bins=40, alpha=0.7)
    ax.axvline(float(truth[name]), color="k", lw=2); ax.set_title(name)
plt.tight_layout(); plt.show()

# %% [markdown]
# ## ArviZ's standard views
#
# Trace and rank plots per chain (overlapping chains, uniform ranks), the energy plot of NUTS (the
# marginal energy and its transitions should overlap; a much narrower transition distribution
# means slow exploration), and the posterior predictive labels against the data (each draw is a
# fresh set of paths from the chain at posterior parameters; the labels are discrete, so the plot
# is a histogram of how often each state is seen).

# %%
az.plot_trace(idata, var_names=names, compact=True);
az.plot_rank(idata, var_names=names);
az.plot_energy(idata);
az.plot_ppc(idata, var_names=["y"], num_pp_samples=100);

# %% [markdown]
# The pointwise log-likelihood has one term per path and observation time, the forward
# algorithm's one-step predictive `log p(y_t | y_<t)` (the stationary law at `t = 0`): PSIS-LOO
# leaves out that one factor, not one label with what its neighbours say about it (for
# forecasting, leave-future-out: `diagnostics.compare.psis_lfo`); the Pareto k below say whether
# importance sampling can do that. LOO-PIT is not shown: the labels are discrete, and the PIT of a
# discrete observation is not uniform even when the model is right.

# %%
az.plot_khat(az.loo(idata, pointwise=True));

# %% [markdown]
# ## The detailed fluctuation theorem on the simulated paths
#
# For a stationary start the total entropy production $S$ of a window (medium part
# $\sum \log Q_{x x'}/Q_{x' x}$ plus the change of $-\log \pi$) obeys $P(S)/P(-S) = e^{S}$. The
# histogram of $S$ over all windows, and $\log P(S)/P(-S)$ against $S$:

# %%
S = np.asarray(truth["window_entropy"]).ravel()
values, counts = np.unique(np.round(S, 8), return_counts=True)
prob = dict(zip(values, counts / counts.sum()))
pos = [(s, np.log(prob[s] / prob[-s])) for s in values if s > 0 and -s in prob and prob[s] * S.size > 20]
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].hist(S, bins=60); axes[0].set_xlabel("S (k_B)"); axes[0].set_title(f"{S.size} windows")
if pos:
    s, r = np.array(pos).T
    axes[1].plot(s, r, "o", label="log P(S)/P(-S)")
    axes[1].plot(s, s, "k-", label="S")
    axes[1].legend(fontsize=8)
axes[1].set_xlabel("S")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## Equilibrium snapshots
#
# `equilibrium` config: $qV = 0$, $\mu_L = \mu_R = \mu$; 5 patches x 100 independent snapshots of the
# occupancy $n \in \{0, 1, 2\}$, likelihood $p(n) = \sum_{|\sigma| = n} e^{-E + \mu n}/Z$ with $Z$
# summed over the $2^M$ configurations. A voltage in this mode is a named error (detailed balance
# is required).

# %%
econfig = entry.configs["equilibrium"]
edata, etruth = entry.simulate(jax.random.PRNGKey(1), econfig)
eidata = inference.fit(entry, edata, method="nuts", progress=False, config="equilibrium",
                       num_warmup=200, num_samples=200, num_chains=2)
print(az.summary(eidata, var_names=["coupling", "mu"]))
for c in entry.check(eidata, etruth, econfig):
    print(("PASS" if c.passed else "FAIL"), c.name)
try:
    mic.ChannelConfig(mode="equilibrium", voltage=1.0, true_mu_right=0.5)
except fluctuations.DetailedBalanceError as err:
    print("DetailedBalanceError:", err)
