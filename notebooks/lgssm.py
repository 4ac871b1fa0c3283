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
# ## ArviZ's standard views
#
# Trace and rank plots per chain, the energy plot (NUTS), the posterior predictive against the
# data and the Pareto k of PSIS-LOO. Each pointwise term is the one-step predictive
# `p(y_t | y_0..y_(t-1))` of a 2-D observation (the path is integrated out), the joint density of
# both channels: PSIS-LOO leaves out that one-step factor, and LOO-PIT, which needs one term per
# observed number, does not apply (on a univariate series, e.g. `config="scalar"`,
# `az.plot_loo_pit` works). For forecasting questions use leave-future-out
# (`diagnostics.compare.psis_lfo`).

# %%
az.plot_trace(idata, var_names=["A", "q", "r"], compact=True);
az.plot_rank(idata, var_names=["q", "r"]);
az.plot_energy(idata);

# %%
az.plot_ppc(idata, var_names=["y"], num_pp_samples=100);
az.plot_khat(az.loo(idata, pointwise=True));

# %% [markdown]
# ## The latent path given the data, and one-step-ahead predictions
#
# The posterior predictive above draws new series; they follow none of the data. What a modeller
# looks at is the latent path given all the observations and how well each observation was
# predicted from the ones before it. `zoo.posterior_paths` draws both at 200 posterior draws
# (forward filtering, backward sampling; the Kalman filter's predicted observation law): the 90 %
# one-step bands should cover about 90 % of the observations, and the true path (red) should sit
# inside the latent bands.

# %%
from diagnostics import plots

paths = zoo.posterior_paths(entry, idata)
print(f"one-step 90% bands cover {plots.one_step_coverage(paths):.1%} of the observations")
plots.plot_smoothed_paths(paths, truth={"x": truth["x"]})

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
