"""zoo.core: masking of missing observations, the derived program, simulate, check helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density, log_likelihood

from inference import exact
from inference._sites import merge_init_rest
from zoo.core import Check, StateSpaceModel, ZooEntry, Recipe, masked_log_prob, check_covers, check_close, interval_covers
from diagnostics.convert import to_inference_data


def ar1_ssm():
    def prior():
        return {"phi": numpyro.sample("phi", dist.Uniform(-0.99, 0.99)),
                "sx": numpyro.sample("sx", dist.HalfNormal(1.0))}

    return StateSpaceModel(
        prior=prior,
        initial=lambda p: dist.Normal(0.0, p["sx"]),
        transition=lambda p, t, x: dist.Normal(p["phi"] * x, p["sx"]),
        emission=lambda p, t, x: dist.Normal(x, 0.5),
        name="ar1",
    )


def test_masked_log_prob_componentwise_and_whole():
    d = dist.Normal(jnp.zeros(3), 1.0).to_event(1)
    y = jnp.array([0.5, jnp.nan, -1.0])
    expected = dist.Normal(0.0, 1.0).log_prob(jnp.array([0.5, -1.0])).sum()
    np.testing.assert_allclose(masked_log_prob(d, y), expected, rtol=1e-12)
    mvn = dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2))
    assert float(masked_log_prob(mvn, jnp.array([jnp.nan, 1.0]))) == 0.0
    grad = jax.grad(lambda m: masked_log_prob(dist.Normal(m, 1.0).to_event(1), y))(jnp.zeros(3))
    assert np.all(np.isfinite(grad)) and float(grad[1]) == 0.0


def test_ssm_program_masks_missing_and_matches_kalman_increments(key):
    ssm = ar1_ssm()
    params = {"phi": jnp.asarray(0.8), "sx": jnp.asarray(1.0)}
    xs, ys = ssm.simulate(key, params, 15)
    ys = ys.at[4].set(jnp.nan)
    samples = {"phi": params["phi"][None], "sx": params["sx"][None], "x_init": xs[:1], "x_rest": xs[None, 1:]}
    ll = merge_init_rest({k: np.asarray(v) for k, v in log_likelihood(ssm.model, samples, ys).items()}, lead=1)
    assert ll["y"].shape == (1, 15) and ll["y"][0, 4] == 0.0
    np.testing.assert_allclose(ll["y"][0].sum(), float(ssm.log_joint(params, xs, ys))
                               - float(ssm.initial(params).log_prob(xs[0]))
                               - float(jax.vmap(lambda a, b: ssm.transition(params, 1, a).log_prob(b))(xs[:-1], xs[1:]).sum()),
                               rtol=1e-8)
    # the Feynman–Kac emission weight is zero at the missing step
    fk = ssm.feynman_kac(params, ys)
    assert float(fk.emission_log_weight(4, xs[4])) == 0.0


def test_ssm_several_sequences_program(key):
    ssm = ar1_ssm()
    params = {"phi": jnp.asarray(0.5), "sx": jnp.asarray(1.0)}
    keys = jax.random.split(key, 3)
    xs, ys = jax.vmap(lambda k: ssm.simulate(k, params, 8))(keys)
    model_params = dict(params, x_init=xs[:, 0], x_rest=jnp.moveaxis(xs[:, 1:], 1, 0))
    lp, tr = log_density(ssm.model, (ys,), {}, model_params)
    expected = sum(float(ssm.log_joint(params, xs[s], ys[s])) for s in range(3)) + float(ssm.prior_log_density(params))
    np.testing.assert_allclose(float(lp), expected, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(tr["x"]["value"]), np.asarray(xs), rtol=1e-12)


def test_ssm_shape_errors():
    ssm = ar1_ssm()
    with pytest.raises(ValueError, match="ys: .*expects observations"):
        ssm.split_series(jnp.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="num_steps"):
        ssm.simulate(jax.random.PRNGKey(0), {"phi": 0.5, "sx": 1.0}, 0)
    with pytest.raises(ValueError, match="ys: feynman_kac takes one sequence"):
        ssm.feynman_kac({"phi": 0.5, "sx": 1.0}, jnp.zeros((2, 5)))


def test_ssm_simulate_moments_match_stationary_variance(key):
    """Simulated x_T of a stationary AR(1) has variance sx²/(1-phi²); x_0 here has variance sx²,
    so Var x_t = sx² (1 - phi^{2(t+1)}) / (1 - phi²)."""
    from tests.helpers import mc_tolerance

    ssm = ar1_ssm()
    params = {"phi": 0.7, "sx": 1.0}
    n = 4000
    xs, _ = jax.vmap(lambda k: ssm.simulate(k, params, 6))(jax.random.split(key, n))
    expected = (1 - 0.7 ** (2 * 6)) / (1 - 0.49)
    var = float(jnp.var(xs[:, -1]))
    # Var of a sample variance of normals: 2σ⁴/(n-1)
    assert abs(var - expected) <= mc_tolerance(np.sqrt(2) * expected, n)


def test_check_helpers():
    draws = np.random.default_rng(0).normal(1.0, 0.1, size=(2, 500))
    idata = to_inference_data(posterior={"a": draws, "b": draws[..., None] * np.ones(3)})
    assert check_covers(idata, "a", 1.0).passed and not check_covers(idata, "a", 2.0).passed
    c = check_close(idata, "b", np.ones(3), tol=0.02)
    assert isinstance(c, Check) and c.passed
    assert not check_close(idata, "a", 1.5, tol=0.1).passed


def test_check_covers_shares_the_false_alarm_budget_across_variables():
    """With k variables each interval has level 1 - 0.1/k: its bounds are the draws' quantiles."""
    draws = np.random.default_rng(1).normal(0.0, 1.0, size=(4, 5000))
    idata = to_inference_data(posterior={"a": draws})
    _, lo1, hi1 = interval_covers(idata, "a", 0.0)
    _, lo3, hi3 = interval_covers(idata, "a", 0.0, num_comparisons=3)
    np.testing.assert_allclose([lo1, hi1], np.quantile(draws, [0.05, 0.95]))
    np.testing.assert_allclose([lo3, hi3], np.quantile(draws, [0.05 / 3, 1 - 0.05 / 3]))
    truth = float(np.quantile(draws, 0.97))  # outside the 90% interval, inside the 96.7% one
    assert not check_covers(idata, "a", truth).passed
    joint = check_covers(idata, "a", truth, num_comparisons=3)
    assert joint.passed and joint.name.startswith("joint 90%")
    with pytest.raises(ValueError, match="num_comparisons"):
        interval_covers(idata, "a", 0.0, num_comparisons=0)


def test_zoo_entry_requires_small_and_paper():
    with pytest.raises(ValueError, match="configs must contain 'paper'"):
        ZooEntry(name="x", title="t", reference="r", summary="s", model=lambda d=None, *, config: None,
                 simulate=lambda k, c: (None, {}), configs={"small": 1}, recipe=Recipe("nuts"), check=lambda *a: [])
