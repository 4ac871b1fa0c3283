"""The state-space families (``zoo.processes.linear_gaussian``, ``zoo.processes.discrete_hmm``):
every form derived from one definition agrees with the others.

* Kalman / forward log-likelihood = the state-space form's ``log_joint`` integrated over the latent
  path: exactly by Laplace's formula for tiny linear-Gaussian models (the log joint is quadratic in
  the path, so the formula is exact), by enumeration of every hidden path for a tiny HMM;
* = a bootstrap particle filter's evidence within Monte Carlo error (``Ẑ/Z`` has mean 1);
* NaN (and the symbol code -1) is missing identically in both forms (the data above hold some);
* prior-predictive shapes; traced data; smoothing, decoding and posterior paths against the same
  references.

False-failure budget: 1e-4 per Monte Carlo comparison (``tests.helpers.mc_tolerance``), Bonferroni
over the comparisons of a test.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.handlers import seed
from scipy.special import logsumexp
from scipy.stats import binom

import zoo  # noqa: F401  (float64)
from inference import exact
from inference._sites import abstract_sites
from inference.particle import filter as pf
from tests.helpers import DEFAULT_FALSE_FAILURE, mc_tolerance
from zoo.processes.discrete_hmm import (
    CategoricalMissing,
    HMMParams,
    categorical_log_likelihoods,
    discrete_hmm,
    gaussian_log_likelihoods,
)
from zoo.processes.linear_gaussian import DegenerateNormal, linear_gaussian
from zoo.processes.series import validate_symbols

# --------------------------------------------------------------------------------------------
# Tiny linear-Gaussian models
# --------------------------------------------------------------------------------------------


def _ar_prior():
    return {"a": numpyro.sample("a", dist.Uniform(-0.9, 0.9)), "q": numpyro.sample("q", dist.HalfNormal(1.0))}


def _vector_lgssm(params, dense_r=False):
    """2-d state, 2-d observation; R correlated when ``dense_r``."""
    A = jnp.array([[params["a"], 0.2], [-0.2, 0.7]])
    R = jnp.array([[0.3, 0.12], [0.12, 0.2]]) if dense_r else jnp.diag(jnp.array([0.3, 0.2]))
    return exact.LGSSMParams(jnp.array([0.1, -0.2]), jnp.array([[1.0, 0.3], [0.3, 0.8]]), A,
                             jnp.array([0.05, 0.0]), params["q"] ** 2 * jnp.eye(2),
                             jnp.array([[1.0, 0.0], [0.5, 1.0]]), jnp.array([0.0, 0.1]), R)


VECTOR = linear_gaussian(_ar_prior, _vector_lgssm, state_shape=(2,), obs_shape=(2,), initial="dense",
                         transition="diagonal", emission="diagonal", name="vector")
DENSE_R = linear_gaussian(_ar_prior, lambda p: _vector_lgssm(p, dense_r=True), state_shape=(2,), obs_shape=(2,),
                          initial="dense", transition="diagonal", emission="dense", name="dense_r")
PARAMS = {"a": jnp.asarray(0.6), "q": jnp.asarray(0.5)}


def _lagged_lgssm(params, inputs):
    """Per channel an AR(2) with known input, state (s_t, s_{t-1}) (degenerate transition),
    started from s_0, s_{-1} ~ N(0, 0.2²); two channels with their own inputs ``inputs (T, 2)``."""
    a, mu, q = params["alpha"], params["mu"], params["q"]

    def one(e):
        F = jnp.array([[1.0 - a + mu, -mu], [1.0, 0.0]])
        Q = jnp.diag(jnp.array([q**2, 0.0]))
        offsets = jnp.stack([a * e, jnp.zeros_like(e)], -1)
        return exact.LGSSMParams(offsets[0], F @ (0.04 * jnp.eye(2)) @ F.T + Q, F, offsets[1:], Q,
                                 jnp.array([[1.3, 0.0]]), jnp.zeros(1), jnp.array([[0.15**2]]))

    return jax.vmap(one, in_axes=1)(inputs)


def _lagged_prior():
    return {"alpha": numpyro.sample("alpha", dist.Beta(2.0, 2.0)), "mu": numpyro.sample("mu", dist.Beta(2.0, 2.0)),
            "q": numpyro.sample("q", dist.HalfNormal(0.3))}


LAGGED = linear_gaussian(_lagged_prior, _lagged_lgssm, state_shape=(2, 2), obs_shape=(2,), initial="dense",
                         transition="degenerate", emission="diagonal", channels=2, inputs=True, name="lagged")
LAGGED_PARAMS = {"alpha": jnp.asarray(0.4), "mu": jnp.asarray(0.5), "q": jnp.asarray(0.1)}
INPUTS = jnp.array([[0.0, 0.5], [1.0, 0.5], [1.0, -0.5], [0.2, -0.5], [0.0, 0.0]])


def _laplace(log_joint, n):
    """log ∫ exp(log_joint(v)) dv for a log_joint quadratic in v (R^n): exact (one compiled Newton step)."""
    @jax.jit
    def integrate(v0):
        g, H = jax.grad(log_joint)(v0), jax.hessian(log_joint)(v0)
        mode = v0 - jnp.linalg.solve(H, g)
        return log_joint(mode) + 0.5 * n * math.log(2 * math.pi) - 0.5 * jnp.linalg.slogdet(-H)[1], mode

    log_z, mode = integrate(jnp.zeros(n))
    return float(log_z), mode


def _vector_data():
    ys = np.asarray(VECTOR.simulate(jax.random.PRNGKey(0), PARAMS, 4)[1]).copy()
    ys[1, 0] = np.nan  # one component missing
    ys[3] = np.nan  # a whole step missing
    return jnp.asarray(ys)


def test_kalman_equals_integrated_log_joint_and_nan_masks_alike():
    ys = _vector_data()
    ssm = VECTOR.ssm()
    params = PARAMS
    ref, mode = _laplace(lambda v: ssm.log_joint(params, v.reshape(4, 2), ys), 8)
    np.testing.assert_allclose(float(VECTOR.log_likelihood(PARAMS, ys)), ref, rtol=1e-10)
    assert VECTOR.increments(PARAMS, ys).shape == (4,)
    # the posterior mean of a Gaussian path is its mode: the RTS smoother's means
    np.testing.assert_allclose(np.asarray(VECTOR.smoother(PARAMS, ys).smoothed_means), np.asarray(mode).reshape(4, 2),
                               atol=1e-10)
    # a dense emission cannot drop one component of a correlated vector: a partly observed step is
    # missing as a whole in both forms
    dense_ref, _ = _laplace(lambda v: DENSE_R.ssm().log_joint(PARAMS, v.reshape(4, 2), ys), 8)
    whole = ys.at[1].set(jnp.nan)
    np.testing.assert_allclose(float(DENSE_R.log_likelihood(PARAMS, ys)), dense_ref, rtol=1e-10)
    np.testing.assert_allclose(float(DENSE_R.log_likelihood(PARAMS, ys)),
                               float(exact.kalman_filter(_vector_lgssm(PARAMS, True), whole).log_likelihood), rtol=1e-12)


def test_channels_inputs_and_point_masses_integrate_to_the_kalman_marginal():
    ys = np.asarray(LAGGED.simulate(jax.random.PRNGKey(1), LAGGED_PARAMS, 5, inputs=INPUTS)[1]).copy()
    ys[2, 1] = np.nan
    ssm = LAGGED.ssm(INPUTS)
    params = LAGGED_PARAMS

    def path(v):  # free values s_0..s_T per channel -> states (T, 2 channels, (s_t, s_{t-1}))
        s = v.reshape(6, 2)
        return jnp.stack([s[1:], s[:-1]], axis=-1)

    ref, _ = _laplace(lambda v: ssm.log_joint(params, path(v), jnp.asarray(ys)), 12)
    np.testing.assert_allclose(float(LAGGED.log_likelihood(LAGGED_PARAMS, ys, INPUTS)), ref, rtol=1e-10)
    # a lagged component that is not the previous state has no density
    xs = path(jnp.linspace(-1, 1, 12))
    assert float(ssm.log_joint(params, xs.at[3, 0, 1].add(0.1), jnp.asarray(ys))) == -np.inf
    assert np.isfinite(float(ssm.log_joint(params, xs, jnp.asarray(ys))))
    # S sequences with their own inputs: increments (S, T), summed over the channels
    batch = jnp.stack([jnp.asarray(ys), jnp.asarray(ys)[::-1]])
    inputs = jnp.stack([INPUTS, INPUTS[::-1]])
    inc = LAGGED.increments(LAGGED_PARAMS, batch, inputs)
    assert inc.shape == (2, 5)
    np.testing.assert_allclose(float(inc[1].sum()), float(LAGGED.log_likelihood(LAGGED_PARAMS, batch[1], INPUTS[::-1])),
                               rtol=1e-12)


def _evidence_ratio(fk, exact_ll, *, num_particles, reps, seed_, proposal=None):
    keys = jax.random.split(jax.random.PRNGKey(seed_), reps)
    runs = jax.jit(jax.vmap(lambda k: pf.run(k, fk, num_particles, proposal=proposal).log_evidence))(keys)
    return np.exp(np.asarray(runs) - exact_ll)


def test_particle_filter_evidence_matches_kalman_within_monte_carlo_error():
    reps, comparisons = 32, 3
    ys = _vector_data()
    exact_ll = float(VECTOR.log_likelihood(PARAMS, ys))
    fk = VECTOR.ssm().feynman_kac(PARAMS, ys)
    checks = [_evidence_ratio(fk, exact_ll, num_particles=256, reps=reps, seed_=2)]
    # the locally optimal proposal derived from the same arrays is unbiased too (and far less noisy)
    proposal = VECTOR.optimal_proposal(PARAMS, ys)
    checks.append(_evidence_ratio(fk, exact_ll, num_particles=32, reps=reps, seed_=3, proposal=proposal))
    ys_l = LAGGED.simulate(jax.random.PRNGKey(4), LAGGED_PARAMS, 5, inputs=INPUTS)[1]
    fk_l = LAGGED.ssm(INPUTS).feynman_kac(LAGGED_PARAMS, ys_l)
    checks.append(_evidence_ratio(fk_l, float(LAGGED.log_likelihood(LAGGED_PARAMS, ys_l, INPUTS)),
                                  num_particles=512, reps=reps, seed_=5))
    for ratio in checks:
        tol = mc_tolerance(ratio.std(ddof=1), reps, num_comparisons=comparisons)
        assert abs(ratio.mean() - 1.0) <= tol, (ratio.mean(), ratio.std(ddof=1), tol)
    assert checks[1].std() < checks[0].std()


def _site_shapes(model, **kwargs):
    """``{site: shape of its value}`` of the prior predictive ``model(None, **kwargs)`` from one abstract
    trace (:func:`inference._sites.abstract_sites`: nothing dispatched or compiled); the samplers'
    values are checked in law below and by the particle-filter tests."""
    return {name: site.shape for name, site in abstract_sites(model, None, **kwargs).items()}


def test_prior_predictive_shapes_and_samplers_agree_in_law():
    shapes = _site_shapes(VECTOR.model, num_steps=5, num_series=3)
    assert shapes["y"] == (3, 5, 2) and "x" not in shapes
    assert _site_shapes(VECTOR.model, num_steps=5)["y"] == (5, 2)
    assert _site_shapes(LAGGED.model, num_steps=5, num_series=2, inputs=jnp.stack([INPUTS] * 2))["y"] == (2, 5, 2)
    with pytest.raises(ValueError, match="num_steps"):
        seed(VECTOR.model, 0)(None)
    # the array sampler and the step-by-step laws draw the same law: mean and variance of y_T
    arrays = linear_gaussian(_ar_prior, _vector_lgssm, state_shape=(2,), obs_shape=(2,), initial="dense",
                             transition="diagonal", emission="diagonal", simulation="arrays")
    n = 4000
    by_laws = np.asarray(jax.jit(lambda k: VECTOR.simulate(k, PARAMS, 4, num_series=n)[1][:, -1])(
        jax.random.PRNGKey(6)))
    by_arrays = np.asarray(jax.jit(lambda k: arrays.simulate(k, PARAMS, 4, num_series=n)[1][:, -1])(
        jax.random.PRNGKey(7)))
    lg = _vector_lgssm(PARAMS)
    m, P = lg.initial_mean, lg.initial_cov
    for _ in range(3):
        m, P = lg.transition_matrix @ m + lg.transition_offset, lg.transition_matrix @ P @ lg.transition_matrix.T + lg.transition_cov
    mean = np.asarray(lg.emission_matrix @ m + lg.emission_offset)
    var = np.diag(np.asarray(lg.emission_matrix @ P @ lg.emission_matrix.T + lg.emission_cov))
    np.testing.assert_allclose(np.asarray(VECTOR.mean_path(PARAMS, 4)[-1]), np.asarray(m), rtol=1e-12)
    for draws in (by_laws, by_arrays):
        assert np.all(np.abs(draws.mean(0) - mean) <= mc_tolerance(np.sqrt(var), n, num_comparisons=8))
        # variance of a sample variance of normals: 2 var² / (n - 1)
        assert np.all(np.abs(draws.var(0, ddof=1) - var) <= mc_tolerance(np.sqrt(2) * var, n, num_comparisons=8))


def test_path_and_observe_are_the_recursions_of_the_arrays():
    """``path`` (states from given innovations) and ``observe`` (observations from given states and
    standard normal noise) are the model's recursions written out; zero innovations are
    ``mean_path``; with channels and inputs they act per channel."""
    lg = _vector_lgssm(PARAMS)
    eps = jax.random.normal(jax.random.PRNGKey(11), (4, 2))
    noise = jax.random.normal(jax.random.PRNGKey(12), (4, 2))
    x = lg.initial_mean + eps[0]
    expected = [x]
    for t in range(1, 4):
        x = lg.transition_matrix @ x + lg.transition_offset + eps[t]
        expected.append(x)
    expected = np.stack(expected)
    xs = VECTOR.path(PARAMS, eps)
    np.testing.assert_allclose(np.asarray(xs), expected, rtol=1e-12)
    ys = VECTOR.observe(PARAMS, xs, noise)
    R_half = np.sqrt(np.diag(np.asarray(lg.emission_cov)))
    np.testing.assert_allclose(np.asarray(ys), expected @ np.asarray(lg.emission_matrix).T
                               + np.asarray(lg.emission_offset) + R_half * np.asarray(noise), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(VECTOR.path(PARAMS, jnp.zeros((4, 2)))),
                               np.asarray(VECTOR.mean_path(PARAMS, 4)), rtol=0, atol=0)
    zero = jnp.zeros((5,) + LAGGED.state_shape)
    np.testing.assert_allclose(np.asarray(LAGGED.path(LAGGED_PARAMS, zero, INPUTS)),
                               np.asarray(LAGGED.mean_path(LAGGED_PARAMS, 5, INPUTS)), rtol=0, atol=0)
    assert LAGGED.observe(LAGGED_PARAMS, zero, jnp.zeros((5,) + LAGGED.obs_shape), INPUTS).shape == (5,) + LAGGED.obs_shape


def test_ffbs_paths_average_to_the_smoothed_means():
    ys = _vector_data()
    n = 2000
    paths = jax.vmap(lambda k: VECTOR.posterior_paths(k, PARAMS, ys))(jax.random.split(jax.random.PRNGKey(8), n))
    smooth = VECTOR.smoother(PARAMS, ys)
    sd = np.sqrt(np.einsum("tii->ti", np.asarray(smooth.smoothed_covs)))
    err = np.abs(np.asarray(paths).mean(0) - np.asarray(smooth.smoothed_means))
    assert np.all(err <= mc_tolerance(sd, n, num_comparisons=8))


def test_traced_data_and_named_errors():
    ys = _vector_data()[None]
    np.testing.assert_allclose(float(jax.jit(lambda y: VECTOR.log_likelihood(PARAMS, y))(ys)),
                               float(VECTOR.log_likelihood(PARAMS, ys)), rtol=1e-12)
    with pytest.raises(ValueError, match="infinite"):
        VECTOR.log_likelihood(PARAMS, jnp.full((3, 2), jnp.inf))
    with pytest.raises(ValueError, match=r"data: expected shape \(series, time, 2\) or \(time, 2\)"):
        VECTOR.log_likelihood(PARAMS, jnp.zeros((3, 4)))
    off = linear_gaussian(_ar_prior, lambda p: _vector_lgssm(p, dense_r=True), state_shape=(2,), obs_shape=(2,),
                          emission="diagonal")
    with pytest.raises(ValueError, match="off-diagonal"):
        off.log_likelihood(PARAMS, ys)
    with pytest.raises(ValueError, match="emission: expected one of"):
        linear_gaussian(_ar_prior, _vector_lgssm, state_shape=(2,), obs_shape=(2,), emission="banded")
    with pytest.raises(ValueError, match="channels"):
        linear_gaussian(_ar_prior, _vector_lgssm, state_shape=(2,), obs_shape=(2,), channels=3)
    with pytest.raises(ValueError, match="inputs"):
        LAGGED.log_likelihood(LAGGED_PARAMS, jnp.zeros((5, 2)))


def test_degenerate_normal_is_a_normal_with_point_masses():
    d = DegenerateNormal(jnp.array([0.5, 1.0]), jnp.array([2.0, 0.0]), event_dim=1)
    np.testing.assert_allclose(float(d.log_prob(jnp.array([1.0, 1.0]))),
                               float(dist.Normal(0.5, 2.0).log_prob(1.0)), rtol=1e-14)
    assert float(d.log_prob(jnp.array([1.0, 1.1]))) == -np.inf
    draws = d.sample(jax.random.PRNGKey(0), (3,))
    assert draws.shape == (3, 2) and np.all(np.asarray(draws[:, 1]) == 1.0)


def test_degenerate_normal_inside_scan_keeps_its_event_axes():
    # NumPyro's scan stacks the law over time and re-derives its batch shape; a (3, 2) event must
    # stay an event (the second-order affect model's lagged copies are such point masses)
    from numpyro.contrib.control_flow import scan
    from numpyro.infer.util import log_density

    scale = jnp.array([[1.0, 0.0]] * 3)

    def model():
        def step(x_prev, _):
            x = numpyro.sample("x", DegenerateNormal(jnp.stack([x_prev[:, 0], x_prev[:, 0]], -1), scale, event_dim=2))
            return x, None

        scan(step, jnp.ones((3, 2)), None, length=4)

    xs = jnp.ones((4, 3, 2)).at[:, :, 0].set(jnp.arange(1.0, 5.0)[:, None])
    xs = xs.at[1:, :, 1].set(xs[:-1, :, 0])
    lp, _ = log_density(model, (), {}, {"x": xs})
    prev = jnp.concatenate([jnp.ones((1, 3)), xs[:-1, :, 0]])
    expected = jnp.sum(dist.Normal(prev, 1.0).log_prob(xs[:, :, 0]))
    np.testing.assert_allclose(float(lp), float(expected), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Tiny HMMs
# --------------------------------------------------------------------------------------------

K, T = 3, 5
TRANS = jnp.array([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.25, 0.05, 0.7]])
INIT = jnp.array([0.5, 0.3, 0.2])


def _hmm_prior():
    return {"transition_matrix": numpyro.sample("transition_matrix", dist.Dirichlet(jnp.ones((K, K)))),
            "means": numpyro.sample("means", dist.Normal(0.0, 2.0).expand([K]).to_event(1))}


GAUSS = discrete_hmm(_hmm_prior, lambda p: HMMParams(INIT, p["transition_matrix"]),
                     lambda p, t, z: dist.Normal(p["means"][z], 0.7), num_states=K, name="gauss")
EMIS = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
SYMBOLS = discrete_hmm(_hmm_prior, lambda p: HMMParams(INIT, p["transition_matrix"]),
                       lambda p, t, z: CategoricalMissing(EMIS[z]), num_states=K,
                       validate=lambda data: validate_symbols(data, 3), name="symbols")
HMM_PARAMS = {"transition_matrix": TRANS, "means": jnp.array([-1.0, 0.5, 2.0])}


def _enumerate(family, ys):
    """log p(z, y) of every hidden path by the state-space form's log_joint: (K^T,), paths."""
    paths = jnp.asarray(list(itertools.product(range(K), repeat=T)))
    ssm = family.ssm()
    return np.asarray(jax.jit(jax.vmap(lambda z: ssm.log_joint(HMM_PARAMS, z, ys)))(paths)), np.asarray(paths)


