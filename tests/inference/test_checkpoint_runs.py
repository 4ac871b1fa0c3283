"""Interrupted sampling keeps its draws and resumes to the same draws (issue 20, item 9).

NUTS, PMMH, particle Gibbs and SMC² write their progress at chunk boundaries
(``checkpoint_path=``, :class:`inference.checkpoint.RunCheckpoint`). A run interrupted after k
chunks (``KeyboardInterrupt`` raised right after the k-th checkpoint is written, as Ctrl-C there
would) and rerun with the same settings gives the draws of an uninterrupted run, bit for bit; an
interruption in the middle of a write leaves the previous checkpoint readable. Exact answers, no
tolerances: the property is equality of arrays.
"""

import os

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import inference
from inference import checkpoint as ckpt
from tests.inference.particle import models


def normal_model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(mu, s), obs=y)


NORMAL_DATA = np.random.default_rng(0).normal(1.0, 0.5, 20)


class _CtrlC:
    """An array-like whose conversion raises ``KeyboardInterrupt``: given to ``np.savez`` after a
    checkpoint's own arrays, it breaks the write off with those arrays already in the temporary
    file and the rename not yet done (Ctrl-C in the middle of the write)."""

    def __array__(self, dtype=None, copy=None):
        raise KeyboardInterrupt


class Interrupt:
    """Make the k-th checkpoint write end in a KeyboardInterrupt: after the file is in place
    (``during=False``: Ctrl-C between chunks) or inside the real writer, between the temporary
    file's write and its rename (``during=True``); ``previous`` holds the file's bytes before the
    k-th write."""

    def __init__(self, monkeypatch, after: int, during: bool = False):
        self.count, self.after, self.during, self.previous = 0, after, during, None
        real = ckpt.atomic_savez

        def savez(path, /, **arrays):
            self.count += 1
            if self.count == self.after:
                self.previous = open(path, "rb").read() if os.path.exists(path) else None
                if self.during:
                    real(path, **arrays, zz_interrupt=_CtrlC())  # raises inside the write
            real(path, **arrays)
            if self.count == self.after:
                raise KeyboardInterrupt

        monkeypatch.setattr(ckpt, "atomic_savez", savez)


def assert_same_draws(a, b):
    for group in ("posterior", "sample_stats", "log_likelihood"):
        if group not in a.groups():
            continue
        da, db = a[group], b[group]
        assert set(da.data_vars) == set(db.data_vars), group
        for name in da.data_vars:
            np.testing.assert_array_equal(da[name].values, db[name].values, err_msg=f"{group}.{name}")


def interrupted_then_resumed(monkeypatch, tmp_path, fit, after, during=False):
    tmp_path.mkdir(exist_ok=True)
    path = str(tmp_path / "run.ckpt.npz")
    with monkeypatch.context() as patch:
        interrupt = Interrupt(patch, after, during)
        with pytest.raises(KeyboardInterrupt):
            fit(path)
    assert os.path.exists(path)
    if during:  # the broken write left the previous checkpoint byte for byte
        assert interrupt.count == after and open(path, "rb").read() == interrupt.previous
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")], "a temporary file was left behind"
    extras = ckpt.read_extras(path)  # the partial result is readable without the runner
    resumed = fit(path)
    return resumed, extras


# "auto" (here "parallel": one host device per chain) is resumed mid-warmup below (preconditioned)
# and mid-warmup and mid-sampling by tests/zoo/test_cli.py::test_sigterm_mid_fit_keeps_the_checkpoint_
# and_the_rerun_resumes_to_the_same_draws (``zoo fit --checkpoint`` calls inference.fit with the default)
@pytest.mark.parametrize("chain_method", ["vectorized", "sequential"])
def test_nuts_resumes_to_the_uninterrupted_draws(monkeypatch, tmp_path, chain_method):
    def fit(path=None):
        return inference.fit(normal_model, NORMAL_DATA, method="nuts", seed=5, progress=False, num_warmup=60,
                             num_samples=50, num_chains=2, chunk_size=20, checkpoint_path=path,
                             posterior_predictive=False, chain_method=chain_method)

    plain = fit()  # no checkpoint: one NumPyro run
    # interrupted mid-warmup (after 2 of its 3 chunks: the step size and mass matrix are mid-adaptation)
    resumed, extras = interrupted_then_resumed(monkeypatch, tmp_path / "warmup", fit, after=2)
    assert (int(extras["phase"]), int(extras["done"])) == (0, 40)
    assert resumed.attrs["resumed_from"] == "warmup iteration 40"
    assert_same_draws(plain, resumed)  # chunked = unchunked, and resumed = uninterrupted
    if chain_method != "vectorized":
        return
    # interrupted mid-sampling (the warmup's 3 chunks, then 2 of the sampling's)
    resumed, extras = interrupted_then_resumed(monkeypatch, tmp_path / "sample", fit, after=5)
    assert (int(extras["phase"]), int(extras["done"])) == (1, 40)
    assert resumed.attrs["resumed_from"] == "sample iteration 40"
    assert_same_draws(plain, resumed)


def test_preconditioned_nuts_resumes_to_the_uninterrupted_draws(monkeypatch, tmp_path):
    """With ``precondition="laplace"`` the states are in the whitened coordinates: the resumed run
    finds the same Laplace map from the same start and continues to the uninterrupted draws."""
    def fit(path=None):
        return inference.fit(normal_model, NORMAL_DATA, method="nuts", seed=5, progress=False, num_warmup=60,
                             num_samples=50, num_chains=2, chunk_size=20, checkpoint_path=path,
                             posterior_predictive=False, precondition="laplace")

    plain = fit()
    resumed, extras = interrupted_then_resumed(monkeypatch, tmp_path / "warmup", fit, after=2)
    assert (int(extras["phase"]), int(extras["done"])) == (0, 40)
    assert resumed.attrs["precondition"] == "laplace" and resumed.attrs["resumed_from"] == "warmup iteration 40"
    assert_same_draws(plain, resumed)


