"""Shared fixtures: float64 for reference comparisons, a fixed PRNG key, no plotting windows."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    """A fixed PRNG key: every statistical test is deterministic."""
    return jax.random.PRNGKey(20261128)
