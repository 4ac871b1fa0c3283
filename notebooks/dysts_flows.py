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
# # `dysts_flows`: chaotic flows as inference targets
#
# The registry `zoo.processes.chaos` holds nine chaotic systems of the dysts database (Gilpin 2021)
# with dysts' parameter conventions and metadata. The entry `dysts_flows` infers a flow's parameters
# from noisy observations by **multiple shooting**: K short windows, each with its own initial
# state, each at most about one Lyapunov time long. This notebook shows why the windows must be
# short, fits Lorenz's σ, ρ, β with NUTS, and asks whether the posterior-predictive flows have the
# right chaos: maximal Lyapunov exponent and correlation dimension (`diagnostics.metrics`). A second
# route runs the particle filter and PMMH on the same flow written as a state-space model.

# %%
import time
import jax, jax.numpy as jnp, numpy as np, arviz as az, matplotlib.pyplot as plt
import zoo, inference
from zoo.processes import chaos
from zoo import dysts_flows
from diagnostics import checks, metrics

entry = zoo.get("dysts_flows")
print(f"{'system':<14} {'dim':>3} {'period':>7} {'lambda_max':>10} {'corr dim':>8}  parameters")
for name in chaos.names():
    f = chaos.get_flow(name)
    print(f"{name:<14} {f.dim:>3} {f.period:>7.3f} {f.lyapunov_max:>10.3f} {f.correlation_dimension:>8.2f}  {dict(f.params)}")

# %%
fig, axes = plt.subplots(1, 9, figsize=(18, 2.2))
for ax, name in zip(axes, chaos.names()):
    traj = chaos.make_trajectory(jax.random.PRNGKey(0), name, 1500, pts_per_period=100)
    ax.plot(traj.states[:, 0], traj.states[:, 1], lw=0.3); ax.set_title(name, fontsize=9); ax.axis("off")

# %% [markdown]
# ## Why short windows
#
# Over one window the likelihood of ρ (the other parameters and the initial state at their true
# values) is smooth and has one mode when the window is short; over ten Lyapunov times
# trajectories of nearby ρ have decorrelated and the likelihood is a jagged landscape with many
# modes, where no sampler finds its way. The small config's windows are 80 observations at
# dt = 0.01: 0.71 Lyapunov times.

# %%
config = entry.configs["small"]
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
x0, sigma = truth["x0"][0], config.obs_noise
rhos = np.linspace(27.0, 29.0, 201)

def loglik_profile(num_steps, observations):
    def one(rho):
        path = chaos.integrate("Lorenz", x0, 0.01, num_steps, params={"beta": 8 / 3, "rho": rho, "sigma": 10.0},
                               max_step=0.01, check=False)
        return -0.5 * jnp.sum((path - observations) ** 2) / sigma**2
    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(rhos)))

long_clean = np.asarray(chaos.integrate("Lorenz", x0, 0.01, 800, params={"beta": 8 / 3}, max_step=0.01))
long_obs = long_clean + sigma * np.asarray(jax.random.normal(jax.random.PRNGKey(5), long_clean.shape))
fig, axes = plt.subplots(1, 2, figsize=(11, 3))
for ax, n, obs, label in [(axes[0], 80, data[0], "one window: 80 steps = 0.71 Lyapunov times"),
                          (axes[1], 800, long_obs, "800 steps = 7.1 Lyapunov times")]:
    ll = loglik_profile(n, obs)
    ax.plot(rhos, ll - ll.max()); ax.axvline(28, color="k", ls=":"); ax.set_title(label); ax.set_xlabel("rho")
axes[0].set_ylabel("log-likelihood (max = 0)")

# %% [markdown]
# ## NUTS on three windows (the entry's recipe)
#
# Three windows starting at t = 10, 25, 40 of a trajectory from (1, 1, 1), noise σ_obs = 0.5; priors
# LogNormal(log θ_dysts, 0.5) on σ, ρ, β, HalfNormal(1) on σ_obs, and N(anchor, 1) on each
# window's initial state, the anchor being the window's first reading (which the likelihood then
# leaves out: each reading is used once). Four chains of 200 + 200 iterations from the prior median.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 2.6))
for k, ax in enumerate(axes):
    ax.plot(truth["x"][k], lw=1); ax.plot(np.asarray(data[k]), ".", ms=2, color="k")
    ax.set_title(f"window {k}: t = {config.window_starts[k]:g} .. {config.window_starts[k] + 0.79:g}")