def test_nuts_checkpoint_of_another_run_is_refused(monkeypatch, tmp_path):
    """The file: a run stopped after its first chunk, with the settings of the sequential run above
    (its programs are compiled already); the refusals come before any sampling."""
    path = str(tmp_path / "run.npz")
    settings = dict(method="nuts", progress=False, num_warmup=60, num_samples=50, num_chains=2, chunk_size=20,
                    chain_method="sequential", posterior_predictive=False)
    with monkeypatch.context() as patch:
        Interrupt(patch, after=1)
        with pytest.raises(KeyboardInterrupt):
            inference.fit(normal_model, NORMAL_DATA, seed=5, checkpoint_path=path, **settings)
    with pytest.raises(ValueError, match="checkpoint_path: .*other settings.*seed"):
        inference.fit(normal_model, NORMAL_DATA, seed=6, checkpoint_path=path, **settings)
    with pytest.raises(ValueError, match="checkpoint_path: .*other settings.*data"):
        inference.fit(normal_model, NORMAL_DATA + 1, seed=5, checkpoint_path=path, **settings)
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(ValueError, match="checkpoint_path: .* is not a readable checkpoint"):
        inference.fit(normal_model, NORMAL_DATA, seed=5, checkpoint_path=str(damaged), **settings)
    with pytest.raises(ValueError, match="chunk_size: expected a multiple of thinning"):
        inference.fit(normal_model, NORMAL_DATA, method="nuts", progress=False, thinning=3, chunk_size=10,
                      checkpoint_path=str(tmp_path / "other.npz"))


@pytest.fixture(scope="module")
def ar1_problem():
    return models.ar1(rho_prior=True), jnp.asarray(models.ar1_rho_data(num_series=1, num_steps=15))


def _pmmh_fit(ar1_problem, path=None, **options):
    ssm, ys = ar1_problem
    return inference.fit(ssm, ys, method="pmmh", seed=2, progress=False, num_particles=16, num_warmup=20,
                         num_samples=30, num_chains=2, chunk_size=10, checkpoint_path=path, **options)


@pytest.fixture(scope="module")
def pmmh_plain(ar1_problem):
    """The uninterrupted PMMH run, shared by the two PMMH tests (one fit instead of two)."""
    return _pmmh_fit(ar1_problem)


def test_pmmh_resumes_mid_warmup_and_mid_sampling(monkeypatch, tmp_path, ar1_problem, pmmh_plain):
    def fit(path=None):
        return _pmmh_fit(ar1_problem, path)

    for after in (1, 4):  # in the warmup (10 of 20 iterations), in the sampling (20 of 30 draws)
        resumed, extras = interrupted_then_resumed(monkeypatch, tmp_path / str(after), fit, after=after)
        assert_same_draws(pmmh_plain, resumed)
    assert int(extras["phase"]) == 1 and int(extras["done"]) == 20
    assert extras["kept_0"].shape[:2] == (2, 20)  # (chain, draw) of the first leaf kept


def test_correlated_pmmh_resumes_with_its_noise(monkeypatch, tmp_path, ar1_problem):
    # the chains' state holds the filter's float32 noise (inference.particle.correlated): it
    # must come back from the file as it was, or the resumed draws differ
    def fit(path=None):
        return _pmmh_fit(ar1_problem, path, correlation=0.9)

    resumed, extras = interrupted_then_resumed(monkeypatch, tmp_path, fit, after=3)
    assert int(extras["phase"]) == 1
    assert_same_draws(fit(), resumed)


def test_interrupted_write_keeps_the_previous_checkpoint(monkeypatch, tmp_path, ar1_problem, pmmh_plain):
    def fit(path=None):
        return _pmmh_fit(ar1_problem, path)

    resumed, extras = interrupted_then_resumed(monkeypatch, tmp_path, fit, after=3, during=True)
    # the third write (first sampling chunk) broke off: the second (end of the warmup) is intact
    assert int(extras["phase"]) == 0 and int(extras["done"]) == 20
    assert_same_draws(pmmh_plain, resumed)


def test_particle_gibbs_resumes(monkeypatch, tmp_path, ar1_problem):
    ssm, ys = ar1_problem

    def fit(path=None):
        return inference.fit(ssm, ys, method="pgibbs", seed=4, progress=False, num_particles=8, num_warmup=10,
                             num_samples=20, num_chains=2, chunk_size=10, loglik_particles=16,
                             checkpoint_path=path)

    resumed, _ = interrupted_then_resumed(monkeypatch, tmp_path, fit, after=2)
    assert_same_draws(fit(), resumed)


def test_smc2_resumes_after_a_finished_run(monkeypatch, tmp_path, ar1_problem):
    ssm, ys = ar1_problem

    def fit(path=None):
        return inference.fit(ssm, ys, method="smc2", seed=1, progress=False, num_theta=20, num_particles=16,
                             num_chains=3, checkpoint_path=path)

    resumed, extras = interrupted_then_resumed(monkeypatch, tmp_path, fit, after=2)
    assert int(extras["done"]) == 2
    assert_same_draws(fit(), resumed)
