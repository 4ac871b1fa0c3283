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
# # `latent_sde_ou`: a latent SDE with a neural posterior drift, next to its exact answer
#
# Kidger's thesis (arXiv:2202.02435, ch. 5) fits latent SDEs as VAEs: the prior is
# `dz = f_θ dt + σ dW`, the approximate posterior `dz = h_φ dt + σ dW` with the *same* diffusion, and
# the ELBO's KL is `E ½∫|u|² dt`, `u = (h_φ - f_θ)/σ` (Girsanov). Here the prior is an OU process on
# an Euler–Maruyama grid (dt = 0.05) observed in noise (s = 0.1) every 4 steps. This notebook runs
# on the `tiny` configuration (4 sequences of 80 steps; the guide's networks 2×32 and 8): SVI on
# `small` (16 sequences of 200 steps, 3000 steps of 8 particles) ran past a 15-minute cell limit on
# the shared 2-core machine, so its side-by-side is left to a faster machine. Because the model is linear-Gaussian, the Kalman filter gives the exact marginal
# likelihood, so the variational answer can be held against the exact one:
#
# * **NUTS on (θ, σ) with the Kalman marginal** — the entry's recipe and the oracle;
# * **latent SDE** — the Brownian increments are ONE NumPyro site
#   (`zoo.processes.sde.EulerMaruyamaIncrements`); the guide draws the same site shifted by a
#   control `u_φ(t, z, context)` (flax MLP 2×64, backward-GRU context over the observations), so the
#   Girsanov KL falls out of `Trace_ELBO`;
# * **bootstrap particle filter** on the same model as a `StateSpaceModel`.

# %%
import functools, time
import jax, jax.numpy as jnp, numpy as np, arviz as az, matplotlib.pyplot as plt
import zoo, inference
from diagnostics import checks
from zoo import latent_sde_ou as lsde

entry = zoo.get("latent_sde_ou")
config = entry.configs["tiny"]
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
grid = config.dt * np.arange(config.num_steps + 1)
fig, ax = plt.subplots(figsize=(10, 3))
for s in range(3):
    ax.plot(grid, truth["z"][s], lw=1, color=f"C{s}")
    ax.plot(config.obs_times, data[s], ".", color=f"C{s}")
ax.set_xlabel("t"); ax.set_title(f"three of the {config.num_series} latent paths (lines) and their observations (dots)")

# %% [markdown]
# ## 1. The oracle: NUTS on the Kalman marginal (the recipe)

# %%
t0 = time.process_time()
idata_nuts = inference.fit(entry, data, config="tiny", method="nuts", progress=False, **entry.recipe.options)
print(f"CPU {time.process_time() - t0:.0f} s")
print(checks.format_verdicts(checks.run_checks(idata_nuts)))
for c in entry.check(idata_nuts, truth, config):
    print("PASS" if c.passed else "FAIL", "|", c.name, "|", c.detail or c.target)

# %% [markdown]
# ### ArviZ's standard views of the oracle
#
# Trace and rank plots (the recipe runs one chain, so the rank plot shows only that its ranks are
# uniform over its own draws), the energy plot of NUTS (the marginal energy and its transitions
# should overlap; a much narrower transition distribution means slow exploration), and the
# posterior predictive against the data: each draw is a fresh set of series at posterior
# (θ, σ), so the plot judges the marginal spread of the observations, not the fit step by step.
# The pointwise log-likelihood has one term per observation, the Kalman filter's one-step
# predictive `p(y_t | y_<t)` with the latent path integrated out; the series are univariate, so
# LOO-PIT pairs each term with its observation. PSIS-LOO leaves out that one-step factor, not the
# observation with what its neighbours say about it (for forecasting, leave-future-out:
# `diagnostics.compare.psis_lfo`).

# %%
az.plot_trace(idata_nuts, var_names=["theta", "sigma"], compact=True);
az.plot_rank(idata_nuts, var_names=["theta", "sigma"]);
az.plot_energy(idata_nuts);
az.plot_ppc(idata_nuts, var_names=["y"], num_pp_samples=100);
az.plot_loo_pit(idata_nuts, y="y");
az.plot_khat(az.loo(idata_nuts, pointwise=True));

# %% [markdown]
# All 80 Pareto k are below 0.44. The LOO-PIT curve, though, leaves the band of uniform samples
# near 1: more of the 80 observations than a uniform PIT gives fall in the top fifth of their
# one-step predictive (the predictions sit a little low on this data set). The data come from
# this very model, so this is one data set's departure by chance (80 PIT values are few; the band
# is drawn from only 100 uniform samples); a real series with the same picture would point at a
# level or drift the model misses. The WARN verdict above is the one-chain R-hat: the recipe runs one chain, so
# R-hat cannot be computed (run several chains to check convergence).

# %% [markdown]
# ## 2. The latent SDE: noise sites and a neural control
#
# SVI gives a fitted guide, not a Markov chain: its draws of (θ, σ) are independent draws from the
# Normal guide, so trace, rank and energy plots say nothing about convergence there (the ELBO
# curve below does).
#
# SVI with the `tiny` config's budget: optax Adam 3e-3, 1000 steps, 4 particles (the spec's 3000
# steps of 8 particles are the `small` config's); θ and σ get Normal guides in NumPyro's
# unconstrained space.

# %%
t0 = time.process_time()
idata_svi = inference.fit(functools.partial(lsde.path_model, config=config), data, method="svi",
                          guide=lsde.path_guide(config), progress=False, **lsde.path_svi_options(config))
