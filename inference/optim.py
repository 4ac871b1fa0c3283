"""The optimisers the training back-ends share: one registry of optax optimisers by name, and one
builder that adds gradient clipping.

SVI, MAP, the VAE trainer and teacher forcing take ``optimizer=NAME`` (one of :data:`OPTIMIZERS`),
a learning rate (a number, or an optax schedule built from one) and ``clip_norm``. The clip is
checked here for all of them: optax's ``clip_by_global_norm`` with a negative norm scales every
gradient to that negative length, so the optimiser climbs the loss instead of descending it,
silently; a clip norm must be a positive finite number (or ``None``, no clipping).

Public API: :data:`OPTIMIZERS`, :func:`make_optimizer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from inference.validate import positive_float

__all__ = ["OPTIMIZERS", "make_optimizer"]

#: optax optimisers by name; each takes a learning rate or a schedule.
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": optax.adam, "adamw": optax.adamw, "radam": optax.radam, "sgd": optax.sgd,
    "rmsprop": optax.rmsprop, "adabelief": optax.adabelief,
}


def make_optimizer(optimizer: str | optax.GradientTransformation, learning_rate: float | Any,
                   clip_norm: float | None = None) -> optax.GradientTransformation:
    """An optax optimiser by name (:data:`OPTIMIZERS`) at ``learning_rate`` (a positive finite
    number, or an optax schedule), or a given transformation as it is; with ``clip_norm`` the
    gradient's global norm is clipped to it first.

    Raises:
        ValueError: an unknown name, a learning rate or a clip norm that is not a positive finite
            number (each error names its argument).
    """
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)} or an optax transformation, "
                             f"got {optimizer!r}")
        if not callable(learning_rate):
            learning_rate = positive_float("learning_rate", learning_rate)
        optimizer = OPTIMIZERS[optimizer](learning_rate)
    elif not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(f"optimizer: expected a name or an optax.GradientTransformation, got "
                        f"{type(optimizer).__name__}")
    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(positive_float("clip_norm", clip_norm)), optimizer)
    return optimizer
