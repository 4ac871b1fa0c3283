"""The states of a diffrax solve, its failure made loud without a host callback.

The zoo's diffrax solves run with ``throw=False`` and read the solution through
:func:`checked_states`. Diffrax's own ``throw=True`` raises through Equinox's runtime errors, which
in Equinox's default mode (``EQX_ON_ERROR=raise``) put a host callback into the compiled program;
JAX's persistent compilation cache never stores a program with a host callback, so every fit of an
ODE entry compiled its programs again, in every process (``diagnostics.compile_cache`` explains the
cache and why the packages default Equinox to ``EQX_ON_ERROR=nan``). Here the failure is reported
where it can be: a concrete solve (a simulation, a reference solution) raises
:class:`ODESolveError` naming the caller and diffrax's message; a traced one (a log density, its
gradient, a vmapped batch) returns NaN states, which the runners catch and name as a non-finite
log density (a NUTS proposal there is a divergence, not a crash of the whole fit).
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp

from inference.validate import is_traced

__all__ = ["ODESolveError", "checked_states"]


class ODESolveError(RuntimeError):
    """A concrete diffrax solve that did not succeed (``max_steps`` reached, step size collapsed)."""


def checked_states(solution: diffrax.Solution, what: str):
    """``solution.ys`` of a solve run with ``throw=False`` (any pytree of states): on failure,
    :class:`ODESolveError` naming ``what`` when concrete, NaN states when traced."""
    ok = solution.result == diffrax.RESULTS.successful
    if not is_traced(ok):
        if not bool(ok):
            raise ODESolveError(f"{what}: the ODE solve failed: {diffrax.RESULTS[solution.result]}")
        return solution.ys
    return jax.tree.map(lambda y: jnp.where(ok, y, jnp.nan), solution.ys)
