"""The one floating-point precision policy of dynamics-zoo: float64 unless ``DYNAMICS_ZOO_X64=0``.

Importing any of the three packages (``diagnostics``, ``inference``, ``zoo``) applies it, so the
dtype of a computation does not depend on which package a program happens to import first (a
plain NumPyro program fitted with ``inference.fit`` runs in float64 without importing ``zoo``).
The exact algorithms (Kalman filters, matrix exponentials, the fBM coefficient system) need float64
for reference-quality answers; ``DYNAMICS_ZOO_X64=0`` keeps JAX's own default (float32, or what
``JAX_ENABLE_X64`` says), e.g. for speed on accelerators.

It is applied through ``jax.config`` when JAX is already imported, else through
``JAX_ENABLE_X64`` (JAX reads it when it is imported), so importing this module (and ``zoo``,
whose ``zoo list`` must stay fast) does not import JAX. It lives in ``diagnostics`` as a leaf
(it imports nothing of the project), so every package may import it (``docs/contracts.md``,
arrows). Arrays created before the policy is applied keep the dtype they were created with.
Every ``InferenceData`` built by :func:`diagnostics.convert.to_inference_data` records
:func:`name` in ``attrs["precision"]``.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ENV_VAR", "wants_x64", "apply", "name"]

#: the environment variable that switches float64 off ("0"); any other value, or unset, = float64
ENV_VAR = "DYNAMICS_ZOO_X64"


def wants_x64() -> bool:
    """True unless ``DYNAMICS_ZOO_X64=0``."""
    return os.environ.get(ENV_VAR, "1").strip() != "0"


def apply() -> None:
    """Switch JAX to float64 unless ``DYNAMICS_ZOO_X64=0`` (idempotent; never switches x64 off)."""
    if not wants_x64():
        return
    if "jax" in sys.modules:
        sys.modules["jax"].config.update("jax_enable_x64", True)
    else:
        os.environ["JAX_ENABLE_X64"] = "1"


def name() -> str:
    """The default floating dtype of the process now: ``"float64"`` or ``"float32"``."""
    import jax.numpy as jnp

    return str(jnp.dtype(jnp.result_type(float)))
