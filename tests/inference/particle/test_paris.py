"""PaRIS and Parisian particle Gibbs against exact references (Kalman / RTS with lag-one covariances).

False-failure budget: 1e-4 per test (``tests/helpers.py``), Bonferroni-split over the comparisons
each test makes. Replicates are declared in each test. PaRIS is biased (self-normalisation, O(T/N));
the end-to-end PaRIS test uses T/N = 30/256, where the bias (about 0.1% of Σx², measured) is a
fraction of the Monte Carlo standard error; the exact unbiasedness claims are tested where they
hold: PaRIS given its cloud (= FFBSm), and one PPG iteration from a stationary reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from inference import exact
from inference.particle import filter as F
from inference.particle import paris as P
from tests.helpers import mc_tolerance, z_quantile
from tests.inference.particle.models import RHO, SIGMA, ar1, ar1_kalman_params

# The particle smoothers' statistical tests run long: they compile as users' programs do
# (``xla_optimized``, tests/conftest.py). The runner's shape test and the validation errors at the
# end run a few sweeps, where compilation is the time: they keep the suite's default.
optimized = pytest.mark.xla_optimized

FALSE_FAILURE = 1e-4


def _ar1_data(key, num_steps, missing=()):
    ssm = ar1()
    _, ys = ssm.simulate(key, {"rho": RHO, "sigma": SIGMA}, num_steps)
    ys = ys.at[jnp.asarray(missing, dtype=int)].set(jnp.nan) if len(missing) else ys
    return ssm, ys


def _exact_moments(ys):
    """E[Σ x_t, Σ x_t², Σ x_{t-1} x_t | y] from the RTS smoother with lag-one covariances."""
    res = exact.rts_smoother(ar1_kalman_params(), ys[:, None])
    m, v, c = res.smoothed_means[:, 0], res.smoothed_covs[:, 0, 0], res.smoothed_cross_covs[:, 0, 0]
    return np.array([m.sum(), (v + m**2).sum(), (c + m[:-1] * m[1:]).sum()])


def _params():
    return {"rho": jnp.asarray(RHO), "sigma": jnp.asarray(SIGMA)}


def _bound(ssm):
    return P.transition_log_bound(lambda t, xp: ssm.transition(_params(), t, xp))


# ------------------------------------------------------------------------------------------
# The τ recursion and the backward kernel, given a cloud
# ------------------------------------------------------------------------------------------


def _ffbsm(fk, particles, log_weights, functional):
    """Exact forward-filtering backward-smoothing expectation of ``functional`` given a cloud."""
    num_steps = log_weights.shape[0]
    ws = jnp.exp(log_weights[-1])
    total = jnp.zeros(functional.dim)
    for t in range(num_steps - 1, 0, -1):
        xp, x = particles[t - 1], particles[t]
        logits = jax.vmap(lambda xi: log_weights[t - 1] + jax.vmap(lambda a: fk.transition_log_density(t, a, xi))(xp))(x)
        lam = jax.nn.softmax(logits, axis=-1)  # (N_t, N_{t-1})
        inc = jax.vmap(lambda xi: jax.vmap(lambda a: functional.increment(t, a, xi))(xp))(x)  # (N, N, d)
        total = total + jnp.einsum("i,ik,ikd->d", ws, lam, inc)
        ws = ws @ lam
    return total + ws @ jax.vmap(functional.initial)(particles[0])


@optimized
@pytest.mark.parametrize("method", ["exact", "reject"])
def test_paris_recursion_is_unbiased_for_ffbsm_given_the_cloud(key, method):
    """Given the filter's cloud, E[Σ W τ_{T-1}] = FFBSm exactly; 4000 replicates of the backward draws."""
    ssm, ys = _ar1_data(jax.random.fold_in(key, 1), 15, missing=(4, 5))
    fk = ssm.feynman_kac(_params(), ys)
    out = F.run(jax.random.fold_in(key, 2), fk, 12, resampler="multinomial", ess_threshold=1.0, keep_paths=True)
    functional = P.moments_functional(())
    reference = np.asarray(jax.jit(lambda: _ffbsm(fk, out.particles, out.log_weights, functional))())
    cfg = P._check_backward(P.BackwardConfig(2, method, _bound(ssm), max_tries=2, fallback_chunk=5))

    def paris_on_cloud(k):
        def body(carry, inputs):
            tau, fallbacks = carry
            sub, t, x_prev, lw_prev, x = inputs
            prev = F.FilterState(x_prev, lw_prev, jnp.zeros(()), t - 1)
            idx, nfb = P._backward_indices(sub, t, prev, x, fk, cfg)
            return (P.tau_update(functional, t, tau, x_prev, x, idx), fallbacks + nfb), None

        tau0 = jax.vmap(functional.initial)(out.particles[0])
        steps = ys.shape[0] - 1
        inputs = (jax.random.split(k, steps), jnp.arange(1, steps + 1), out.particles[:-1], out.log_weights[:-1],
                  out.particles[1:])
        (tau, fallbacks), _ = jax.lax.scan(body, (tau0, jnp.zeros((), jnp.int32)), inputs)
        return jnp.exp(out.log_weights[-1]) @ tau, fallbacks

    reps = 4000
    est, fallbacks = jax.jit(jax.vmap(paris_on_cloud))(jax.random.split(jax.random.fold_in(key, 3), reps))
    est = np.asarray(est)
    tol = mc_tolerance(est.std(axis=0, ddof=1), reps, false_failure=FALSE_FAILURE, num_comparisons=3)
    assert np.all(np.abs(est.mean(axis=0) - reference) <= tol), (est.mean(axis=0), reference, tol)
    if method == "reject":
        assert int(np.asarray(fallbacks).sum()) > 0  # max_tries=2 exercises the exact fallback