def _hmm_data():
    gauss = np.asarray(GAUSS.simulate(jax.random.PRNGKey(0), HMM_PARAMS, T)[1]).copy()
    gauss[2] = np.nan
    symbols = np.asarray(SYMBOLS.simulate(jax.random.PRNGKey(1), HMM_PARAMS, T)[1]).astype(np.int32).copy()
    symbols[[0, 3]] = -1
    return jnp.asarray(gauss), jnp.asarray(symbols)


@pytest.mark.parametrize("which", ["gauss", "symbols"])
def test_forward_algorithm_smoothing_and_viterbi_equal_enumeration(which):
    family = {"gauss": GAUSS, "symbols": SYMBOLS}[which]
    ys = _hmm_data()[0 if which == "gauss" else 1]
    joint, paths = _enumerate(family, ys)
    total = logsumexp(joint)
    np.testing.assert_allclose(float(family.log_likelihood(HMM_PARAMS, ys)), total, rtol=1e-10)
    post = np.exp(joint - total)
    marginals = np.stack([np.bincount(paths[:, t], weights=post, minlength=K) for t in range(T)])
    np.testing.assert_allclose(np.asarray(family.smoothed_marginals(HMM_PARAMS, ys)), marginals, atol=1e-10)
    np.testing.assert_array_equal(np.asarray(family.viterbi(HMM_PARAMS, ys)), paths[np.argmax(joint)])
    # a missing step (NaN, or the symbol -1) contributes nothing: the same as leaving it out of the sum
    missing = 2 if which == "gauss" else 0
    assert np.all(np.asarray(family.log_likelihoods(HMM_PARAMS, ys))[missing] == 0.0)
    # FFBS draws: state frequencies match the smoothed marginals
    n = 2000
    draws = np.asarray(family.posterior_paths(jax.random.PRNGKey(2), HMM_PARAMS, ys, n))
    assert draws.shape == (n, T)
    # exact binomial intervals (a normal tolerance fails on states of probability ~1e-5, where one
    # draw in 2000 is already 20 standard errors), same false-failure budget split over K * T counts
    counts = np.stack([np.bincount(draws[:, t], minlength=K) for t in range(T)])
    alpha = DEFAULT_FALSE_FAILURE / (K * T)
    low, high = binom.ppf(alpha / 2, n, marginals), binom.isf(alpha / 2, n, marginals)
    assert np.all((counts >= low) & (counts <= high)), (counts, n * marginals)


