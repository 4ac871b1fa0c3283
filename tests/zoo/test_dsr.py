"""zoo._dsr's estimands against known answers: the Lyapunov routine per unit time on a map with
known exponents, the estimands of maps whose orbit is known in closed form (and NaN for one that
diverges), and the true Lorenz-63 λ_max against the literature, the same in any sampling step."""

import dataclasses
import math

import arviz as az
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from tests.helpers import z_quantile
from zoo import _dsr

SMALL = zoo.get("alrnn_dsr").configs["small"]
SHORT = dataclasses.replace(SMALL, num_test=2000, eval_steps=2000, eval_transient=100)


def _rotation(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def _observed(x0) -> az.InferenceData:
    return az.from_dict(observed_data={"y": np.asarray(x0, dtype=float)[None]})


def test_lyapunov_exponent_is_per_unit_time_of_a_step_of_dt():
    # z ↦ 0.99 Q z with Q orthogonal (a rotation about an oblique axis): every tangent vector shrinks by
    # exactly 0.99 per step (|eigenvalues| 0.99), so λ = log 0.99 / dt with no alignment error
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    step_matrix = jnp.asarray(0.99 * q)
    for dt in (1.0, 0.01):
        spectrum = _dsr.lyapunov(lambda z: step_matrix @ z, jnp.ones(3), num_steps=500, dt=dt, transient=50)
        assert spectrum.exponents[0] == pytest.approx(math.log(0.99) / dt, rel=1e-10)


def test_estimands_of_maps_with_known_orbits():
    # a rotation by θ in (z1, z2) from radius 1, and z3 ↦ 0.5 z3 + 0.3 (fixed point 0.6): over N kept
    # steps the orbit's mean of cos/sin is within 1/(N |sin(θ/2)|) of 0 and its variance within
    # 1/(2N |sin θ|) of 1/2 (geometric sums); tangent vectors keep their norm in the plane and
    # halve along z3, so λ_max = 0, approached from below by the initial frame's projection
    theta = 2 * math.pi * (math.sqrt(5) - 1) / 2
    rotation = jnp.asarray(_rotation(theta))

    def step(z):
        return jnp.concatenate([rotation @ z[:2], 0.5 * z[2:] + 0.3])

    n = SHORT.eval_steps
    implied = _dsr.estimands(step, lambda x: x, _observed([1.0, 0.0, 5.0]), SHORT)
    assert {k: np.shape(v) for k, v in implied.items()} == {"attractor_mean": (3,), "attractor_std": (3,),
                                                            "lyapunov_max": ()}
    bound = 1 / (n * abs(math.sin(theta / 2)))
    np.testing.assert_allclose(implied["attractor_mean"], [0.0, 0.0, 0.6], atol=bound)
    np.testing.assert_allclose(implied["attractor_std"] ** 2, [0.5, 0.5, 0.0], atol=bound + 1 / (2 * n * abs(math.sin(theta))))
    assert -5 / (n * SHORT.dt) <= float(implied["lyapunov_max"]) <= 1e-9
    # a diverging map: every estimand NaN (zoo estimates counts the replicate as not finite)
    blown = _dsr.estimands(lambda z: 3.0 * z + 1.0, lambda x: x, _observed([1.0, 0.0, 0.0]), SHORT)
    assert all(np.all(np.isnan(v)) for v in blown.values()) and np.shape(blown["attractor_std"]) == (3,)
    with pytest.raises(KeyError, match="observed_data"):
        _dsr.estimands(step, lambda x: x, az.InferenceData(), SHORT)


def test_true_lorenz_lyapunov_exponent_is_the_literature_value_in_any_sampling_step():
    # literature λ_max of Lorenz-63 at σ = 10, ρ = 28, β = 8/3: 0.9056 (J. C. Sprott 2003, Chaos and
    # Time-Series Analysis; the spec's (0.906, 0, −14.57)), four digits: ±5e-5 of rounding
    z = z_quantile(num_comparisons=2)
    truth = _dsr.true_invariants(SMALL)
    assert abs(truth.lyapunov_max - 0.9056) <= z * truth.lyapunov_se + 5e-5, truth
    assert 0 < truth.lyapunov_se < 0.01
    # per unit time: sampled at Δt = 0.02 the flow map's exponent is the same
    coarse = _dsr.true_invariants(dataclasses.replace(SMALL, dt=0.02))
    assert abs(coarse.lyapunov_max - truth.lyapunov_max) <= z * math.hypot(truth.lyapunov_se, coarse.lyapunov_se)
    np.testing.assert_array_equal(coarse.mean, truth.mean)  # the moments do not depend on the sampling