def _assert_counts_match(idx, probs, draws):
    """Each cell's count lies in its exact Binomial(draws, p) central interval (budget split over cells)."""
    counts = np.stack([np.bincount(np.asarray(row), minlength=probs.shape[1]) for row in idx])
    lo, hi = stats.binom.interval(1 - FALSE_FAILURE / probs.size, draws, probs)
    assert np.all((lo <= counts) & (counts <= hi)), (counts, draws * probs)


@optimized
@pytest.mark.parametrize("max_tries", [1, 64])
def test_reject_backward_draws_follow_the_backward_kernel(key, max_tries):
    """Frequencies of accept–reject draws (with fallback) = rows of Λ; 6000 draws per row."""
    ssm, ys = _ar1_data(jax.random.fold_in(key, 4), 2)
    fk = ssm.feynman_kac(_params(), ys)
    x_prev = jax.random.normal(jax.random.fold_in(key, 5), (6,)) * 1.5
    log_w = jax.random.normal(jax.random.fold_in(key, 6), (6,))
    x = jnp.array([-2.0, 0.3, 2.5])
    draws = 6000
    t = jnp.asarray(1)
    bounds = jax.vmap(lambda xp: _bound(ssm)(t, xp))(x_prev)
    idx, nfb = jax.jit(lambda k: P.backward_indices_reject(k, t, log_w, x_prev, x, fk.transition_log_density, bounds,
                                                           draws, max_tries=max_tries, fallback_chunk=97))(
        jax.random.fold_in(key, 7))
    probs = np.asarray(jax.nn.softmax(log_w[None] + jax.vmap(
        lambda xi: jax.vmap(lambda a: fk.transition_log_density(t, a, xi))(x_prev))(x), axis=-1))
    _assert_counts_match(idx, probs, draws)
    if max_tries == 1:
        assert int(nfb) > 0


@optimized
def test_exact_backward_draws_follow_the_backward_kernel(key):
    ssm, ys = _ar1_data(jax.random.fold_in(key, 8), 2)
    fk = ssm.feynman_kac(_params(), ys)
    x_prev = jax.random.normal(jax.random.fold_in(key, 9), (5,))
    log_w = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.25, 0.15]))
    x = jnp.array([-1.0, 1.5])
    draws = 6000
    t = jnp.asarray(1)
    idx = P.backward_indices_exact(jax.random.fold_in(key, 10), t, log_w, x_prev, x, fk.transition_log_density, draws)
    probs = np.asarray(jax.nn.softmax(log_w[None] + jax.vmap(
        lambda xi: jax.vmap(lambda a: fk.transition_log_density(t, a, xi))(x_prev))(x), axis=-1))
    _assert_counts_match(idx, probs, draws)


# ------------------------------------------------------------------------------------------
# End to end against Kalman / RTS
# ------------------------------------------------------------------------------------------


@optimized
def test_paris_smoothed_functionals_match_rts(key):
    """PaRIS (accept–reject backward draws, N=256, M=2) over 64 replicates vs RTS, with missing y."""
    ssm, ys = _ar1_data(jax.random.fold_in(key, 11), 30, missing=(7, 8, 20))
    fk = ssm.feynman_kac(_params(), ys)
    cfg = P.BackwardConfig(2, "reject", _bound(ssm))
    reps = 64
    run = jax.jit(jax.vmap(lambda k: P.smooth(k, fk, 256, P.moments_functional(()), backward=cfg,
                                              resampler="systematic", ess_threshold=0.5).estimate))
    est = np.asarray(run(jax.random.split(jax.random.fold_in(key, 12), reps)))
    reference = _exact_moments(ys)
    tol = mc_tolerance(est.std(axis=0, ddof=1), reps, false_failure=FALSE_FAILURE, num_comparisons=3)
    assert np.all(np.abs(est.mean(axis=0) - reference) <= tol), (est.mean(axis=0), reference, tol)


