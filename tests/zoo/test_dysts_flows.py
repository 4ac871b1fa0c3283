"""dysts_flows: the program's density against a direct computation, windows and CSV formats, named
errors, the state-space route by the particle filter, and recovery through `zoo fit --data` from a
user's series (the spec's acceptance on Lorenz)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density
from scipy import stats

import inference
import zoo
from tests.helpers import mc_tolerance
from zoo import dysts_flows as df
from zoo.processes import chaos

pytestmark = pytest.mark.xla_optimized  # long ODE fits (tests/conftest.py)

ENTRY = zoo.get("dysts_flows")
SMALL = ENTRY.configs["small"]


def test_log_density_matches_direct_computation_with_missing_components(key):
    data, truth = ENTRY.simulate(key, SMALL)
    data = np.asarray(data).copy()
    data[1, 5, 2] = np.nan  # one component missing: the other two still count
    data[2, 7, :] = np.nan  # a whole step missing
    data[0, 0, 1] = np.nan  # a first reading missing: the coordinate's anchor is its reading at t = 1
    params = {"beta": 2.7, "rho": 27.5, "sigma": 10.2, "sigma_obs": 0.6, "x0": truth["x0"] + 0.1}
    lp, _ = log_density(ENTRY.model, (data,), {"config": SMALL}, params)
    paths = np.stack([np.asarray(chaos.integrate("Lorenz", x0, SMALL.dt, SMALL.window_length,
                                                 params={"beta": 2.7, "rho": 27.5, "sigma": 10.2},
                                                 max_step=SMALL.max_step))
                      for x0 in params["x0"]])
    first = np.argmax(~np.isnan(data), axis=1)  # (window, coordinate): the anchors' times
    ok = ~np.isnan(data)
    ok[np.arange(3)[:, None], first, np.arange(3)[None, :]] = False  # anchors centre x0, not in the likelihood
    assert first[0, 1] == 1 and ok.sum() == data.size - 3 * 3 - 3 - 1 - 1
    direct = stats.norm(paths[ok], 0.6).logpdf(data[ok]).sum()
    direct += sum(stats.lognorm(0.5, scale=v).logpdf(params[k]) for k, v in chaos.get_flow("Lorenz").params.items())
    direct += stats.halfnorm(scale=1.0).logpdf(0.6)
    centres = np.stack([data[k][np.argmax(~np.isnan(data[k]), axis=0), np.arange(3)] for k in range(3)])
    direct += stats.norm(centres, 1.0).logpdf(params["x0"]).sum()
    np.testing.assert_allclose(float(lp), direct, rtol=1e-10)


def test_a_prior_replicate_is_fitted_under_the_joint_it_was_drawn_from(key):
    """SBC is exact: the data of a prior-predictive replicate carry the anchors the prior of x0 was
    centred on as their first readings, and the program's log density of those data is the
    replicate's joint log density without the first readings' terms (the anchors are covariates)."""
    from numpyro.handlers import seed, trace

    tr = trace(seed(ENTRY.model, key)).get_trace(None, config=SMALL)
    values = {n: s["value"] for n, s in tr.items() if s["type"] in ("sample", "deterministic")}
    data = ENTRY.prior_data(values, config=SMALL)
    np.testing.assert_allclose(data[:, 0], df._anchors(SMALL), rtol=1e-12)
    np.testing.assert_allclose(data[:, 1:], values["y"][:, 1:], rtol=0)
    latent = {n: values[n] for n in (*SMALL.inferred_names, "sigma_obs", "x0")}
    lp, _ = log_density(ENTRY.model, (data,), {"config": SMALL}, latent)
    joint = sum(site["fn"].log_prob(site["value"]).sum() for name, site in tr.items()
                if site["type"] == "sample" and name != "y")
    joint += tr["y"]["fn"].base_dist.log_prob(tr["y"]["value"])[:, 1:].sum()
    np.testing.assert_allclose(float(lp), float(joint), rtol=1e-10)


def test_windows_csv_round_trip_and_a_users_series(key):
    data, truth = ENTRY.simulate(key, SMALL)
    back = ENTRY.load_columns(ENTRY.dump_columns(data, SMALL), SMALL)
    np.testing.assert_allclose(back, data)
    series = df.simulate_series(key, SMALL)
    assert list(series) == ["time", "x", "y", "z"] and series["time"][-1] == pytest.approx(40.79)
    windows = ENTRY.load_columns(series, SMALL)
    assert windows.shape == (3, 80, 3)
    # the noise-free series cut at t = 10, 25, 40 is the simulator's windows
    clean = df.windows_from_series(series["time"], df._clean_series(SMALL, len(series["time"])), SMALL)
    np.testing.assert_allclose(clean, truth["x"], rtol=1e-12)
    shuffled = {k: v[::-1] for k, v in series.items()}  # rows in any order: sorted by time
    np.testing.assert_allclose(ENTRY.load_columns(shuffled, SMALL), windows)


def test_named_errors():
    series = df.simulate_series(jax.random.PRNGKey(0), SMALL, num_samples=3000)
    with pytest.raises(ValueError, match=r"window starting at t=40 .*windows longer than the data"):
        ENTRY.load_columns(series, SMALL)
    irregular = dict(series, time=series["time"] * 1.5)
    with pytest.raises(ValueError, match="time: expected a uniform grid with step dt=0.01"):
        ENTRY.load_columns(irregular, SMALL)
    with pytest.raises(ValueError, match="missing"):
        ENTRY.load_columns({"time": series["time"], "x": series["x"]}, SMALL)
    with pytest.raises(chaos.UnknownSystemError, match="unknown chaotic system 'Lorentz'"):
        df.DystsConfig(system="Lorentz")
    with pytest.raises(ValueError, match=r"span 1\.77 Lyapunov times of Lorenz"):
        df.DystsConfig(window_length=200)
    with pytest.raises(ValueError, match="never observed in window 0"):
        bad = np.full((1, 10, 3), 1.0)
        bad[0, :, 1] = np.nan
        df.validate_data(bad, SMALL)
    with pytest.raises(ValueError, match="data: expected windows of shape"):
        df.validate_data(np.zeros((3, 10, 2)), SMALL)


def test_state_space_route_prefers_the_true_parameters(key):
    # the flow with weak process noise as a StateSpaceModel: the bootstrap particle filter's
    # log-likelihood estimate is higher at the truth than at rho off by 2, by more than the Monte
    # Carlo error of the two means (8 replicates each; false-failure budget 1e-4)
    data, truth = ENTRY.simulate(key, SMALL)
    params = {"beta": 8 / 3, "rho": 28.0, "sigma": 10.0, "sigma_obs": 0.5}
    fits = {}
    for rho in (28.0, 26.0):
        run = inference.fit(ENTRY, data, method="pf", progress=False, num_particles=2000, num_replicates=8,
                            params=dict(params, rho=rho))
        fits[rho] = np.asarray(run.sample_stats["log_evidence"]).ravel()
    gap = fits[28.0].mean() - fits[26.0].mean()
    spread = np.sqrt(fits[28.0].var(ddof=1) + fits[26.0].var(ddof=1))
    assert gap > mc_tolerance(spread, 8), (fits, gap)


def _zoo_fit_lorenz_csv(tmp_path, *options):
    from diagnostics.convert import read_netcdf
    from zoo.cli import main, write_columns

    csv = tmp_path / "lorenz.csv"
    write_columns(str(csv), df.simulate_series(jax.random.PRNGKey(0), SMALL))
    out = tmp_path / "run.nc"
    status = main(["fit", "dysts_flows", "--data", str(csv), "--out", str(out), "--no-progress", *options])
    idata = read_netcdf(str(out))
    _, truth = ENTRY.simulate(jax.random.PRNGKey(0), SMALL)  # the same windows' truth
    failed = [c for c in ENTRY.check(idata, truth, SMALL) if not c.passed]
    assert not failed, failed
    assert status == 0
    assert float(idata.posterior["rho"].std()) < 0.01 * 28  # the posterior is sharp, not the prior
    return idata


def test_zoo_fit_recovers_lorenz_from_a_users_csv(tmp_path):
    """Issue 16's 'done when': `zoo fit dysts_flows --data lorenz.csv` on a noisy Lorenz series
    (columns time, x, y, z) recovers sigma, rho, beta within 2 % (spec §1). The recipe's NUTS with
    2 of its 4 chains (`--option num_chains=2`, half the cost): 400 draws instead of 800 raise the
    Monte Carlo error of a posterior mean from about 0.035 to 0.05 posterior sd (draws near
    independent), small against the 2 % bound (rho's posterior sd is below 1 %, asserted below). The check reads
    the posterior only: no posterior predictive (`--option posterior_predictive=False`; a failure of it
    would be a warning, not an error). The recipe as it is (4 chains, with the predictive):
    :func:`test_zoo_fit_recovers_lorenz_from_a_users_csv_by_the_full_recipe`."""
    idata = _zoo_fit_lorenz_csv(tmp_path, "--option", "num_chains=2", "--option", "posterior_predictive=False")
    assert idata.posterior.sizes["chain"] == 2


@pytest.mark.slow
def test_zoo_fit_recovers_lorenz_from_a_users_csv_by_the_full_recipe(tmp_path):
    """Issue 16's 'done when' with the recipe as it is (NUTS 200 + 200, 4 chains); the default
    suite runs it with 2 chains (:func:`test_zoo_fit_recovers_lorenz_from_a_users_csv`)."""
    idata = _zoo_fit_lorenz_csv(tmp_path)
    assert idata.posterior.sizes["chain"] == 4


def test_rossler_config_simulates_and_scores_its_truth_highest(key):
    config = ENTRY.configs["rossler"]
    data, truth = ENTRY.simulate(key, config)
    assert data.shape == (3, 120, 3) and set(truth) >= {"a", "b", "c", "sigma_obs", "x0"}
    base = {name: truth[name] for name in ("a", "b", "c", "sigma_obs")} | {"x0": truth["x0"]}
    at_truth, _ = log_density(ENTRY.model, (data,), {"config": config}, base)
    off, _ = log_density(ENTRY.model, (data,), {"config": config}, base | {"c": truth["c"] * 1.05})
    assert np.isfinite(float(at_truth)) and float(at_truth) > float(off)
