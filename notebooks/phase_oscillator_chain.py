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
# # `phase_oscillator_chain`: synchronisation as kinetic roughening
#
# Gutiérrez & Cuerno (arXiv:2604.06040) map the synchronised phase of a 1-D ring of oscillators,
# `dφ_j = [ω_j + K(Γ(φ_{j+1}-φ_j) + Γ(φ_{j-1}-φ_j))] dt + sqrt(2D) dW_j`, `Γ(x) = sin x + c(1-cos x)`,
# onto interface growth: Edwards–Wilkinson (β = ¼) for odd coupling, KPZ (β = ⅓) when c ≠ 0,
# Larkin (β = ¾) with columnar frequencies, random deposition (β = ½) without synchronisation.
# This notebook checks the simulator against linear theory, sketches a small phase diagram, and
# recovers (K, c, D) and the columnar frequencies with NUTS on the exact Euler–Maruyama likelihood.

# %%
import time
import jax, jax.numpy as jnp, numpy as np, arviz as az, matplotlib.pyplot as plt
import zoo, inference
from zoo import phase_oscillator_chain as poc

entry = zoo.get("phase_oscillator_chain")

# %% [markdown]
# ## Roughness curves against linear theory
#
# Time noise, c = 0, D = 0.05, L = 256, 50 Heun runs: `W²(t)` against the EW linear theory
# `(2D/L) Σ_{k≠0} (1 - e^{-2λ_k t})/(2λ_k)`, `λ_k = 4K sin²(πk/L)` (the spec's check: within 10%).
# Columnar disorder (σ_ω = 0.05, no time noise, L = 512): `W ~ t^{3/4}` (Larkin) for
# `1 ≪ t ≪ L²/(4π²K)`.

# %%
L, dt = 256, 0.05
W2 = np.asarray(poc.roughness_sweep(jax.random.PRNGKey(0), [0.0], [0.05], K=1.0, L=L, dt=dt, num_steps=2000,
                                    num_runs=50, record_every=10))[0, 0]
t = dt * 10 * np.arange(W2.size)
theory = np.asarray(poc.linear_roughness(t, L, 1.0, 0.05))
print("max relative deviation from linear theory (t >= 0.5):", np.max(np.abs(W2[1:] / theory[1:] - 1)).round(3))

L2, sigma = 512, 0.05
def columnar_run(k):
    omega = sigma * jax.random.normal(k, (L2,))
    return poc.roughness(poc.simulate_chain(k, 1.0, 0.0, 0.0, L2, 0.05, 4000, omega=omega, scheme="heun")[::20])
W2c = np.asarray(jax.vmap(columnar_run)(jax.random.split(jax.random.PRNGKey(1), 20))).mean(0)
tc = 0.05 * 20 * np.arange(W2c.size)

fig, ax = plt.subplots(1, 3, figsize=(14, 3.4))
ax[0].loglog(t[1:], W2[1:], label="simulation (50 runs)"); ax[0].loglog(t[1:], theory[1:], "k--", label="EW linear theory")
ax[0].set_xlabel("t"); ax[0].set_title("time noise: W²(t)"); ax[0].legend()
ax[1].loglog(tc[1:], W2c[1:], label="simulation (20 runs)")
ax[1].loglog(tc[1:], np.asarray(poc.columnar_roughness(tc[1:], L2, 1.0, sigma)), "k--", label="Larkin linear theory")
ax[1].set_xlabel("t"); ax[1].set_title("columnar: W²(t)"); ax[1].legend()
slope = poc.local_slope(tc[1:], W2c[1:])
ax[2].semilogx(np.sqrt(tc[1:-1] * tc[2:]), slope); ax[2].axhline(0.75, color="k", ls=":")
ax[2].set_ylim(0.5, 1.05); ax[2].set_xlabel("t"); ax[2].set_title("columnar: d ln W / d ln t")
window = (tc >= 5) & (tc <= 150)
print("columnar slope on t in [5, 150]:", np.polyfit(np.log(tc[window]), 0.5 * np.log(W2c[window]), 1)[0].round(3))

# %% [markdown]
# ## A small phase diagram
#
# Time noise, L = 128, K = 1, 8 Heun runs per cell, t up to 100: the effective growth exponent
# `β_eff = d ln W / d ln t` fitted on t ∈ [5, 50], over the non-oddity c and the noise D (the
# paper's diagram runs L = 1024–4096 with 100+ realisations; `roughness_sweep` at the `paper`
# config's sizes on an accelerator). The KPZ coupling `g = 4c²D/K` orders the cells: EW (β ≈ ¼) at
# small g, rising towards KPZ (β = ⅓) as g grows; phase slips appear at large D.

# %%
cs, Ds = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.05, 0.2, 0.5])
sweep = np.asarray(poc.roughness_sweep(jax.random.PRNGKey(2), cs, Ds, K=1.0, L=128, dt=0.05, num_steps=2000,
                                       num_runs=8, record_every=20))
ts = 0.05 * 20 * np.arange(sweep.shape[-1])
window = (ts >= 5) & (ts <= 50)
beta = np.array([[np.polyfit(np.log(ts[window]), 0.5 * np.log(sweep[i, j, window]), 1)[0] for j in range(len(Ds))]
                 for i in range(len(cs))])
