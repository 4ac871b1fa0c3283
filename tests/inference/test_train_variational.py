"""The trainer's variational options (clip_norm, kl_weight, coordinated_dropout, patience), the
ELBO loss and the method "vae", against exact answers on a conjugate Gaussian model."""

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
from tests.helpers import mc_tolerance


def _quadratic(params, batch, key, **extras):
    return jnp.sum((params["w"] - batch) ** 2)


def test_clip_norm_equals_chained_clipping():
    batch = jnp.array([3.0, -4.0])
    a = tr.train(_quadratic, {"w": jnp.zeros(2)}, lambda k, s: batch, optax.sgd(0.1), 20, clip_norm=0.5,
                 progress=False)
    b = tr.train(_quadratic, {"w": jnp.zeros(2)}, lambda k, s: batch,
                 optax.chain(optax.clip_by_global_norm(0.5), optax.sgd(0.1)), 20, progress=False)
    np.testing.assert_array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(a.params["w"], b.params["w"])


def test_kl_annealing_schedule_and_weight_reaches_the_loss():
    schedule = tr.KLAnnealing(start=0.2, steps=10)
    np.testing.assert_allclose([float(schedule.at(n)) for n in (0, 5, 10, 50)], [0.2, 0.6, 1.0, 1.0])

    def loss(params, batch, key, *, kl_weight):  # minimiser w = 1 / (1 + β)
        return (params["w"] - 1.0) ** 2 + kl_weight * params["w"] ** 2

    for beta in (1.0, 3.0):
        result = tr.train(loss, {"w": jnp.zeros(())}, lambda k, s: None, optax.adam(0.05), 600, kl_weight=beta,
                          progress=False)
        np.testing.assert_allclose(float(result.params["w"]), 1 / (1 + beta), atol=1e-3)
    # annealed: the run ends at β = 1
    result = tr.train(loss, {"w": jnp.zeros(())}, lambda k, s: None, optax.adam(0.05), 800, kl_weight=schedule,
                      progress=False)
    np.testing.assert_allclose(float(result.params["w"]), 0.5, atol=1e-3)


def test_coordinated_dropout_masks_have_the_declared_rate():
    rate, size, steps = 0.3, 5000, 100

    def loss(params, batch, key, *, keep):  # sgd(1): w_n = Σ_{m<n} mean(keep_m)
        assert keep.shape == batch.shape and keep.dtype == jnp.bool_
        return -params["w"] * jnp.mean(keep)

    result = tr.train(loss, {"w": jnp.zeros(())}, lambda k, s: jnp.zeros(size), optax.sgd(1.0), steps,
                      coordinated_dropout=rate, progress=False)
    kept = float(result.params["w"]) / steps
    tol = mc_tolerance(math.sqrt(rate * (1 - rate)), size * steps)
    assert abs(kept - (1 - rate)) <= tol, (kept, tol)
    # a fresh mask each step: the per-step losses differ
    assert len(np.unique(np.round(np.diff(result.losses), 12))) > steps // 2


def _bumpy_score(params):
    """Lowest near w = 2, rising after: a run on w -> 4 passes the minimum."""
    w = float(params["w"])
    return (w - 2.0) ** 2


