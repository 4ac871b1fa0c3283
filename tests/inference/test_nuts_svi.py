"""NUTS (NumPyro, BlackJAX) and SVI against exact posteriors.

1. Conjugate normal mean: posterior N(m, s²) in closed form. The sampler's posterior mean is
   compared within Monte Carlo error (std = s, n = bulk ESS); the posterior sd within a relative
   tolerance from the sampling distribution of a standard deviation (≈ 1/sqrt(2·ESS)).
2. The ``lgssm`` entry's ``scalar`` config (one unknown, A): exact posterior by quadrature of the
   Kalman likelihood times the prior on a fine grid.
"""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from scipy import stats

import inference
import zoo
from inference import NonFiniteLogDensityError
from tests.helpers import mc_tolerance, persistent_cache_misses, z_quantile

PRIOR_SCALE = 10.0
NOISE = 1.0


def normal_mean_model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SCALE))
    with numpyro.plate("obs", 30 if y is None else y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, NOISE), obs=y)


@pytest.fixture(scope="module")
def normal_data():
    y = np.random.default_rng(1).normal(1.3, NOISE, size=30)
    precision = 1 / PRIOR_SCALE**2 + len(y) / NOISE**2
    return y, y.sum() / NOISE**2 / precision, precision**-0.5


def _assert_matches_normal(idata, mean, sd, num_comparisons=2):
    draws = idata.posterior["mu"].values
    ess = float(az.ess(idata, var_names=["mu"])["mu"])
    tol_mean = mc_tolerance(sd, ess, num_comparisons=num_comparisons)
    assert abs(draws.mean() - mean) <= tol_mean, (draws.mean(), mean, tol_mean)
    rel_tol_sd = z_quantile(num_comparisons=num_comparisons) / np.sqrt(2 * ess)
    assert abs(draws.std() / sd - 1) <= rel_tol_sd, (draws.std(), sd, rel_tol_sd)


def _assert_svi_matches_normal(idata, mean, sd):
    draws = idata.posterior["mu"].values.reshape(-1)
    # the guide family contains the exact posterior; what remains is optimisation noise, far below
    # the posterior scale, plus Monte Carlo error of 4000 independent guide draws
    tol = mc_tolerance(sd, len(draws), num_comparisons=2) + 0.02 * sd
    assert abs(draws.mean() - mean) <= tol
    assert abs(draws.std() / sd - 1) <= z_quantile(num_comparisons=2) / np.sqrt(2 * len(draws)) + 0.05


# the settings of the conjugate checks, whose fits the compilation check below starts from
NUTS_OPTIONS = dict(progress=False, num_warmup=300, num_samples=500, num_chains=2)


def svi_options():
    schedule = optax.exponential_decay(0.05, transition_steps=3000, decay_rate=0.02)
    return dict(method="svi", progress=False, guide="AutoNormal", optimizer=optax.adam(schedule), num_steps=3000,
                num_particles=8, num_samples=4000)


def _options(method):
    return svi_options() if method == "svi" else dict(method=method, **NUTS_OPTIONS)


@pytest.fixture(scope="module")
def fitted(normal_data):
    """``fitted(method)``: ``normal_mean_model`` fitted to the module's data (seed 3), once per module:
    the conjugate checks read it and the compilation check starts from it (its first fit)."""
    y, _, _ = normal_data
    runs = {}

    def fit(method):
        if method not in runs:
            runs[method] = inference.fit(normal_mean_model, y, seed=3, **_options(method))
        return runs[method]

    return fit


@pytest.mark.parametrize("method", ["nuts", "blackjax-nuts"])
def test_nuts_matches_conjugate_posterior(method, normal_data, fitted):
    y, mean, sd = normal_data
    idata = fitted(method)
    _assert_matches_normal(idata, mean, sd)
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data"} <= set(idata.groups())
    assert idata.log_likelihood["y"].shape == (2, 500, 30)
    for stat in ("diverging", "energy", "step_size", "tree_depth", "acceptance_rate", "lp"):
        assert stat in idata.sample_stats
    assert idata.attrs["method"] == method
    if method == "nuts":  # where the time went (issue 22: the work around sampling is timed)
        for phase in ("initialisation_time_s", "sampling_time_s", "postprocessing_time_s"):
            assert idata.attrs[phase] >= 0.0, phase


