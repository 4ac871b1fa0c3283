"""The shared input checks (inference.validate): what they accept, and the errors they name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference.validate import choice, concrete, fraction, is_traced, positive_float, positive_int, screen_data


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


def test_screen_data_refuses_what_no_model_should_see():
    """Issue 20 items 5-6: bool, complex, text, ragged, empty and all-NaN data are errors naming ``data``
    (and the field of a dict / record); good data and traced data pass unchanged."""
    good = np.array([[1.0, np.nan], [2.0, 3.0]])
    assert screen_data(good) is good and screen_data(None) is None
    cases = [
        (good > 1, TypeError, "data: got bool values"),
        (good + 1j, TypeError, "data: got complex values; expected real numbers"),
        ("1,2,3", TypeError, "data: expected an array of numbers, got a str"),
        (np.array(["a", "b"]), TypeError, "data: expected an array of real numbers"),
        ([[1.0, 2.0], [3.0]], TypeError, "data: a nested list whose rows differ in length"),
        (np.zeros((0, 3)), ValueError, r"data: empty \(shape \(0, 3\)\)"),
        (np.full((2, 3), np.nan), ValueError, "data: every value is NaN .*allow_all_missing=True"),
        ({"y": good, "flags": np.array([True])}, TypeError, r"data\['flags'\]: got bool values"),
    ]
    for value, error, message in cases:
        with pytest.raises(error, match=message):
            screen_data(value)
    assert np.isnan(screen_data(np.full(3, np.nan), allow_all_missing=True)).all()
    jax.jit(lambda y: screen_data(y) * 2)(jnp.full(3, jnp.nan))  # traced: no value checks


def test_entries_take_nan_as_missing_and_refuse_bad_symbols_before_any_backend():
    """Issue 20 items 4-6 on real entries, through the facade every method goes through."""
    import inference
    import zoo

    hmm = zoo.get("hmm")
    symbols, _ = hmm.simulate(jax.random.PRNGKey(0), hmm.config("categorical"))
    symbols = np.asarray(symbols).astype(float)
    half = symbols.copy()
    half[0, 3] = 1.5
    # method pf read 1.5 as symbol 1 (the state-space route casts to int) and returned a result
    with pytest.raises(ValueError, match=r"data: expected whole numbers in \['symbol'\] \(NaN = missing\), "
                                         r"got 1.5 at index \(0, 3\)"):
        inference.fit(hmm, half, method="pf", config="categorical", progress=False)
    infinite = symbols.copy()
    infinite[1, 0] = np.inf  # was cast to the smallest int64
    with pytest.raises(ValueError, match=r"data: expected whole numbers .* got inf at index \(1, 0\)"):
        inference.resolve_target(hmm, infinite, config="categorical")
    with pytest.raises(ValueError, match=r"datasets\[1\]: data: expected whole numbers"):
        inference.fit_batch(hmm, [symbols, half], method="nuts", config="categorical")
    gap = symbols.copy()
    gap[0, 3] = np.nan  # NaN is missing in symbol data too: the program's stand-in (-1) there
    prepared = inference.resolve_target(hmm, gap, config="categorical").data
    assert prepared.dtype.kind == "i" and prepared[0, 3] == -1 and prepared[0, 4] == symbols[0, 4]
    with pytest.raises(ValueError, match="data: every value is missing"):
        inference.resolve_target(hmm, np.full(symbols.shape, -1), config="categorical")

    lgssm = zoo.get("lgssm")
    y, _ = lgssm.simulate(jax.random.PRNGKey(0), lgssm.config("scalar"))
    y = np.asarray(y)
    for bad, message in ((y > 0, "data: got bool values"), (y + 0j, "data: got complex values"),
                         ({"y": y}, r"data: expected one array \(series, time, 1\) \(channels \['y'\]\), got a dict")):
        with pytest.raises(TypeError, match=message):
            inference.fit(lgssm, bad, method="nuts", config="scalar", progress=False)
    with pytest.raises(ValueError, match="data: every value is NaN"):
        inference.fit(lgssm, np.full(y.shape, np.nan), method="nuts", config="scalar", progress=False)
    unobserved = inference.resolve_target(lgssm, np.full(y.shape, np.nan), config="scalar", allow_all_missing=True)
    assert np.isnan(unobserved.data).all()
