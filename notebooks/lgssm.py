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
# # `lgssm`: a linear-Gaussian state-space model, end to end
#
# The latent state follows a damped rotation, `x_t = A x_{t-1} + q ⊙ ε_t`, and is observed through
# `y_t = x_t + r ⊙ η_t`. The Kalman filter (`inference.exact.kalman_filter`) integrates the path out,
# so NUTS samples `A, q, r` directly. This notebook simulates data, fits it with three backends
# (NumPyro NUTS, BlackJAX NUTS, SVI), judges the runs, checks recovery, and writes a report.

# %%
import jax, numpy as np, arviz as az, matplotlib.pyplot as plt
import zoo, inference
from diagnostics import checks
from diagnostics.report import write_report

entry = zoo.get("lgssm")
config = entry.configs["small"]
data, truth = entry.simulate(jax.random.PRNGKey(0), config)
print(entry.title, "| data shape (series, time, obs):", data.shape)
fig, ax = plt.subplots(figsize=(8, 2.5))
ax.plot(np.asarray(data[0]), lw=1); ax.set_xlabel("time"); ax.set_title("observations")

# %% [markdown]
# ## NUTS on the Kalman marginal (the entry's recipe)

# %%
idata = inference.fit(entry, data, method="nuts", progress=False, **entry.recipe.options)
print(checks.format_verdicts(checks.run_checks(idata)))
az.summary(idata, var_names=["A", "q", "r"])

# %%
for c in entry.check(idata, truth, config):
    print("PASS" if c.passed else "FAIL", "|", c.name, "|", c.target)

# %% [markdown]
# ## The same posterior from BlackJAX NUTS and from SVI

# %%
idata_bj = inference.fit(entry, data, method="blackjax-nuts", progress=False, num_warmup=300, num_samples=300, num_chains=2)
idata_svi = inference.fit(entry, data, method="svi", progress=False, guide="AutoMultivariateNormal", num_steps=3000, learning_rate=0.01)
print(f"{'method':<18} {'mean of A (row-major)':<32} {'sd of A'}")
for label, run in [("numpyro nuts", idata), ("blackjax nuts", idata_bj), ("svi (MVN guide)", idata_svi)]:
    a = run.posterior["A"].values.reshape(-1, 4)
    print(f"{label:<18} {str(np.round(a.mean(0), 3).tolist()):<32} {np.round(a.std(0), 3).tolist()}")
print(f"{'truth':<18} {np.asarray(truth['A']).ravel().tolist()}")

# %%
plt.plot(idata_svi.svi_trace["loss"].values); plt.yscale("symlog"); plt.title("SVI: negative ELBO"); plt.xlabel("step")

# %% [markdown]
# ## Pointwise log-likelihood and a report
#
# The program stores one log-likelihood term per time step (`numpyro.factor("y", increments)`), so
# PSIS-LOO works on the state-space model directly.

# %%
print(az.loo(idata))
path = write_report(idata, "lgssm_report.html", title="lgssm: NUTS recovery",
                    recovery=entry.check(idata, truth, config))
print("report written to", path)

# %% [markdown]
# ## Simulation-based calibration
#
# Does the recipe give calibrated posteriors over the whole prior, not only at this data set? SBC
# draws parameters from the prior, simulates, fits, and ranks each true value among the posterior
# draws: for a calibrated posterior every rank is uniform (Talts et al. 2018). Here on the
# one-parameter `scalar` configuration (A unknown, q and r known), 30 replicates fitted five at a
# time by `inference.fit_batch`, one compiled NUTS loop vmapped over the five data sets
# (`zoo sbc lgssm --config scalar --batch-size 5` does the same from the shell).

# %%
import functools, zlib
from diagnostics import sbc
from inference.prior_predictive import prior_simulate

scalar = entry.configs["scalar"]
program = functools.partial(entry.model, config=scalar)
options = dict(num_warmup=300, num_samples=300, num_chains=2, posterior_predictive=False)

def fit_batch(datasets):
    return inference.fit_batch(entry, datasets, method="nuts", config="scalar",
                               seeds=[zlib.crc32(np.asarray(d).tobytes()) for d in datasets], **options)

sweep = sbc.run_sbc(lambda key: prior_simulate(program, key), None, fit_batch=fit_batch, batch_size=5,
                    num_replicates=30, num_draws=99, seed=0)
print(sbc.format_sbc(sweep))
sbc.plot_rank_histograms(sweep);
