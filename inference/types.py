"""What the inference backends consume, stated as Protocols (``inference`` never imports ``zoo``).

``zoo.core.ZooEntry``, ``zoo.core.StateSpaceModel`` and ``zoo.core.FeynmanKac`` satisfy these
structurally. A backend receives a :class:`Target`, built by ``inference.fit`` from whatever the
user passed (an entry, a state-space model, or a plain NumPyro model function).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax

__all__ = ["FeynmanKacModel", "StateSpaceTarget", "EntryLike", "TeacherForcedProgram", "RegressionProgram", "Target", "PRNGKey", "Array"]

PRNGKey = jax.Array
Array = jax.Array


@runtime_checkable
class FeynmanKacModel(Protocol):
    """Per-particle adapters for one observation sequence (see ``zoo.core.FeynmanKac``)."""

    sample_initial: Callable[[PRNGKey], Any]
    initial_log_density: Callable[[Any], Array]
    sample_transition: Callable[[PRNGKey, Array, Any], Any]
    transition_log_density: Callable[[Array, Any, Any], Array]
    emission_log_weight: Callable[[Array, Any], Array]
    num_steps: int


@runtime_checkable
class StateSpaceTarget(Protocol):
    """A state-space model: a NumPyro prior over parameters and Feynman–Kac adapters."""

    state_shape: tuple[int, ...]
    obs_shape: tuple[int, ...]

    def prior(self) -> dict: ...

    def model(self, ys: Any = None, *, num_steps: int | None = None) -> None: ...

    def feynman_kac(self, params: dict, ys: Array) -> FeynmanKacModel: ...

    def log_joint(self, params: dict, xs: Array, ys: Array) -> Array: ...

    def split_series(self, ys: Array) -> Array: ...


@runtime_checkable
class EntryLike(Protocol):
    """What ``inference.fit`` reads from a zoo entry."""

    name: str
    model: Callable[..., Any]
    configs: Mapping[str, Any]
    dims: Mapping[str, Sequence[str]]


@runtime_checkable
class TeacherForcedProgram(Protocol):
    """What the method ``"tf"`` (``inference.train.run_teacher_forcing``) trains.

    ``model(windows (B, T, N), *, forcing: inference.losses.Forcing)``: a NumPyro program whose
    only non-observed sites are ``numpyro.param`` sites (``flax_module`` networks); it rolls its
    model out along each window with ``forcing`` (``inference.losses.forced_rollout``), records the
    pre-forcing read-outs as the deterministic site ``x_pred`` ``(B, T-1, N)`` and observes the
    windows' last T-1 points under a (pseudo-)likelihood. With ``forcing.estimate_alpha`` it also
    records ``alpha_estimate`` (the adaptive-GTF α on its data-inferred states). ``alpha = 0`` is a
    free run from the window's first point (used to select checkpoints by D_stsp).
    """

    def __call__(self, data: Any = None, *, forcing: Any = None) -> None: ...


@runtime_checkable
class RegressionProgram(Protocol):
    """What the method ``"flow"`` (``inference.train.run_flow``) trains.

    ``model(data, *, batch_size)``: a NumPyro program whose networks are ``numpyro.param`` sites
    (``flax_module``), whose latent sample sites are the random draws of ONE minibatch of a
    regression (data indices, interpolation times, base points, latent noise: they are redrawn
    from their law every step, never trained) and whose observed sites score it (a
    ``numpyro.factor`` of minus an ``inference.losses`` objective, or an observed Gaussian around
    the network's output). The runner minimises minus the sum of the observed sites' log densities.
    """

    def __call__(self, data: Any = None, *, batch_size: int | None = None) -> None: ...


class Target(NamedTuple):
    """A normalised inference target handed to every backend runner.

    model: ``model(data)``: a NumPyro program with its configuration already bound.
    data: the observations, passed as the program's first argument.
    ssm: a :class:`StateSpaceTarget` where one exists (needed by the particle methods), else None.
    exact_loglik: ``exact_loglik(params, data) -> scalar`` where the entry has one, else None.
    dims: InferenceData dims per site name.
    observed: named arrays to store as ``observed_data``.
    name: for messages and reports.
    """

    model: Callable[..., Any]
    data: Any
    ssm: Any = None
    exact_loglik: Callable[..., Any] | None = None
    dims: Mapping[str, Sequence[str]] = {}
    observed: Mapping[str, Any] = {}
    name: str = "model"
