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
# # `pgdmm_duffing`: a physics-guided deep Markov model next to its exact linear twin
#
# Liu et al. (arXiv:2110.08607) put a frozen linear physics model inside a deep Markov model: one
# latent stream keeps the physics mean `A_d z + B_d u` with a learned scale, a second stream is a
# learned MLP transition, and the state is their mix `z = α z_phy + (1 − α) z_NN`. The data here is
# a forced, damped Duffing oscillator `ẍ + 0.1ẋ + x + k₃x³ = u` with its displacement observed in
# noise (σ = 0.05).
#
# * **The linear twin** (`k₃ = 0`, the entry's recipe): the physics prior itself is linear-Gaussian,
#   so the Kalman filter gives the exact marginal likelihood and NUTS the exact posterior of the
#   stiffness `k` and damping `c`.
# * **The PgDMM** on Duffing data (`k₃ = 0.5`), trained by the ELBO with method `"vae"` (Adam,
#   gradient clipping, KL annealing from 0.2, the best held-out ELBO kept) and a structured guide: a
#   bidirectional GRU over `(y, u)` and one combiner per stream. The claim checked is the paper's:
#   the latent state lines up with the physical displacement and velocity on held-out sequences.
#
# This notebook trains for 500 steps (the `duffing` config's 1500 took 19 minutes on the shared
# 2-core machine at load 30; the slow test runs it).

# %%
import dataclasses, functools, time
import jax, numpy as np, matplotlib.pyplot as plt
import zoo, inference
from zoo import pgdmm_duffing as pg
from zoo.nets.params import program_params

entry = zoo.get("pgdmm_duffing")

# %% [markdown]
# ## The linear twin: NUTS on the Kalman marginal

# %%
small = entry.config("small")
data, truth = entry.simulate(jax.random.PRNGKey(0), small)
twin = inference.fit(entry, data, method="nuts", progress=False, **entry.recipe.options_for("small"))
for c in entry.check(twin, truth, small):
    print(c)
for name in ("k", "c"):
    draws = twin.posterior[name].values.ravel()
    print(f"{name}: mean {draws.mean():.4f}, sd {draws.std():.4f}, 90% [{np.quantile(draws, 0.05):.4f}, "
          f"{np.quantile(draws, 0.95):.4f}], truth {float(truth[name])}")

# %% [markdown]
# ### ArviZ's standard views of the twin
#
# Trace and rank plots per chain (the recipe runs one chain here, so the rank plot shows only that
# the chain's ranks are uniform over its own draws), the energy plot of NUTS (the marginal energy
# and its transitions should overlap; a much narrower transition distribution means slow
# exploration). A data point is a pair `(u_t, y_t)`: the known input and the observed
# displacement, stored as `observed_data.y` with a channel axis, while the program's observation
# site `y` is the displacement alone (`u` is given, not predicted). ArviZ pairs groups by name and
# dims, so the posterior predictive and the pointwise log-likelihood are set beside the
# displacement channel of the data (`y[..., 1]`). Each pointwise term is the Kalman filter's
# one-step predictive `p(y_t | y_<t, u)` of one displacement: LOO-PIT pairs it with its
# observation, and PSIS-LOO leaves out that one-step factor, not the observation with what its
# neighbours say about it (for forecasting, leave-future-out: `diagnostics.compare.psis_lfo`).
# The posterior predictive draws are fresh series with fresh inputs, so they judge the marginal
# spread of the displacement, not the fit step by step.

# %%
import arviz as az
az.plot_trace(twin, var_names=["k", "c"], compact=True);
az.plot_rank(twin, var_names=["k", "c"]);
az.plot_energy(twin);
displacement = az.from_dict(
    posterior={name: twin.posterior[name].values for name in ("k", "c")},
    posterior_predictive={"y": twin.posterior_predictive["y"].values},
    log_likelihood={"y": twin.log_likelihood["y"].values},
    observed_data={"y": np.asarray(data)[..., 1]},
    dims={"y": ["series", "time"]})
