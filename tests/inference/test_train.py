"""Tests of inference.train: convergence, exact resume, atomic checkpoints, named errors."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from inference import train as tr

TRUE_W = jnp.array([1.5, -2.0, 0.5])
TRUE_B = 0.3


def _make_batch(key, step):
    """Noisy linear-regression data: x ~ N(0, I), y = x w + b + 0.1 eps (fresh each step)."""
    kx, ke = jax.random.split(key)
    x = jax.random.normal(kx, (64, 3))
    y = x @ TRUE_W + TRUE_B + 0.1 * jax.random.normal(ke, (64,))
    return x, y


def _loss(params, batch, key):
    # The key is used (input dropout-style jitter) so that resume must also reproduce loss keys.
    x, y = batch
    jitter = 1.0 + 0.01 * jax.random.normal(key, x.shape)
    pred = (x * jitter) @ params["w"] + params["b"]
    return jnp.mean((pred - y) ** 2)


def _init():
    return {"w": jnp.zeros(3), "b": jnp.zeros(())}


def test_loss_decreases_and_params_recovered():
    result = tr.train(_loss, _init(), _make_batch, optax.adam(5e-2), 300, seed=1, progress=False)
    assert result.losses.shape == (300,)
    assert result.state.step == 300
    assert np.mean(result.losses[-20:]) < 0.05 * np.mean(result.losses[:5])
    # noise variance 0.01 (+ jitter): the fit must get to about that level
    assert np.mean(result.losses[-50:]) < 0.05
    np.testing.assert_allclose(result.params["w"], TRUE_W, atol=0.05)


def test_weakly_typed_parameters_compile_the_update_step_once():
    # a parameter made from a Python number is weakly typed; the first step returns it strongly
    # typed, and the update step was traced and compiled again for the second (pgdmm_duffing's VAE)
    opt = optax.adam(1e-2)
    init = {"w": jnp.zeros(3), "b": jnp.asarray(0.0)}
    assert init["b"].weak_type
    result = tr.train(_loss, init, _make_batch, opt, 3, seed=0, progress=False)
    assert result.state.step == 3 and not result.params["b"].weak_type
    assert tr._build_update(_loss, opt, False, None)._cache_size() == 1


def test_resume_equals_uninterrupted(tmp_path):
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-2))
    full = tr.train(_loss, _init(), _make_batch, opt, 50, seed=7, progress=False)
    path = tmp_path / "run.npz"
    first = tr.train(_loss, _init(), _make_batch, opt, 20, seed=7, checkpoint_path=path,
                     checkpoint_every=10, progress=False)
    assert first.state.step == 20 and path.exists()
    resumed = tr.train(_loss, _init(), _make_batch, opt, 50, seed=7, checkpoint_path=path,
                       checkpoint_every=10, progress=False)
    assert resumed.state.step == 50
    np.testing.assert_array_equal(resumed.losses, full.losses)
    for a, b in zip(jax.tree_util.tree_leaves(resumed.params), jax.tree_util.tree_leaves(full.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree_util.tree_leaves(resumed.state.opt_state),
                    jax.tree_util.tree_leaves(full.state.opt_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a finished checkpoint is idempotent: running again does no steps and returns the same
    again = tr.train(_loss, _init(), _make_batch, opt, 50, seed=7, checkpoint_path=path, progress=False)
    np.testing.assert_array_equal(again.losses, full.losses)


def test_resume_after_crash_between_checkpoints(tmp_path):
    """A run killed between checkpoints resumes from the last one and still matches."""
    opt = optax.adam(3e-2)
    full = tr.train(_loss, _init(), _make_batch, opt, 30, seed=3, progress=False)
    path = tmp_path / "crash.npz"

    def crashing_batch(key, step):
        if step == 17:
            raise KeyboardInterrupt("simulated crash")
        return _make_batch(key, step)

    with pytest.raises(KeyboardInterrupt):
        tr.train(_loss, _init(), crashing_batch, opt, 30, seed=3, checkpoint_path=path,
                 checkpoint_every=5, progress=False)
    state, losses, seed = tr.load_checkpoint(str(path), tr.TrainState(0, _init(), opt.init(_init()), None))
    assert state.step == 15 and losses.shape == (15,) and seed == 3
    resumed = tr.train(_loss, _init(), _make_batch, opt, 30, seed=3, checkpoint_path=path,
                       checkpoint_every=5, progress=False)
    np.testing.assert_array_equal(resumed.losses, full.losses)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A failure while writing leaves the previous checkpoint intact and no temp files behind."""
    opt = optax.sgd(1e-2)
    path = tmp_path / "atomic.npz"
    tr.train(_loss, _init(), _make_batch, opt, 10, seed=0, checkpoint_path=path,
             checkpoint_every=10, progress=False)
    before = path.read_bytes()

    real_savez = np.savez

    def failing_savez(handle, **arrays):
        real_savez(handle, **arrays)
        handle.write(b"partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        tr.train(_loss, _init(), _make_batch, opt, 20, seed=0, checkpoint_path=path,
                 checkpoint_every=10, progress=False)
    monkeypatch.setattr(np, "savez", real_savez)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["atomic.npz"]
    # and the surviving checkpoint is loadable (no pickle needed)
    with np.load(path, allow_pickle=False) as archive:
        assert int(archive["extra_step"]) == 10