started = time.process_time()
idata = inference.fit(entry, data, method="nuts", progress=False, **entry.recipe.options)
print(f"NUTS: {time.process_time() - started:.0f} s of CPU")
print(checks.format_verdicts(checks.run_checks(idata, var_names=["beta", "rho", "sigma", "sigma_obs"])))
az.summary(idata, var_names=["sigma", "rho", "beta", "sigma_obs"], round_to=4)

# %%
for c in entry.check(idata, truth, config):
    print("PASS" if c.passed else "FAIL", "|", c.name, "|", round(c.value, 4), "|", c.target)
az.plot_pair(idata, var_names=["sigma", "rho", "beta"], kind="kde", marginals=True,
             reference_values={"sigma": 10.0, "rho": 28.0, "beta": 8 / 3}, figsize=(6, 6));

# %% [markdown]
# ### ArviZ's standard views
#
# Trace and rank plots per chain (overlapping chains, uniform ranks), the energy plot of NUTS (the
# marginal energy and its transitions should overlap; a much narrower transition distribution
# means slow exploration), and the posterior predictive against the data (each draw adds fresh
# observation noise to the posterior ODE paths of the windows; all windows, times and coordinates
# pooled). The path is deterministic given the parameters and each window's initial state, so the
# pointwise log-likelihood has one independent term per window and time, the joint density of
# that time's observed coordinates: PSIS-LOO leaves out one observed time of one window, and the
# Pareto k below say whether importance sampling can do that. LOO-PIT needs one term per observed
# number (here a term covers all coordinates of a time) and does not apply.

# %%
az.plot_trace(idata, var_names=["sigma", "rho", "beta", "sigma_obs"], compact=True);
az.plot_rank(idata, var_names=["sigma", "rho", "beta", "sigma_obs"]);
az.plot_energy(idata);
az.plot_ppc(idata, var_names=["y"], num_pp_samples=100);
az.plot_khat(az.loo(idata, pointwise=True));

# %% [markdown]
# The same fit from a user's file: `zoo fit dysts_flows --data lorenz.csv` reads a series with a
# `time` column and the coordinates `x, y, z` on the config's grid (dt = 0.01) and cuts the three
# windows from it (`tests/zoo/test_dysts_flows.py` runs exactly that):

# %%
series = dysts_flows.simulate_series(jax.random.PRNGKey(0), config)
print({k: v[:3].round(3).tolist() for k, v in series.items()}, "...", len(series["time"]), "rows")
windows = entry.load_columns(series, config)
print("windows cut at", config.window_starts, "->", windows.shape)


# %% [markdown]
# ## The posterior-predictive flow: is it chaotic in the right way?
#
# For posterior draws of (σ, ρ, β), the maximal Lyapunov exponent (Benettin with `jax.linearize`
# tangents along 2·10⁴ RK4 steps of dt = 0.01) and the Grassberger–Procaccia correlation dimension
# (10⁴ points at 15 per dominant period, Theiler window 10, C(r) in [1e-3, 3e-2]). The spec asks
# λ_max ∈ [0.85, 0.96] and a dimension in [1.9, 2.1]; the literature values are 0.906 and 2.05.

# %%
def invariants(params, seed):
    f = chaos.vector_field("Lorenz", params)
    lam = metrics.lyapunov_max(lambda x: chaos.rk4_step(f, x, 0.01), jnp.ones(3), num_steps=20_000, dt=0.01,
                               transient=1000, renormalize_every=10)
    traj = chaos.make_trajectory(jax.random.PRNGKey(seed), "Lorenz", 10_000, pts_per_period=15, params=params)
    return lam, metrics.correlation_dimension(traj.states)

draws = az.extract(idata, var_names=["sigma", "rho", "beta"], num_samples=8, rng=1)
rows = []
for i in range(8):
    params = {k: float(draws[k].values[i]) for k in ("sigma", "rho", "beta")}
    lam, d2 = invariants(params, i)
    rows.append((params["sigma"], params["rho"], params["beta"], lam, d2.dimension))
