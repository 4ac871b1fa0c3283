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
# # `langevin_flow_lorenz`: a LangevinFlow VAE next to its exact evidence and the oracle rates
#
# Song et al. (arXiv:2507.11531) model a neural population with a sequential VAE whose latent
# position `z` and velocity `v` follow an underdamped Langevin step in a learned potential of
# locally coupled oscillators; a decoder maps `(z, v)` to Poisson log-rates. The data here is the
# synthetic benchmark of the paper: 30 neurons whose log-rates are linear in the z-scored state of
# a Lorenz attractor, 200 trials of 100 bins; 10 neurons are held out of the encoder's input.
#
# Two exact references stand beside the neural fit:
#
# * **the oracle rates** (the simulator's true λ): rate R² and co-smoothing bits per spike of the
#   held-out neurons on held-out trials are compared with the oracle's;
# * **the exact log-evidence**: with the per-time-step decoder of `small` the model is Markov in
#   `(z, v)`, so a particle filter gives `log p(y)` of each held-out trial at the trained
#   parameters. The ELBO of the guide must lie below it; the gap is the guide's KL to the exact
#   posterior.
#
# This notebook trains for 1000 steps (the recipe's 2000 took 117 s of CPU in `zoo check`).

# %%
import dataclasses, time
import jax, jax.numpy as jnp, numpy as np, matplotlib.pyplot as plt
import zoo, inference
from zoo import langevin_flow as lf
from zoo.nets.params import program_params
from inference.particle import filter as particle_filter
from inference.train import elbo_loss

entry = zoo.get("langevin_flow_lorenz")
config = dataclasses.replace(entry.config("small"), vae_steps=1000)
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
started = time.process_time()
idata = inference.fit(entry, data, method="vae", config=config, progress=False, **lf.vae_options(config))
print(f"trained in {time.process_time() - started:.0f} s CPU; best held-out ELBO at step {idata.attrs['selected_step']}")
for line in entry.check(idata, truth, config):
    print(line)

# %% [markdown]
# The network's weights have no true values; the estimand a study of the recipe's sampling
# distribution (`zoo estimates langevin_flow_lorenz`) reads is the check's co-smoothing score,
# bits per spike of the held-out neurons on the test trials, against the oracle's (the true rates
# scored on the same counts, `truth["co_bps"]`).

# %%
print(f"co-smoothing: LangevinFlow {float(entry.estimands(idata, data, config)['co_bps']):.3f} bits/spike, "
      f"oracle {float(truth['co_bps']):.3f}")

# %% [markdown]
# ## Rates on a held-out trial
#
# The encoder reads only the 20 held-in neurons; the rates of the 10 held-out neurons are
# predictions.

# %%
params = program_params({k: np.asarray(v.values) for k, v in idata.parameters.data_vars.items()})
test = np.asarray(data)[-config.validation:]
rates = np.asarray(lf.posterior_rates(params, test, config, num_samples=20))
true_rates = np.asarray(truth["rates"])[-config.validation:]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
for ax, n in zip(axes, (0, config.held_in, config.held_in + 1)):
    ax.plot(true_rates[0, :, n], "k--", label="true λ (oracle)")
    ax.plot(rates[0, :, n], label="LangevinFlow E[λ]")
    ax.plot(test[0, :, n], ".", ms=3, color="gray", label="counts")
    ax.set(title=f"neuron {n} ({'held in' if n < config.held_in else 'held out'})", xlabel="bin")
axes[0].legend(fontsize=7)
plt.tight_layout()

# %% [markdown]
# ## The ELBO against the particle filter's exact evidence
#
# `langevin_ssm` writes the trained model as a state-space model in `x = (z, v)`; the bootstrap
# filter (2000 particles, 4 replicates) estimates `log p(y)` of held-out trials. Per trial, the
# ELBO (64 guide draws) lies below it.

# %%
ssm = lf.langevin_ssm(params, config)
some = jnp.asarray(test[:6])
filt = particle_filter.series_fn(ssm, lambda p: p, num_particles=2000, resampler="systematic", ess_threshold=0.5)
log_z = np.asarray(jax.jit(jax.vmap(filt, in_axes=(0, None, None)))(jax.random.split(jax.random.PRNGKey(1), 4), {},
                                                                     some).log_evidence)
loss = jax.jit(jax.vmap(lambda k, one: -elbo_loss(lambda d: lf.model(d, config=config), lf.langevin_guide(config))(
    params, one[None], k), in_axes=(0, None)))
elbos = np.array([np.asarray(loss(jax.random.split(jax.random.PRNGKey(2 + i), 64), some[i])) for i in range(6)])
print(" trial   ELBO (mean ± se)        log p(y) PF (mean ± sd)   gap")
for i in range(6):
    print(f"{i:6d}   {elbos[i].mean():9.1f} ± {elbos[i].std() / 8:4.1f}        {log_z[:, i].mean():9.1f} ± "
          f"{log_z[:, i].std():4.1f}         {log_z[:, i].mean() - elbos[i].mean():5.1f}")

# %% [markdown]
# The guide is amortised and Gaussian per step, so its ELBO sits below the exact evidence on every
# trial (here by 20-30 nats over 100 bins × 30 neurons, about 0.01 nats per count), never above
# it. On rates, the fit reaches most of the oracle's co-smoothing bits per spike on trials and
# neurons it never trained on. The learned kernel `K` left zero. Since `U` is quadratic, the force
# `−∇U(z) = −(M + Mᵀ) z` is linear; its eigenvalues below have both signs (restoring and repelling
# directions of the lattice), and with `ε = 0.01` the kick per bin is small: the nonlinearity of
# the Lorenz flow lives in the encoder and the decoder.

# %%
kernel = np.asarray(params["kernel"])
M = np.asarray(lf.coupling_matrix(kernel, config.latent_dim))
print("||K|| =", round(float(np.linalg.norm(kernel)), 3), "; eigenvalues of -(M + Mᵀ):",
      np.round(np.linalg.eigvalsh(-(M + M.T)), 2))

# %% [markdown]
# ## ArviZ's standard views
#
# The LangevinFlow VAE is trained (`method="vae"`): its network weights are point estimates and
# the amortised guide gives latent paths per sequence, not posterior draws of parameters, so
# ArviZ's trace, rank, energy and LOO views do not apply; the exact evidence above is what judges
# the guide.
