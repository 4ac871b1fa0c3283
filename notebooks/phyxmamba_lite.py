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
# # `phyxmamba_lite`: forecasting Lorenz-63 ten Lyapunov times ahead from one
#
# PhyxMamba (Liu et al. 2025) forecasts a chaotic flow from a short context: the series is
# delay-embedded, cut into patches of $P$ steps, and read by a stack of selective state-space
# (Mamba/S6) blocks whose decoder predicts the next patch. Training has two stages: next-patch
# prediction with a multi-token-prediction (MTP) head, then fine-tuning on free-running rollouts
# with an attractor-geometry (MMD) regulariser, here a `numpyro.factor`. The entry's small run
# trains on 16 Lorenz series sampled at 30 points per Lyapunov time and forecasts 300 steps from a
# 30-step context on 40 held-out series; the exact reference is the true trajectory.

# %%
import jax, numpy as np, matplotlib.pyplot as plt
import zoo, inference
from zoo import phyxmamba_lite as pm

entry = zoo.get("phyxmamba_lite")
config = entry.configs["small"]
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
print("training series", data.shape, " test series", truth["test"].shape,
      f" dt = {float(truth['dt']):.4f} (1/30 Lyapunov time)")

# %% [markdown]
# ## Two-stage MAP training
#
# The recipe runs `"map"` in two stages: 1500 steps of next-patch + MTP pretraining (Adam, 10⁻³),
# then 300 steps on 30-step free runs with the MMD factor (10⁻⁴). The loss is $-\log p$, i.e. a
# constant multiple of the paper's loss plus a constant.

# %%
idata = inference.fit(entry, data, method="map", progress=False, **entry.recipe.options)
loss = idata.training.loss.values
stage = idata.training.step_stage.values
fig, ax = plt.subplots(1, 2, figsize=(10, 3))
ax[0].plot(np.flatnonzero(stage == 0), loss[stage == 0]); ax[0].set_title("stage 1: next patch + MTP")
ax[1].plot(np.flatnonzero(stage == 1), loss[stage == 1]); ax[1].set_title("stage 2: rollouts + MMD")
for a in ax:
    a.set_xlabel("step"); a.set_ylabel("-log p")
plt.tight_layout()

# %% [markdown]
# ## Forecasts beside the true trajectories
#
# Context (grey) and 300 generated steps (orange) against the truth (black) for three held-out
# series; the dashed line marks each forecast's valid prediction time (cumulative sMAPE > 30).

# %%
scores = pm.score_forecasts(idata, truth, config)
pretrained = pm.score_forecasts(idata, truth, config, stage=0)
lyap = (np.arange(config.horizon) + 1) / config.pts_per_lyapunov
fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
for row, i in enumerate([0, 1, 2]):
    ax = axes[row]
    ctx = truth["test"][i, : config.lookback, 0]
    ax.plot((np.arange(-config.lookback, 0) + 1) / config.pts_per_lyapunov, ctx, color="0.6")
    ax.plot(lyap, scores.truth[i, :, 0], color="k", lw=1, label="truth")
    ax.plot(lyap, scores.forecasts[i, :, 0], color="C1", lw=1, label="forecast")
    ax.axvline(scores.vpt[i], color="C3", ls="--", lw=0.8)
    ax.set_ylabel(f"x (series {i})")
axes[0].legend(loc="upper right"); axes[-1].set_xlabel("Lyapunov times after the context")
plt.tight_layout()

# %% [markdown]
# ## Attractor geometry of the free runs
#
# The pooled 300-step forecasts of all test series keep to the butterfly even after they have
# lost the phase of the true trajectory.

# %%
fig, ax = plt.subplots(1, 2, figsize=(10, 4), sharex=True, sharey=True)
ax[0].plot(scores.truth[..., 0].T, scores.truth[..., 2].T, lw=0.4, color="k"); ax[0].set_title("truth")
ax[1].plot(scores.forecasts[..., 0].T, scores.forecasts[..., 2].T, lw=0.4, color="C1"); ax[1].set_title("forecasts")
for a in ax:
    a.set_xlabel("x"); a.set_ylabel("z")
plt.tight_layout()

# %% [markdown]
# ## Scores and the recovery check
#
# VPT in Lyapunov times and sMAPE (0–200 scale) on the raw coordinates; the persistence forecast
# (the last context state repeated) is the naive baseline; D_stsp is the Gaussian-mixture KL
# estimate of the pooled horizons, for the pretrained (end of stage 1) and the final parameters.

# %%
print(f"{'':12s} {'mean VPT':>9s} {'sMAPE@1':>8s} {'sMAPE@4':>8s} {'sMAPE@10':>9s} {'D_stsp':>7s}")
for name, s in (("pretrained", pretrained), ("final", scores)):
    print(f"{name:12s} {np.mean(s.vpt):9.2f} {s.smape[0]:8.2f} {s.smape[1]:8.2f} {s.smape[2]:9.2f} {s.d_stsp:7.3f}")
print(f"{'persistence':12s} {np.mean(scores.persistence_vpt):9.2f}")
for c in entry.check(idata, truth, config):
    print("PASS" if c.passed else "FAIL", c.name, f"{c.value:.3g}")

# %% [markdown]
# ## ArviZ's standard views
#
# PhyxMamba is trained by MAP (`method="map"`, two stages) to point estimates of its weights;
# there are no posterior draws, so ArviZ's trace, rank, energy, posterior predictive and LOO views
# do not apply.