slips = np.array([[int(poc.phase_slips(poc.simulate_chain(jax.random.PRNGKey(3), 1.0, c, D, 128, 0.05, 2000,
                                                           scheme="heun")).max()) for D in Ds] for c in cs])
fig, ax = plt.subplots(figsize=(5.5, 3.8))
im = ax.imshow(beta, origin="lower", cmap="viridis", aspect="auto")
ax.set_xticks(range(len(Ds)), [str(d) for d in Ds]); ax.set_yticks(range(len(cs)), [str(c) for c in cs])
ax.set_xlabel("D"); ax.set_ylabel("c"); fig.colorbar(im, label="β_eff")
for i, c in enumerate(cs):
    for j, D in enumerate(Ds):
        ax.text(j, i, f"{beta[i, j]:.2f}\ng={float(poc.kpz_coupling(1.0, c, D)):.2g}" + (f"\nslips {slips[i, j]}" if slips[i, j] else ""),
                ha="center", va="center", fontsize=7, color="w")

# %% [markdown]
# ## Recovery with NUTS on the exact Euler–Maruyama likelihood
#
# The small config (L = 64, dt = 0.05, 200 steps, K = 1, c = 0.5, D = 0.05). The phases are fully
# observed, so the transition density is Gaussian and exact for the EM scheme.

# %%
config = entry.configs["small"]
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
fig, ax = plt.subplots(figsize=(9, 2.6))
ax.imshow(np.asarray(data[0]).T, aspect="auto", origin="lower", cmap="twilight", extent=(0, config.times[-1], 0, 64))
ax.set_xlabel("t"); ax.set_ylabel("oscillator j"); ax.set_title("unwrapped phases")
t0 = time.process_time()
idata = inference.fit(entry, data, method="nuts", progress=False, **entry.recipe.options)
print(f"CPU {time.process_time() - t0:.0f} s")
print(az.summary(idata, var_names=["K", "c", "D"]))
for c in entry.check(idata, truth, config):
    print("PASS" if c.passed else "FAIL", "|", c.name, "|", c.target)

# %% [markdown]
# ### ArviZ's standard views
#
# Trace and rank plots (the recipe runs one chain, so the rank plot shows only that its ranks are
# uniform over its own draws) and the energy plot of NUTS (the marginal energy and its transitions
# should overlap; a much narrower transition distribution means slow exploration). The program's
# posterior predictive is a fresh Euler–Maruyama run of the ring, stored as `phi` beside the
# observed phases `y` (same dims), so `plot_ppc` pairs the two by `data_pairs`; it pools the
# unwrapped phases of all oscillators and steps. The pointwise log-likelihood has one term per
# step, the exact Gaussian transition density of the whole ring (all 64 phases at once) given
# the previous step: PSIS-LOO leaves out one transition, and the Pareto k below say whether
# importance sampling can do that. LOO-PIT needs one term per observed number and does not apply.

# %%
az.plot_trace(idata, var_names=["K", "c", "D"], compact=True);
az.plot_rank(idata, var_names=["K", "c", "D"]);
az.plot_energy(idata);
az.plot_ppc(idata, data_pairs={"y": "phi"}, num_pp_samples=50);
az.plot_khat(az.loo(idata, pointwise=True));

# %% [markdown]
# K and D are pinned to about 4% and 2%; c is not (posterior sd about 0.2): while the ring stays
# synchronised the non-odd term `Kc(2 - cos Δ₊ - cos Δ₋) ≈ KcΔ²` is tiny (neighbour differences
# ~0.2 rad), which is why the check asks c only to lie in its interval: one joint (Bonferroni)
# 99% statement over K, D and c, a 1% false-alarm budget per data set. On this data set (seed 0)
# E[c] sits 2.3 posterior sd below the truth, so a 90% interval would miss; the data themselves
# say so (least squares of the EM increments on the two coupling terms, D known: c = 0.075 ±
# 0.182), and over 300 simulated data sets that estimate's z-scores have mean -0.11 and sd 1.02:
# a tail event, not a bias. Over eight data sets (seeds 0-7, same recipe) the standardised
# errors (E[c] - c)/sd[c] were -2.26, 0.47, 0.93, 1.26, 0.79, 1.73, -0.71, 0.75: as a
# calibrated posterior gives, one of eight beyond 2 sd.
#
# ## Columnar disorder: the frequencies themselves
#
# σ_ω = 0.05 with a small time noise D = 0.001 (the transitions then have a density): NUTS over
# the L frequencies (non-centred) and (K, c, D, σ_ω).

# %%
col = entry.configs["columnar"]
data_c, truth_c = entry.simulate(jax.random.PRNGKey(0), col)
idata_c = inference.fit(entry, data_c, config="columnar", method="nuts", progress=False, **entry.recipe.options)
omega = idata_c.posterior["omega"].values.reshape(-1, col.num_oscillators)
fig, ax = plt.subplots(figsize=(4, 4))
ax.errorbar(np.asarray(truth_c["omega"]), omega.mean(0), yerr=omega.std(0), fmt=".", ms=4)
lim = 0.15; ax.plot([-lim, lim], [-lim, lim], "k:"); ax.set_xlabel("true ω_j"); ax.set_ylabel("posterior ω_j")
for c in entry.check(idata_c, truth_c, col):
    print("PASS" if c.passed else "FAIL", "|", c.name, "|", round(c.value, 3), "|", c.target)