def test_nuts_draws_are_numpyros_mcmc_with_the_data_an_argument(normal_data):
    """The runner drives NumPyro's NUTS kernel itself, so that the data are an argument of its
    compiled programs for parallel chains too: its draws and statistics are, bit for bit, those of
    NumPyro's own ``MCMC(NUTS(model), jit_model_args=True)`` (the data an argument there too) for
    the same key: the same initial points, chain keys, adaptation and thinning rule. (NumPyro's
    ``MCMC`` with the data baked into the program, as this runner was before, gives the same
    draws for vectorised chains; for the others XLA rounds the gradient differently in the last
    bits and the trajectories carry that along.)"""
    from numpyro.infer import MCMC, NUTS, init_to_median

    y, _, _ = normal_data
    options = dict(num_warmup=50, num_samples=40, num_chains=2, thinning=3)
    idata = inference.fit(normal_mean_model, y, method="nuts", seed=7, progress=False, posterior_predictive=False,
                          drop_stuck_chains=False, **options)
    assert idata.attrs["chain_method"] == "parallel"  # 2 chains on the 4 host devices
    mcmc = MCMC(NUTS(normal_mean_model, init_strategy=init_to_median(num_samples=15)), chain_method="parallel",
                progress_bar=False, jit_model_args=True, **options)
    mcmc.run(jax.random.PRNGKey(7), y, extra_fields=("potential_energy", "num_steps", "adapt_state.step_size"))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    np.testing.assert_array_equal(idata.posterior["mu"].values, mcmc.get_samples(group_by_chain=True)["mu"])
    np.testing.assert_array_equal(idata.sample_stats["lp"].values, -np.asarray(extra["potential_energy"]))
    np.testing.assert_array_equal(idata.sample_stats["n_steps"].values, extra["num_steps"])
    np.testing.assert_array_equal(idata.sample_stats["step_size"].values, extra["adapt_state.step_size"])
    np.testing.assert_array_equal(idata.sample_stats["diverging"].values, extra["diverging"])


def test_svi_matches_conjugate_posterior(normal_data, fitted):
    y, mean, sd = normal_data
    idata = fitted("svi")
    _assert_svi_matches_normal(idata, mean, sd)
    loss = idata.svi_trace["loss"].values
    assert loss.shape == (3000,) and loss[-200:].mean() < loss[:50].mean()


@pytest.mark.parametrize("method", ["nuts", "blackjax-nuts", "svi"])
def test_a_fit_on_other_data_compiles_nothing(normal_data, fitted, method):
    """The data are an argument of the sampler's and the optimiser's compiled programs, not a
    constant in them: a second fit on other data of the same shape (an SBC replicate) compiles
    nothing, the persistent cache holds every program of the first (benchmarks/fit_reuse.py
    measures what that saves). NumPyro's NUTS runs its chains in parallel here (2 chains, 4 host
    devices), where NumPyro's own MCMC would close pmap over the data."""
    y, _, _ = normal_data
    fitted(method)  # the first fit (seed 3), shared with the conjugate checks
    with persistent_cache_misses() as compiled:
        idata = inference.fit(normal_mean_model, y + 0.5, seed=4, **_options(method))
    assert not compiled, f"{method}: {len(compiled)} programs compiled again for other data"
    assert idata.attrs["data_argument"] == 1


def normal_mean_model_concrete(y=None):
    """normal_mean_model, but it reads its data with NumPy (as a program that converts or
    branches on its data does): it cannot trace with the data as tracers."""
    if y is not None:
        y = np.asarray(y)  # TracerArrayConversionError under a trace
    normal_mean_model(y)


