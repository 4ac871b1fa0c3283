"""Teacher forcing: the forced rollouts of inference.losses against closed forms, the trainer's
alpha/evaluate options (update rule, resume), and the inference.fit method "tf" on a linear map."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

import inference
from inference import train as tr
from inference.losses import Forcing, forced_rollout, gtf_alpha, jacobian_growth
from inference.types import Target


def _rotation(angle, radius=1.0):
    c, s = math.cos(angle), math.sin(angle)
    return radius * jnp.array([[c, -s], [s, c]])


def test_forced_rollout_full_free_and_sparse_forcing():
    a = 0.9
    step = lambda z: a * z  # noqa: E731
    x = jnp.asarray(np.random.default_rng(0).standard_normal((12, 1)))
    full = forced_rollout(step, x[0], x, alpha=1.0, interval=1)
    np.testing.assert_allclose(full, a * x[:-1], rtol=1e-14)  # one step ahead from the data
    free = forced_rollout(step, x[0], x, alpha=0.0, interval=1)
    np.testing.assert_allclose(free[:, 0], x[0, 0] * a ** np.arange(1, 12), rtol=1e-14)
    sparse = forced_rollout(step, x[0], x, alpha=1.0, interval=4)
    # forced (replaced by data) after steps 4 and 8: predictions at 5..8 start from x_4, 9..11 from x_8
    expected = [x[0, 0] * a ** t for t in range(1, 5)] + [x[4, 0] * a ** k for k in range(1, 5)] + \
               [x[8, 0] * a ** k for k in range(1, 4)]
    np.testing.assert_allclose(sparse[:, 0], expected, rtol=1e-14)
    alpha = 0.3
    gtf = forced_rollout(step, x[0], x, alpha=alpha, interval=1)
    z_tilde, want = x[0, 0], []
    for t in range(1, 12):
        z = a * z_tilde
        want.append(z)
        z_tilde = (1 - alpha) * z + alpha * x[t, 0]
    np.testing.assert_allclose(gtf[:, 0], want, rtol=1e-13)
    with pytest.raises(ValueError, match="interval"):
        forced_rollout(step, x[0], x, interval=0)


def test_partial_forcing_leaves_unobserved_units_alone():
    M = jnp.array([[0.5, 0.2, 0.0], [0.1, 0.4, 0.3], [0.2, 0.0, 0.6]])
    x = jnp.asarray(np.random.default_rng(1).standard_normal((6, 2)))  # only 2 of 3 units observed
    z0 = jnp.array([x[0, 0], x[0, 1], 0.7])
    out = forced_rollout(lambda z: M @ z, z0, x, alpha=1.0, interval=1)
    z = z0
    for t in range(1, 6):
        pred = M @ z
        np.testing.assert_allclose(out[t - 1], pred, rtol=1e-14)
        z = jnp.array([x[t, 0], x[t, 1], pred[2]])


def test_teacher_forced_gradients_match_closed_forms():
    x = jnp.asarray(np.random.default_rng(2).standard_normal((30, 1)))

    def loss(a, alpha):
        return jnp.sum((forced_rollout(lambda z: a * z, x[0], x, alpha=alpha)[:, 0] - x[1:, 0]) ** 2)

    a = 0.8
    # full forcing: Σ 2 (a x_{t-1} - x_t) x_{t-1}; the forced coordinates carry no gradient back
    full = 2 * np.sum((a * x[:-1, 0] - x[1:, 0]) * x[:-1, 0])
    np.testing.assert_allclose(jax.grad(loss)(a, 1.0), full, rtol=1e-12)
    # free running: Σ 2 (a^t x_0 - x_t) t a^{t-1} x_0
    t = np.arange(1, 30)
    free = 2 * np.sum((a**t * x[0, 0] - x[1:, 0]) * t * a ** (t - 1) * x[0, 0])
    np.testing.assert_allclose(jax.grad(loss)(a, 0.0), free, rtol=1e-10)


def test_jacobian_growth_of_a_linear_map_is_its_spectral_norm():
    A = jnp.array([[1.5, 0.4], [0.0, 0.3]])
    states = jnp.asarray(np.random.default_rng(3).standard_normal((4, 7, 2)))
    growth = jacobian_growth(lambda z: A @ z, states)
    norm = float(np.linalg.norm(np.asarray(A), 2))
    np.testing.assert_allclose(growth, norm, rtol=1e-12)
    np.testing.assert_allclose(gtf_alpha(growth), 1 - 1 / norm, rtol=1e-12)
    assert float(gtf_alpha(0.5)) == 0.0  # contracting: no forcing needed


def _quadratic_problem():
    target = jnp.array([1.0, -2.0])

    def loss_fn(params, batch, key, alpha):
        return jnp.sum((params - target) ** 2) * (1.0 + 0.0 * alpha)

    def make_batch(key, step):
        return jnp.asarray(float(step))

    return loss_fn, jnp.zeros(2), make_batch


def test_adaptive_alpha_follows_the_update_rule():
    loss_fn, init, make_batch = _quadratic_problem()
    estimates = {4: 0.9, 9: 0.5, 14: 0.95, 19: 0.2}  # step -> estimate (batch = step number)

    def estimate(params, batch):
        return jnp.select([batch == k for k in estimates], list(estimates.values()), 0.0)

    schedule = tr.AdaptiveAlpha(estimate=estimate, initial=1.0, every=5, decay=0.9)
    result = tr.train(loss_fn, init, make_batch, optax.sgd(0.1), 20, progress=False, alpha=schedule)
    alpha, want = 1.0, []
    for step in range(20):
        if (step + 1) % 5 == 0:
            est = estimates[step]
            alpha = est if est > alpha else 0.9 * alpha + 0.1 * est
        want.append(alpha)
    np.testing.assert_allclose(result.alphas, want, rtol=1e-14)
    assert float(result.state.alpha) == pytest.approx(want[-1])
    constant = tr.train(loss_fn, init, make_batch, optax.sgd(0.1), 3, progress=False, alpha=0.25)
    np.testing.assert_allclose(constant.alphas, 0.25)
    with pytest.raises(ValueError, match="alpha"):
        tr.train(loss_fn, init, make_batch, optax.sgd(0.1), 3, progress=False, alpha=1.5)


def test_evaluate_keeps_the_best_and_resume_reproduces_the_run(tmp_path):
    loss_fn, init, make_batch = _quadratic_problem()

    def estimate(params, batch):
        return 0.5 + 0.4 * jnp.sin(batch)

    schedule = tr.AdaptiveAlpha(estimate=estimate, every=3, decay=0.8)
    def evaluate(params):  # best when params is nearest (0.5, -1): reached mid-run
        return float(jnp.sum((params - jnp.array([0.5, -1.0])) ** 2))

    opts = dict(progress=False, alpha=schedule, evaluate=evaluate, evaluate_every=4)
    full = tr.train(loss_fn, init, make_batch, optax.sgd(0.05), 40, **opts)
    steps, values = full.evaluations[:, 0], full.evaluations[:, 1]
    np.testing.assert_array_equal(steps, list(range(4, 41, 4)))
    assert full.best_step == int(steps[np.argmin(values)])
    assert evaluate(full.best_params) == pytest.approx(values.min())
    assert 4 < full.best_step < 40
    path = tmp_path / "run.npz"
    tr.train(loss_fn, init, make_batch, optax.sgd(0.05), 18, checkpoint_path=path, checkpoint_every=6, **opts)
    resumed = tr.train(loss_fn, init, make_batch, optax.sgd(0.05), 40, checkpoint_path=path, checkpoint_every=6, **opts)
    np.testing.assert_array_equal(resumed.losses, full.losses)
    np.testing.assert_array_equal(resumed.alphas, full.alphas)
    np.testing.assert_array_equal(resumed.evaluations, full.evaluations)
    assert resumed.best_step == full.best_step
    np.testing.assert_array_equal(resumed.best_params, full.best_params)
    with pytest.raises(ValueError, match="without"):
        tr.train(loss_fn, init, make_batch, optax.sgd(0.05), 40, checkpoint_path=path, progress=False,
                 evaluate=evaluate, evaluate_every=4, alpha=None)


def linear_program(data=None, *, forcing=None):
    """A teacher-forced program of the map z -> A z (one numpyro.param)."""
    forcing = forcing or Forcing()
    A = numpyro.param("A", 0.5 * jnp.eye(2))
    windows = jnp.asarray(data)

    def step(z):
        return A @ z

    states = jax.vmap(lambda w: forced_rollout(step, w[0], w, alpha=forcing.alpha, interval=forcing.interval))(windows)
    numpyro.deterministic("x_pred", states)
    if forcing.estimate_alpha:
        numpyro.deterministic("alpha_estimate", gtf_alpha(jacobian_growth(step, windows)))
    numpyro.sample("y", dist.Normal(states, 1.0).to_event(1), obs=windows[:, 1:])


def _rotation_series(n=400):
    A = _rotation(0.3)
    x = [jnp.array([1.0, 0.0])]
    for _ in range(n - 1):
        x.append(A @ x[-1])
    return np.asarray(A), np.asarray(jnp.stack(x))


@pytest.mark.parametrize("forcing, extra", [("full", {}), ("sparse", {"interval": 4}),
                                            ("generalized", {"alpha": "adaptive", "alpha_every": 5})])
def test_method_tf_recovers_a_linear_map(forcing, extra):
    A, series = _rotation_series()
    target = Target(model=linear_program, data=series, name="linear", observed={"y": series})
    idata = inference.fit(target, series, method="tf", progress=False, num_steps=600, batch_size=4, seq_len=20,
                          forcing=forcing, optimizer="adam", learning_rate=0.02, evaluate_every=200, **extra)
    assert idata.attrs["draws"] == "point" and idata.attrs["method"] == "tf"
    learned = idata.posterior["A"].values[0, 0]
    np.testing.assert_allclose(learned, A, atol=2e-3)  # noise-free data: the map itself
    assert idata.training["loss"].shape == (600,)
    assert idata.attrs["selected_step"] in (200, 400, 600)
    if forcing == "generalized":
        alphas = idata.training["alpha"].values
        # ‖A‖₂ stays near 1, so α_est = max(0, 1 - 1/ḡ) ≈ 0 and α decays by 0.999 per update
        assert alphas[0] == 1.0 and np.all(np.diff(alphas) <= 1e-12) and alphas[-1] < 1.0


def test_method_tf_named_errors():
    _, series = _rotation_series(50)
    target = Target(model=linear_program, data=series, name="linear")
    with pytest.raises(ValueError, match="forcing: expected one of"):
        inference.fit(target, series, method="tf", progress=False, forcing="teacher")
    with pytest.raises(ValueError, match="seq_len"):
        inference.fit(target, series, method="tf", progress=False, seq_len=51)
    bad = series.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="complete series"):
        inference.fit(target, bad, method="tf", progress=False, seq_len=10)

    def latent_program(data=None, *, forcing=None):
        numpyro.sample("s", dist.Normal(0, 1))
        linear_program(data, forcing=forcing)

    with pytest.raises(ValueError, match="latent sample sites"):
        inference.fit(Target(model=latent_program, data=series), series, method="tf", progress=False, seq_len=10)
