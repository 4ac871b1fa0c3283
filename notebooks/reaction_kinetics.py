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
# # Reaction kinetics: one network, four ways to fit it
#
# The stochastic Lotka–Volterra model of Täuber's review (arXiv:1807.01248, §3b): predators A and
# prey B on N = 500 sites, with empty sites E = N − A − B,
#
# | reaction | propensity |
# |---|---|
# | A → E (predator death) | μ a |
# | B + E → 2B (prey birth into empty sites) | σ b (N − a − b)/N |
# | A + B → 2A (predation) | λ a b / N |
#
# Everything below comes from **one** `ReactionNetwork` specification in
# `zoo.processes.reactions`: the exact stochastic simulation (Gillespie), the chemical Langevin
# equation (CLE), the linear-noise approximation (LNA) and the deterministic rate equations.
# We simulate one data set exactly, then fit the three rates (μ, σ, λ) three ways:
#
# 1. **CLE + particle Gibbs** (conditional SMC with ancestor sampling) on the entry's state-space form;
# 2. **LNA + NUTS**: the restarting linear-noise approximation (the LNA re-solved from the filtered
#    mean and covariance at every observation, with `inference.exact`'s Kalman update) gives an
#    approximate marginal likelihood that NUTS differentiates;
# 3. **rate equations + NUTS** (`lotka_volterra_ode`): the mean-field ODE with log-normal noise.

# %%
import os
os.environ.setdefault("MPLBACKEND", "Agg")
import numpy as np
import jax, jax.numpy as jnp
import matplotlib.pyplot as plt
import arviz as az

import zoo, inference
from zoo.reaction_kinetics import lotka_volterra_network, LVData

entry = zoo.get("stochastic_lotka_volterra")
config = entry.configs["small"]
net = lotka_volterra_network(config.capacity)
print("species:", net.species, "  free (state):", net.free_species)
print("stoichiometry (free species x reactions):\n", net.stoichiometry)
truth_rates = jnp.array([config.true_mu, config.true_sigma, config.true_lam])
print("propensities at (a, b) = (100, 150):", np.asarray(net.propensities(truth_rates, jnp.array([100, 150]))))
print("Jacobian eigenvalues at the coexistence point:",
      np.round(np.linalg.eigvals(np.asarray(net.jacobian(truth_rates, jnp.array([500 / 3.75, 500 / 3.0])))), 3))

# %% [markdown]
# ## Exact data
#
# `entry.simulate` runs Gillespie's algorithm (fixed event budget, `jax.vmap` over series) from the
# known initial state (100, 100) and observes each count with Poisson noise at t = 1, …, 40.
# The coexistence point is a stable focus (eigenvalues −0.167 ± 0.553i), so demographic noise
# drives sustained quasi-cycles of period ≈ 11.

# %%
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
times = config.obs_times
fig, axes = plt.subplots(1, config.num_series, figsize=(13, 3), sharey=True)
for s, ax in enumerate(axes):
    for i, (name, colour) in enumerate([("predator", "C3"), ("prey", "C0")]):
        ax.plot(times, truth["x"][s, :, i], color=colour, lw=1.5, label=f"{name} (latent)")
        ax.plot(times, data[s, :, i], ".", color=colour, ms=4)
    ax.set_title(f"series {s}"); ax.set_xlabel("t")
axes[0].legend(fontsize=8); axes[0].set_ylabel("count")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## One specification, four descriptions
#
# At the true rates: the exact SSA (many paths), the CLE (Euler–Maruyama), τ-leaping, the rate
# equations, and the LNA mean ± 2 SD. The LNA band should contain ≈ 95% of the SSA paths.

# %%
x0 = jnp.asarray(config.x0)
grid = jnp.linspace(0.0, 40.0, 81)
keys = jax.random.split(jax.random.PRNGKey(1), 200)
ssa = jax.jit(jax.vmap(lambda k: net.ssa_at(k, truth_rates, x0, grid[1:], 60_000)))(keys)
cle = jax.jit(jax.vmap(lambda k: net.cle_simulate(k, truth_rates, x0, 4000, 0.01, record_every=50)))(keys)
tau = jax.jit(jax.vmap(lambda k: net.tau_leap(k, truth_rates, x0, 4000, 0.01, record_every=50)))(keys)
ode = net.rate_equations(truth_rates, x0.astype(float), grid)
lna = net.lna(truth_rates, x0.astype(float), grid)
sd = np.sqrt(np.diagonal(np.asarray(lna.covs), axis1=1, axis2=2))

