"""zoo.processes.sde: steppers against diffrax and exact solutions on the same Brownian path,
reversible Heun's inverse, Brownian queries, the noise-site distribution and its ELBO, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import Trace_ELBO

from tests.helpers import mc_tolerance, z_quantile
from zoo.processes import sde

# A nonlinear SDE with multiplicative diagonal noise whose g_i depends on y_i only (commutative).
NONLINEAR = sde.SDE(drift=lambda t, y: jnp.sin(y) - y + 0.1 * t, diffusion=lambda t, y: 0.3 * jnp.sqrt(1.0 + y**2))


def _ou_exact_pairs(key, theta, num_paths, num_fine, h):
    """Fine-grid Brownian increments ΔW and the exact OU noise I = ∫ e^{-θ(t_{n+1}-s)} dW(s) over each
    fine step, drawn jointly (exact law): returns ``(dW, I)`` of shape ``(num_paths, num_fine)``."""
    var_w = h
    var_i = (1 - np.exp(-2 * theta * h)) / (2 * theta)
    cov = (1 - np.exp(-theta * h)) / theta
    chol = np.linalg.cholesky(np.array([[var_w, cov], [cov, var_i]]))
    eps = jax.random.normal(key, (num_paths, num_fine, 2))
    pairs = eps @ jnp.asarray(chol).T
    return pairs[..., 0], pairs[..., 1]


def _slope_and_se(errors):
    """Least-squares slope of log E|err| against log h (errors: (num_h, num_paths), h halving per row),
    and its Monte Carlo standard error by the delta method over the paths' joint spread."""
    means = errors.mean(axis=1)
    log_h = -np.log(2.0) * np.arange(errors.shape[0])
    w = (log_h - log_h.mean()) / np.sum((log_h - log_h.mean()) ** 2)
    slope = float(np.sum(w * np.log(means)))
    grad = w / means  # d slope / d mean_k
    cov = np.cov(errors) / errors.shape[1]
    return slope, float(np.sqrt(grad @ cov @ grad))


ORDER_BIAS = 0.05  # declared pre-asymptotic allowance on an estimated strong order


def _compare_with_diffrax(schemes, sde_, key, shape, y0):
    tree = sde.brownian_tree(key, 0.0, 1.0, shape)
    times = jnp.linspace(0.0, 1.0, 65)
    increments = sde.grid_increments(tree, times)
    for name, scheme in schemes.items():
        ours = scheme(sde_, y0, increments, dt=1 / 64)
        theirs = sde.solve(sde_, y0, times, tree, solver=name, dt0=1 / 64)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-13, err_msg=name)


def test_euler_and_reversible_heun_equal_diffrax_on_the_same_brownian_path():
    schemes = {"euler": sde.euler_maruyama, "reversible_heun": lambda *a, **k: sde.reversible_heun(*a, **k)[0]}
    _compare_with_diffrax(schemes, NONLINEAR, jax.random.PRNGKey(1), (2,), jnp.array([0.1, -0.4]))


@pytest.mark.slow
def test_heun_and_milstein_equal_diffrax_on_the_same_brownian_path():
    _compare_with_diffrax({"heun": sde.heun, "milstein": sde.milstein}, NONLINEAR, jax.random.PRNGKey(1), (2,),
                          jnp.array([0.1, -0.4]))
    # general noise: one Brownian motion drives both components
    general = sde.SDE(lambda t, y: -y, lambda t, y: jnp.stack([0.5 + 0 * y[0], 0.2 * y[0]])[:, None], "general")
    _compare_with_diffrax({"euler": sde.euler_maruyama, "milstein": sde.milstein}, general, jax.random.PRNGKey(2),
                          (1,), jnp.array([0.1, -0.4]))


