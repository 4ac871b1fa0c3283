"""Entry ``lotka_volterra_ode``: CSV round trip and errors, missing values, recovery, a user's CSV
through the CLI."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density

import zoo
from tests.helpers import recipe_failures
from zoo.reaction_kinetics import LVData


def test_lv_ode_csv_round_trip_and_errors():
    entry = zoo.get("lotka_volterra_ode")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    columns = entry.dump_columns(data, config)
    assert set(columns) == {"time", "predator", "prey"}
    shuffled = {k: v[::-1] for k, v in columns.items()}
    back = entry.load_columns(shuffled, config)
    np.testing.assert_allclose(back.counts, data.counts)
    np.testing.assert_allclose(back.times, data.times)
    with pytest.raises(ValueError, match="missing column 'prey'"):
        entry.load_columns({"time": columns["time"], "predator": columns["predator"]}, config)
    bad = dict(columns, prey=np.where(np.arange(len(columns["prey"])) == 3, -1.0, columns["prey"]))
    with pytest.raises(ValueError, match="positive counts"):
        entry.load_columns(bad, config)
    with pytest.raises(ValueError, match="increasing"):
        entry.load_columns(dict(columns, time=np.zeros_like(columns["time"])), config)
    with pytest.raises(TypeError, match="LVData"):
        entry.dump_columns(np.ones((3, 2)), config)
    # the ODE path in the truth solves the rate equations (fixed point (133.3, 166.7))
    np.testing.assert_allclose(truth["x"][-1], [133.33, 166.67], rtol=0.01)


def test_lv_ode_missing_values_are_skipped():
    entry = zoo.get("lotka_volterra_ode")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    params = {k: jnp.asarray(truth[k]) for k in ("mu", "sigma", "lam", "capacity", "noise", "x0")}
    full, _ = log_density(entry.model, (data,), {"config": config}, params)
    counts = np.asarray(data.counts).copy()
    dropped = jax.scipy.stats.norm.logpdf(np.log(counts[5, 1]), np.log(truth["x"][5, 1]), truth["noise"]) - np.log(counts[5, 1])
    counts[5, 1] = np.nan
    partial, _ = log_density(entry.model, (LVData(data.times, jnp.asarray(counts)),), {"config": config}, params)
    np.testing.assert_allclose(float(full) - float(partial), float(dropped), rtol=1e-4)


def test_lv_ode_prior_replicate_is_fitted_under_the_joint_it_was_drawn_from():
    """SBC is exact: a prior-predictive replicate's data carry ``true_x0``, the anchor x0's prior
    was centred on, as their first row, and the program's log density of those data is the
    replicate's joint log density without the first row's terms (the anchor is a covariate)."""
    from numpyro.handlers import seed, trace

    entry = zoo.get("lotka_volterra_ode")
    config = entry.configs["small"]
    tr = trace(seed(entry.model, jax.random.PRNGKey(4))).get_trace(None, config=config)
    values = {n: s["value"] for n, s in tr.items() if s["type"] in ("sample", "deterministic")}
    data = entry.prior_data(values, config=config)
    np.testing.assert_allclose(data.counts[0], config.true_x0, rtol=1e-12)
    np.testing.assert_allclose(data.counts[1:], values["y"][1:], rtol=0)
    latent = {n: values[n] for n in ("mu", "sigma", "lam", "capacity", "x0", "noise")}
    lp, _ = log_density(entry.model, (data,), {"config": config}, latent)
    joint = sum(site["fn"].log_prob(site["value"]).sum() for name, site in tr.items()
                if site["type"] == "sample" and name != "y")
    joint += tr["y"]["fn"].base_dist.log_prob(tr["y"]["value"])[1:].sum()
    np.testing.assert_allclose(float(lp), float(joint), rtol=1e-6)


@pytest.mark.slow
def test_lv_ode_recovery_recipe():
    failed = recipe_failures("lotka_volterra_ode")
    assert not failed, failed


def test_lv_ode_fits_a_users_csv_through_the_cli(tmp_path, monkeypatch, capsys):
    """`zoo simulate lotka_volterra_ode --out x.csv` then `zoo fit ... --data x.csv` (tiny NUTS run)."""
    from diagnostics.convert import read_netcdf
    from zoo.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "lotka_volterra_ode", "--seed", "3", "--out", "x.csv"]) == 0
    header = (tmp_path / "x.csv").read_text().splitlines()[0]
    assert header == "time,predator,prey"
    # the cheapest gradient-based fit (the NUTS recipe on this entry: test_lv_ode_recovery_recipe, slow)
    code = main(["fit", "lotka_volterra_ode", "--data", "x.csv", "--no-progress", "--method", "svi",
                 "--option", "num_steps=20", "--option", "num_samples=10", "--option", "posterior_predictive=False",
                 "--out", "run.nc"])
    assert code in (0, 1)  # 1 = a convergence verdict failed; still a result
    assert "convergence diagnostics" in capsys.readouterr().out
    idata = read_netcdf(tmp_path / "run.nc")
    assert idata.posterior["mu"].shape[-1] == 10 and idata.posterior["x0"].shape[-2:] == (10, 2)
    entry = zoo.get("lotka_volterra_ode")
    data, _ = entry.simulate(jax.random.PRNGKey(3), entry.configs["small"])
    np.testing.assert_allclose(np.asarray(idata.posterior["x"]).shape[-2:], np.asarray(data.counts).shape)
