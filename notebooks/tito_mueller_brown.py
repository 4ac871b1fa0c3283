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
# # `tito_mueller_brown`: an implicit transfer operator beside the exact Boltzmann law
#
# Implicit transfer operators (ITO, and PLaTITO for proteins) learn the *transition density* of a
# Markov process at long, variable lags with one conditional generative model, and generate long
# trajectories by iterating it. On the two-dimensional Müller–Brown potential at `k_BT = 15` the
# stationary law is known on a grid, and brute-force Langevin gives the transition densities, so
# the learned kernel can be held against both:
#
# * training data: 100 overdamped Langevin walkers from exact Boltzmann draws, 1000 frames
#   `τ₀ = 0.01` apart (Euler–Maruyama, `dt = 10⁻⁴`);
# * the kernel: a conditional rectified flow for the increment `x_{t+Nτ₀} − x_t` given `(x_t, log N)`,
#   lags `N` log-uniform on 1..100 (method `"flow"`, 4000 Adam steps);
# * the checks of the spec: equilibrium free energy of long-lag rollouts, transition densities from
#   four fixed starts, and Chapman–Kolmogorov consistency.

# %%
import time
import jax, numpy as np, matplotlib.pyplot as plt
import zoo, inference
from zoo import tito_mueller_brown as tito

entry = zoo.get("tito_mueller_brown")
config = entry.configs["small"]
started = time.perf_counter()
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
print(f"simulated {data.shape} (walkers, frames, 2) in {time.perf_counter() - started:.0f} s")
grid = tito.boltzmann_grid(config.kT, config.grid_size)
print("P(x > 0.3): trajectories", round(float(np.mean(data[..., 0] > 0.3)), 4),
      "exact Boltzmann", round(float(grid.probs[grid.centres[..., 0] > 0.3].sum()), 4))
print("free energy of the training frames vs the grid:", tito.free_energy(data[:, ::10].reshape(-1, 2), config))

# %%
free = -np.log(grid.probs.T + 1e-300)
free -= free.min()
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
extent = (*tito.BOX[0], *tito.BOX[1])
for ax in axes:
    ax.imshow(np.minimum(free, 8), origin="lower", extent=extent, cmap="viridis", aspect="auto")
    ax.set_xlabel("x"); ax.set_ylabel("y")
axes[0].set_title("exact free energy F/k_BT (clipped at 8)")
for w in range(5):
    axes[1].plot(data[w, :, 0], data[w, :, 1], lw=0.4)
axes[1].set_title("five training walkers"); plt.tight_layout()

# %% [markdown]
# ## Training the conditional flow (the recipe)

# %%
started = time.perf_counter()
idata = inference.fit(entry, data, method=entry.recipe.method, progress=False, **entry.recipe.options)
print(f"trained in {time.perf_counter() - started:.0f} s")
loss = idata.training["loss"].values.ravel()
plt.figure(figsize=(6, 3)); plt.plot(loss, lw=0.5); plt.yscale("log"); plt.xlabel("step"); plt.ylabel("FM loss")

# %% [markdown]
# ## The spec's checks
#
# Equilibrium (500 chains × 100 steps of lag 100 from the deep well; free-energy MAE and coverage on
# 40 × 40 bins), transition densities at lag 10 (τ = 0.1) from the three minima and a saddle against
# brute-force Langevin, and Chapman–Kolmogorov (two lag-50 steps against one lag-100 step).

# %%
started = time.perf_counter()
for c in entry.check(idata, truth, config):
    print(f"{'PASS' if c.passed else 'FAIL'}  {c.name:<50} {c.value:>8.4f}  {c.target}  {c.detail}")
print(f"checks in {time.perf_counter() - started:.0f} s")

# %%
kernel = tito.learned_kernel(idata, config)
final = tito.rollout(kernel, jax.random.PRNGKey(5), np.tile(tito.MINIMA[0], (2000, 1)), lag=100, num_steps=100,
                     config=config)[-1]
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
axes[0].imshow(np.minimum(free, 8), origin="lower", extent=extent, cmap="viridis", aspect="auto")
axes[0].scatter(final[:, 0], final[:, 1], s=1, color="w", alpha=0.5)
axes[0].set_title("2000 rollouts of the learned kernel (lag 100, 100 steps) over the exact F")
start = np.asarray(tito.SADDLE)
model_draws = tito.rollout(kernel, jax.random.PRNGKey(6), np.tile(start, (1000, 1)), lag=10, num_steps=1, config=config)[-1]
md = tito.langevin_transition(jax.random.PRNGKey(7), start, 1000, 10, config)
axes[1].scatter(md[:, 0], md[:, 1], s=3, alpha=0.4, label="Langevin")
axes[1].scatter(model_draws[:, 0], model_draws[:, 1], s=3, alpha=0.4, label="learned kernel")
axes[1].scatter(*start, color="k", marker="x"); axes[1].legend(); axes[1].set_title("x(t + 0.1) from the saddle")
plt.tight_layout()

# %% [markdown]
# ## ArviZ's standard views
#
# The transfer operator is trained (`method="flow"`) to point estimates of its weights; there are
# no posterior draws, so ArviZ's trace, rank, energy, posterior predictive and LOO views do not
# apply (it is judged against the exact Boltzmann law and brute-force Langevin above).