def test_hmm_particle_filter_evidence_and_shapes():
    reps = 32
    gauss, symbols = _hmm_data()
    for family, ys, s in ((GAUSS, gauss, 3), (SYMBOLS, symbols, 4)):
        fk = family.ssm().feynman_kac(HMM_PARAMS, ys)
        ratio = _evidence_ratio(fk, float(family.log_likelihood(HMM_PARAMS, ys)), num_particles=200, reps=reps, seed_=s)
        assert abs(ratio.mean() - 1.0) <= mc_tolerance(ratio.std(ddof=1), reps, num_comparisons=2), ratio.mean()
    assert _site_shapes(GAUSS.model, num_steps=6, num_series=4)["y"] == (4, 6)
    assert GAUSS.increments(HMM_PARAMS, jnp.stack([gauss, gauss])).shape == (2, T)
    # traced symbols: shapes checked, values only on concrete data
    np.testing.assert_allclose(float(jax.jit(lambda y: SYMBOLS.log_likelihood(HMM_PARAMS, y))(symbols)),
                               float(SYMBOLS.log_likelihood(HMM_PARAMS, symbols)), rtol=1e-12)
    with pytest.raises(ValueError, match="outside the alphabet"):
        SYMBOLS.log_likelihood(HMM_PARAMS, jnp.array([0, 3, 1]))
    with pytest.raises(ValueError, match="integers"):
        SYMBOLS.log_likelihood(HMM_PARAMS, jnp.array([0.5, 1.0]))


