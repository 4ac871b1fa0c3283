"""Checks of user input shared by every package: the one definition of each.

``zoo`` (entries, processes) and ``inference`` (runners) validate the same kinds of input: counts
that must be positive integers, values that may be JAX tracers (a program traced with its data as
a dynamic argument, as ``inference.fit_batch`` does), arrays that must be concrete for a value
check. Each idea is written once here; ``zoo`` may import this module (docs/contracts.md), and
``zoo.core.is_traced`` is this module's :func:`is_traced`.

Plain Python, no jit: these run at the edges, before compiled code.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

__all__ = ["is_traced", "concrete", "positive_int", "choice", "positive_float", "fraction", "screen_data",
           "first_index", "NonFiniteLogDensityError", "InvalidParameterError"]


class NonFiniteLogDensityError(FloatingPointError):
    """The model's log density is NaN or infinite; the message names the offending sites."""


class InvalidParameterError(ValueError):
    """A distribution of the model got a parameter outside its constraint (NumPyro's argument
    check); the message names the site, the parameter, its values and the latent values there."""


def is_traced(value: Any) -> bool:
    """True when ``value`` (an array or any pytree of arrays) holds a JAX tracer.

    A traced program sees abstract values: its validation checks what a tracer still has (shape
    and dtype) and leaves value checks (infinities, symbols in range, signs) to concrete calls.
    """
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(value))


def concrete(value: Any) -> np.ndarray | None:
    """``value`` as a NumPy array when it is concrete, ``None`` when it is traced."""
    if is_traced(value):
        return None
    try:
        return np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def positive_int(name: str, value: Any, *, minimum: int = 1, why: str = "") -> int:
    """``value`` as an ``int`` of at least ``minimum``; else an error naming ``name``.

    A value that is not an integer (a float, a bool, a string) raises ``TypeError``; an integer
    below ``minimum`` raises ``ValueError``. The message says what was expected and what came;
    ``why`` (e.g. ``"conditional SMC pins one particle"``) is added to it in parentheses.
    """
    if minimum == 1:
        expected = "a positive integer"
    elif minimum == 0:
        expected = "a non-negative integer"
    else:
        expected = f"an integer >= {minimum}"
    if why:
        expected += f" ({why})"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected {expected}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return int(value)


def choice(name: str, value: Any, choices: Any) -> Any:
    """``value`` if it is one of ``choices``; else ``ValueError`` naming ``name`` and the choices."""
    if value not in tuple(choices):
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def positive_float(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """``value`` as a finite ``float`` > 0 (>= 0 with ``allow_zero``); else ``ValueError``."""
    expected = "a finite number >= 0" if allow_zero else "a positive finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return number


def fraction(name: str, value: Any, *, closed: bool = True, of: str = "") -> float:
    """``value`` as a ``float`` in [0, 1] (in (0, 1) when ``closed`` is False); else ``ValueError``.

    ``of`` names what it is a fraction of, for the message (``"a fraction of N in [0, 1]"``).
    """
    interval = "[0, 1]" if closed else "(0, 1)"
    expected = f"a fraction{(' of ' + of) if of else ''} in {interval}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {expected}, got {value!r}") from None
    inside = 0.0 <= number <= 1.0 if closed else 0.0 < number < 1.0
    if isinstance(value, bool) or not inside:  # NaN is never inside
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return number


def first_index(mask: np.ndarray) -> tuple[int, ...]:
    """The index (a tuple) of the first True element of ``mask``, for messages."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), np.shape(mask)))


def _leaves(data: Any, name: str) -> list[tuple[str, Any]]:
    """``(label, leaf)`` for the arrays of ``data``: ``data`` itself when it is one array (a list
    of numbers included), else the leaves of its pytree, labelled ``data['y']``, ``data.readouts``."""
    if isinstance(data, (list, tuple)) and not hasattr(data, "_fields"):
        try:
            array = np.asarray(data)
        except (ValueError, TypeError):  # ragged: a tuple of arrays of different shapes
            array = None
        if array is not None and array.dtype != object:
            return [(name, array)]
        if all(np.ndim(leaf) == 0 for leaf in jax.tree_util.tree_leaves(data)):
            raise TypeError(f"{name}: a nested list whose rows differ in length; expected a rectangular array")
    with_path, _ = jax.tree_util.tree_flatten_with_path(data)
    return [(name + jax.tree_util.keystr(path), leaf) for path, leaf in with_path]


def screen_data(data: Any, name: str = "data", *, allow_all_missing: bool = False) -> Any:
    """Refuse data no model should see, with an error naming ``name`` (and the field).

    Every array of ``data`` (one array, or the leaves of a dict / NamedTuple of arrays) must hold
    real numbers: bool, complex, strings, dates and Python objects are a ``TypeError`` (complex
    would lose its imaginary part, bool would be read as 0/1 without saying so). An array must
    not be empty, and an array that is all NaN (NaN is the one missing-value marker) means nothing
    was observed: a ``ValueError`` unless ``allow_all_missing`` (the likelihood is then masked out
    and a fit samples the prior). Infinite or huge values are left to the model: its log density
    at the initial point is checked, and a non-finite one is an error naming the site
    (``inference.runner.check_initial_point``). Returns ``data`` unchanged; traced data (a batch
    fit) is returned unchecked.
    """
    if data is None or is_traced(data):
        return data
    if isinstance(data, (str, bytes)):
        raise TypeError(f"{name}: expected an array of numbers, got a {type(data).__name__} ({data[:40]!r})")
    for label, leaf in _leaves(data, name):
        if leaf is None:
            continue
        try:
            array = np.asarray(leaf)
        except (ValueError, TypeError) as error:
            raise TypeError(f"{label}: expected an array of numbers, got {type(leaf).__name__} ({error})") from None
        kind = array.dtype.kind
        if kind == "b":
            raise TypeError(f"{label}: got bool values; expected numbers (convert them, e.g. .astype(float), "
                            "if 0/1 are the values meant)")
        if kind == "c":
            raise TypeError(f"{label}: got complex values; expected real numbers (the imaginary part would be lost)")
        if kind not in "iuf":
            raise TypeError(f"{label}: expected an array of real numbers, got {type(leaf).__name__} "
                            f"of dtype {array.dtype}")
        if array.size == 0:
            raise ValueError(f"{label}: empty (shape {array.shape}); expected at least one observation")
        if kind == "f":
            if not allow_all_missing and np.isnan(array).all():
                raise ValueError(f"{label}: every value is NaN (missing): nothing is observed. A fit would "
                                 "return the prior; pass allow_all_missing=True to inference.fit if that is "
                                 "what you want")
    return data
