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
# # Dynamical-systems reconstruction: `alrnn_dsr` and `shplrnn_gtf` side by side
#
# Both entries learn a recurrent map from one chaotic series (Lorenz-63 at Δt = 0.01, 3·10⁴ points,
# z-scored) and are judged by how the map behaves when it **runs freely**: its orbit, started at the
# first point of an independent test trajectory, should fill the same attractor (D_stsp, a KL
# divergence of state-space histograms, 30 bins per axis) with the same power spectrum (D_H, a
# Hellinger distance of smoothed spectra). Two true trajectories of 5·10⁴ points score D_stsp ≈ 0.1.
#
# * `alrnn_dsr` (Brenner et al. 2024): 20 units, only 2 of them ReLU, trained by **sparse** teacher
#   forcing (data replace the observed units every 16 steps); its piecewise-linear structure gives
#   symbolic codes, fixed points and cycles in closed form.
# * `shplrnn_gtf` (Hess et al. 2023): a clipped shallow PLRNN in the observed dimension (3 units,
#   50 hidden ReLUs), trained by **generalised** teacher forcing, every state pulled towards the
#   data with a weight α set from the Jacobians' growth and lowered as training proceeds.
#
# Both run through `inference.fit(..., method="tf")`, the teacher-forcing options of the project's
# trainer, with the entries' recipes; the checkpoint whose free run scores the lowest D_stsp on the
# training series is kept.

# %%
import time
import jax, jax.numpy as jnp, numpy as np, matplotlib.pyplot as plt
import zoo, inference
from zoo import alrnn_dsr, shplrnn_gtf
from zoo.nets import plrnn

al, sh = zoo.get("alrnn_dsr"), zoo.get("shplrnn_gtf")
al_cfg, sh_cfg = al.configs["small"], sh.configs["small"]
al_data, al_truth = al.simulate(jax.random.PRNGKey(0), al_cfg)
sh_data, sh_truth = sh.simulate(jax.random.PRNGKey(0), sh_cfg)
print("training series", al_data.shape, "(noise-free) and", sh_data.shape, "(5 % noise); test", al_truth["test"].shape)
runs = {}
for name, entry, data in [("alrnn_dsr", al, al_data), ("shplrnn_gtf", sh, sh_data)]:
    started = time.process_time()
    runs[name] = inference.fit(entry, data, method="tf", progress=False, **entry.recipe.options)
    print(f"{name}: {entry.recipe.options['num_steps']} steps, forcing {runs[name].attrs['forcing']}, "
          f"{time.process_time() - started:.0f} s of CPU, selected step {runs[name].attrs['selected_step']}")

# %% [markdown]
# ## The recovery checks (spec §2 and §3 on a CPU budget)

# %%
for name, entry, truth in [("alrnn_dsr", al, al_truth), ("shplrnn_gtf", sh, sh_truth)]:
    print(name)
    for c in entry.check(runs[name], truth, entry.configs["small"]):
        print("   PASS" if c.passed else "   FAIL", "|", c.name, "|", round(c.value, 4), "|", c.target)

# %%
rec_al = alrnn_dsr.reconstruction(runs["alrnn_dsr"], al_truth, al_cfg)
rec_sh = shplrnn_gtf.reconstruction(runs["shplrnn_gtf"], sh_truth, sh_cfg)
test = al_truth["test"][: al_cfg.eval_steps]
fig = plt.figure(figsize=(15, 4.5))
for i, (orbit, title) in enumerate([(test, "test trajectory"),
                                    (rec_al.orbit, f"AL-RNN free run: D_stsp {rec_al.d_stsp:.2f}, D_H {rec_al.d_h:.3f}"),
                                    (rec_sh.orbit, f"shPLRNN free run: D_stsp {rec_sh.d_stsp:.2f}, D_H {rec_sh.d_h:.3f}")]):
    ax = fig.add_subplot(1, 3, i + 1, projection="3d")
    ax.plot(*orbit[:20_000].T, lw=0.2); ax.set_title(title, fontsize=10)

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3))
for name, cfg in [("alrnn_dsr", al_cfg), ("shplrnn_gtf", sh_cfg)]:
    mse = alrnn_dsr._dsr.training_mse(runs[name], cfg)
    axes[0].semilogy(np.convolve(mse, np.ones(100) / 100, mode="valid"), label=name)
    ev = runs[name].training
    axes[1].plot(ev["eval_step"], ev["eval_score"], "o-", label=name)
