"""zoo.processes.torus: wrapping exact at the boundaries, geodesic paths, features, named errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference.losses import interpolant_target
from zoo.processes import torus


def test_wrap_is_exact_at_the_boundaries_and_periodic(key):
    pi = np.pi
    np.testing.assert_array_equal(torus.wrap(jnp.array([pi, -pi, 3 * pi, -3 * pi])), [pi, pi, pi, pi])
    assert float(torus.wrap(0.0)) == 0.0
    theta = jax.random.uniform(key, (1000,), minval=-20.0, maxval=20.0)
    wrapped = np.asarray(torus.wrap(theta))
    assert np.all(wrapped > -pi) and np.all(wrapped <= pi)
    np.testing.assert_allclose(np.cos(wrapped), np.cos(theta), atol=1e-12)
    np.testing.assert_allclose(np.sin(wrapped), np.sin(theta), atol=1e-12)
    np.testing.assert_allclose(torus.wrap(wrapped), wrapped, atol=0)  # idempotent


def test_wrapped_difference_and_geodesic_cross_the_seam():
    pi = np.pi
    np.testing.assert_allclose(torus.wrapped_difference(pi - 0.1, -pi + 0.1), -0.2, atol=1e-12)
    np.testing.assert_allclose(torus.wrapped_difference(-pi + 0.1, pi - 0.1), 0.2, atol=1e-12)
    a, b = jnp.array([3.0, -1.0]), jnp.array([-3.0, 2.0])
    np.testing.assert_allclose(torus.geodesic_path(0.0, a, b), a, atol=1e-12)
    np.testing.assert_allclose(torus.geodesic_path(1.0, a, b), b, atol=1e-12)
    np.testing.assert_allclose(torus.geodesic_path(0.5, 3.0, -3.0), pi, atol=1e-12)
    # the flow-matching target of the geodesic is the wrapped difference, also across the seam
    for t in (0.1, 0.5, 0.9):
        _, velocity = interpolant_target(torus.geodesic_path, t, a, b, None)
        np.testing.assert_allclose(velocity, torus.wrapped_difference(b, a), rtol=1e-12)


def test_features_are_continuous_across_the_seam_and_grid():
    np.testing.assert_allclose(torus.periodic_features(jnp.array([np.pi, 0.5]), 2),
                               torus.periodic_features(jnp.array([-np.pi, 0.5]), 2), atol=1e-12)
    assert torus.periodic_features(jnp.zeros((5, 2)), 3).shape == (5, 12)
    centres, edges = torus.grid(4)
    np.testing.assert_allclose(edges, np.linspace(-np.pi, np.pi, 5))
    np.testing.assert_allclose(centres, [-3 * np.pi / 4, -np.pi / 4, np.pi / 4, 3 * np.pi / 4])
    draws = np.asarray(torus.uniform(jax.random.PRNGKey(0), (1000, 2)))
    assert np.all(draws > -np.pi) and np.all(draws <= np.pi)


def test_angles_outside_the_convention_are_named():
    torus.check_angles(np.array([np.pi, 0.0, -3.0]))
    with pytest.raises(ValueError, match=r"phi: expected angles in \(-pi, pi\].*index \(1,\)"):
        torus.check_angles(np.array([0.0, -np.pi]), "phi")
    with pytest.raises(ValueError, match=r"theta: expected angles in \(-pi, pi\]"):
        torus.check_angles(np.array([[0.0, 4.0]]))
    with pytest.raises(ValueError, match="theta: expected angles"):
        torus.check_angles(np.array([np.nan]))
    with pytest.raises(ValueError, match="num_bins"):
        torus.grid(0)
