"""zoo.processes.bridges: the LNA is exact for a linear drift (Van Loan), the bridge draws have the
exact Gaussian-bridge law, the static bridges' marginals match, snapshot errors are named, and
iterative reference refinement recovers an OU decay rate from snapshots."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from tests.helpers import mc_tolerance
from zoo.processes import bridges

A = np.array([[-1.0, 0.5], [-0.3, -0.8]])
SIGMA = 0.4
LINEAR = bridges.DriftFamily(("unused",), lambda x, p: jnp.asarray(A) @ x, positive=False)


def _exact_ou(duration):
    """Mean map, covariance and flow Jacobian of dX = AX dt + σ dW over ``duration`` (Van Loan)."""
    d = len(A)
    block = np.block([[A, SIGMA**2 * np.eye(d)], [np.zeros((d, d)), -A.T]]) * duration
    e = scipy.linalg.expm(block)
    phi = e[:d, :d]
    return phi, e[:d, d:] @ phi.T


def test_lna_is_exact_for_a_linear_drift():
    x = jnp.array([1.0, -2.0])
    result = bridges.lna_transition(lambda z: jnp.asarray(A) @ z, x, sigma=SIGMA, duration=0.7, num_steps=70)
    phi, cov = _exact_ou(0.7)
    np.testing.assert_allclose(result.mean, phi @ np.asarray(x), atol=1e-9)
    np.testing.assert_allclose(result.flow_jacobian, phi, atol=1e-9)
    np.testing.assert_allclose(result.cov, cov, atol=1e-9)
    # the transition cost is minus the Gaussian log density of the exact transition
    y = jnp.array([[0.3, -1.0], [1.0, 0.0]])
    cost = bridges.transition_cost(LINEAR, {}, x[None], y, sigma=SIGMA, duration=0.7, step=0.01)
    direct = [-scipy.stats.multivariate_normal(phi @ np.asarray(x), cov).logpdf(np.asarray(v)) for v in y]
    np.testing.assert_allclose(cost[0], direct, rtol=1e-8)


@pytest.mark.parametrize("params", [None, {}])
def test_bridge_draws_have_the_exact_bridge_law(params, key):
    x, y, duration, at = np.array([1.0, -1.0]), np.array([0.2, 0.5]), 1.0, 0.3
    if params is None:  # Brownian bridge
        mean = x + at / duration * (y - x)
        cov = SIGMA**2 * at * (duration - at) / duration * np.eye(2)
    else:  # linear drift: condition (X_at, X_end) exactly
        phi1, q1 = _exact_ou(at)
        phi2, q2 = _exact_ou(duration - at)
        cross = q1 @ phi2.T
        end_cov = phi2 @ q1 @ phi2.T + q2
        gain = cross @ np.linalg.inv(end_cov)
        mean = phi1 @ x + gain @ (y - phi2 @ phi1 @ x)
        cov = q1 - gain @ cross.T
    n = 4000
    draws = np.asarray(jax.vmap(lambda k: bridges.bridge_sample(k, LINEAR, params, x, y, sigma=SIGMA,
                                                                duration=duration, at=at, step=0.01))(
        jax.random.split(key, n)))
    std = np.sqrt(np.diag(cov))
    tol = mc_tolerance(std, n, num_comparisons=4)
    assert np.all(np.abs(draws.mean(0) - mean) <= tol), (draws.mean(0), mean, tol)
    # variances: the spread of (x − m)² is √2·var for a Gaussian
    assert np.all(np.abs(draws.var(0) - std**2) <= mc_tolerance(np.sqrt(2) * std**2, n, num_comparisons=4))


def test_static_bridges_have_the_snapshot_marginals(key):
    k1, k2 = jax.random.split(key)
    clouds = [jax.random.normal(k1, (40, 2)), 0.5 * jax.random.normal(k2, (30, 2)) + 0.3]
    plans = bridges.static_bridges(LINEAR, {}, clouds, [0.5], sigma=SIGMA, step=0.05, tol=1e-8)
    plan = np.asarray(plans[0].plan)
    assert bool(plans[0].converged)
    np.testing.assert_allclose(plan.sum(1), 1 / 40, atol=1e-8)
    np.testing.assert_allclose(plan.sum(0), 1 / 30, atol=1e-12)
    rows, cols = bridges.sample_couplings(jax.random.PRNGKey(0), plan, 3)
    assert rows.shape == cols.shape == (120,) and int(cols.max()) < 30


def test_snapshots_at_unsorted_or_repeated_times_are_named():
    cloud = np.zeros((5, 2))
    with pytest.raises(ValueError, match="times: snapshot time 1 is repeated"):
        bridges.validate_snapshots([0.0, 1.0, 1.0], [cloud] * 3)
    with pytest.raises(ValueError, match="times: snapshot times must be sorted increasingly, got 2 before 1"):
        bridges.validate_snapshots([0.0, 2.0, 1.0], [cloud] * 3)
    with pytest.raises(ValueError, match="snapshots: expected one cloud per time"):
        bridges.validate_snapshots([0.0, 1.0], [cloud])
    with pytest.raises(ValueError, match=r"snapshots\[1\]: expected a cloud \(N, 2\)"):
        bridges.validate_snapshots([0.0, 1.0], [cloud, np.zeros((5, 3))])
    missing = cloud.copy()
    missing[0, 1] = np.nan
    _, clouds = bridges.validate_snapshots([0.0, 1.0], [cloud, missing])
    assert len(clouds[1]) == 4  # the row with a NaN is dropped
    with pytest.raises(ValueError, match="time_scale: expected a positive number"):
        bridges.refine_reference(LINEAR, [cloud, cloud], [0, 1], sigma=1.0, init={"unused": 1.0}, time_scale=0.0)


def test_reference_refinement_recovers_an_ou_rate_from_snapshots(key):
    # dX = −a X dt + σ dW from X_0 ~ N(2, 0.1²), snapshots of 300 cells at 0, 0.3, 0.6, 0.9 (exact
    # OU transitions); labels 0, 1, 2, 3 with time_scale 0.3
    a_true, sigma, n = 1.0, 0.3, 300
    family = bridges.DriftFamily(("a",), lambda x, p: -p["a"] * x)
    x = 2.0 + 0.1 * jax.random.normal(key, (n, 1))
    clouds = [x]
    for k in jax.random.split(jax.random.fold_in(key, 1), 3):
        decay = np.exp(-a_true * 0.3)
        x = decay * x + sigma * np.sqrt((1 - decay**2) / (2 * a_true)) * jax.random.normal(k, (n, 1))
        clouds.append(x[jax.random.permutation(k, n)])  # cells are not followed: order is lost
    result = bridges.refine_reference(family, clouds, [0, 1, 2, 3], sigma=sigma, init={"a": 0.1}, num_iters=5,
                                      time_scale=0.3, step=0.05)
    # the snapshot means alone pin a: 2e^{−0.9a} ± 0.3/√300, i.e. a within ~±0.03; measured 1.003
    assert abs(result.params["a"] - a_true) < 0.1, result.params
    assert result.history[0] == {"a": 0.1} and len(result.history) == 6
    assert max(result.marginal_errors) < 1e-5


def test_lna_path_reports_the_exact_transition_at_every_checkpoint():
    x = jnp.array([1.0, -2.0])
    path = bridges.lna_path(lambda z: jnp.asarray(A) @ z, x, sigma=SIGMA, dt=0.01, num_steps=120, every=40)
    assert path.mean.shape == (3, 2) and path.cov.shape == (3, 2, 2)
    for i, t in enumerate((0.4, 0.8, 1.2)):
        phi, cov = _exact_ou(t)
        np.testing.assert_allclose(path.mean[i], phi @ np.asarray(x), atol=1e-9)
        np.testing.assert_allclose(path.cov[i], cov, atol=1e-9)
    with pytest.raises(ValueError, match="num_steps: expected a multiple of every = 40"):
        bridges.lna_path(lambda z: z, x, sigma=SIGMA, dt=0.01, num_steps=100, every=40)


@pytest.mark.parametrize("nodes, split", [(1, 1.0), (3, 0.5)])
def test_lna_mixture_of_a_gaussian_law_has_the_exact_moments_for_a_linear_drift(nodes, split):
    # for a linear drift every component is propagated exactly, so the Gaussian sum's mean and
    # covariance are the OU marginal's (Gauss-Hermite is exact for the quadratic moments)
    loc, tril = np.array([1.0, -2.0]), np.array([[0.5, 0.0], [0.2, 0.3]])
    law = bridges.lna_mixture_path(lambda z: jnp.asarray(A) @ z, loc, tril, sigma=SIGMA, dt=0.01, num_steps=80,
                                   every=40, nodes=nodes, split=split)
    assert law.mean.shape == (nodes**2, 3, 2) and law.cov.shape == (nodes**2, 3, 2, 2)
    w = np.exp(np.asarray(law.log_weights))
    np.testing.assert_allclose(w.sum(), 1.0, atol=1e-12)
    for i, t in enumerate((0.0, 0.4, 0.8)):
        phi, noise = _exact_ou(t) if t else (np.eye(2), np.zeros((2, 2)))
        means = np.asarray(law.mean[:, i])
        mean = w @ means
        cov = np.einsum("k,kij->ij", w, np.asarray(law.cov[:, i])) + np.einsum("k,ki,kj->ij", w, means - mean,
                                                                               means - mean)
        np.testing.assert_allclose(mean, phi @ loc, atol=1e-9)
        np.testing.assert_allclose(cov, phi @ tril @ tril.T @ phi.T + noise, atol=1e-9)
    # the density of one point per time is the weighted sum of the component densities
    x = jnp.array([[1.0, -2.0], [0.5, -1.0], [0.0, -0.5]])
    direct = [np.log(sum(wk * scipy.stats.multivariate_normal(np.asarray(law.mean[k, i]), np.asarray(law.cov[k, i]))
                         .pdf(np.asarray(x[i])) for k, wk in enumerate(w))) for i in range(3)]
    np.testing.assert_allclose(law.log_prob(x), direct, rtol=1e-9)
    with pytest.raises(ValueError, match="split: expected a component scale c in"):
        bridges.gaussian_sum_split(2, 3, 0.0)
