"""Method "map": MAP point estimates by optax, against closed forms (a conjugate normal mean; least
squares through numpy.param), stages with traced keyword arguments and the early-stop rule, the
non-finite loss error, and named errors for bad options."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import inference
from inference.runner import param_variables
from inference.train import NonFiniteLossError
from inference.types import Target


def normal_mean(data=None):
    theta = numpyro.sample("theta", dist.Normal(0.0, 2.0))
    with numpyro.plate("n", 20):
        numpyro.sample("y", dist.Normal(theta, 0.5), obs=data)


def regression(data=None, *, scale=1.0):
    x, y = data
    w = numpyro.param("w", jnp.zeros(2))
    numpyro.factor("penalty", -0.5 * scale * jnp.sum(w ** 2))
    numpyro.deterministic("abs_w", jnp.abs(w))
    with numpyro.plate("n", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


def _regression_data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, 2))
    return x, x @ np.array([1.5, -0.5]) + 0.3 * rng.standard_normal(30)


def test_map_of_a_conjugate_normal_mean_is_the_posterior_mode():
    y = np.random.default_rng(0).normal(1.3, 0.5, size=20)
    precision = 1 / 2.0 ** 2 + 20 / 0.5 ** 2
    mode = (y.sum() / 0.5 ** 2) / precision
    idata = inference.fit(Target(model=normal_mean, data=y, observed={"y": y}), y, method="map", progress=False,
                          num_steps=1500, learning_rate=0.05)
    assert idata.attrs["draws"] == "point" and idata.attrs["method"] == "map"
    assert idata.posterior["theta"].shape == (1, 1)
    # the optimiser's error, not Monte Carlo: Adam at this rate settles to ~1e-6 of the mode
    np.testing.assert_allclose(float(idata.posterior["theta"].values[0, 0]), mode, atol=1e-4)
    assert idata.training["loss"].shape == (1500,)
    assert "observed_data" in idata.groups()


def test_map_of_numpyro_params_is_the_ridge_solution_and_stages_pass_numbers_traced():
    x, y = _regression_data()
    stages = [{"kwargs": {"scale": 1.0}, "num_steps": 800}, {"kwargs": {"scale": 4.0}, "num_steps": 800}]
    idata = inference.fit(Target(model=regression, data=(x, y)), (x, y), method="map", progress=False,
                          learning_rate=0.05, stages=stages)
    for stage, scale in enumerate((1.0, 4.0)):
        ridge = np.linalg.solve(x.T @ x + scale * np.eye(2), x.T @ y)
        np.testing.assert_allclose(idata.stage_params["w"].values[stage], ridge, atol=1e-5)
    np.testing.assert_allclose(idata.posterior["w"].values[0, 0], idata.stage_params["w"].values[1])
    assert idata.attrs["stage_steps"] == [800, 800]
    np.testing.assert_array_equal(idata.training["step_stage"].values, np.repeat([0, 1], 800))


def test_a_stage_ends_when_the_stop_site_exceeds_its_level():
    x, y = _regression_data()
    idata = inference.fit(Target(model=regression, data=(x, y)), (x, y), method="map", progress=False,
                          learning_rate=0.05, num_steps=2000, stop_site="abs_w", stop_above=0.3, check_every=10)
    steps = idata.attrs["stage_steps"][0]
    assert steps < 2000 and steps % 10 == 0
    checks = idata.training["check_min"].values
    assert checks[-1] > 0.3 and np.all(checks[:-1] <= 0.3)


def test_carried_state_makes_two_stages_one_run():
    """With carry_state the optimiser state (Adam's moments, the decay's step count) runs on across
    stages: two stages of 300 steps with the same kwargs are one run of 600 steps, exactly."""
    x, y = _regression_data()
    target = Target(model=regression, data=(x, y))
    options = dict(progress=False, learning_rate=0.05, decay_rate=0.5, decay_every=100, chunk_size=100)
    one = inference.fit(target, (x, y), method="map", num_steps=600, **options)
    two = inference.fit(target, (x, y), method="map", stages=[{"num_steps": 300}, {"num_steps": 300}],
                        carry_state=True, **options)
    fresh = inference.fit(target, (x, y), method="map", stages=[{"num_steps": 300}, {"num_steps": 300}], **options)
    np.testing.assert_array_equal(two.training["loss"].values, one.training["loss"].values)
    np.testing.assert_array_equal(two.posterior["w"].values, one.posterior["w"].values)
    assert not np.array_equal(fresh.training["loss"].values, one.training["loss"].values)
    with pytest.raises(ValueError, match="carry_state: stages that share one optimiser state must share"):
        inference.fit(target, (x, y), method="map", progress=False, carry_state=True,
                      stages=[{"num_steps": 3}, {"num_steps": 3, "learning_rate": 0.1}])


def test_non_finite_loss_names_the_step():
    def bad(data=None):
        w = numpyro.param("w", jnp.ones(()))
        numpyro.factor("f", jnp.log(w - 2.0))       # NaN from the first step

    with pytest.raises(NonFiniteLossError, match="at step 0"):
        inference.fit(Target(model=bad, data=np.zeros(1)), np.zeros(1), method="map", progress=False, num_steps=5)


@pytest.mark.parametrize("options, match", [
    ({"stages": {"kwargs": {}}}, "stages: expected a non-empty sequence"),
    ({"stages": [{"steps": 3}]}, r"stages\[0\]: unknown key"),
    ({"stages": [{"num_steps": 0}]}, r"stages\[0\].num_steps"),
    ({"stop_site": "abs_w"}, "stop_site/stop_above"),
    ({"stop_site": "nope", "stop_above": 1.0}, "stop_site: the program records no deterministic site 'nope'"),
    ({"decay_rate": 0.5}, "decay_rate/decay_every"),
    ({"optimizer": "lbfgs"}, "optimizer"),
])
def test_bad_options_are_named(options, match):
    x, y = _regression_data()
    with pytest.raises((ValueError, TypeError), match=match):
        inference.fit(Target(model=regression, data=(x, y)), (x, y), method="map", progress=False, num_steps=3,
                      **options)


def test_param_variables_flattens_flax_sites():
    tree = {"net$params": {"params": {"Dense_0": {"kernel": np.ones((2, 3)), "bias": np.zeros(3)}}}, "s": np.ones(2)}
    flat = param_variables(tree)
    assert sorted(flat) == ["net.Dense_0.bias", "net.Dense_0.kernel", "s"]
    assert flat["net.Dense_0.kernel"].shape == (2, 3)