axes[0].set_title("training MSE (moving average of 100)"); axes[0].legend()
axes[1].set_title("D_stsp of free runs on the training series"); axes[1].set_yscale("log"); axes[1].legend()
axes[2].plot(runs["shplrnn_gtf"].training["alpha"]); axes[2].set_title("adaptive GTF alpha (shPLRNN)")
axes[2].set_xlabel("step")

# %% [markdown]
# ## The AL-RNN's symbolic code
#
# With P = 2 ReLU units the map has at most 4 linear regions; the symbol of a state is the index of
# its region. The free-running orbit's symbol sequence, its transition graph and topological
# entropy, and the fixed points of each region's affine map (real when they lie in their own
# region) and its 2-cycles come from the piecewise-linear structure in closed form. The paper
# finds the Lorenz attractor using three of the four regions (two lobes and a switching region).

# %%
w = alrnn_dsr.weights(runs["alrnn_dsr"], al_cfg)
symbols = plrnn.symbolic_code(rec_al.states, al_cfg.num_relu)
values, counts = np.unique(symbols, return_counts=True)
print("regions visited (symbol: share of time):", {int(v): round(c / len(symbols), 3) for v, c in zip(values, counts)})
graph = plrnn.transition_graph(symbols, 2 ** al_cfg.num_relu)
print("transition graph:\n", graph, "\ntopological entropy:", round(plrnn.topological_entropy(graph), 4))
fp = plrnn.alrnn_fixed_points(w)
for z, s, real, eig in zip(fp.points, fp.symbols, fp.real, fp.eigenvalues):
    print(f"region {s}: {'real   ' if real else 'virtual'} fixed point, observed part {np.round(z[:3], 3)}, "
          f"max |eigenvalue| {np.max(np.abs(eig)):.3f}")
cycles = plrnn.alrnn_cycles(w, 2)
print(f"{len(cycles.points)} real 2-cycle(s)", [c.tolist() for c in cycles.symbols])
fig, ax = plt.subplots(figsize=(6, 4))
ax.scatter(rec_al.orbit[:20_000, 0], rec_al.orbit[:20_000, 2], c=symbols[:20_000], s=0.3, cmap="viridis")
real_points = fp.points[fp.real]
ax.plot(real_points[:, 0], real_points[:, 2], "r*", ms=12, label="real fixed points")
ax.set_xlabel("x"); ax.set_ylabel("z"); ax.legend(); ax.set_title("free-running AL-RNN coloured by symbol")

# %% [markdown]
# ## The shPLRNN's regions
#
# The shallow PLRNN has up to 2^(2·50) regions (two sign patterns per hidden unit), too many to
# enumerate; the affine map of every region its orbit visits gives one fixed-point candidate.

# %%
ws = shplrnn_gtf.weights(runs["shplrnn_gtf"], sh_cfg)
fps = plrnn.shplrnn_fixed_points(ws, rec_sh.states[:5000])
print(f"{len(fps.points)} regions visited by 5000 steps of the orbit; {int(fps.real.sum())} hold a real fixed point")
for z, eig in zip(fps.points[fps.real], fps.eigenvalues[fps.real]):
    print("fixed point", np.round(z, 3), "eigenvalue moduli", np.round(np.sort(np.abs(eig))[::-1], 3))

# %% [markdown]
# ## ArviZ's standard views
#
# Both recurrent maps are trained by teacher forcing (`method="tf"`) to point estimates of their
# weights; there are no posterior draws, so ArviZ's trace, rank, energy, posterior predictive and
# LOO views do not apply (the maps are judged by their free-running orbits above).
