"""pgdmm_duffing: the twin's zero-order hold against the linear oscillator integrated by RK4, its
Kalman marginal against a dense Gaussian, NUTS recovery (the recipe), the physics-only PgDMM's ELBO
below its exact evidence, the full PgDMM's interpretability checks (slow), CSV and named errors."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import inference
import zoo
from tests.helpers import mc_tolerance, recipe_failures
from zoo import pgdmm_duffing as pg

ENTRY = zoo.get("pgdmm_duffing")


def test_zero_order_hold_is_the_linear_oscillator_and_the_simulator_uses_it():
    config = dataclasses.replace(pg.SMALL, k3=0.0, substeps=20)
    A_d, B_d = pg.physics_matrices(config.true_k, config.true_c, config.dt)
    for x, u in [((0.3, -0.2), 0.7), ((-1.0, 0.5), -0.4), ((0.0, 0.0), 1.0)]:
        step = pg.duffing_step(jnp.asarray(x), u, config)
        np.testing.assert_allclose(step, A_d @ jnp.asarray(x) + B_d * u, atol=1e-9)
    # k3 > 0 bends the trajectory away from the linear map
    hard = dataclasses.replace(config, k3=0.5)
    assert float(jnp.abs(pg.duffing_step(jnp.array([1.0, 0.0]), 0.0, hard)
                         - pg.duffing_step(jnp.array([1.0, 0.0]), 0.0, config)).max()) > 1e-3


def _dense_loglik(params, u, y, config):
    """log N(y; m, Σ) of one sequence of the twin, its moments written out step by step."""
    A, B = (np.asarray(a) for a in pg.physics_matrices(params["k"], params["c"], config.dt))
    T = len(y)
    Q = np.diag([0.0, config.process_noise**2])
    means, covs = [np.zeros(2)], [config.init_scale**2 * np.eye(2)]
    for t in range(1, T):
        means.append(A @ means[-1] + B * u[t])
        covs.append(A @ covs[-1] @ A.T + Q)
    # Cov(x_s, x_t) = A^{t-s} P_s for s <= t
    cov_y = np.empty((T, T))
    for s in range(T):
        for t in range(s, T):
            cross = np.linalg.matrix_power(A, t - s) @ covs[s]
            cov_y[s, t] = cov_y[t, s] = cross[0, 0]
    cov_y += config.obs_noise**2 * np.eye(T)
    return stats.multivariate_normal(np.array([m[0] for m in means]), cov_y).logpdf(y)


def test_twin_kalman_marginal_against_the_dense_gaussian():
    config = dataclasses.replace(pg.SMALL, num_series=2, num_steps=25)
    data, _ = ENTRY.simulate(jax.random.PRNGKey(1), config)
    params = {"k": 1.2, "c": 0.15}
    data = np.asarray(data)
    dense = sum(_dense_loglik(params, d[:, 0], d[:, 1], config) for d in data)
    np.testing.assert_allclose(float(ENTRY.exact_loglik(params, data, config)), dense, rtol=1e-8)


def test_prior_data_pairs_the_drawn_inputs_with_observations_the_twin_describes():
    """``prior_data`` gives the ``(S, T, 2)`` pairs ``simulate`` gives, with the prior predictive's
    own inputs ``u``, and its ``y`` has the law the fit's Kalman marginal assumes: the standardised
    one-step innovations at the replicate's ``k``, ``c`` (and inputs) are N(0, 1). Six replicates of
    ``small`` (9600 innovations, independent under the model); mean and variance within their Monte
    Carlo tolerance."""
    from inference import exact
    from inference.prior_predictive import prior_simulate

    config = ENTRY.config("small")
    model = functools.partial(ENTRY.model, config=config)
    simulated, _ = ENTRY.simulate(jax.random.PRNGKey(0), config)

    @jax.jit  # one compiled filter for every replicate's sequences (eager, each one recompiled its scan)
    def innovations(params, u, y):
        def one(u, y):
            kf = exact.kalman_filter(pg._to_lgssm(params, u, config), y[:, None])
            var = kf.predicted_covs[:, 0, 0] + config.obs_noise**2
            return (y - kf.predicted_means[:, 0]) / jnp.sqrt(var)

        return jax.vmap(one)(u, y)

    z = []
    for seed in range(6):
        key = jax.random.PRNGKey(seed)
        params, data = prior_simulate(model, key, assemble=functools.partial(pg.prior_data, config=config))
        assert set(params) == {"k", "c"} and data.shape == simulated.shape and data.dtype == simulated.dtype
        if seed == 0:  # the pairing is the same code for every key: one replicate's trace shows it
            drawn_u = numpyro_trace(model, key)["u"]["value"]
            np.testing.assert_array_equal(data[..., 0], drawn_u)
        z.append(np.asarray(innovations({k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(data[..., 0]),
                                        jnp.asarray(data[..., 1]))).ravel())
    z = np.concatenate(z)
    assert abs(z.mean()) <= mc_tolerance(1.0, z.size, num_comparisons=2)
    assert abs(z.var() - 1.0) <= mc_tolerance(np.sqrt(2.0), z.size, num_comparisons=2)


def numpyro_trace(model, key):
    from numpyro.handlers import seed, trace

    return trace(seed(model, key)).get_trace(None)


def test_twin_nuts_recovery_on_small():
    assert not recipe_failures("pgdmm_duffing")


def test_physics_only_pgdmm_elbo_is_below_its_exact_evidence():
    """residual=False, constant_scale=True: the PgDMM is linear-Gaussian. At the initial and at the
    trained parameters the ELBO (Monte Carlo over guide draws) lies below the Kalman log-evidence
    at the same parameters, and training shrinks the gap (the structured guide moves toward the
    exact posterior)."""
    from inference.train import elbo_loss, elbo_parameters
    from zoo.nets.params import program_params

    config = dataclasses.replace(pg.SMALL, num_series=4, num_steps=20, residual=False, constant_scale=True,
                                 gru=8, vae_steps=150, learning_rate=1e-2, validation=0, kl_start=1.0)
    data, _ = ENTRY.simulate(jax.random.PRNGKey(2), config)
    data = jnp.asarray(data)
    program = functools.partial(pg.pgdmm_model, config=config)
    idata = inference.fit(program, data, method="vae", guide=pg.pgdmm_guide(config), progress=False,
                          **pg.pgdmm_vae_options(config, num_samples=10))
    trained = program_params({name: np.asarray(v.values) for name, v in idata.parameters.data_vars.items()})
    initial = elbo_parameters(program, pg.pgdmm_guide(config), data, jax.random.fold_in(jax.random.PRNGKey(0), 10**9))
    # strongly typed, as the trained values are: weakly typed leaves (from Python numbers) compiled both
    # jitted functions below a second time
    initial = jax.tree.map(lambda a: jnp.asarray(a, dtype=jnp.result_type(a)), initial)
    loss = jax.jit(jax.vmap(elbo_loss(program, pg.pgdmm_guide(config)), in_axes=(None, None, 0)))
    n = 128
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    physics_loglik = jax.jit(lambda params, data: pg.physics_loglik(params, data, config))  # one compile, two calls
    gaps = []
    for params in (initial, trained):
        draws = -np.asarray(loss(params, data, keys))
        log_z = float(physics_loglik({name: params[name] for name in ("physics_log_scale", "log_obs_noise")}, data))
        tol = mc_tolerance(draws.std(), n, num_comparisons=2)
        assert draws.mean() <= log_z + tol, (draws.mean(), log_z, tol)
        gaps.append(log_z - draws.mean())
    assert gaps[1] < 0.5 * gaps[0], gaps


def test_particle_filter_predictions_match_the_kalman_filter_on_the_linear_pgdmm():
    """Spec check (c)'s predictor against an exact one: with residual=False and constant_scale=True
    the PgDMM is linear-Gaussian, so its bootstrap particle filter's one-step predictions of ``y``
    must be the Kalman filter's at the same parameters. The particle estimates' spread (measured
    over seeds) is about 2.5 sd/sqrt(N) per point (the sharp first observation thins the cloud),
    at most 0.25 sd at N = 2000; the bound is 0.5 sd per point and 3% on the RMSE."""
    from inference import exact
    from inference.train import elbo_parameters

    config = dataclasses.replace(pg.SMALL, num_series=3, num_steps=40, residual=False, constant_scale=True, gru=8)
    data, _ = ENTRY.simulate(jax.random.PRNGKey(2), config)
    data = jnp.asarray(data)
    params = dict(elbo_parameters(functools.partial(pg.pgdmm_model, config=config), pg.pgdmm_guide(config), data,
                                  jax.random.PRNGKey(0)))
    params.update(log_obs_noise=jnp.log(0.05), physics_log_scale=jnp.array([-3.0, -2.0]))
    predicted = np.asarray(pg.pgdmm_predictions(params, data, config, num_particles=2000))
    u, y = pg.split_data(data, config)
    scales = jax.nn.softplus(params["physics_log_scale"]) + 1e-4
    physics = {"k": config.physics_k, "c": config.physics_c}
    kalman = jax.vmap(lambda ui, yi: exact.kalman_filter(pg._to_lgssm(physics, ui, config, scales=scales, obs_noise=0.05),
                                                         yi[:, None]))(u, y)
    mean, sd = np.asarray(kalman.predicted_means[..., 0]), np.sqrt(np.asarray(kalman.predicted_covs[..., 0, 0]))
    assert np.all(np.abs(predicted - mean) < 0.5 * sd)
    exact_rmse = pg.prediction_rmse(mean, data, config)
    assert abs(pg.prediction_rmse(predicted, data, config) - exact_rmse) < 0.03 * exact_rmse


@pytest.mark.slow
def test_pgdmm_on_duffing_data_recovers_the_physical_states():
    config = pg.DUFFING
    data, _ = ENTRY.simulate(jax.random.PRNGKey(1), config)
    test, test_truth = ENTRY.simulate(jax.random.PRNGKey(2), dataclasses.replace(config, num_series=8))
    idata = inference.fit(functools.partial(pg.pgdmm_model, config=config), data, method="vae",
                          guide=pg.pgdmm_guide(config), progress=False, **pg.pgdmm_vae_options(config))
    failed = [c for c in pg.check_pgdmm(idata, test, test_truth, config) if not c.passed]
    assert not failed, failed


def test_columns_round_trip_and_named_errors():
    config = ENTRY.configs["small"]
    data, _ = ENTRY.simulate(jax.random.PRNGKey(5), config)
    data = np.asarray(data).copy()
    data[1, 7, 1] = np.nan
    back = ENTRY.load_columns(ENTRY.dump_columns(data, config), config)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(data))
    np.testing.assert_allclose(np.nan_to_num(back), np.nan_to_num(data))
    assert np.isfinite(float(ENTRY.exact_loglik({"k": 1.0, "c": 0.1}, data, config)))
    bad = data.copy()
    bad[0, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"^data: the input u must be known"):
        ENTRY.exact_loglik({"k": 1.0, "c": 0.1}, bad, config)
    with pytest.raises(ValueError, match=r"^data: expected shape \(series, time >= 2, 2\)"):
        ENTRY.exact_loglik({"k": 1.0, "c": 0.1}, data[..., :1], config)
    with pytest.raises(ValueError, match="^data: the PgDMM conditions on its inputs"):
        pg.pgdmm_model(None, config=config)
    with pytest.raises(ValueError, match="^validation"):
        pg.PgDMMConfig(validation=-1)
    with pytest.raises(ValueError, match="^k3"):
        pg.PgDMMConfig(k3=-1.0)
    with pytest.raises(ValueError, match="^config: the PgDMM is linear-Gaussian only"):
        pg.physics_loglik({}, data, config)