def test_patience_stops_early_and_resume_stops_at_the_same_step(tmp_path):
    def loss(params, batch, key):
        return (params["w"] - 4.0) ** 2 + 0.01 * jax.random.normal(key)

    kwargs = dict(evaluate=_bumpy_score, evaluate_every=5, patience=3, progress=False)
    full = tr.train(loss, {"w": jnp.zeros(())}, lambda k, s: None, optax.sgd(0.02), 400, **kwargs)
    assert full.stopped_step is not None and full.stopped_step < 400
    assert len(full.losses) == full.stopped_step
    evals = full.evaluations
    assert int(np.sum(evals[:, 0] > full.best_step)) == 3
    assert abs(float(full.best_params["w"]) - 2.0) < 0.2
    path = tmp_path / "run.npz"
    part = tr.train(loss, {"w": jnp.zeros(())}, lambda k, s: None, optax.sgd(0.02), 20,
                    checkpoint_path=path, checkpoint_every=10, **kwargs)
    assert part.stopped_step is None
    resumed = tr.train(loss, {"w": jnp.zeros(())}, lambda k, s: None, optax.sgd(0.02), 400,
                       checkpoint_path=path, checkpoint_every=10, **kwargs)
    assert resumed.stopped_step == full.stopped_step
    np.testing.assert_array_equal(resumed.losses, full.losses)
    np.testing.assert_array_equal(resumed.best_params["w"], full.best_params["w"])
    again = tr.train(loss, {"w": jnp.zeros(())}, lambda k, s: None, optax.sgd(0.02), 400,
                     checkpoint_path=path, checkpoint_every=10, **kwargs)
    assert again.stopped_step == full.stopped_step and len(again.losses) == len(full.losses)


@pytest.mark.parametrize("bad, match", [
    (dict(clip_norm=0.0), "clip_norm"), (dict(kl_weight=-1.0), "kl_weight"),
    (dict(kl_weight=tr.KLAnnealing(1.5, 10)), "kl_weight"), (dict(coordinated_dropout=1.0), "coordinated_dropout"),
    (dict(patience=2), "patience"),
])
def test_named_errors(bad, match):
    with pytest.raises(ValueError, match=f"^{match}"):
        tr.train(_quadratic, {"w": jnp.zeros(2)}, lambda k, s: jnp.ones(2), optax.sgd(0.1), 5, progress=False, **bad)


# ---------------------------------------------------------------------------------------------
# ELBO on a conjugate model: z_s ~ N(0, 1), y_st ~ N(z_s, 1); q(z_s) = N(a Σ_t y_st, softplus(b)²)
# holds the exact posterior N(Σy/(T+1), 1/(T+1)), so the optimum ELBO is log p(y).
# ---------------------------------------------------------------------------------------------

T = 5


def _model(data=None):
    num = 3 if data is None else data.shape[0]
    with numpyro.plate("series", num, dim=-2):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        observed = ~jnp.isnan(data) if data is not None else True
        with numpyro.handlers.mask(mask=observed):
            numpyro.sample("y", dist.Normal(jnp.broadcast_to(z, (num, T)), 1.0).to_event(0),
                           obs=None if data is None else jnp.where(observed, data, 0.0))


def _guide(data):
    a = numpyro.param("a", jnp.asarray(0.0))
    b = numpyro.param("b", jnp.asarray(0.0))
    with numpyro.plate("series", data.shape[0], dim=-2):
        numpyro.sample("z", dist.Normal(a * jnp.nansum(data, -1, keepdims=True), jax.nn.softplus(b)))


def _log_evidence(data):
    cov = np.eye(T) + np.ones((T, T))
    from scipy import stats
    return float(sum(stats.multivariate_normal(np.zeros(T), cov).logpdf(row) for row in np.asarray(data)))


def _exact_elbo(a, s, data):
    """E_q[log p(y, z) - log q(z)] in closed form for q(z_s) = N(a Σy_s, s²)."""
    total = 0.0
    for y in np.asarray(data):
        m = a * y.sum()
        loglik = -0.5 * T * math.log(2 * math.pi) - 0.5 * (np.sum((y - m) ** 2) + T * s**2)
        logprior = -0.5 * math.log(2 * math.pi) - 0.5 * (m**2 + s**2)
        entropy = 0.5 * math.log(2 * math.pi * math.e * s**2)
        total += loglik + logprior + entropy
    return total


