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
# # `morec_refrigerator`: reward-consistent dynamics models on a refrigerator
#
# MOREC (Luo et al., ICLR 2024) learns a "dynamics reward" $r_D(s, a, s')$ that true transitions
# maximise and uses it to filter the transitions a learned dynamics model proposes. The entry poses
# it on a refrigerator whose temperature the behaviour policy holds near 5 °C, while a test policy
# visits warm states the data never show. Beside the neural pieces sits an exact twin: the
# linear-physics regression $T' = T + w_1 + w_2 T + w_3 a + \sigma\varepsilon$, whose posterior
# (σ known) is Normal in closed form.

# %%
import dataclasses
import functools

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

import inference
import zoo
from diagnostics.metrics import rank_auc
from inference.train import train
from zoo import reward_consistent_dynamics as mr

entry = zoo.get("morec_refrigerator")
config = entry.configs["small"]
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
print("episodes x steps x (temp, action):", data.shape, " truth:", {k: truth[k] for k in ("k_amb", "k_c")})

test = np.asarray(mr.simulate_policy(jax.random.PRNGKey(1), config, "test", num_episodes=20))
fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
for e in range(10):
    ax[0].plot(np.asarray(data[e, :, 0]), color="C0", lw=0.7)
    ax[0].plot(test[e, :, 0], color="C3", lw=0.7)
ax[0].set(xlabel="step", ylabel="temperature (°C)", title="behaviour data (blue), test policy (red)")
ax[1].scatter(np.asarray(data[..., 0]).ravel(), np.asarray(data[..., 1]).ravel(), s=2, alpha=0.3, label="behaviour")
ax[1].scatter(test[..., 0].ravel(), test[..., 1].ravel(), s=2, alpha=0.3, color="C3", label="test")
ax[1].set(xlabel="temperature (°C)", ylabel="action", title="visited (T, a)"); ax[1].legend(markerscale=4);

# %% [markdown]
# ## The exact twin: NUTS against the closed-form posterior
#
# The recipe fits the twin by NUTS (four chains, reparameterised by the Cholesky factor of
# $X^\top X$ because $w_1$ and $w_2$ are correlated beyond −0.99 on these data). Its posterior of
# $k_{amb} = -w_2$ and $k_c = -w_3$ lies on the Normal the algebra gives.

# %%
twin = inference.fit(entry, data, method=entry.recipe.method, progress=False, **entry.recipe.options)
mean, cov = mr.twin_posterior(data, config)
exact = {"k_amb": (-float(mean[1]), float(np.sqrt(cov[1, 1]))), "k_c": (-float(mean[2]), float(np.sqrt(cov[2, 2])))}
print(az.summary(twin, var_names=["k_amb", "k_c"], kind="all", round_to=4))
for name, (m, s) in exact.items():
    draws = twin.posterior[name].values.ravel()
    print(f"{name}: NUTS {draws.mean():.5f} ± {draws.std():.5f}   exact {m:.5f} ± {s:.5f}   truth {truth[name]}")
print("log evidence of the twin (closed form):", round(mr.twin_log_evidence(data, config), 2))

# %%
axes = az.plot_posterior(twin, var_names=["k_amb", "k_c"], hdi_prob=0.9, ref_val={"k_amb": [{"ref_val": truth["k_amb"]}],
                                                                                   "k_c": [{"ref_val": truth["k_c"]}]},
                         figsize=(10, 3))
for ax, name in zip(np.ravel(axes), ["k_amb", "k_c"]):
    m, s = exact[name]
    grid = np.linspace(m - 4 * s, m + 4 * s, 200)
    ax.plot(grid, stats.norm.pdf(grid, m, s) / stats.norm.pdf(m, m, s) * ax.get_ylim()[1] * 0.9, "k--", lw=1,
            label="closed form (scaled)")
    ax.legend(loc="upper left")
az.plot_trace(twin, var_names=["k_amb", "k_c"], kind="rank_bars", figsize=(10, 4));

