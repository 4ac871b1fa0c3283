"""The shared input checks (inference.validate): what they accept, and the errors they name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference.validate import choice, concrete, fraction, is_traced, positive_float, positive_int


def test_positive_int():
    assert positive_int("n", 3) == 3 and isinstance(positive_int("n", np.int64(3)), int)
    assert positive_int("n", 0, minimum=0) == 0
    with pytest.raises(ValueError, match="n: expected a positive integer, got 0"):
        positive_int("n", 0)
    with pytest.raises(ValueError, match=r"num_particles: expected an integer >= 2 \(conditional SMC pins one\)"):
        positive_int("num_particles", 1, minimum=2, why="conditional SMC pins one")
    for bad in (2.0, True, "3", None):
        with pytest.raises(TypeError, match="n: expected a non-negative integer"):
            positive_int("n", bad, minimum=0)


def test_choice_positive_float_fraction():
    assert choice("kernel", "rw", ("rw", "hmc")) == "rw"
    with pytest.raises(ValueError, match=r"kernel: expected one of \['rw', 'hmc'\], got 'mala'"):
        choice("kernel", "mala", ("rw", "hmc"))
    assert positive_float("scale", 2) == 2.0 and positive_float("r", 0.0, allow_zero=True) == 0.0
    for bad in (0.0, -1.0, float("inf"), float("nan"), "1", True):
        with pytest.raises(ValueError, match="scale: expected a positive finite number"):
            positive_float("scale", bad)
    with pytest.raises(ValueError, match="r: expected a finite number >= 0"):
        positive_float("r", -0.5, allow_zero=True)
    assert fraction("ess_threshold", 1.0) == 1.0 and fraction("p", 0.5, closed=False) == 0.5
    for bad in (1.5, -0.1, float("nan"), "x"):
        with pytest.raises(ValueError, match=r"ess_threshold: expected a fraction of N in \[0, 1\]"):
            fraction("ess_threshold", bad, of="N")
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"target_ess: expected a fraction in \(0, 1\)"):
            fraction("target_ess", bad, closed=False)


def test_is_traced_and_concrete():
    assert not is_traced(np.zeros(2)) and concrete(jnp.ones(2)).tolist() == [1.0, 1.0]

    def probe(x):
        assert is_traced({"a": x, "b": 1.0}) and concrete(x) is None
        return x

    jax.jit(probe)(jnp.zeros(2))