def test_non_finite_loss_names_the_step():
    def loss(params, batch, key):
        return jnp.where(params["t"] > 4.5, jnp.nan, 0.0) + 0.0 * jnp.sum(params["t"])

    def make_batch(key, step):
        return jnp.zeros(())

    # sgd with gradient -1 on t: t increases by 1 per step; the loss is NaN from step 5 (t = 5)
    def neg_loss(params, batch, key):
        return loss(params, batch, key) - params["t"]

    with pytest.raises(tr.NonFiniteLossError, match="step 5") as info:
        tr.train(neg_loss, {"t": jnp.zeros(())}, make_batch, optax.sgd(1.0), 20, progress=False, log_every=7)
    assert info.value.step == 5


def test_mismatched_checkpoint_and_bad_arguments(tmp_path):
    path = tmp_path / "m.npz"
    tr.train(_loss, _init(), _make_batch, optax.adam(1e-2), 5, seed=0, checkpoint_path=path, progress=False)
    with pytest.raises(ValueError, match="seed"):
        tr.train(_loss, _init(), _make_batch, optax.adam(1e-2), 10, seed=1, checkpoint_path=path, progress=False)
    with pytest.raises(ValueError, match="leaf"):
        tr.train(_loss, {"w": jnp.zeros(4), "b": jnp.zeros(())}, _make_batch, optax.adam(1e-2), 10,
                 seed=0, checkpoint_path=path, progress=False)
    with pytest.raises(ValueError, match="num_steps"):
        tr.train(_loss, _init(), _make_batch, optax.adam(1e-2), 3, seed=0, checkpoint_path=path, progress=False)
    with pytest.raises(ValueError, match="num_steps"):
        tr.train(_loss, _init(), _make_batch, optax.adam(1e-2), -1, progress=False)
    with pytest.raises(ValueError, match="checkpoint_every"):
        tr.train(_loss, _init(), _make_batch, optax.adam(1e-2), 3, checkpoint_every=0, progress=False)
    with pytest.raises(TypeError, match="optimizer"):
        tr.train(_loss, _init(), _make_batch, "adam", 3, progress=False)


def test_pytree_roundtrip(tmp_path):
    tree = {"a": jnp.arange(3.0), "b": (jnp.ones((2, 2), dtype=jnp.float32), jnp.array(4, dtype=jnp.int32))}
    path = str(tmp_path / "tree.npz")
    tr.save_pytree(path, tree, note=np.asarray(2.5))
    back, extra = tr.load_pytree(path, tree)
    assert float(extra["note"]) == 2.5
    for a, b in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(back)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