# %%
for c in entry.check(twin, truth, config):
    print(c)

# %% [markdown]
# ### ArviZ's standard views of the twin
#
# The rank bars above are ArviZ's trace in rank form; the energy plot of NUTS below should show
# the marginal energy and its transitions overlapping (a much narrower transition distribution
# means slow exploration). The program's posterior predictive is a set of fresh behaviour-policy
# episodes at posterior draws (sites `temp`, `action`, ...; the cell prints the groups), while
# `observed_data.y` holds the (temperature, action) pairs per step; so the predictive
# temperatures are set beside the observed temperature channel `y[..., 0]`, pooled over episodes
# and steps (new episodes: new noise, new actions from the same policy). The
# likelihood is one event over all transitions (`to_event(2)`): the pointwise log-likelihood has
# a single term per draw, so PSIS-LOO, its Pareto k and LOO-PIT have nothing to leave out; the
# predictive check per transition is the ensemble's one-step coverage on held-out episodes below
# (spec check (b)).

# %%
az.plot_energy(twin);
print("groups:", twin.groups())
for group in ("log_likelihood", "observed_data", "posterior_predictive"):
    if group in twin.groups():
        print(f"{group}:", {name: value.shape for name, value in twin[group].data_vars.items()})
temperatures = az.from_dict(posterior_predictive={"temp": twin.posterior_predictive["temp"].values},
                            observed_data={"temp": np.asarray(data)[..., 0]}, dims={"temp": ["episode", "time"]})
az.plot_ppc(temperatures, var_names=["temp"], num_pp_samples=100);

# %% [markdown]
# **Reading the predictive check.** NUTS samples the whitened `β = Lᵀ w / σ`, with `L` the
# Cholesky factor of the data's `XᵀX`; the program run without data (the predictive run) would
# whiten with `L = I`, so the runner conditions the predictive run on the posterior's
# deterministic `w` too, not only on the sampled `β` (docs/contracts.md, `posterior_to_idata`):
# the episodes step with the posterior's `w`. The new episodes start anywhere in the policy's
# initial range and follow the behaviour policy, so their pooled temperatures are compared with the
# data's in distribution, not episode by episode: the pooled predictive temperatures lie on the
# observed ones (about 4-6 °C, the setpoint's band). The test suite checks that every predictive
# transition's residual under the posterior's `w` is N(0, σ²).

# %% [markdown]
# ## Bayesian neural dynamics: an ensemble that fits the data and not beyond
#
# A 2 × 32 MLP of the normalised $(T, a)$ with $\theta \sim N(0, 1)$, fitted by SVI (AutoNormal);
# seven guide draws are the ensemble. On held-out behaviour episodes its 90 % predictive intervals
# cover about 90 % of the one-step transitions (spec check (b)); on the test policy's warm states
# its members disagree and miss the physics the linear twin extrapolates exactly.

# %%
fit_part, held_out = data[:-config.held_out], data[-config.held_out:]
svi = inference.fit(functools.partial(mr.dynamics_model, config=config), fit_part, method="svi", progress=False,
                    **mr.dynamics_svi_options(config))
ensemble = mr.ensemble_from(svi, fit_part, config)
for c in mr.check_dynamics(ensemble, held_out, config):
    print(c)

temps = np.linspace(0.0, 25.0, 200)
fig, ax = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
for j, a in enumerate((0.5, 0.1)):
    m, _ = mr.ensemble_predict(ensemble, temps, np.full_like(temps, a))
    true_next = np.asarray(mr.step_mean(temps, np.full_like(temps, a), config))
    w = twin.posterior["w"].values.reshape(-1, 3)
    twin_next = temps[None] + w[:, :1] + w[:, 1:2] * temps[None] + w[:, 2:3] * a
    ax[j].plot(temps, np.asarray(m).T - true_next[:, None], color="C1", lw=0.8)
    ax[j].fill_between(temps, *np.quantile(twin_next - true_next, [0.05, 0.95], axis=0), color="C0", alpha=0.4,
                       label="linear twin, 90% band")
    ax[j].axvspan(config.init_low, config.init_high, color="0.9", zorder=-1)
    ax[j].axhline(0, color="k", lw=0.6)
    ax[j].set(xlabel="temperature (°C)", title=f"a = {a}: error of the predicted mean next T")