@pytest.mark.parametrize("method", ["nuts", "blackjax-nuts", "svi"])
def test_a_program_that_needs_concrete_data_keeps_them_a_constant(normal_data, method):
    """Such a program's data stay a constant of the compiled programs (attrs["data_argument"] 0,
    where a traceable program's are an argument, 1) and it still gets the conjugate posterior
    (before, the runners that take the data as an argument raised TracerArrayConversionError)."""
    y, mean, sd = normal_data
    idata = inference.fit(normal_mean_model_concrete, y, seed=3, **_options(method))
    assert idata.attrs["data_argument"] == 0
    (_assert_svi_matches_normal if method == "svi" else _assert_matches_normal)(idata, mean, sd)


def test_svi_checkpoint_resume_equals_uninterrupted(tmp_path, normal_data):
    y, _, _ = normal_data
    opts = dict(progress=False, num_steps=300, chunk_size=100, num_samples=50, learning_rate=0.05)
    full = inference.fit(normal_mean_model, y, method="svi", seed=4, **opts)
    path = tmp_path / "svi.npz"
    inference.fit(normal_mean_model, y, method="svi", seed=4, checkpoint_path=str(path), **{**opts, "num_steps": 200})
    resumed = inference.fit(normal_mean_model, y, method="svi", seed=4, checkpoint_path=str(path), **opts)
    np.testing.assert_allclose(resumed.svi_trace["loss"].values, full.svi_trace["loss"].values, rtol=1e-10)
    with pytest.raises(ValueError, match="seed"):  # another run's checkpoint is not resumed
        inference.fit(normal_mean_model, y, method="svi", seed=5, checkpoint_path=str(path), **opts)


def test_lgssm_nuts_matches_quadrature_posterior():
    entry = zoo.get("lgssm")
    config = entry.configs["scalar"]
    data, truth = entry.simulate(jax.random.PRNGKey(5), config)
    idata = inference.fit(entry, data, method="nuts", config="scalar", seed=1, progress=False,
                          num_warmup=300, num_samples=600, num_chains=2)
    grid = np.linspace(-1.5, 2.5, 4001)
    loglik = jax.vmap(lambda a: entry.exact_loglik({"A": a.reshape(1, 1)}, data, config))(jnp.asarray(grid))
    logpost = np.asarray(loglik) + stats.norm(0.5, config.prior_A_scale).logpdf(grid)
    weights = np.exp(logpost - logpost.max())
    weights /= weights.sum()
    mean = float((weights * grid).sum())
    sd = float(np.sqrt((weights * (grid - mean) ** 2).sum()))
    draws = idata.posterior["A"].values.reshape(-1)
    ess = float(az.ess(idata, var_names=["A"])["A"].values.min())
    assert abs(draws.mean() - mean) <= mc_tolerance(sd, ess, num_comparisons=2)
    assert abs(draws.std() / sd - 1) <= z_quantile(num_comparisons=2) / np.sqrt(2 * ess)
    # one term per step; the univariate observation's obs_dim axis (size 1) is kept so that
    # az.loo_pit pairs the log-likelihood with observed_data
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "series", "time", "obs_dim")


def test_nonfinite_log_density_names_the_site():
    def bad_model(y=None):
        scale = numpyro.sample("scale", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Exponential(scale), obs=y)

    with pytest.raises(FloatingPointError, match="site\\(s\\): y"):
        inference.fit(bad_model, np.array([1.0, -2.0]), method="nuts", progress=False, num_warmup=10, num_samples=10)


def test_stuck_chain_screening_flags_far_chain():
    from inference.nuts import screen_stuck_chains

    rng = np.random.default_rng(0)
    potential = rng.normal(10.0, 1.0, size=(4, 200))
    potential[2] += 50.0  # a chain sitting in a far less probable mode
    accept = np.full((4, 200), 0.8)
    accept[3] = 0.01  # a chain that does not move
    screen = screen_stuck_chains(potential, accept)
    assert screen.stuck == (2, 3)


