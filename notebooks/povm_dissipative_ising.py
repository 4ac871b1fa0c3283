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
# # `povm_dissipative_ising`: an open quantum chain as a probabilistic program
#
# Luo, Chen, Carrasquilla & Clark (arXiv:2009.05580) write a quantum state as the probability
# vector of an informationally complete measurement (here the tetrahedral POVM on every qubit), so
# the Lindblad equation becomes a real linear ODE `Ṗ = 𝓛̃ P` on the `4^N` outcome probabilities.
# For three qubits (the `small` config) that is a 64 × 64 generator, exact by matrix exponential: measurement counts at
# a few times then have an exact multinomial likelihood, and NUTS recovers the transverse field `g`
# and the decay rate `γ` of the dissipative Ising chain
# `H = (V/4) Σ σ^z σ^z + (g/2) Σ σ^x`, `L_i = √γ σ^-_i`.

# %%
import jax, jax.numpy as jnp, numpy as np, matplotlib.pyplot as plt
import zoo, inference
from diagnostics import checks
from zoo import povm_lindblad as pl
from zoo.processes import povm as pv

entry = zoo.get("povm_dissipative_ising")
config = entry.configs["small"]
m = pv.povm(config.povm)
print(config)

# %% [markdown]
# ## The POVM path: a probability vector all the way, relaxing to the null vector of 𝓛̃

# %%
times = jnp.linspace(0.05, 8.0, 80)
fig, ax = plt.subplots(figsize=(9, 3))
for g in (0.0, 1.0, 3.0):
    gen = pl.generator({"g": g, "gamma": 1.0}, config)
    path = np.asarray(pv.evolve(gen, pl.initial_probabilities(config), times))
    sig = np.stack([np.asarray(pv.pauli_expectations(p, m, config.num_qubits))[0] for p in path])
    steady = np.asarray(pv.pauli_expectations(pv.steady_state(np.asarray(gen)), m, config.num_qubits))[0]
    print(f"g = {g}: min P = {path.min():.1e}, max |sum P - 1| = {np.abs(path.sum(1) - 1).max():.1e}, "
          f"steady <sx, sy, sz> = {np.round(steady, 4)}")
    ax.plot(times, sig[:, 2], label=f"⟨σ^z⟩, g = {g}")
    ax.plot(times, sig[:, 0], ":", label=f"⟨σ^x⟩, g = {g}")
ax.set_xlabel("t"); ax.legend(fontsize=7, ncol=3); ax.set_title("one site's observables from the POVM probabilities")

# %% [markdown]
# ## Data: 2000 shots at each of four times, and NUTS on (g, γ) (the recipe)

# %%
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
print("counts", data.shape, "shots per time", data.sum(axis=1))
idata = inference.fit(entry, data, method=entry.recipe.method, progress=False, **entry.recipe.options_for("small"))
print(checks.format_verdicts(checks.run_checks(idata)))
for c in entry.check(idata, truth, config):
    print("PASS" if c.passed else "FAIL", c.name, c.target, c.detail)
for name in ("g", "gamma"):
    v = idata.posterior[name].values.ravel()
    print(f"{name:6s} truth {float(truth[name]):.2f}  mean {v.mean():.3f}  sd {v.std():.3f}  "
          f"90% [{np.quantile(v, .05):.3f}, {np.quantile(v, .95):.3f}]")

# %% [markdown]
# ## ArviZ's standard views
#
# Trace and rank plots per chain (the chains should overlap and their ranks be uniform), the
# energy plot of NUTS (the marginal energy and its transitions should overlap; a transition
# distribution much narrower than the marginal means the sampler explores slowly), and the
# posterior predictive counts against the observed ones (`y` is one multinomial count vector of
# 64 POVM outcomes per time; the plot pools all times and outcomes).

# %%
import arviz as az
az.plot_trace(idata, var_names=["g", "gamma"], compact=True);
az.plot_rank(idata, var_names=["g", "gamma"]);
az.plot_energy(idata);
az.plot_ppc(idata, var_names=["y"], num_pp_samples=100);

# %% [markdown]
# The pointwise log-likelihood has one term per measurement time, the multinomial law of that
# time's 2000 shots over all 64 outcomes (`log_likelihood.y` has dims `time`, the observation
# `time, outcome`). PSIS-LOO therefore leaves out a whole time, four terms in all; its Pareto k
# says whether the posterior without one time is close enough to the full one for importance
# sampling. LOO-PIT needs one term per observed number and does not apply to these joint counts.

