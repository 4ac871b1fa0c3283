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

__all__ = ["is_traced", "concrete", "positive_int", "choice", "positive_float", "fraction"]


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
