"""float32 particles (``particle_dtype="float32"``) estimate the same evidence distribution as the
float64 filter: two-sample Kolmogorov–Smirnov over 256 independent replicates each, on the AR(1) +
noise LGSSM and on stochastic volatility (the benchmark models), with a declared false-alarm budget
of 1e-3 split over the two comparisons; the particles are float32, the log-weights and the evidence
float64; ``run_filter`` records the dtype; a bad value is a named ``ValueError``. The emission fast
path (``zoo.core.normal_log_prob``) is NumPyro's Normal density."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import stats

import zoo
from inference.particle import filter as pf
from inference.types import Target
from zoo.core import masked_log_prob, normal_log_prob
from tests.inference.particle import models

REPLICATES = 256
BUDGET = 1e-3
COMPARISONS = 2
T, N = 50, 64


def _models():
    ar1 = models.ar1()
    ar1_params = {"rho": jnp.asarray(models.RHO), "sigma": jnp.asarray(models.SIGMA)}
    entry = zoo.get("ppg_stochastic_volatility")
    sv = entry.ssm(entry.configs["small"])
    sv_params = {"mu": jnp.asarray(-1.0), "phi": jnp.asarray(0.9), "sigma": jnp.asarray(0.4)}
    return {"lgssm": (ar1, ar1_params), "sv": (sv, sv_params)}


@pytest.mark.parametrize("model", ["lgssm", "sv"])
def test_float32_particles_keep_the_float64_evidence_distribution(model):
    ssm, params = _models()[model]
    _, ys = ssm.simulate(jax.random.PRNGKey(11), params, T)
    fk = ssm.feynman_kac(params, ys)

    def evidence(seed, particle_dtype):
        keys = jax.random.split(jax.random.PRNGKey(seed), REPLICATES)
        out = jax.jit(jax.vmap(lambda k: pf.run(k, fk, N, ess_threshold=1.0, particle_dtype=particle_dtype)))(keys)
        return out

    wide, narrow = evidence(0, None), evidence(1, "float32")
    assert wide.final_state.particles.dtype == jnp.float64
    assert narrow.final_state.particles.dtype == jnp.float32
    assert narrow.log_evidence.dtype == jnp.float64 and narrow.final_state.log_weights.dtype == jnp.float64
    a, b = np.asarray(wide.log_evidence), np.asarray(narrow.log_evidence)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    p = stats.ks_2samp(a, b).pvalue
    assert p > BUDGET / COMPARISONS, f"{model}: KS p = {p:.2g}; means {a.mean():.3f} vs {b.mean():.3f}"


def test_run_filter_records_particle_dtype_and_rejects_others():
    ssm, params = _models()["lgssm"]
    _, ys = ssm.simulate(jax.random.PRNGKey(2), params, 10)
    target = Target(model=ssm.model, data=np.asarray(ys), ssm=ssm, name="ar1")
    idata = pf.run_filter(target, seed=0, progress=False, num_particles=16, params=params, particle_dtype="float32")
    assert idata.attrs["particle_dtype"] == "float32"
    assert pf.run_filter(target, seed=0, progress=False, num_particles=16, params=params).attrs["particle_dtype"] == "float64"
    with pytest.raises(ValueError, match="particle_dtype"):
        pf.run_filter(target, seed=0, progress=False, num_particles=16, params=params, particle_dtype="float16")


def test_emission_fast_path_is_numpyros_normal_density(key):
    """``zoo.core.normal_log_prob`` (what ``masked_log_prob`` evaluates for a ``Normal``) equals
    NumPyro's ``Normal.log_prob`` to float64 rounding: the LGSSM form, the stochastic-volatility form
    ``Normal(0, exp(x / 2))`` over states down to -30, broadcasting, a masked vector observation."""
    x = jax.random.normal(key, (1000,)) * 8.0 - 10.0
    y = jax.random.normal(jax.random.PRNGKey(1), (1000,)) * 0.3
    for d in (dist.Normal(x, 1.3), dist.Normal(0.0, jnp.exp(0.5 * x))):
        expected = d.log_prob(y)
        np.testing.assert_allclose(normal_log_prob(d.loc, d.scale, y), expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(masked_log_prob(d, y), expected, rtol=1e-12, atol=1e-12)
    vec = dist.Normal(jnp.zeros(3), jnp.array([0.5, 1.0, 2.0])).to_event(1)
    obs = jnp.array([0.3, jnp.nan, -1.0])
    observed = dist.Normal(jnp.array([0.0, 0.0]), jnp.array([0.5, 2.0])).to_event(1).log_prob(obs[jnp.array([0, 2])])
    np.testing.assert_allclose(masked_log_prob(vec, obs), observed, rtol=1e-12)
    assert float(masked_log_prob(dist.Normal(0.0, 1.0), jnp.nan)) == 0.0