def test_euler_maruyama_strong_order_one_on_ou_against_the_exact_solution(key):
    """OU dX = -θX dt + σ dW (additive noise: EM strong order 1), exact solution on the same path."""
    theta, sigma, horizon, num_paths = 1.5, 0.8, 1.0, 2000
    num_fine = 256
    h_fine = horizon / num_fine
    dw, noise = _ou_exact_pairs(key, theta, num_paths, num_fine, h_fine)
    x0 = 1.0
    decay = np.exp(-theta * h_fine)
    exact = jax.lax.scan(lambda x, i: (decay * x + sigma * i, None), jnp.full(num_paths, x0), noise.T)[0]
    ou = sde.SDE(lambda t, x: -theta * x, lambda t, x: sigma)
    errors = []
    for coarsen in (8, 16, 32, 64):  # h = 1/32 ... 1/4 (coarsest first below)
        coarse = dw.reshape(num_paths, num_fine // coarsen, coarsen).sum(-1)
        paths = jax.vmap(lambda inc: sde.euler_maruyama(ou, jnp.asarray(x0), inc, dt=h_fine * coarsen))(coarse)
        errors.append(np.abs(np.asarray(paths[:, -1]) - np.asarray(exact)))
    slope, se = _slope_and_se(np.asarray(errors[::-1]))  # rows: h = 1/4, 1/8, 1/16, 1/32
    assert abs(slope - 1.0) <= ORDER_BIAS + z_quantile() * se, (slope, se)
    assert se < 0.05, se  # the check is informative


def test_em_order_half_and_milstein_order_one_on_gbm(key):
    """GBM dX = μX dt + σX dW, X(T) = X0 exp((μ - σ²/2)T + σW(T)) on the same path."""
    mu, sigma, horizon, num_paths, num_fine = 0.5, 0.5, 1.0, 2000, 1024
    gbm = sde.SDE(lambda t, x: mu * x, lambda t, x: sigma * x)
    dw = jnp.sqrt(horizon / num_fine) * jax.random.normal(key, (num_paths, num_fine))
    exact = np.exp((mu - 0.5 * sigma**2) * horizon + sigma * np.asarray(dw.sum(1)))
    for scheme, order in ((sde.euler_maruyama, 0.5), (sde.milstein, 1.0)):
        errors = []
        for coarsen in (128, 64, 32, 16):  # h = 1/4 ... 1/32
            coarse = dw.reshape(num_paths, num_fine // coarsen, coarsen).sum(-1)
            paths = jax.vmap(lambda inc: scheme(gbm, jnp.asarray(1.0), inc, dt=horizon * coarsen / num_fine))(coarse)
            errors.append(np.abs(np.asarray(paths[:, -1]) - exact))
        slope, se = _slope_and_se(np.asarray(errors))
        assert abs(slope - order) <= ORDER_BIAS + z_quantile(num_comparisons=2) * se, (scheme.__name__, slope, se)
        assert se < 0.05, se


def test_reversible_heun_backward_reconstructs_the_initial_state():
    y0 = jnp.array([0.3, -1.2, 0.7])
    dt = 0.01
    increments = sde.brownian_increments(jax.random.PRNGKey(3), 500, dt, (3,))
    path, final = sde.reversible_heun(NONLINEAR, y0, increments, dt=dt)
    back, initial = sde.reversible_heun_backward(NONLINEAR, final, increments, dt=dt)
    assert float(jnp.max(jnp.abs(initial.y - y0))) < 1e-10
    assert float(jnp.max(jnp.abs(initial.z - y0))) < 1e-10
    np.testing.assert_allclose(back, path, rtol=0, atol=1e-10)


def test_reversible_heun_parasitic_mode_on_a_dissipative_ode():
    """y' = λy, λ < 0 (the docstring's caveat): the scheme is the linear map
    [[1+λh, ½(λh)²], [2, λh-1]] on (y, z), whose second eigenvalue has modulus > 1."""
    lam, h, n = -1.0, 0.05, 200
    ode = sde.SDE(lambda t, y: lam * y, lambda t, y: jnp.zeros_like(y))
    _, final = sde.reversible_heun(ode, jnp.ones(1), jnp.zeros((n, 1)), dt=h)
    M = np.array([[1 + lam * h, 0.5 * (lam * h) ** 2], [2.0, lam * h - 1]])
    expected = np.linalg.matrix_power(M, n) @ np.ones(2)
    np.testing.assert_allclose([float(final.y[0]), float(final.z[0])], expected, rtol=1e-9)
    assert max(abs(np.linalg.eigvals(M))) > 1 and abs(expected[1]) > 1  # the auxiliary state grows


def test_brownian_tree_queries_are_consistent():
    tree = sde.brownian_tree(jax.random.PRNGKey(4), 0.0, 2.0, (3,))
    a, b, c = 0.13, 0.71, 1.9
    np.testing.assert_allclose(tree.evaluate(a, c), tree.evaluate(a, b) + tree.evaluate(b, c), rtol=0, atol=1e-13)
    np.testing.assert_array_equal(tree.evaluate(a, b), tree.evaluate(a, b))
    times = jnp.linspace(0.0, 2.0, 17)
    increments = sde.grid_increments(tree, times)
    np.testing.assert_allclose(increments.sum(0), tree.evaluate(0.0, 2.0), rtol=0, atol=1e-13)
    # in law: Var W(s, t) = t - s and disjoint increments uncorrelated, over many trees
    num = 2000
    s, t, u = 0.3, 1.1, 1.6

    def draws(k):
        tr = sde.brownian_tree(k, 0.0, 2.0, (), tol=2.0**-8)
        return tr.evaluate(s, t), tr.evaluate(t, u)

    first, second = (np.asarray(x) for x in jax.vmap(draws)(jax.random.split(jax.random.PRNGKey(5), num)))
    # E[W²] = t - s with sd √2 (t - s); E[W1 W2] = 0 with sd √((t-s)(u-t))
    tol = mc_tolerance(np.sqrt(2) * (t - s), num, num_comparisons=3)
    assert abs(np.mean(first**2) - (t - s)) <= tol
    assert abs(np.mean(second**2) - (u - t)) <= mc_tolerance(np.sqrt(2) * (u - t), num, num_comparisons=3)
    assert abs(np.mean(first * second)) <= mc_tolerance(np.sqrt((t - s) * (u - t)), num, num_comparisons=3)


def test_sra1_reference_solve_agrees_with_a_fine_euler_grid_on_the_same_path():
    """SRA1 (strong order 1.5, additive noise) at dt = 1/64 against EM at dt = 2^-13 on the same
    tree: EM's error is ~dt (additive noise), SRA1's ~dt^1.5; both sit within 1e-3 of the solution."""
    ou = sde.SDE(lambda t, y: -2.0 * y + jnp.sin(t), lambda t, y: 0.5 * jnp.ones_like(y))
    tree = sde.brownian_tree(jax.random.PRNGKey(6), 0.0, 1.0, (2,), tol=2.0**-16, levy_area=True)
    times = jnp.linspace(0.0, 1.0, 2**13 + 1)
    fine = sde.euler_maruyama(ou, jnp.ones(2), sde.grid_increments(tree, times), dt=2.0**-13)
    reference = sde.solve(ou, jnp.ones(2), times[:: 2**10], tree, solver="sra1", dt0=1 / 64)
    np.testing.assert_allclose(reference, fine[:: 2**10], atol=1e-3)
    with pytest.raises(ValueError, match="path: solver 'sra1' needs a Brownian path with space-time"):
        sde.solve(ou, jnp.ones(2), times[:: 2**10], sde.brownian_tree(jax.random.PRNGKey(6), 0.0, 1.0, (2,)),
                  solver="sra1", dt0=1 / 64)


def test_em_transition_is_the_em_step_law():
    y = jnp.array([0.2, -0.5])
    law = sde.em_transition(NONLINEAR, 0.3, y, 0.1)
    dw = jnp.array([0.05, -0.2])
    nxt = sde.em_step(NONLINEAR, 0.3, y, dw, 0.1)
    g = 0.3 * jnp.sqrt(1 + y**2)
    expected = dist.Normal(0.0, jnp.sqrt(0.1)).log_prob(dw).sum() - jnp.log(g).sum()
    np.testing.assert_allclose(law.log_prob(nxt), expected, rtol=1e-12)
    path = sde.euler_maruyama(NONLINEAR, y, jnp.stack([dw, -dw]), dt=0.1, t0=0.3)
    assert sde.em_log_densities(NONLINEAR, path, dt=0.1).shape == (2,)
    np.testing.assert_allclose(sde.em_log_densities(NONLINEAR, path, dt=0.1, t0=0.3)[0], expected, rtol=1e-12)


def _control(t, y, c):
    return -1.5 * y + c[0] + 0.2 * t


def test_noise_site_law_girsanov_identity_and_path(key):
    ou = sde.SDE(lambda t, y: -y, lambda t, y: 0.7 * jnp.ones_like(y))
    dt, n, batch = 0.05, 40, 3
    y0 = jnp.array([[0.5], [-0.2], [1.0]])
    context = jnp.broadcast_to(jnp.linspace(-1, 1, n)[None, :, None], (batch, n, 1))
    prior = sde.EulerMaruyamaIncrements(ou, y0, dt=dt, num_steps=n)
    guide = sde.EulerMaruyamaIncrements(ou, y0, dt=dt, num_steps=n, control=_control, context=context)
    assert guide.batch_shape == (batch,) and guide.event_shape == (n, 1)
    value = guide.sample(key, (2,))
    assert value.shape == (2, batch, n, 1)
    # log q by an explicit loop over the steps of one path
    paths = guide.path(value)
    np.testing.assert_allclose(paths[1, 2], sde.euler_maruyama(ou, y0[2], value[1, 2], dt=dt), rtol=1e-13)
    loop = 0.0
    for j in range(n):
        u = _control(j * dt, paths[1, 2, j], context[2, j])
        loop += dist.Normal(u * dt, np.sqrt(dt)).log_prob(value[1, 2, j]).sum()
    np.testing.assert_allclose(guide.log_prob(value)[1, 2], loop, rtol=1e-12)
    # log q - log p = Σ (u ΔW - ½ u² dt) exactly; its mean under q is the Girsanov KL E Σ ½ u² dt
    u = guide.control_values(value)
    identity = (u * value - 0.5 * u**2 * dt).sum((-1, -2))
    np.testing.assert_allclose(guide.log_prob(value) - prior.log_prob(value), identity, rtol=1e-10, atol=1e-12)
    draws = guide.sample(jax.random.PRNGKey(7), (4000,))
    u = guide.control_values(draws)
    martingale = np.asarray((guide.log_prob(draws) - prior.log_prob(draws)) - (0.5 * u**2 * dt).sum((-1, -2)))
    tol = mc_tolerance(martingale.std(0), draws.shape[0], num_comparisons=batch)
    assert np.all(np.abs(martingale.mean(0)) <= tol), (martingale.mean(0), tol)
    # the prior law: iid N(0, dt)
    iid = np.asarray(prior.sample(jax.random.PRNGKey(8), (2000,)))
    assert abs(iid.var() - dt) <= mc_tolerance(np.sqrt(2) * dt, iid.size)


def test_noise_site_elbo_against_the_exact_evidence():
    """A latent EM path of OU observed once at the end: log Z is Gaussian, the noise-site posterior
    is N(m, Σ) over the increments; a guide N(m, dt·I) (the open-loop control u_n = m_n/dt) has
    ELBO = log Z - KL(N(m, dt I) || N(m, Σ)) exactly, and every guide's ELBO <= log Z."""
    theta, sigma, dt, n, s_obs, y_obs = 0.8, 0.6, 0.1, 20, 0.2, 0.9
    ou = sde.SDE(lambda t, z: -theta * z, lambda t, z: sigma * jnp.ones_like(z))
    a = 1 - theta * dt
    weights = sigma * a ** np.arange(n - 1, -1, -1)  # z_N = Σ_n weights_n ΔW_n (z_0 = 0)
    var_y = dt * np.sum(weights**2) + s_obs**2
    log_z = float(dist.Normal(0.0, np.sqrt(var_y)).log_prob(y_obs))
    gain = dt * weights / var_y
    post_mean = gain * y_obs
    post_cov = dt * np.eye(n) - dt * np.outer(gain, weights)
    kl = 0.5 * (np.trace(np.linalg.solve(post_cov, dt * np.eye(n))) - n + np.linalg.slogdet(post_cov)[1] - n * np.log(dt))

    def model(y=None, shift=None):
        d = sde.EulerMaruyamaIncrements(ou, jnp.zeros(1), dt=dt, num_steps=n)
        dw = numpyro.sample("dW", d)
        numpyro.sample("y", dist.Normal(d.path(dw)[-1, 0], s_obs), obs=y)

    def guide(y=None, shift=None):
        ts = dt * np.arange(n)
        control = (lambda t, z, c: c) if shift is not None else (lambda t, z, c: jnp.zeros(1))
        ctx = jnp.asarray(shift)[:, None] if shift is not None else None
        numpyro.sample("dW", sde.EulerMaruyamaIncrements(ou, jnp.zeros(1), dt=dt, num_steps=n, control=control,
                                                         context=ctx))
        del ts

    def elbos(shift, num):
        keys = jax.random.split(jax.random.PRNGKey(9), num)
        loss = Trace_ELBO()
        return -np.asarray(jax.vmap(lambda k: loss.loss(k, {}, model, guide, y_obs, shift=shift))(keys))

    optimal = elbos(post_mean / dt, 4000)
    tol = mc_tolerance(optimal.std(), optimal.size, num_comparisons=2)
    assert abs(optimal.mean() - (log_z - kl)) <= tol, (optimal.mean(), log_z - kl, tol)
    assert kl > 0.01  # the family cannot match the posterior's smaller variance in discrete time
    prior_guide = elbos(None, 4000)
    assert prior_guide.mean() + mc_tolerance(prior_guide.std(), prior_guide.size, num_comparisons=2) < log_z


def test_named_errors():
    ou = sde.SDE(lambda t, y: -y, lambda t, y: 0.5)
    inc = jnp.zeros((5, 1))
    with pytest.raises(ValueError, match="dt: expected a finite step size > 0"):
        sde.euler_maruyama(ou, jnp.zeros(1), inc, dt=0.0)
    with pytest.raises(ValueError, match="dt: expected a finite step size > 0"):
        sde.brownian_increments(jax.random.PRNGKey(0), 5, -0.1)
    with pytest.raises(ValueError, match="num_steps"):
        sde.brownian_increments(jax.random.PRNGKey(0), 0, 0.1)
    with pytest.raises(ValueError, match="sigma: expected finite non-negative"):
        sde.check_scale(-0.2, "sigma")
    with pytest.raises(ValueError, match="sde.noise"):
        sde.euler_maruyama(sde.SDE(ou.drift, ou.diffusion, "scalar"), jnp.zeros(1), inc, dt=0.1)
    with pytest.raises(ValueError, match="increments: diagonal noise needs shape"):
        sde.euler_maruyama(ou, jnp.zeros(2), inc, dt=0.1)
    general = sde.SDE(lambda t, y: -y, lambda t, y: jnp.eye(2), "general")
    with pytest.raises(ValueError, match="Milstein without Lévy areas"):
        sde.milstein(general, jnp.zeros(2), jnp.zeros((5, 2)), dt=0.1)
    with pytest.raises(ValueError, match="jitter"):
        sde.em_transition(sde.SDE(lambda t, y: -y, lambda t, y: jnp.ones((2, 1)), "general"), 0.0, jnp.zeros(2), 0.1)
    with pytest.raises(ValueError, match="t1: expected t1 > t0"):
        sde.brownian_tree(jax.random.PRNGKey(0), 1.0, 1.0)
    with pytest.raises(ValueError, match="times: expected strictly increasing"):
        sde.grid_increments(sde.brownian_tree(jax.random.PRNGKey(0), 0.0, 1.0), jnp.array([0.0, 0.5, 0.4]))
    with pytest.raises(ValueError, match="context: expected shape"):
        sde.EulerMaruyamaIncrements(ou, jnp.zeros((3, 1)), dt=0.1, num_steps=5, control=_control, context=jnp.zeros((3, 4, 1)))
    with pytest.raises(ValueError, match="path: diagonal noise needs a Brownian path of shape"):
        sde.solve(ou, jnp.zeros(2), jnp.linspace(0, 1, 3), sde.brownian_tree(jax.random.PRNGKey(0), 0.0, 1.0, (3,)), dt0=0.1)
    with pytest.raises(ValueError, match="solver: expected one of"):
        sde.solve(ou, jnp.zeros(1), jnp.linspace(0, 1, 3), sde.brownian_tree(jax.random.PRNGKey(0), 0.0, 1.0, (1,)),
                  solver="rk4", dt0=0.1)
