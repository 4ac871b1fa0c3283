"""zoo.nets.plrnn: the AL-RNN and shPLRNN maps, their piecewise-linear analysis against brute-force
references, boundedness of the clipped shPLRNN, and bounded GTF gradients on a chaotic map."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.handlers import seed, trace

from inference.losses import Forcing, forced_rollout, gtf_alpha, jacobian_growth
from zoo.nets import plrnn


def _alrnn_weights(key, m=6, p=2, n=3, w_scale=0.6):
    net = plrnn.ALRNN(latent_dim=m, num_relu=p, obs_dim=n)
    params = dict(net.init(key, jnp.zeros(m))["params"])
    k1, k2 = jax.random.split(key)
    params["W"] = w_scale * jax.random.normal(k1, (m, m)) / math.sqrt(m)  # well away from the tiny init
    params["h"] = 0.5 * jax.random.normal(k2, (m,))
    return net, params, plrnn.alrnn_weights(params, p)


def test_alrnn_module_equals_the_plain_step_and_its_jacobian(key):
    net, params, w = _alrnn_weights(key)
    for z in np.asarray(jax.random.normal(key, (5, 6))):
        z = jnp.asarray(z)
        np.testing.assert_allclose(net.apply({"params": params}, z), plrnn.alrnn_step(w, z), rtol=1e-13)
        np.testing.assert_allclose(plrnn.alrnn_jacobian(w, z), jax.jacfwd(lambda v: plrnn.alrnn_step(w, v))(z), atol=1e-13)
    x = jnp.ones(3)
    np.testing.assert_allclose(net.apply({"params": params}, x, method="initial_state"), plrnn.alrnn_initial_state(w, x))
    with pytest.raises(ValueError, match="num_relu"):
        plrnn.ALRNN(latent_dim=4, num_relu=5, obs_dim=2)
    with pytest.raises(ValueError, match="obs_dim"):
        plrnn.ALRNN(latent_dim=2, num_relu=1, obs_dim=3)


def test_alrnn_initialisation_follows_the_official_code(key):
    params = plrnn.ALRNN(latent_dim=20, num_relu=2, obs_dim=3).init(key, jnp.zeros(20))["params"]
    a = np.asarray(params["a"])
    assert np.all((a > 0) & (a <= 1)) and a.max() < 1  # diag(K)/λ_max(K) with K positive definite
    assert np.asarray(params["W"]).std() == pytest.approx(0.01, rel=0.15)  # N(0, 0.01²), 400 draws
    assert np.all(np.asarray(params["h"]) == 0)


def test_p_zero_is_affine_with_a_constant_code(key):
    net = plrnn.ALRNN(latent_dim=5, num_relu=0, obs_dim=2)
    params = net.init(key, jnp.zeros(5))["params"]
    w = plrnn.alrnn_weights(params, 0)
    zs = jax.random.normal(key, (4, 5))
    jac = [plrnn.alrnn_jacobian(w, z) for z in zs]
    for j in jac[1:]:
        np.testing.assert_allclose(j, jac[0])  # one linear region
    orbit = plrnn.free_run(lambda z: plrnn.alrnn_step(w, z), zs[0], 200)
    assert set(plrnn.symbolic_code(orbit, 0).tolist()) == {0}


def _newton_fixed_points(w, starts):
    """Piecewise-linear Newton on F(z) - z from many starts: the fixed points it converges to."""
    found = []
    for z in starts:
        z = jnp.asarray(z)
        for _ in range(50):
            jac = plrnn.alrnn_jacobian(w, z)
            z_new = z - jnp.linalg.solve(jac - jnp.eye(len(z)), plrnn.alrnn_step(w, z) - z)
            if float(jnp.max(jnp.abs(z_new - z))) < 1e-12:
                break
            z = z_new
        if float(jnp.max(jnp.abs(plrnn.alrnn_step(w, z) - z))) < 1e-9:
            if not any(np.allclose(z, f, atol=1e-8) for f in found):
                found.append(np.asarray(z))
    return found


def test_region_fixed_points_agree_with_newton(key):
    _, _, w = _alrnn_weights(key, m=6, p=2)
    fp = plrnn.alrnn_fixed_points(w)
    assert fp.points.shape == (4, 6) and len(fp.symbols) == 4
    for z, real, symbol in zip(fp.points, fp.real, fp.symbols):
        assert real == (int(plrnn.symbolic_code(z, 2)) == symbol)
        if real:
            np.testing.assert_allclose(plrnn.alrnn_step(w, jnp.asarray(z)), z, atol=1e-10)
    newton = _newton_fixed_points(w, 3.0 * np.asarray(jax.random.normal(key, (60, 6))))
    real = [z for z, r in zip(fp.points, fp.real) if r]
    assert len(newton) == len(real) >= 1
    for z in newton:
        assert any(np.allclose(z, r, atol=1e-8) for r in real)


def test_symbols_stay_within_two_to_the_p_and_cycles_close(key):
    _, _, w = _alrnn_weights(key, m=6, p=2, w_scale=1.2)
    orbit = plrnn.free_run(lambda z: plrnn.alrnn_step(w, z), jnp.ones(6), 3000)
    symbols = plrnn.symbolic_code(orbit, 2)
    assert set(symbols.tolist()) <= {0, 1, 2, 3}
    # a one-unit map with a known 2-cycle: z' = 0.5 z - 2 relu(z) + 1, z1 < 0 < z2
    w1 = plrnn.ALRNNWeights(a=jnp.array([0.5]), W=jnp.array([[-2.0]]), h=jnp.array([1.0]),
                            L=jnp.zeros((0, 1)), num_relu=1)
    cycles = plrnn.alrnn_cycles(w1, 2)
    assert len(cycles.points) == 1 and sorted(cycles.symbols[0].tolist()) == [0, 1]
    z1, z2 = cycles.points[0, :, 0]
    for start, nxt in ((z1, z2), (z2, z1)):
        np.testing.assert_allclose(plrnn.alrnn_step(w1, jnp.array([start])), [nxt], atol=1e-12)
    # the exact orbit by hand: z2 = 0.5 z1 + 1 (z1 < 0), z1 = -1.5 z2 + 1 (z2 > 0)
    z2_exact = 1.5 / 1.75
    np.testing.assert_allclose(sorted([z1, z2]), sorted([-1.5 * z2_exact + 1, z2_exact]), rtol=1e-12)
    assert len(plrnn.alrnn_cycles(w1, 1).points) == 1  # its fixed point z = 1/2.5 (region 1)


def test_transition_graph_and_topological_entropy():
    assert plrnn.topological_entropy(plrnn.transition_graph([0, 1, 1, 0, 0, 1, 0], 2)) == pytest.approx(math.log(2))
    assert plrnn.topological_entropy(plrnn.transition_graph([0, 1, 0, 1, 0], 2)) == pytest.approx(0.0)
    # golden-mean shift (no 1 -> 1): entropy log of the golden ratio
    assert plrnn.topological_entropy([[1, 1], [1, 0]]) == pytest.approx(math.log((1 + math.sqrt(5)) / 2))


def test_shplrnn_step_jacobian_and_boundedness(key):
    net = plrnn.ShallowPLRNN(latent_dim=3, hidden_dim=50, obs_dim=3)
    params = net.init(key, jnp.zeros(3))["params"]
    w = plrnn.shplrnn_weights(params)
    for z in np.asarray(jax.random.normal(key, (5, 3))):
        z = jnp.asarray(z)
        np.testing.assert_allclose(net.apply({"params": params}, z), plrnn.shplrnn_step(w, z), rtol=1e-13)
        np.testing.assert_allclose(plrnn.shplrnn_jacobian(w, z), jax.jacfwd(lambda v: plrnn.shplrnn_step(w, v))(z),
                                   atol=1e-13)
    # spec §3 (c): clipped, ‖diag(a)‖ < 1 => bounded orbits for 10⁵ steps from random starts, even with
    # large weights: |z_t| <= |h1| + ‖W1‖ sum|h2| / (1 - max|a|)
    big = dict(params, W1=5 * params["W1"], W2=5 * params["W2"], h1=jnp.ones(3))
    wb = plrnn.shplrnn_weights(big)
    bound = float(jnp.max(jnp.abs(wb.h1)) + jnp.max(jnp.sum(jnp.abs(wb.W1), axis=1)) * jnp.max(jnp.abs(wb.h2))) / \
        (1 - float(jnp.max(jnp.abs(wb.a))))
    starts = 100 * jax.random.normal(key, (8, 3))
    orbits = jax.jit(jax.vmap(lambda z: plrnn.free_run(lambda v: plrnn.shplrnn_step(wb, v), z, 100_000)))(starts)
    assert np.all(np.isfinite(np.asarray(orbits)))
    assert float(jnp.max(jnp.abs(orbits[:, -1000:]))) <= bound + 1e-9
    fp = plrnn.shplrnn_fixed_points(w, np.asarray(plrnn.free_run(lambda v: plrnn.shplrnn_step(w, v), jnp.ones(3), 300)))
    for z, real in zip(fp.points, fp.real):
        if real:
            np.testing.assert_allclose(plrnn.shplrnn_step(w, jnp.asarray(z)), z, atol=1e-10)


def _tent_shplrnn(slope=1.9):
    """A 1-d clipped shPLRNN equal to the tent map z' = slope/2 - slope |z| on [-1, 1] (chaotic:
    Lyapunov exponent log(slope))."""
    return plrnn.ShPLRNNWeights(a=jnp.zeros(1), W1=jnp.array([[slope, slope]]), W2=jnp.array([[1.0], [-1.0]]),
                                h1=jnp.array([slope / 2 - 20 * slope]), h2=jnp.array([10.0, 10.0]))


def test_gtf_bounds_the_gradients_that_free_running_training_explodes():
    # spec §3 (b): over T = 1000 on a chaotic map the GTF loss gradient is finite at α >= α_est
    # and explodes at α = 0
    w = _tent_shplrnn()
    data = plrnn.free_run(lambda z: plrnn.shplrnn_step(w, z), jnp.array([0.123]), 1001)
    alpha_est = float(gtf_alpha(jacobian_growth(lambda z: plrnn.shplrnn_step(w, z), data[None])))
    assert alpha_est == pytest.approx(1 - 1 / 1.9, rel=1e-12)  # |J| = 1.9 everywhere

    def loss(w1, alpha):
        ww = w._replace(W1=w1)
        states = forced_rollout(lambda z: plrnn.shplrnn_step(ww, z), data[0], data, alpha=alpha)
        return jnp.mean((states - data[1:]) ** 2)

    perturbed = w.W1 * 1.001
    bounded = float(jnp.linalg.norm(jax.grad(loss)(perturbed, alpha_est)))
    exploded = float(jnp.linalg.norm(jax.grad(loss)(perturbed, 0.0)))
    assert np.isfinite(bounded) and bounded < 1e3
    assert not np.isfinite(exploded) or exploded > 1e100


def test_teacher_forced_program_sites(key):
    module = plrnn.ALRNN(latent_dim=5, num_relu=1, obs_dim=2)
    windows = jax.random.normal(key, (4, 12, 2))

    def program(data=None, forcing=Forcing(1.0, 3)):
        plrnn.teacher_forced_program("net", module, data, forcing=forcing, obs_scale=1.0, num_steps=30)

    tr = trace(seed(program, 0)).get_trace(windows, Forcing(0.5, 1, estimate_alpha=True))
    assert tr["net$params"]["type"] == "param"
    assert tr["x_pred"]["value"].shape == (4, 11, 2)
    assert tr["y"]["is_observed"] and 0.0 <= float(tr["alpha_estimate"]["value"]) <= 1.0
    prior = trace(seed(program, 1)).get_trace(None)
    assert prior["y"]["value"].shape == (30, 2) and not prior["y"]["is_observed"]
    with pytest.raises(ValueError, match="data: expected sequences"):
        trace(seed(program, 0)).get_trace(jnp.zeros((4, 12, 3)))
    # a missing or infinite value is named (the pseudo-likelihood would be NaN or -inf), traced data pass
    bad = windows.at[1, 5, 0].set(jnp.inf)
    with pytest.raises(ValueError, match=r"data: teacher forcing needs complete series; non-finite value at index "
                                         r"\(1, 5, 0\)"):
        trace(seed(program, 0)).get_trace(bad)
    log_y = jax.jit(lambda w: trace(seed(program, 0)).get_trace(w)["y"]["fn"].log_prob(w[:, 1:]).sum())(windows)
    assert jnp.isfinite(log_y)