@optimized
def test_ppg_iteration_from_a_stationary_reference_is_unbiased(key):
    """One PPG iteration from an exact posterior draw: E[Π] = E[h | y] (score and moments), N=16.

    The score's smoothed value is the gradient of the Kalman log-likelihood (Fisher's identity).
    300 replicates, missing observations included.
    """
    ssm, ys = _ar1_data(jax.random.fold_in(key, 13), 40, missing=(3, 17, 18))
    params = _params()
    fk = ssm.feynman_kac(params, ys)
    functional = P.concat_functionals(P.score_functional(ssm, ys, params), P.moments_functional(()))

    def one(k):
        k_ref, k_ppg = jax.random.split(k)
        ref = exact.lgssm_posterior_sample(k_ref, ar1_kalman_params(), ys[:, None])[:, 0]
        return P.ppg_step(k_ppg, ref, fk, 16, functional, backward=P.BackwardConfig(2, "exact"))[1].estimate

    reps = 300
    est = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.fold_in(key, 14), reps)))
    score = jax.grad(lambda p: exact.kalman_filter(ar1_kalman_params(rho=p["rho"], sigma=p["sigma"]),
                                                   ys[:, None]).log_likelihood)(params)
    reference = np.concatenate([[float(score["rho"]), float(score["sigma"])], _exact_moments(ys)])
    tol = mc_tolerance(est.std(axis=0, ddof=1), reps, false_failure=FALSE_FAILURE, num_comparisons=5)
    assert np.all(np.abs(est.mean(axis=0) - reference) <= tol), (est.mean(axis=0), reference, tol)


@optimized
def test_ppg_rollout_is_less_biased_than_paris_at_small_n(key):
    """The paper's claim at N=16, T=100: |bias| of the PPG roll-out (k0=5, k=25) < |bias| of PaRIS.

    Replicates: PaRIS 200, PPG 100. Asserts, for Σx² and Σx_{t-1}x_t, that |bias_PaRIS| - |bias_PPG|
    exceeds z standard errors of that difference (z for a 1e-4 budget over the 2 comparisons).
    """
    ssm, ys = _ar1_data(jax.random.fold_in(key, 15), 100)
    fk = ssm.feynman_kac(_params(), ys)
    functional = P.moments_functional(())
    cfg = P.BackwardConfig(2, "exact")
    paris = np.asarray(jax.jit(jax.vmap(lambda k: P.smooth(k, fk, 16, functional, backward=cfg).estimate))(
        jax.random.split(jax.random.fold_in(key, 16), 200)))[:, 1:]
    ppg = np.asarray(jax.jit(jax.vmap(lambda k: P.rollout(k, fk, 16, functional, burn_in=5, num_iterations=25,
                                                          backward=cfg).estimate))(
        jax.random.split(jax.random.fold_in(key, 17), 100)))[:, 1:]
    reference = _exact_moments(ys)[1:]
    bias_paris, bias_ppg = paris.mean(0) - reference, ppg.mean(0) - reference
    se = np.sqrt(paris.var(0, ddof=1) / 200 + ppg.var(0, ddof=1) / 100)
    z = z_quantile(FALSE_FAILURE, 2)
    assert np.all(np.abs(bias_paris) - np.abs(bias_ppg) > z * se), (bias_paris, bias_ppg, se)


# ------------------------------------------------------------------------------------------
# Learning
# ------------------------------------------------------------------------------------------