fig, axes = plt.subplots(1, 2, figsize=(13, 3.5), sharey=True)
for i, (ax, name) in enumerate(zip(axes, ["predator", "prey"])):
    ax.plot(grid[1:], np.asarray(ssa.states[:20, :, i]).T, color="0.7", lw=0.5)
    ax.plot(grid[1:], np.asarray(ssa.states[:, :, i]).mean(0), "k", lw=2, label="SSA mean (200 paths)")
    ax.plot(grid, np.asarray(cle[:, :, i]).mean(0), "C1--", label="CLE mean")
    ax.plot(grid, np.asarray(tau[:, :, i]).mean(0), "C2:", label="τ-leaping mean")
    ax.plot(grid, ode[:, i], "C0", label="rate equations")
    ax.fill_between(grid, lna.means[:, i] - 2 * sd[:, i], lna.means[:, i] + 2 * sd[:, i], color="C4", alpha=0.2,
                    label="LNA ± 2 SD")
    ax.set_title(name); ax.set_xlabel("t")
axes[0].legend(fontsize=7); plt.tight_layout(); plt.show()
inside = np.abs(np.asarray(ssa.states) - np.asarray(lna.means[1:])) <= 2 * sd[1:]
print(f"fraction of SSA counts inside the LNA ±2 SD band: {inside.mean():.3f}")
print("SSA vs LNA SD at t = 40:", np.asarray(ssa.states[:, -1]).std(0).round(1), sd[-1].round(1))

# %% [markdown]
# ## Route 1 — LNA + NUTS (the entry's default recipe)
#
# Between observations the LNA is a linear-Gaussian transition; restarting it at each observation
# from the filtered mean and covariance (Fearnhead, Giagos & Sherlock 2014) keeps the linearisation
# close to the data instead of to one deterministic path that has long spiralled into the fixed
# point. Poisson noise is replaced by a Gaussian with variance equal to the predicted mean. NUTS
# samples (μ, σ, λ) directly.

# %%
idata_lna = inference.fit(entry, data, method=entry.recipe.method, progress=False,
                          **entry.recipe.options_for("small"))
print(az.summary(idata_lna, var_names=["mu", "sigma", "lam"], round_to=3))
for c in entry.check(idata_lna, truth, config):
    print(("PASS " if c.passed else "FAIL ") + c.name, "|", c.target)

# %% [markdown]
# **Is this data set unlucky, or is the model wrong?** All three rates sit below the truth by about
# the same factor: an overall time scale, which the data pin down less well than the ratios. Two
# measurements separate the two explanations. (1) At the truth, the SSA's own dynamics agree with
# the LNA's: below, the lag-1 regression matrix of 400 exact paths (t = 30…40, quasi-stationary)
# against the LNA's transition matrix Φ. (2) The maximum-likelihood estimates of this data set under
# the non-restarting ("fixed") and restarting LNA, with Laplace standard deviations: the z-scores
# say how far in the tail this data set lies. (Over 83 simulated data sets the fixed LNA's 90%
# intervals missed 8–11% of the time per rate; see the model card.)

# %%
import scipy.optimize, dataclasses
late = jnp.arange(30.0, 41.0)
paths = np.asarray(jax.jit(jax.vmap(lambda k: net.ssa_at(k, truth_rates, x0, late, 60_000)))(
    jax.random.split(jax.random.PRNGKey(7), 400)).states, dtype=float)
a, b = paths[:, :-1] - paths[:, :-1].mean((0, 1)), paths[:, 1:] - paths[:, 1:].mean((0, 1))
F_ssa = np.einsum("nti,ntj->ij", b, a) @ np.linalg.inv(np.einsum("nti,ntj->ij", a, a))
print("SSA lag-1 regression of x(t+1) on x(t):", F_ssa.round(3).tolist())
phi = net.lna(truth_rates, jnp.array([500 / 3.75, 500 / 3.0]), jnp.array([0.0, 1.0])).transition_matrices[0]
print("LNA transition matrix Phi (fixed point):", np.asarray(phi).round(3).tolist())

