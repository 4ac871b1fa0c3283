"""The runner's posterior predictive: the program without data, at the posterior's sampled AND
deterministic values (a deterministic may depend on the data), recomputing only a deterministic
whose shape differs without data (the simulation's own path)."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.runner import _posterior_predictive


def _program(data=None):
    # b is whitened by the data's scale (as a QR/Cholesky reparameterisation is): w = b * scale
    scale = 1.0 if data is None else jnp.std(data)
    n = 3 if data is None else data.shape[0]
    b = numpyro.sample("b", dist.Normal(0.0, 10.0))
    w = numpyro.deterministic("w", b * scale)
    path = numpyro.deterministic("path", w + jnp.arange(n))  # data-length path: (5,) vs (3,)
    numpyro.sample("y", dist.Normal(path, 1e-3).to_event(1), obs=data)


def test_predictive_uses_the_posteriors_deterministic_values():
    data = jnp.array([0.0, 4.0, 8.0, 12.0, 16.0])  # std = sqrt(32), so w = b * 5.657
    b = np.array([[1.0, 2.0], [-1.0, 0.5]])  # (chain, draw)
    w = b * float(jnp.std(data))
    samples = {"b": b, "w": w, "path": w[..., None] + np.arange(5)}
    out = _posterior_predictive(_program, samples, seed=0, posterior_names={"b", "w", "path"})
    assert set(out) == {"y"}
    assert out["y"].shape == (2, 2, 3)  # the no-data program's own length: "path" recomputed
    # y ~ N(w + (0, 1, 2), 1e-3) with the posterior's w, not the no-data program's b * 1
    np.testing.assert_allclose(out["y"], w[..., None] + np.arange(3), atol=0.01)