@optimized
def test_markov_score_climbing_reaches_the_kl_minimiser(key):
    """MSC fits q_λ(x) = N(x_0; m0, s0²) Π N(x_t; a x_{t-1}, s²) to p(x | y); the minimiser of
    KL(p ‖ q) has a closed form in the RTS moments. 8 independent chains; the mean of their Polyak
    averages must be within t-quantile × (spread across chains) / √8 of it."""
    ssm, ys = _ar1_data(jax.random.fold_in(key, 18), 50)
    fk = ssm.feynman_kac(_params(), ys)
    res = exact.rts_smoother(ar1_kalman_params(), ys[:, None])
    m, v, c = res.smoothed_means[:, 0], res.smoothed_covs[:, 0, 0], res.smoothed_cross_covs[:, 0, 0]
    e_xx = v + m**2
    a_star = float((c + m[:-1] * m[1:]).sum() / e_xx[:-1].sum())
    s2_star = float((e_xx[1:].sum() - 2 * a_star * (c + m[:-1] * m[1:]).sum() + a_star**2 * e_xx[:-1].sum())
                    / (ys.shape[0] - 1))
    star = np.array([float(m[0]), 0.5 * np.log(float(v[0])), a_star, 0.5 * np.log(s2_star)])

    family = P.MarkovFamily(
        initial_log_density=lambda lam, x0: jax.scipy.stats.norm.logpdf(x0, lam[0], jnp.exp(lam[1])),
        transition_log_density=lambda lam, t, xp, x: jax.scipy.stats.norm.logpdf(x, lam[2] * xp, jnp.exp(lam[3])))
    sa = P.SAConfig(step_size=0.5)

    def one(k):
        lams, _ = P.markov_score_climbing(k, fk, family, jnp.zeros(4), num_particles=16, num_iterations=300, sa=sa,
                                          backward=P.BackwardConfig(2, "exact"))
        return lams[150:].mean(axis=0)

    chains = 8
    lam_bar = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.fold_in(key, 19), chains)))
    t_q = stats.t.isf(FALSE_FAILURE / (2 * 4), chains - 1)
    tol = t_q * lam_bar.std(axis=0, ddof=1) / np.sqrt(chains)
    assert np.all(np.abs(lam_bar.mean(axis=0) - star) <= tol), (lam_bar.mean(axis=0), star, tol)


# ------------------------------------------------------------------------------------------
# Runner and validation
# ------------------------------------------------------------------------------------------


def test_run_ppg_smoothing_at_fixed_params_on_several_sequences(key):
    """learning='none' on data (S=2, T=20) with NaNs: shapes, dims, the exact-free log-likelihood path."""
    import inference

    ssm = ar1()
    ys = jax.vmap(lambda k: ssm.simulate(k, {"rho": RHO, "sigma": SIGMA}, 20)[1])(jax.random.split(key, 2))
    ys = ys.at[0, 5].set(jnp.nan)
    idata = inference.fit(ssm, ys, method="ppg", learning="none", params={"rho": RHO, "sigma": SIGMA},
                          num_particles=8, num_samples=6, burn_in=2, num_chains=2, backward="exact", progress=False)
    assert idata.posterior["x"].shape == (2, 6, 2, 20)
    assert idata.sample_stats["ess"].shape == (2, 6, 2, 20)
    assert idata.log_likelihood["y"].shape == (2, 6, 2, 20)
    assert np.isfinite(idata.log_likelihood["y"].values).all()
    assert set(idata.sample_stats) >= {"score_rho", "score_sigma", "smoothed_sum_xx", "log_evidence"}
    assert float(idata.constant_data["param_rho"]) == pytest.approx(RHO)
    assert not np.isnan(idata.posterior["x"].values).any()


def test_validation_errors(key):
    import inference

    ssm, ys = _ar1_data(key, 10)
    fk = ssm.feynman_kac(_params(), ys)
    with pytest.raises(ValueError, match="backward"):
        P.smooth(key, fk, 8, P.moments_functional(()), backward=P.BackwardConfig(2, "bogus"))
    with pytest.raises(ValueError, match="log_bound"):
        P.smooth(key, fk, 8, P.moments_functional(()), backward=P.BackwardConfig(2, "reject", None))
    with pytest.raises(ValueError, match="num_backward"):
        P.smooth(key, fk, 8, P.moments_functional(()), backward=P.BackwardConfig(0, "exact"))
    with pytest.raises(ValueError, match="burn_in"):
        P.rollout(key, fk, 8, P.moments_functional(()), burn_in=5, num_iterations=5)
    with pytest.raises(ValueError, match="params"):
        inference.fit(ssm, ys, method="ppg", learning="none", progress=False)
    with pytest.raises(ValueError, match="learning"):
        inference.fit(ssm, ys, method="ppg", learning="em", progress=False)
    with pytest.raises(ValueError, match="num_particles"):
        inference.fit(ssm, ys, method="ppg", num_particles=1, progress=False)
    with pytest.raises(ValueError, match="step_exponent"):
        inference.fit(ssm, ys, method="ppg", step_exponent=0.4, progress=False)
    with pytest.raises(TypeError, match="does not accept"):
        inference.fit(ssm, ys, method="ppg", num_particle=8, progress=False)