# %%
loo = az.loo(idata, pointwise=True)
print(loo)
az.plot_khat(loo);

# %% [markdown]
# One of the four Pareto k (the last time, `t = 4`) is above ArviZ's threshold 0.64, and ArviZ
# warns above: with one term per 2000 shots, a
# left-out time moves the posterior of `(g, γ)` too far for importance sampling there, so that
# time's `elpd_loo` is unreliable. An exact refit without that time (K-fold over times) is the
# remedy where LOO is needed; the posterior itself is not in question (the checks above pass).

# %% [markdown]
# ## The paper's neural route at N = 4: an autoregressive Transformer for the steady state
#
# For long chains no `4^N` vector fits, so Luo et al. write the steady state as an autoregressive
# Transformer `P_θ(a) = Π_i P_θ(a_i | a_<i)` (one causal layer, d_model 32, one head, FF 16) and
# minimise `‖𝓛̃P_θ‖₁ = E_{a∼P_θ}|R(a)|`, `R(a) = (𝓛̃P_θ)(a)/P_θ(a)`, on exact samples; `R(a)` needs
# `P_θ` only at the `16 N` strings that differ from `a` on one bond (the generator's two-site
# blocks). The entry minimises the smooth `‖𝓛̃P_θ‖₂ = (E_{a∼P_θ}[P_θ(a) R(a)²])^{1/2}` instead
# (same null vector; Adam on the non-smooth `‖·‖₁` stalls, see the model card), with the rate
# decayed on a cosine from 1e-2 to 1e-4. Here a short run (200 Adam steps of 250 samples, a
# cut-down `STEADY_CHECK`; the training driver is `scripts/train_povm_steady_state.py`, through
# `inference.train`) on the four-qubit ring, compared with the exact steady state (the null
# vector of the dense 256 × 256 `𝓛̃`).

# %%
import dataclasses, importlib.util, time
spec = importlib.util.spec_from_file_location("train_povm_steady_state", "../scripts/train_povm_steady_state.py")
driver = importlib.util.module_from_spec(spec); spec.loader.exec_module(driver)
steady_config = dataclasses.replace(pl.STEADY_CHECK, num_steps=200, num_samples=250)
start = time.process_time()
ansatz = driver.train_steady_state(steady_config)
print(f"trained {steady_config.num_steps} steps in {time.process_time() - start:.0f} s CPU")
model_sigma, _ = ansatz.observables()
exact_sigma = pl.exact_steady_observables(steady_config)
for i in range(steady_config.num_qubits):
    print(f"site {i}: ansatz <sx, sy, sz> = {np.round(model_sigma[i], 3)}   exact = {np.round(exact_sigma[i], 3)}")
print("max |error| per Pauli (x, y, z):", np.round(np.abs(model_sigma - exact_sigma).max(axis=0), 3))
fig, ax = plt.subplots(figsize=(6, 3))
ax.semilogy(ansatz.losses); ax.set_xlabel("Adam step"); ax.set_ylabel("estimate of ||L P_theta||_2")
ax.set_title("steady-state objective, N = 4 ring, g = 1");

# %% [markdown]
# The short run gets the sign and size of every observable but not the spec's accuracy (the
# errors printed above). The full `STEADY_CHECK` (1000 steps, about 5 min CPU) brings `⟨σ^x⟩`
# within 0.02 and `⟨σ^z⟩` within 0.03 of exact (the slow test asserts 0.05; the model card has the
# measurements): the spec's 0.02 is not reached reliably with this training. The ansatz also
# breaks the ring's translation symmetry (the sites differ slightly; the exact state has equal
# sites).

# %% [markdown]
# ## The paper's 2-D benchmark: dissipative XYZ dynamics on a periodic lattice
#
# `H = Σ_⟨ij⟩ (J_x σ^xσ^x + J_y σ^yσ^y + J_z σ^zσ^z)`, `J = (0.9, 1.6, 1.0)`, `L_i = √γ σ^-_i`, `γ = 1`,
# from all `|0⟩`. The generator comes from the same two-site blocks as the chain, on the paper
# code's bond list: every site's right and lower neighbour with wrap-around, so on a periodic
# direction of length 2 each pair appears twice (coupling 2J). The exact `⟨σ^z⟩(t)` is the action of
# `expm(𝓛̃t)` on the POVM vector, 256 outcomes at 2 × 2 and 4096 at 2 × 3 (the tests check it
# against a density-matrix evolution to 1e-8).