def test_elbo_loss_matches_closed_form():
    data = jax.random.normal(jax.random.PRNGKey(3), (4, T)) + 0.5
    params = {"a": jnp.asarray(0.1), "b": jnp.asarray(-0.3)}
    n = 4000
    loss = jax.jit(tr.elbo_loss(_model, _guide, num_particles=n))
    estimate = -float(loss(params, data, jax.random.PRNGKey(0)))
    s = float(jax.nn.softplus(-0.3))
    exact = _exact_elbo(0.1, s, data)
    per_draw = tr.elbo_loss(_model, _guide, num_particles=1)
    draws = -np.asarray(jax.jit(jax.vmap(lambda k: per_draw(params, data, k)))(jax.random.split(jax.random.PRNGKey(1), 500)))
    assert abs(estimate - exact) <= mc_tolerance(draws.std(), n), (estimate, exact)
    # kl_weight = 0 leaves only the expected log-likelihood
    loglik_only = -float(loss(params, data, jax.random.PRNGKey(0), kl_weight=0.0))
    m = 0.1 * np.asarray(data).sum(-1)
    expected = float(np.sum(-0.5 * T * math.log(2 * math.pi) - 0.5 * (((np.asarray(data) - m[:, None]) ** 2).sum(-1) + T * s**2)))
    assert abs(loglik_only - expected) <= mc_tolerance(draws.std(), n) + 1e-9


def test_method_vae_reaches_the_exact_posterior_and_holds_out_validation():
    data = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (24, T)) * math.sqrt(1.5))
    idata = inference.fit(_model, data, method="vae", guide=_guide, num_steps=1000, learning_rate=0.02, eval_particles=256,
                          num_particles=8, validation=4, evaluate_every=100, kl_start=0.5, kl_steps=300,
                          clip_norm=10.0, num_samples=50, progress=False)
    assert idata.attrs["draws"] == "iid" and idata.attrs["method"] == "vae"
    a = float(idata.parameters["a"]); s = float(jax.nn.softplus(float(idata.parameters["b"])))
    assert abs(a - 1 / (T + 1)) < 0.02 and abs(s - math.sqrt(1 / (T + 1))) < 0.05, (a, s)
    # the held-out ELBO per sequence never exceeds the exact log evidence per held-out sequence
    scores = np.asarray(idata.training["eval_score"])
    held = _log_evidence(data[-4:]) / 4
    assert np.all(-scores <= held + 0.05), (-scores.max(), held)
    assert abs(-scores.min() - held) < 0.1
    assert idata.posterior["z"].shape[:2] == (1, 50)


def test_method_vae_named_errors():
    data = np.zeros((4, T))
    with pytest.raises(TypeError, match="^guide"):
        inference.fit(_model, data, method="vae", num_steps=2, progress=False)
    with pytest.raises(ValueError, match="^validation"):
        inference.fit(_model, data, method="vae", guide=_guide, validation=4, num_steps=2, progress=False)


def test_method_vae_resumes_from_a_checkpoint_to_the_uninterrupted_result(tmp_path):
    data = np.asarray(jax.random.normal(jax.random.PRNGKey(6), (8, T)))
    options = dict(guide=_guide, learning_rate=0.02, num_particles=2, validation=2, evaluate_every=10,
                   kl_start=0.5, kl_steps=30, clip_norm=5.0, coordinated_dropout=0.2, num_samples=5, progress=False)
    full = inference.fit(_model, data, method="vae", num_steps=60, **options)
    path = str(tmp_path / "vae.npz")
    inference.fit(_model, data, method="vae", num_steps=30, checkpoint_path=path, checkpoint_every=10, **options)
    resumed = inference.fit(_model, data, method="vae", num_steps=60, checkpoint_path=path, checkpoint_every=10,
                            **options)
    np.testing.assert_array_equal(resumed.training["loss"].values, full.training["loss"].values)
    np.testing.assert_array_equal(resumed.training["eval_score"].values, full.training["eval_score"].values)
    for name in ("a", "b"):
        np.testing.assert_array_equal(resumed.parameters[name].values, full.parameters[name].values)