def mle(form):
    cfg = dataclasses.replace(config, lna_form=form)
    vg = jax.jit(jax.value_and_grad(lambda lp: entry.exact_loglik(dict(zip(["mu", "sigma", "lam"], jnp.exp(lp))), data, cfg)))
    start = np.log([config.true_mu, config.true_sigma, config.true_lam])
    x = scipy.optimize.minimize(lambda v: tuple(-np.asarray(o) for o in vg(jnp.asarray(v))), start, jac=True).x
    h = 1e-4
    H = -np.stack([(np.asarray(vg(jnp.asarray(x + h * e))[1]) - np.asarray(vg(jnp.asarray(x - h * e))[1])) / (2 * h)
                   for e in np.eye(3)])
    sd = np.sqrt(np.diag(np.linalg.inv(0.5 * (H + H.T))))
    return x - start, sd

for form in ("fixed", "restarting"):
    shift, sd = mle(form)
    print(f"{form:10s} MLE log(rate/truth) = {shift.round(3)}, Laplace SD {sd.round(3)}, z = {(shift / sd).round(2)}")

# %% [markdown]
# ## Route 2 — CLE + particle Gibbs
#
# The entry's `ssm` is the CLE as a state-space model: the state at an observation time is the
# Euler–Maruyama sub-path (10 steps of 0.1) since the previous one, so the transition has a proper
# density (needed by ancestor sampling and by the θ | x update). Particle Gibbs alternates
# conditional SMC with ancestor sampling for the latent paths and random-walk Metropolis for θ.

# %%
idata_pg = inference.fit(entry, data, method="pgibbs", progress=False, num_particles=64,
                         num_warmup=300, num_samples=400, num_chains=2, sampling="ancestor",
                         theta_kernel="rw", theta_steps=3, pointwise_log_likelihood=False)
print(az.summary(idata_pg, var_names=["mu", "sigma", "lam"], round_to=3))

# %% [markdown]
# ## Route 3 — rate equations + NUTS (`lotka_volterra_ode`)
#
# The mean-field ODE ignores demographic noise: the deterministic path spirals into the fixed point
# while the data keep cycling, so all the fluctuation ends up in the log-normal "observation" noise.
# We fit the first series (its own initial state, number of sites and noise scale are inferred).
# The first row of counts centres the initial state's prior and is not also a term of the
# likelihood (the entry's card), so the initial state is learned from the path as well; with the
# mean-field path unable to follow the cycles, the number of sites and the rates stay weakly
# identified, and NUTS may report divergent transitions on such a series: read its verdict before
# the numbers.

# %%
ode_entry = zoo.get("lotka_volterra_ode")
ode_config = ode_entry.configs["small"]
ode_data = LVData(jnp.asarray(times), data[0])
idata_ode = inference.fit(ode_entry, ode_data, method="nuts", progress=False,
                          **ode_entry.recipe.options_for("small"))
print(az.summary(idata_ode, var_names=["mu", "sigma", "lam", "capacity", "noise"], round_to=3))

# %% [markdown]
# ## Side by side
#
# Posterior means and 90% intervals of the three rates, with the truth.

# %%
runs = {"LNA + NUTS": idata_lna, "CLE + particle Gibbs": idata_pg, "ODE + NUTS (series 0)": idata_ode}
names = ["mu", "sigma", "lam"]
true = {"mu": config.true_mu, "sigma": config.true_sigma, "lam": config.true_lam}
fig, axes = plt.subplots(1, 3, figsize=(13, 3))
rows = []
for ax, name in zip(axes, names):
    for j, (label, idata) in enumerate(runs.items()):
        draws = np.asarray(idata.posterior[name]).ravel()
        lo, hi = np.quantile(draws, [0.05, 0.95])
        ax.errorbar(draws.mean(), j, xerr=[[draws.mean() - lo], [hi - draws.mean()]], fmt="o", capsize=4)
        rows.append((label, name, draws.mean(), lo, hi))
    ax.axvline(true[name], color="k", ls="--")
    ax.set_yticks(range(len(runs))); ax.set_yticklabels(list(runs) if name == "mu" else [])
    ax.set_title(name)
