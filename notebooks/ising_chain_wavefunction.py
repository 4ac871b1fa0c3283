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
# # `ising_chain_wavefunction`: Wetterich's probabilistic world on an Ising chain
#
# Wetterich (arXiv:2011.02867) writes one probability distribution over all times,
# `p[s] = Z⁻¹ f_in(s_1) Π K(s_{t+1}, s_t) f̄_f(s_T)`, and carries its time-local information with
# two *classical wave functions*: `f(t+1) = T̂ f(t)` from the past and `f̄(t) = T̂ᵀ f̄(t+1)` from the
# future. Local probabilities are `f_τ(t) f̄_τ(t)/Z`, the classical density matrix is
# `ρ'(t) = f(t) f̄(t)ᵀ/Z`. For one spin per slice (the Ising chain) everything is exact, so the
# formalism is checked against closed forms, and the same law in Markov form is the likelihood
# that NUTS samples. Tempered SMC then weighs β = 0 (independent slices) against β > 0 by evidence.

# %%
import dataclasses
import jax, jax.numpy as jnp, numpy as np, matplotlib.pyplot as plt
import zoo, inference
from diagnostics import checks, compare
from zoo.probabilistic_world import ising_chain as ic
from zoo.processes import transfer_matrix as tm

entry = zoo.get("ising_chain_wavefunction")
config = entry.configs["small"]
print(config)

# %% [markdown]
# ## The formalism against closed forms
# At h = 0 with a free final boundary, `⟨s_t⟩ = tanh(η_in) tanh(β)^{t−1}`: boundary memory decays
# with correlation length `−1/ln tanh β`. The wave functions are rescaled at every slice, so a
# large β (where `T̂^T` overflows) is no problem.

# %%
fig, ax = plt.subplots(figsize=(9, 3))
t = np.arange(1, 41)
for beta in (0.3, 0.6, 1.2, 3.0):
    chain = ic.transfer_chain({"beta": jnp.asarray(beta), "h": jnp.asarray(0.0), "eta_in": jnp.asarray(1.0),
                               "eta_final": jnp.asarray(0.0)})
    mean = tm.expectations(tm.density_matrices(chain, 40), np.diag(tm.SPINS))
    closed = np.tanh(1.0) * np.tanh(beta) ** (t - 1)
    print(f"beta = {beta}: max |tr(sigma rho') - closed form| = {np.abs(mean - closed).max():.1e}")
    ax.plot(t, mean, label=f"β = {beta}")
    ax.plot(t, closed, "k:", lw=1)
ax.set_xlabel("slice t"); ax.set_ylabel("⟨s_t⟩"); ax.legend(); ax.set_title("tr(σ ρ'(t)) (lines) and tanh(η)tanh(β)^(t−1) (dotted)")

# %% [markdown]
# ## Data: exact chains at the truth
# The simulator draws exactly: backward wave functions give the Markov form
# `p(s_{t+1}=τ | s_t=ρ) = T̂_{τρ} f̄_τ(t+1)/f̄_ρ(t)`, then the chains are drawn forward.

# %%
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
fig, ax = plt.subplots(figsize=(9, 2.5))
ax.imshow(np.asarray(data[:20]), aspect="auto", cmap="gray", interpolation="nearest")
ax.set_xlabel("slice t"); ax.set_ylabel("chain"); ax.set_title("20 of the 50 chains (white = +1)")
chain = ic.transfer_chain({k: jnp.asarray(v) for k, v in ic.true_params(config).items()})
print("empirical <s_t> at t = 1, 2, 3:", np.asarray(data).mean(axis=0)[:3])
print("density matrix  <s_t> at t = 1, 2, 3:", np.asarray(tm.expectations(tm.density_matrices(chain, 64), np.diag(tm.SPINS)))[:3])

# %% [markdown]
# ## NUTS on (β, h, η_in, η_f) with the exact likelihood (the recipe)

# %%
idata = inference.fit(entry, data, method=entry.recipe.method, progress=False, **entry.recipe.options_for("small"))
print(checks.format_verdicts(checks.run_checks(idata)))
for c in entry.check(idata, truth, config):
    print("PASS" if c.passed else "FAIL", c.name, c.target, c.detail)
post = idata.posterior
for name in ("beta", "h", "eta_in", "eta_final"):
    v = post[name].values.ravel()
    print(f"{name:10s} mean {v.mean():+.3f}  sd {v.std():.3f}  90% [{np.quantile(v, .05):+.3f}, {np.quantile(v, .95):+.3f}]")

# %% [markdown]
# ## ArviZ's standard views
#
# Trace and rank plots per chain (overlapping chains, uniform ranks), the energy plot of NUTS (the
# marginal energy and its transitions should overlap; a much narrower transition distribution
# means slow exploration), and the posterior predictive spins against the data: each draw is a
# fresh set of 50 chains from the model at posterior parameters, so the plot compares the share of
# +1 spins (the data are ±1 stored as numbers, so ArviZ draws a smoothed density: the heights of
# the two bumps at −1 and +1 are what it compares).

# %%
import arviz as az
az.plot_trace(idata, var_names=["beta", "h", "eta_in", "eta_final"], compact=True);
az.plot_rank(idata, var_names=["beta", "h", "eta_in", "eta_final"]);
az.plot_energy(idata);
az.plot_ppc(idata, var_names=["y"], num_pp_samples=100);

# %% [markdown]
# The pointwise log-likelihood has one term per chain and slice, the forward algorithm's one-step
# predictive `log p(s_t | s_1..s_(t-1))` (with the exact readout, the Markov-form factor
# `log p(s_t | s_(t-1))`): PSIS-LOO leaves out that one factor, not one spin with what its
# neighbours say about it; for forecasting questions use leave-future-out
# (`diagnostics.compare.psis_lfo`). The Pareto k below
# say whether leaving out one factor moves the posterior too far for importance sampling. LOO-PIT
# is not shown: the spins are ±1, and the PIT of a discrete observation is not uniform even when
# the model is right.

# %%
loo = az.loo(idata, pointwise=True)
print(loo)
az.plot_khat(loo);

# %% [markdown]
# ## Evidence: β = 0 against β > 0 (tempered SMC, `diagnostics.compare`)
# Two smaller data sets (20 chains of 32 slices), one simulated with β = 0.6 and one with β = 0,
# each fitted by the coupled model and by the β = 0 model (`coupling="zero"`). The log Bayes factor
# of β > 0 over β = 0 should be large for coupled chains and negative (Occam) for uncoupled ones.

# %%
free = dataclasses.replace(config, num_chains=20, num_steps=32)
zero = dataclasses.replace(free, coupling="zero", true_beta=0.0)
for label, truth_config in (("data with beta = 0.6", free), ("data with beta = 0", zero)):
    d, _ = entry.simulate(jax.random.PRNGKey(2), truth_config)
    runs = {name: inference.fit(entry, d, method="smc", config=cfg, seed=1, progress=False, num_particles=400,
                                num_runs=4, posterior_predictive=False)
            for name, cfg in (("beta_free", free), ("beta_zero", zero))}
    table = compare.bayes_factors({name: compare.log_evidence(run) for name, run in runs.items()},
                                  reference="beta_zero")
    print(label); print(table[["log_evidence", "se", "log_bf", "log_bf_se"]].round(2)); print()