rows = np.array(rows)
lam_true, d2_true = invariants({"sigma": 10.0, "rho": 28.0, "beta": 8 / 3}, 99)
print(f"{'sigma':>7} {'rho':>7} {'beta':>7} {'lambda_max':>10} {'D2':>6}")
for r in rows:
    print(f"{r[0]:7.3f} {r[1]:7.3f} {r[2]:7.4f} {r[3]:10.4f} {r[4]:6.3f}")
print(f"posterior predictive: lambda_max {rows[:, 3].mean():.3f} ± {rows[:, 3].std():.3f}, "
      f"D2 {rows[:, 4].mean():.3f} ± {rows[:, 4].std():.3f}")
print(f"true parameters:      lambda_max {lam_true:.3f}, D2 {d2_true.dimension:.3f} "
      f"(fit region r in [{d2_true.fit_region[0]:.2f}, {d2_true.fit_region[1]:.2f}])")

# %%
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.loglog(d2_true.radii, d2_true.correlation_sum, ".-", ms=3)
ax.axvspan(*d2_true.fit_region, alpha=0.2, label=f"fit region: slope {d2_true.dimension:.3f}")
ax.set_xlabel("r"); ax.set_ylabel("C(r)"); ax.legend(); ax.set_title("Grassberger-Procaccia, true Lorenz")

# %% [markdown]
# ## Second route: the flow as a state-space model
#
# `entry.ssm(config)` writes the flow with weak process noise, `x_t ~ N(RK4_θ(x_{t−1}), q² dt)`, and
# Gaussian observations, so the particle methods apply. The bootstrap filter's log-likelihood
# estimate separates ρ = 28 from nearby values; its noise depends on where x₀ is drawn from: from
# the attractor's spread (the default, valid for any data) the estimate is noisy, centred on the
# window's first observation it is precise enough for PMMH (log-likelihood sd ≈ 0.25 at 1024
# particles; with 256 particles, sd ≈ 1.3, one PMMH chain stuck on a lucky overestimate). Below:
# PMMH on the first window with x₀ centred there, next to NUTS on the same window (the
# deterministic program); one window pins σ less well than three.

# %%
import dataclasses
one = dataclasses.replace(config, window_starts=(10.0,), ssm_initial_mean=tuple(np.asarray(data[0, 0]).tolist()),
                          ssm_initial_scale=1.0)
started = time.process_time()
pmmh = inference.fit(entry, data[:1], method="pmmh", config=one, progress=False, num_particles=1024,
                     num_warmup=1000, num_samples=1000, num_chains=2)
print(f"PMMH: {time.process_time() - started:.0f} s of CPU")
nuts_one = inference.fit(entry, data[:1], method="nuts", config=one, progress=False, **entry.recipe.options)
print(f"{'':<14}{'sigma':>18}{'rho':>18}{'beta':>18}")
for label, run in [("PMMH (SSM)", pmmh), ("NUTS (ODE)", nuts_one)]:
    cells = [f"{run.posterior[v].values.mean():8.3f} ± {run.posterior[v].values.std():6.3f}" for v in ("sigma", "rho", "beta")]
    print(f"{label:<14}" + "".join(f"{c:>18}" for c in cells))
print(checks.format_verdicts(checks.run_checks(pmmh)))

# %% [markdown]
# The two routes agree on the means (the state-space model adds weak process noise, so they need
# not agree exactly), but by this budget PMMH has not converged: R-hat 1.18 and a bulk ESS of 12
# for σ over 2 × 1000 iterations (measured when this notebook was built). A random walk in four
# dimensions driven by a noisy likelihood estimate mixes slowly; a converged PMMH run needs longer
# chains (or a guided filter). NUTS through the differentiable RK4 solver converged on all
# windows above in 4 × 200 iterations (every R-hat, ESS, divergence and E-BFMI verdict ok; one
# observation's Pareto k warns), and on this one window with no convergence warning in this
# execution, its means of σ, ρ, β agreeing with PMMH's (the table). The windows' initial states
# `x0` mix slowest; with two chains one data set's R-hat of `x0` reached 1.05, which is why the
# recipe runs four. NUTS on the windows stays the entry's recipe.