plt.tight_layout(); plt.show()
print(f"{'route':24s} {'param':6s} {'mean':>8s} {'5%':>8s} {'95%':>8s}   truth")
for label, name, mean, lo, hi in rows:
    print(f"{label:24s} {name:6s} {mean:8.3f} {lo:8.3f} {hi:8.3f}   {true[name]}")
print()
print("spec 3b overlap criterion, |E_LNA - E_PG| / max(SD): (< 1 passes)")
for name in names:
    a, b = (np.asarray(idata.posterior[name]).ravel() for idata in (idata_lna, idata_pg))
    print(f"  {name:6s} {abs(a.mean() - b.mean()) / max(a.std(), b.std()):.2f}")
print("particle Gibbs bulk ESS:", {k: round(float(v), 1) for k, v in az.ess(idata_pg, var_names=names).items()})

# %% [markdown]
# ## ArviZ's standard views
#
# For the LNA + NUTS fit: trace and rank plots per chain (overlapping chains, uniform ranks), the
# energy plot of NUTS (marginal energy and its transitions should overlap), the posterior
# predictive counts against the data where the fit stored a `posterior_predictive` group, and the
# Pareto k of PSIS-LOO where it stored a `log_likelihood` group (the code below prints which groups
# each fit holds). The restarting LNA's pointwise term is a one-step predictive factor of a
# marginalised state-space model, so PSIS-LOO leaves out one step's predictive factor (for
# forecasting, leave-future-out: `diagnostics.compare.psis_lfo`); LOO-PIT needs one term per
# observed number and a term here covers both species of a time, so it does not apply. For
# particle Gibbs: trace and rank only, since it is not a Hamiltonian sampler (no energy plot), and
# it was run with `pointwise_log_likelihood=False`, so there is no log-likelihood for LOO views.
#
# No warning appears in this execution. The rate-equation fit has no divergent transition (NUTS
# can meet the damped spiral's stiff corners of (σ, λ, capacity), where a run may diverge), but its R-hat of up to 1.027 (σ, capacity) is above the 1.01 line and its tail ESS is 71 of 500
# draws for the capacity: its intervals are indicative only. Particle Gibbs
# emits no warning, yet its R-hat of 1.17–1.21 and bulk ESS of 8–11 say its chains have not mixed
# in θ: its posterior means agree with the LNA route, its intervals are not to be trusted as they are.

# %%
print("LNA + NUTS groups:", idata_lna.groups())
print("particle Gibbs groups:", idata_pg.groups())
az.plot_trace(idata_lna, var_names=names, compact=True);
az.plot_rank(idata_lna, var_names=names);
az.plot_energy(idata_lna);
if "posterior_predictive" in idata_lna.groups():
    az.plot_ppc(idata_lna, num_pp_samples=100);
if "log_likelihood" in idata_lna.groups():
    az.plot_khat(az.loo(idata_lna, pointwise=True));
az.plot_trace(idata_pg, var_names=names, compact=True);
az.plot_rank(idata_pg, var_names=names);

# %% [markdown]
# **Reading the comparison.** The LNA and the CLE both model the demographic noise that drives the
# quasi-cycles, and their posteriors agree closely (the spec's criterion: means within one
# posterior SD). On this data set (seed 0) both sit about 8% below the truth in all three rates,
# and the 90% intervals of σ and μ end just below it (at 0.995 and 0.498). The measurements above say why: the exact
# simulator's dynamics match the LNA's at the truth, and this data set's MLE lies about 1.4–2.1
# standard deviations below the truth under both LNA forms, an overall slowing that the exact CLE
# route sees too. The restarting LNA removes part of the fixed LNA's small O(1/N) bias (the CME's
# quasi-stationary mean is about one count away from the rate-equation fixed point at N = 500) and
# widens the intervals slightly; it does not change this data set's verdict.
#
# The LNA route is by far the cheapest. The particle route is exact for the CLE but costs a
# conditional SMC sweep per update and mixes slowly in θ (low ESS above): the fine Euler–Maruyama
# path pins the rates down, so θ | x moves in small steps; use more sweeps, or PMMH, for
# production. The rate-equation fit has to explain sustained cycles with a damped deterministic
# spiral: its noise scale absorbs the fluctuations and its estimates from one series are far less
# precise — the point of the review: fluctuations change the picture the mean-field equations give.