def test_facade_errors():
    with pytest.raises(ValueError, match="method: unknown method 'bogus'"):
        inference.fit(normal_mean_model, np.zeros(3), method="bogus")
    with pytest.raises(TypeError, match="does not accept \\['nmu_samples'\\]"):
        inference.fit(normal_mean_model, np.zeros(3), method="nuts", nmu_samples=3)
    with pytest.raises(ValueError, match="num_samples"):
        inference.fit(normal_mean_model, np.zeros(3), method="nuts", num_samples=0, progress=False)
    with pytest.raises(ValueError, match="max_tree_depth: expected a positive integer, got 0"):  # was an IndexError
        inference.fit(normal_mean_model, np.zeros(3), method="nuts", max_tree_depth=0, progress=False)
    with pytest.raises(TypeError, match="target"):
        inference.fit(42, np.zeros(3), method="nuts")


def test_fit_batch_matches_each_conjugate_posterior():
    """Four data sets in one compiled NUTS loop (the last a copy of the first under another seed):
    each posterior matches its own closed form, and each data set has its own key."""
    rng = np.random.default_rng(7)
    datasets = [rng.normal(loc, NOISE, size=30) for loc in (-2.0, 0.5, 3.0)]
    datasets.append(datasets[0])
    results = inference.fit_batch(normal_mean_model, datasets, method="nuts", seeds=[11, 12, 13, 99],
                                  num_warmup=300, num_samples=500, num_chains=2)
    assert len(results) == 4
    for y, idata in zip(datasets, results):
        precision = 1 / PRIOR_SCALE**2 + len(y) / NOISE**2
        _assert_matches_normal(idata, y.sum() / NOISE**2 / precision, precision**-0.5, num_comparisons=8)
        assert "batched over 4" in idata.attrs["sampler"]
        assert idata.log_likelihood["y"].shape == (2, 500, 30)
        np.testing.assert_array_equal(idata.observed_data["y"].values, y)
    # the same data under another seed, in the same batch, gives other draws
    assert not np.allclose(results[0].posterior["mu"].values, results[3].posterior["mu"].values)


def test_fit_batch_named_errors():
    y = np.zeros(30)
    with pytest.raises(ValueError, match="data set 1 has shape"):
        inference.fit_batch(normal_mean_model, [y, np.zeros(31)], method="nuts", num_warmup=10, num_samples=10)
    with pytest.raises(ValueError, match="seeds"):
        inference.fit_batch(normal_mean_model, [y, y], seeds=[1], num_warmup=10, num_samples=10)
    with pytest.raises(TypeError, match="does not accept"):
        inference.fit_batch(normal_mean_model, [y], num_warmup=10, num_samples=10, bogus=1)

    def numpy_model(y=None):  # reads its data's values with NumPy: cannot be traced
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=jnp.asarray(np.asarray(y)))

    with pytest.raises(TypeError, match="traces the program with its data"):
        inference.fit_batch(numpy_model, [y, y], num_warmup=10, num_samples=10, num_chains=1)
    bad = y.copy()
    bad[3] = np.inf
    with pytest.raises(NonFiniteLogDensityError, match="'y'|y"):
        inference.fit_batch(normal_mean_model, [y, bad], num_warmup=10, num_samples=10, num_chains=1)


def test_fit_batch_other_methods_fit_one_by_one(normal_data):
    y, mean, sd = normal_data
    results = inference.fit_batch(normal_mean_model, [y, y + 1.0], method="blackjax-nuts", seeds=[3, 4],
                                  num_warmup=300, num_samples=500, num_chains=2)
    assert [r.attrs["method"] for r in results] == ["blackjax-nuts"] * 2
    _assert_matches_normal(results[0], mean, sd, num_comparisons=4)
    _assert_matches_normal(results[1], mean + len(y) / NOISE**2 * sd**2, sd, num_comparisons=4)
