"""lgssm entry: Kalman marginal against a dense Gaussian, recovery on small, data round trip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import inference
import zoo
from zoo.lgssm import LGSSMConfig, lgssm_params

ENTRY = zoo.get("lgssm")


def dense_loglik(A, q, r, ys, config):
    """log N(vec y; 0, Σ) with Σ built from the state covariances Cov(x_s, x_t) = A^{t-s} P_s."""
    T, dx = ys.shape[0], config.state_dim
    H = np.asarray(config.H)
    P = [np.eye(dx)]
    for _ in range(1, T):
        P.append(A @ P[-1] @ A.T + np.diag(q**2))
    blocks = np.zeros((T * config.obs_dim, T * config.obs_dim))
    for s in range(T):
        for t in range(s, T):
            cov_x = np.linalg.matrix_power(A, t - s) @ P[s]
            block = H @ cov_x @ H.T + (np.diag(r**2) if s == t else 0)
            blocks[t * config.obs_dim:(t + 1) * config.obs_dim, s * config.obs_dim:(s + 1) * config.obs_dim] = block
            blocks[s * config.obs_dim:(s + 1) * config.obs_dim, t * config.obs_dim:(t + 1) * config.obs_dim] = block.T
    return stats.multivariate_normal(np.zeros(len(blocks)), blocks).logpdf(ys.reshape(-1))


def test_exact_loglik_matches_dense_gaussian(key):
    config = LGSSMConfig(num_steps=12, num_series=2)
    data, truth = ENTRY.simulate(key, config)
    value = float(ENTRY.exact_loglik(truth, data, config))
    dense = sum(dense_loglik(np.asarray(truth["A"]), np.asarray(truth["q"]), np.asarray(truth["r"]),
                             np.asarray(data[s]), config) for s in range(2))
    np.testing.assert_allclose(value, dense, rtol=1e-9)


def _recovery_on_small(**options):
    config = ENTRY.configs["small"]
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(ENTRY, data, method=ENTRY.recipe.method, progress=False,
                          **{**ENTRY.recipe.options_for("small"), **options})
    failed = [c for c in ENTRY.check(idata, truth, config) if not c.passed]
    assert not failed, failed
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "series", "time")


def test_recovery_on_small():
    """The `small` check by the recipe's NUTS (2 chains, dense posterior of A, q, r) with half its
    iterations, 200 + 200 per chain instead of 400 + 400, to stay cheap (the sampling is the whole
    cost). The check's bounds are in posterior standard deviations (0.15 ~ 2.5 sd for E[A]); 400
    draws instead of 800 add a Monte Carlo error of the mean of about 0.05 posterior sd and move the
    interval ends by a few hundredths of an sd. The check reads the posterior and the log-likelihood
    only: no posterior predictive (a failure of it would be a warning, not an error). The recipe as
    it is, with the predictive: :func:`test_recovery_on_small_recipe`."""
    _recovery_on_small(num_warmup=200, num_samples=200, posterior_predictive=False)


@pytest.mark.slow
def test_recovery_on_small_recipe():
    """The `small` check with the recipe as it is (NUTS 400 + 400, 2 chains); the default suite runs
    the same check with half the iterations (:func:`test_recovery_on_small`)."""
    _recovery_on_small()


def test_columns_round_trip_and_errors():
    config = ENTRY.configs["small"]
    data, _ = ENTRY.simulate(jax.random.PRNGKey(1), config)
    data = np.asarray(data).copy()
    data[0, 3, 1] = np.nan
    back = ENTRY.load_columns(ENTRY.dump_columns(data, config), config)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(data))
    np.testing.assert_allclose(np.nan_to_num(back), np.nan_to_num(data))
    with pytest.raises(ValueError, match="data: expected shape"):
        ENTRY.exact_loglik({"A": jnp.eye(2), "q": jnp.ones(2), "r": jnp.ones(2)}, np.zeros((5, 3)), config)
    with pytest.raises(ValueError, match="infinite"):
        ENTRY.exact_loglik({"A": jnp.eye(2), "q": jnp.ones(2), "r": jnp.ones(2)}, np.full((5, 2), np.inf), config)
    with pytest.raises(ValueError, match="true_A"):
        LGSSMConfig(state_dim=3)