# %%
from zoo.processes import povm as pv
print("2 x 2 bonds (paper's list):", pv.lattice_bonds(2, 2).tolist())
print("merged into blocks on     :", pv.dissipative_xyz_local_terms(2, 2).bonds.tolist())
grid = np.linspace(0.02, 3.0, 60)
fig, ax = plt.subplots(figsize=(7, 3))
for rows, cols in ((2, 2), (2, 3)):
    start = time.process_time()
    path = pl.xyz_exact_path(rows, cols, grid)
    sz = [np.asarray(pv.pauli_expectations(p, m, rows * cols))[:, 2].mean() for p in path]
    print(f"{rows} x {cols}: {4 ** (rows * cols)} outcomes, min P = {path.min():.1e}, "
          f"{time.process_time() - start:.1f} s CPU for {len(grid)} times")
    ax.plot(grid, sz, label=f"{rows} x {cols} exact")
ax.set_xlabel("t"); ax.set_ylabel("site-mean <sigma^z>"); ax.legend();

# %% [markdown]
# ### String states and the Transformer's trapezoid dynamics
#
# The Transformer reads the sites in a sequence order, the paper's "string states": here a snake
# (boustrophedon) that walks the lattice through neighbours; the bonds are relabelled to sequence
# positions, and the exact law is the same with its digits permuted (tested). The network starts
# at `P(0)` exactly (readout weights 0, bias `log(1/2, 1/6, 1/6, 1/6)`), and each time step minimises
# the paper's forward-backward trapezoid objective `‖(1 − τ𝓛̃/2)P_θ − (1 + τ𝓛̃/2)P_θ_old‖₁` on
# 1000 draws of the new model per Adam step, 120 Adam steps per time step, `τ = 0.016` (the
# paper's code's `dt = 0.008` is `τ/2`). Ten steps on the 2 × 2 lattice (`t ≤ 0.16`), about 20 s CPU:

# %%
print("snake order of a 2 x 3 lattice:", pv.string_order(2, 3).tolist())
spec = importlib.util.spec_from_file_location("train_povm_dynamics", "../scripts/train_povm_dynamics.py")
dynamics = importlib.util.module_from_spec(spec); spec.loader.exec_module(dynamics)
dyn_config = pl.DynamicsConfig(num_time_steps=10, seed=0)
start = time.process_time()
run = dynamics.run_dynamics(dyn_config)
print(f"{dyn_config.num_time_steps} time steps in {time.process_time() - start:.0f} s CPU")
exact = pl.xyz_exact_sigma_z(dyn_config, run.times[1:])
trapezoid = pl.xyz_exact_sigma_z(dyn_config, run.times[1:], trapezoid=True)
print("max |net - exact| (site mean):", np.abs(run.sigma_z[1:].mean(1) - exact.mean(1)).max().round(4),
      " per site:", np.abs(run.sigma_z[1:] - exact).max().round(4),
      " exact trapezoid recursion - exact:", np.abs(trapezoid - exact).max().round(5))
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(run.times, np.r_[1.0, exact.mean(1)], "k-", label="exact")
axes[0].plot(run.times, run.sigma_z.mean(1), "o", label="Transformer (site mean)")
axes[0].plot(run.times, run.sigma_z, ".", color="C1", alpha=0.4)
axes[0].set_xlabel("t"); axes[0].set_ylabel("<sigma^z>"); axes[0].legend()
axes[1].semilogy(run.losses.ravel()); axes[1].set_xlabel("Adam step (120 per time step)")
axes[1].set_ylabel("trapezoid objective estimate");

# %% [markdown]
# Over seeds 0-7 the site mean stays within 0.004-0.016 of exact over these ten steps (single
# sites within 0.013-0.041; the model card has the numbers). The discretisation is not the
# limit: the exact trapezoid recursion is within 2e-4 of the exact path. Longer runs drift (25
# steps, t = 0.4: 0.007-0.063 over three seeds). The paper's 4 × 4 lattice with its sample sizes
# is accelerator work and is not run here.