print(f"CPU {time.process_time() - t0:.0f} s")
loss = idata_svi.svi_trace["loss"].values
fig, ax = plt.subplots(figsize=(8, 2.5))
ax.plot(loss); ax.set_yscale("symlog"); ax.set_xlabel("step"); ax.set_title("negative ELBO")

# %% [markdown]
# ## 3. The particle filter at the NUTS posterior mean
#
# A bootstrap filter (1000 particles, 16 replicates) on `entry.ssm(config)` against the Kalman
# log-evidence at the same (θ, σ).

# %%
post_mean = {k: float(idata_nuts.posterior[k].mean()) for k in ("theta", "sigma")}
idata_pf = inference.fit(entry, data, config="tiny", method="pf", params=post_mean, num_particles=1000, num_replicates=16,
                         progress=False)
log_z_pf = idata_pf.sample_stats["log_evidence"].values.ravel()
log_z = float(entry.exact_loglik(post_mean, data, config))
print(f"log p(y | θ, σ) at the NUTS mean: Kalman {log_z:.2f}, particle filter {log_z_pf.mean():.2f} ± {log_z_pf.std():.2f}")

# %% [markdown]
# ## Side by side

# %%
rows = []
for label, run in [("NUTS (Kalman marginal)", idata_nuts), ("latent SDE (SVI)", idata_svi)]:
    th, sg = run.posterior["theta"].values.ravel(), run.posterior["sigma"].values.ravel()
    rows.append((label, th.mean(), th.std(), sg.mean(), sg.std()))
print(f"{'route':<24}{'E[θ]':>8}{'sd':>7}{'E[σ]':>8}{'sd':>7}")
for r in rows:
    print(f"{r[0]:<24}{r[1]:8.3f}{r[2]:7.3f}{r[3]:8.3f}{r[4]:7.3f}")
print(f"{'truth':<24}{config.true_theta:8.3f}{'':>7}{config.true_sigma:8.3f}")
elbo = -loss[-200:].mean()
print(f"\nELBO (last 200 steps) {elbo:.1f};  Kalman log p(y | NUTS mean) {log_z:.1f};  PF {log_z_pf.mean():.1f}")

# %%
mean_exact, sd_exact = (np.asarray(a) for a in lsde.smoothed_paths(post_mean, data, config))
z = idata_svi.posterior["z"].values.reshape(-1, config.num_series, config.num_steps + 1)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.2), sharey=True)
for ax, s in zip(axes, (0, 1)):
    ax.fill_between(grid, z[:, s].mean(0) - z[:, s].std(0), z[:, s].mean(0) + z[:, s].std(0), alpha=0.3,
                    label="latent SDE ± sd")
    ax.plot(config.obs_times, mean_exact[s], "k-", lw=1, label="Kalman smoother")
    ax.plot(config.obs_times, mean_exact[s] - sd_exact[s], "k:", lw=1)
    ax.plot(config.obs_times, mean_exact[s] + sd_exact[s], "k:", lw=1)
    ax.plot(config.obs_times, data[s], "r.", ms=4, label="y")
    ax.set_xlabel("t"); ax.set_title(f"sequence {s}")
axes[0].legend(fontsize=8)

# %% [markdown]
# ## What the guide family can reach
#
# The guide keeps the prior's increment variance dt (the same diffusion, or the KL would be
# infinite in continuous time). Near an observation the exact posterior shrinks the conditional
# variance of each increment, which no member of this family can do; for the linear model the best
# member is computable exactly (`lsde.family_optimum`). Its KL — the smallest possible ELBO gap —
# and its path sd are:

# %%
for sigma in (0.5, 0.45, 0.4, 0.35):
    best = lsde.family_optimum({"theta": 1.0, "sigma": sigma}, config)
    print(f"σ = {sigma:.2f}: minimal gap {best.gap:5.1f} nats per sequence, path sd × {best.sd_ratio:.2f} of the exact")
for dt, steps, every in ((0.025, 400, 8), (0.0125, 800, 16)):
    finer = lsde.LatentSDEConfig(dt=dt, num_steps=steps, obs_every=every)
    best = lsde.family_optimum({"theta": 1.0, "sigma": 0.5}, finer)
    print(f"dt = {dt}: minimal gap {best.gap:5.1f} nats per sequence, path sd × {best.sd_ratio:.2f}")

# %% [markdown]
# So at dt = 0.05 the spec's "gap < 5 nats per sequence" and "path sd within 25%" are out of reach
# for this guide family whatever the network, and because the minimal gap grows with σ the ELBO
# pulls σ below the truth: the latent-SDE estimate of σ above sits low for that reason, not for
# lack of training. The gap shrinks like dt (≈ ¼σ²dt/s² per observation). At fixed (θ, σ) the
# trained guide reaches the family's optimum (the entry's tests check the ELBO is within 1 nat per
# sequence of it on the `tiny` config), and the posterior-mean path matches the Kalman smoother.

# %%
fixed = {"theta": 1.0, "sigma": 0.5}
tiny = entry.configs["tiny"]
data_t, _ = entry.simulate(jax.random.PRNGKey(0), tiny)
run = inference.fit(functools.partial(lsde.path_model, config=tiny, params=fixed), data_t, method="svi",
                    guide=lsde.path_guide(tiny, params=fixed), progress=False, **lsde.path_svi_options(tiny))
tail = -run.svi_trace["loss"].values[-200:]
for c in lsde.check_svi(run, data_t, fixed, tiny, elbo=float(tail.mean()), elbo_se=float(tail.std() / np.sqrt(200))):
    print("PASS" if c.passed else "FAIL", "|", c.name, "|", round(c.value, 3), "|", c.target)