ax[0].set_ylabel("prediction − true mean (°C)"); ax[0].legend();

# %% [markdown]
# Orange: the seven ensemble members; grey: the temperatures the behaviour data cover. Inside the
# data every member is right; away from it they drift apart, while the twin, whose form is the
# true physics, stays exact.
#
# ## The dynamics reward and the transition filter
#
# A discriminator $D_\phi(T, a, \Delta T)$ is trained GAIL-style against a Gaussian learner over
# $\Delta T$, and the last 50 snapshots define $r_D = -\log(1 - \overline{\mathrm{clip}(D)})$.
# Spec check (c) asks that on the unseen region $r_D$ rank true transitions above ensemble draws
# offset by ±1 °C (AUC > 0.7) and that the filtered 10-step rollouts err less than the unfiltered
# ones. The reward reads $(T, a, \Delta T)$ on the plant's scale (`reward_inputs="plant"`); beside
# it the same training with the data's statistics (`"data"`, MOPO's normalisation of the dynamics
# networks), under which a 20 °C state is some 55 standard deviations from the data.

# %%
rewards = {}
for inputs in ("plant", "data"):
    cfg = dataclasses.replace(config, reward_inputs=inputs)
    problem = mr.train_reward(fit_part, cfg)
    rewards[inputs] = problem.finish(train(*problem[:5], evaluate=problem.evaluate,
                                           evaluate_every=problem.evaluate_every, progress=False))
reward = rewards["plant"]
for c in mr.check_reward(reward, ensemble, config):
    print(c)
true_data, fake_data = mr.reward_scores(jax.random.PRNGKey(100), rewards["data"], ensemble, config)
print("AUC with the data's statistics as the reward's scaling:", rank_auc(true_data, fake_data))

# %%
fig, ax = plt.subplots(1, 3, figsize=(13, 3.2))
true_scores, fake_scores = mr.reward_scores(jax.random.PRNGKey(100), reward, ensemble, config)
ax[0].hist(np.asarray(true_scores), bins=40, alpha=0.6, label="true transitions")
ax[0].hist(np.asarray(fake_scores), bins=40, alpha=0.6, label="ensemble ± 1 °C")
ax[0].set(xlabel="r_D", title="r_D on the test policy's states (plant scale)"); ax[0].legend()
offsets = np.linspace(-3, 3, 121)
for j, inputs in enumerate(("plant", "data")):
    for temp, a in ((5.0, 0.5), (12.0, 0.1), (18.0, 0.1), (24.0, 0.05)):
        mean_next = float(mr.step_mean(temp, a, config))
        r = mr.dynamics_reward(rewards[inputs], np.full_like(offsets, temp), np.full_like(offsets, a), mean_next + offsets)
        r = np.asarray(r)
        ax[j + 1].plot(offsets, r / r.max(), label=f"T = {temp:g}, a = {a:g}")
    ax[j + 1].axvline(0, color="k", lw=0.6)
    ax[j + 1].set(xlabel="T' − true mean T' (°C)", title=f"r_D / max, inputs on the {inputs} scale")
ax[1].legend(fontsize=8);

# %% [markdown]
# On the plant's scale the reward's peak over the next temperature stays near the truth on states
# the data never visit, so the reward ranks true transitions above the ±1 °C offsets and the filter
# cuts the rollout error; with the data's statistics the peak drifts by one to one and a half
# degrees at 12 to 18 °C and the AUC is at chance. The AUC half of check (c) is seed-dependent at
# this scale: over reward-training seeds 0, 1, 2 it is 0.82, 0.68, 0.71 (the card has the numbers),
# while the filtered rollouts err less than the unfiltered ones at every seed measured.