def test_emission_tables_are_the_laws():
    ys = jnp.array([0, -1, 2])
    table = categorical_log_likelihoods(EMIS, ys)
    np.testing.assert_allclose(np.asarray(table), np.log(np.asarray(EMIS))[:, [0, 0, 2]].T * np.array([[1], [0], [1]]),
                               rtol=1e-12)
    g = gaussian_log_likelihoods(jnp.zeros((2, 2)), jnp.ones((2, 2)), jnp.array([[0.0, jnp.nan], [1.0, 0.0]]))
    np.testing.assert_allclose(np.asarray(g[0]), np.full(2, -0.5 * np.log(2 * np.pi)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g[1]), np.full(2, -0.5 - np.log(2 * np.pi)), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# One-step-ahead predictive draws (zoo.posterior_paths' second half)
# --------------------------------------------------------------------------------------------


def test_linear_gaussian_one_step_draws_follow_the_kalman_predictive():
    """Reference: the Kalman increment log p(y_t | y_<t) as a function of y_t is the log-density of
    the one-step predictive N(m, S); its gradient and Hessian at y_t = 0 give S^-1 m and -S^-1."""
    ys = VECTOR.simulate(jax.random.PRNGKey(3), PARAMS, 4)[1]
    n = 4000
    draws = np.asarray(jax.jit(jax.vmap(lambda k: VECTOR.one_step_predictive(k, PARAMS, ys)))(
        jax.random.split(jax.random.PRNGKey(4), n)))
    assert draws.shape == (n, 4, 2)
    comparisons = 4 * 2 * 2

    def log_pred(y_t, t):
        return VECTOR.increments(PARAMS, ys.at[t].set(y_t))[t]

    hessian, grad = jax.jit(jax.hessian(log_pred)), jax.jit(jax.grad(log_pred))
    for t in range(4):
        precision = -np.asarray(hessian(jnp.zeros(2), t))
        cov = np.linalg.inv(precision)
        mean = cov @ np.asarray(grad(jnp.zeros(2), t))
        sd = np.sqrt(np.diag(cov))
        assert np.all(np.abs(draws[:, t].mean(0) - mean) <= mc_tolerance(sd, n, num_comparisons=comparisons))
        # the variance of a sample variance of normal draws is 2 sd^4 / (n - 1)
        var_err = np.abs(draws[:, t].var(0, ddof=1) - sd**2)
        assert np.all(var_err <= mc_tolerance(np.sqrt(2) * sd**2, n, num_comparisons=comparisons))
    paths = VECTOR.path_draws(jax.random.PRNGKey(5), PARAMS, ys)
    assert set(paths) == {"x", "y_one_step"} and paths["x"].shape == (4, 2) and paths["y_one_step"].shape == (4, 2)


def test_hmm_one_step_draws_follow_the_forward_predictive():
    """Reference: P(y_t = s | y_<t) = exp(increment_t) with y_t set to s (the forward algorithm,
    itself checked against enumeration above); draw frequencies in exact binomial intervals."""
    symbols = _hmm_data()[1]
    n = 3000
    draws = np.asarray(jax.jit(jax.vmap(lambda k: SYMBOLS.one_step_predictive(k, HMM_PARAMS, symbols)))(
        jax.random.split(jax.random.PRNGKey(6), n)))
    assert draws.shape == (n, T)
    alpha = DEFAULT_FALSE_FAILURE / (T * 3)
    steps, values = np.meshgrid(np.arange(T), np.arange(3), indexing="ij")
    table = np.exp(np.asarray(jax.jit(jax.vmap(
        lambda t, s: SYMBOLS.increments(HMM_PARAMS, symbols.at[t].set(s))[t]))(steps.ravel(), values.ravel())))
    table = table.reshape(T, 3)
    np.testing.assert_allclose(table.sum(1), 1.0, rtol=1e-10)
    for t in range(T):
        probs = table[t]
        counts = np.bincount(draws[:, t], minlength=3)
        low, high = binom.ppf(alpha / 2, n, probs), binom.isf(alpha / 2, n, probs)
        assert np.all((counts >= low) & (counts <= high)), (t, counts, n * probs)
    paths = SYMBOLS.path_draws(jax.random.PRNGKey(7), HMM_PARAMS, symbols)
    assert paths["x"].shape == (T,) and paths["y_one_step"].shape == (T,)
