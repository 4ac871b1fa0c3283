"""Host devices for parallel chains: JAX's CPU backend split into several devices, set before JAX starts.

On a CPU, JAX shows one device by default, so NumPyro can only run chains one after another
(``"sequential"``) or in lock step (``"vectorized"``: every chain waits for the longest NUTS
trajectory of the step). Split into several host devices, the chains run side by side
(``"parallel"``, one ``pmap`` device each), which on the Kalman-marginalised AR(1) model of
``benchmarks/nuts_chains.py`` gives several times the effective samples per second of either (the
figures are in ``benchmarks/README.md``). The split changes nothing else: an ordinary ``jit`` runs
on the first device as before, and the draws of a chain depend on its key only.

Importing any of the three packages (``diagnostics``, ``inference``, ``zoo``) applies it, like
:mod:`diagnostics.precision`, and the command line applies it first. The count:
``DYNAMICS_ZOO_HOST_DEVICES`` when set (a positive integer; ``1`` leaves JAX's single device),
else ``max(4, os.cpu_count())`` (at least the default number of chains, 4). It is set through
``jax.config`` (``jax_num_cpu_devices``) when JAX is already imported, else through
``JAX_NUM_CPU_DEVICES`` (read when JAX is imported), so importing this module does not import JAX.
A count the user chose wins: ``JAX_NUM_CPU_DEVICES``, ``jax_num_cpu_devices`` set through
``jax.config``, or ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``.

JAX fixes its devices when it runs its first operation; a program that computed with JAX before
importing the project keeps the devices it has. :func:`note` then says so (one sentence, empty
otherwise), and the NUTS runner records it in ``idata.attrs["host_devices_note"]``. Only the CPU
backend is affected; GPUs and TPUs are devices of their own.

A leaf: it imports nothing of the project.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ENV_VAR", "requested", "apply", "note", "count"]

#: the environment variable that sets the number of host (CPU) devices; "1" keeps JAX's one device
ENV_VAR = "DYNAMICS_ZOO_HOST_DEVICES"
_JAX_ENV = "JAX_NUM_CPU_DEVICES"
_XLA_FLAG = "--xla_force_host_platform_device_count"

_note = ""


def requested() -> int:
    """The number of host devices asked for: ``DYNAMICS_ZOO_HOST_DEVICES`` or ``max(4, cpu_count)``.

    A value that is not a positive integer is a ``ValueError`` naming the variable.
    """
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return max(4, os.cpu_count() or 1)
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{ENV_VAR}: expected a positive integer number of host devices, got {raw!r}")
    return value


def _user_chose() -> bool:
    if os.environ.get(_JAX_ENV, "").strip():
        return True
    return _XLA_FLAG in os.environ.get("XLA_FLAGS", "")


def apply() -> None:
    """Ask JAX for :func:`requested` CPU devices unless the user chose a number (idempotent).

    When JAX has already started its backends the count cannot change: :func:`note` says so.
    """
    global _note
    if _user_chose():
        return
    try:
        wanted = requested()
    except ValueError as error:  # a bad variable must not make `import zoo` fail
        import warnings

        warnings.warn(f"{error}; JAX's host devices left as they are", RuntimeWarning, stacklevel=2)
        return
    if "jax" not in sys.modules:
        os.environ[_JAX_ENV] = str(wanted)
        return
    import jax  # already imported: no cost
    from jax._src import xla_bridge

    current = jax.config.jax_num_cpu_devices
    if current >= 0:  # set through jax.config (by the user or an earlier apply)
        return
    if xla_bridge.backends_are_initialized():
        if wanted > 1:
            _note = (f"JAX was initialised before dynamics-zoo was imported, so its CPU devices could not be "
                     f"split into {wanted} (set {ENV_VAR} or import zoo/inference before computing with JAX "
                     f"to run chains in parallel); chains run on the devices JAX has")
        return
    jax.config.update("jax_num_cpu_devices", wanted)


def note() -> str:
    """Why the host devices are not what :func:`apply` asked for ("" when they are)."""
    return _note


def count() -> int:
    """The number of local devices of JAX's default backend now (imports JAX; starts its backends)."""
    import jax

    return jax.local_device_count()