az.plot_ppc(displacement, var_names=["y"], num_pp_samples=100);
az.plot_loo_pit(displacement, y="y");
az.plot_khat(az.loo(twin, pointwise=True));

# %% [markdown]
# ArviZ warns above that a Pareto k exceeds 0.60: its bound depends on the number of draws,
# `1 − 1/log10(300) ≈ 0.596` for this one chain of 300 (0.7 from about 2200 draws on), and the
# largest k of the 1600 one-step terms (about 0.59 in the plot) sits at it. That term's PSIS
# estimate is borderline, which more draws would settle; no k is near 0.7. The LOO-PIT curve runs
# along the edge of the band of uniform samples (a few too few values below 0.25, a few too many
# near 0.7), a small departure for one data set of 1600 one-step predictions.

# %% [markdown]
# ## The PgDMM on Duffing data
#
# The PgDMM is trained (the ELBO's point estimate of the network and noise parameters, with an
# amortised guide over the latent states), not sampled: it has no posterior draws of its
# parameters, so ArviZ's trace, rank, energy and LOO views do not apply to it.

# %%
config = dataclasses.replace(pg.DUFFING, vae_steps=500)
data, truth = entry.simulate(jax.random.PRNGKey(1), config)
test, test_truth = entry.simulate(jax.random.PRNGKey(2), dataclasses.replace(config, num_series=8))
started = time.perf_counter()
idata = inference.fit(functools.partial(pg.pgdmm_model, config=config), data, method="vae",
                      guide=pg.pgdmm_guide(config), progress=False, **pg.pgdmm_vae_options(config))
print(f"trained in {time.perf_counter() - started:.0f} s; best held-out ELBO at step {idata.attrs['selected_step']}")
for c in pg.check_pgdmm(idata, test, test_truth, config):
    print(c)
values = {name: np.asarray(v.values) for name, v in idata.parameters.data_vars.items()}
print(f"alpha = {1 / (1 + np.exp(-float(values['alpha_logit']))):.3f}, "
      f"sigma_y = {np.exp(float(values['log_obs_noise'])):.4f} (truth {config.obs_noise})")

# %%
z = np.asarray(pg.posterior_states(program_params(values), test, config, num_samples=100))
x = np.asarray(test_truth["x"])
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
loss = idata.training["loss"].values
axes[0].plot(np.arange(50, len(loss)), -loss[50:])
axes[0].set(title="training ELBO", xlabel="step")
t = np.arange(config.num_steps) * config.dt
for d, (ax, label) in enumerate(zip(axes[1:], ("displacement", "velocity"))):
    mean, lo, hi = z[..., 0, :, d].mean(0), *np.quantile(z[..., 0, :, d], [0.05, 0.95], axis=0)
    ax.fill_between(t, lo, hi, alpha=0.3, label="PgDMM 90%")
    ax.plot(t, mean, label="PgDMM mean")
    ax.plot(t, x[0, :, d], "k--", label="truth")
    ax.set(title=f"held-out sequence 0: {label}", xlabel="t")
axes[1].plot(t, np.asarray(test)[0, :, 1], ".", ms=3, color="gray", label="y")
axes[1].legend(fontsize=7)
plt.tight_layout()

# %% [markdown]
# The twin's posterior is exact: its intervals cover the true stiffness and damping. The PgDMM has
# no exact posterior on Duffing data, but its latent state is read against the simulator's
# physical state: the posterior mean follows displacement and velocity on sequences it never saw.
#
# The one-step predictive check (spec (c)) compares a particle filter on the trained PgDMM with the
# Kalman filter of the frozen linear physics on the held-out sequences. This notebook trains for
# 500 steps to stay cheap, and at that length the RMSE ratio printed above (0.805) falls just short
# of the spec's 0.8; the full `duffing` configuration's 1500 steps (the slow test) reach 0.748.
