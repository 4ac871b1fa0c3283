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
# # `confrover_torus`: an autoregressive trajectory model beside the exact Boltzmann law and Langevin dynamics
#
# ConfRover models a molecular-dynamics trajectory frame by frame: a causal transformer over the
# frames (with the physical time stamps in rotary embeddings) summarises the history, and a
# generative decoder draws the next frame. Decoding with no history is a time-independent sampler
# of the equilibrium ensemble; decoding frame after frame is a simulator of the dynamics. Here the
# "protein" is a dihedral pair `(φ, ψ)` on the torus with a three-basin free energy, so both the
# equilibrium law (a grid) and the dynamics (brute-force overdamped Langevin) are exact references:
#
# * training data: 64 Langevin walkers from exact Boltzmann draws, 4000 frames `Δ = 0.05` apart;
# * the surrogate: encoder MLP on `(cos, sin)`, a 2-layer causal transformer with RoPE on `τ`, a
#   flow-matching decoder on the torus (geodesic paths from the uniform law), trained on windows of
#   8 frames at strides 1, 2, 4, 8 (method `"flow"`, 8000 Adam steps);
# * the checks of the spec: (a) iid free energy, (b) rollout occupancies, transition rate and
#   autocorrelation, (c) Chapman–Kolmogorov consistency of strides.

# %%
import time
import jax, numpy as np, matplotlib.pyplot as plt
import zoo, inference
from zoo import confrover_torus as cr

entry = zoo.get("confrover_torus")
config = entry.configs["small"]
started = time.perf_counter()
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
print(f"simulated {data.shape} (walkers, frames, angles) in {time.perf_counter() - started:.0f} s")
print("basin occupancies (beta, alpha_R, alpha_L): trajectories", cr.basin_occupancies(data).round(3),
      "exact Boltzmann", cr.exact_occupancies(config).round(3))
print("Langevin basin-core transition rate per walker per time unit:",
      round(cr.core_transition_rate(data, config.base_lag, config.core_radius), 3))

# %%
grid = cr.boltzmann_grid(config.kappa, config.weights, config.grid_size)
free = -np.log(grid.probs.T)
free -= free.min()
extent = (-np.pi, np.pi, -np.pi, np.pi)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for ax in axes:
    ax.imshow(np.minimum(free, 8), origin="lower", extent=extent, cmap="viridis", aspect="auto")
    ax.set_xlabel("phi"); ax.set_ylabel("psi")
axes[0].set_title("exact free energy F/k_BT (clipped at 8)")
axes[1].scatter(data[0, :, 0], data[0, :, 1], s=1, color="w")
axes[1].set_title("one training walker (4000 frames)"); plt.tight_layout()

# %% [markdown]
# ## Training (the recipe)

# %%
started = time.perf_counter()
idata = inference.fit(entry, data, method=entry.recipe.method, progress=False, **entry.recipe.options)
print(f"trained in {time.perf_counter() - started:.0f} s")
loss = idata.training["loss"].values.ravel()
plt.figure(figsize=(6, 3)); plt.plot(loss, lw=0.5); plt.xlabel("step"); plt.ylabel("flow-matching loss")

# %% [markdown]
# ## The spec's checks
#
# (a) 20 000 frames decoded from the no-context token against the exact free energy (36 × 36 bins);
# (b) 64 rollouts of 2000 frames at the base stride against the Boltzmann occupancies and a fresh
# Langevin run (transition rate, autocorrelation of `cos φ`); (c) one stride-4 step against four
# stride-1 steps from 2000 starts per basin.

# %%
started = time.perf_counter()
for c in entry.check(idata, truth, config):
    print(f"{'PASS' if c.passed else 'FAIL'}  {c.name:<55} {c.value:>8.4f}  {c.target}  {c.detail}")
print(f"checks in {time.perf_counter() - started:.0f} s")

# %% [markdown]
# ## The learned ensemble and dynamics beside the exact ones

# %%
surrogate = cr.learned(idata, config)
iid = cr.iid_samples(surrogate, jax.random.PRNGKey(1), 20_000, config)
k = config.grid_size // config.num_bins
coarse = grid.probs.reshape(config.num_bins, k, config.num_bins, k).sum(axis=(1, 3))
edges = grid.edges[0][::k]
counts, _, _ = np.histogram2d(iid[:, 0], iid[:, 1], bins=(edges, edges))
with np.errstate(divide="ignore"):
    f_model = -np.log(counts.T / counts.sum())
    f_exact = -np.log(coarse.T)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for ax, f, title in zip(axes, (f_exact, f_model), ("exact F (36 x 36 bins)", "F of 20 000 iid draws from h_0")):
    im = ax.imshow(np.minimum(f - np.nanmin(f[np.isfinite(f)]), 6), origin="lower", extent=extent, cmap="viridis",
                   aspect="auto", vmin=0, vmax=6)
    ax.set_title(title); ax.set_xlabel("phi"); ax.set_ylabel("psi")
plt.colorbar(im, ax=axes); plt.show()

# %%
starts = cr.boltzmann_samples(jax.random.PRNGKey(2), 16, config)
paths = np.swapaxes(cr.rollout(surrogate, jax.random.PRNGKey(3), starts, stride=1, num_frames=2000, config=config), 0, 1)
md = cr.langevin_walkers(jax.random.PRNGKey(4), starts, 2000, config)
lags = np.arange(1, 41)
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
t = np.arange(2000) * config.base_lag
axes[0].plot(t, paths[0, :, 1], lw=0.5, label="rollout")
axes[0].plot(t, md[0, :, 1], lw=0.5, alpha=0.7, label="Langevin")
axes[0].set_xlabel("time"); axes[0].set_ylabel("psi"); axes[0].legend(); axes[0].set_title("one walker")
axes[1].plot(lags, cr.autocorrelation(np.cos(paths[..., 0]), lags), label="rollouts")
axes[1].plot(lags, cr.autocorrelation(np.cos(md[..., 0]), lags), label="Langevin")
axes[1].set_xlabel("lag (frames)"); axes[1].set_title("autocorrelation of cos(phi), 16 walkers"); axes[1].legend()
plt.tight_layout()

# %% [markdown]
# ## ArviZ's standard views
#
# The trajectory model is trained (`method="flow"`) to point estimates of its weights; there are
# no posterior draws, so ArviZ's trace, rank, energy, posterior predictive and LOO views do not
# apply (it is judged against the exact Boltzmann law and Langevin dynamics above).
