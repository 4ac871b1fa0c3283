r"""Explicit affective (Valence–Arousal–Dominance) state dynamics of an LLM agent (entry ``affect_vad``).

Model card
----------
Subaharan (2026), "Controlling long-horizon behavior in language model agents with explicit state
dynamics", arXiv:2601.16087. The paper keeps a VAD state s_t ∈ R³ outside the language model, fed
by a memoryless per-turn affect estimate e_t of the user's turn, and compares three update rules
over a fixed 25-turn protocol. The paper fits nothing; this entry makes the update rule a latent
linear-Gaussian process with *known inputs* e_t, observed through noisy per-turn readouts r_t of
the agent's expressed affect, and asks which order of dynamics generated a dialogue.

Three variants (``config.variant``), each dimension d ∈ {V, A, D} separately, shared parameters::

    stateless      s_t = e_t                                                   (no latent state)
    first_order    s_t = s_{t-1} + α (e_t − s_{t-1})                 + σ_s ξ_t  (exponential smoothing)
    second_order   s_t = s_{t-1} + α (e_t − s_{t-1}) + μ (s_{t-1} − s_{t-2}) + σ_s ξ_t  (heavy-ball momentum)
    readout        r_t = κ s_t + σ_r η_t,       ξ_t, η_t ~ N(0, 1),   s_0, s_{-1} ~ N(0, 0.1²)

Momentum convention: the heavy-ball form above (equivalently m_t = μ m_{t−1} + α(e_t − s_{t−1}),
s_t = s_{t−1} + m_t), *not* the "EMA of increments" form with a (1 − μ) factor. The second-order
rule is an AR(2) filter with poles λ² − (1 − α + μ)λ + μ = 0; its step response overshoots iff the
poles are complex, (1 − α + μ)² < 4μ (e.g. α = 0.3, μ = 0.6: poles 0.65 ± 0.42i). The paper's
clipping of s to [−1, 1] is left out: it would break the Kalman exactness (use particle methods for it).

The model is written once, as :func:`lgssm_params` (the linear-Gaussian form of one VAD dimension
with its known inputs), and built by the linear-Gaussian family (:func:`family`,
``zoo.processes.linear_gaussian``; the three dimensions are independent channels sharing the
parameters): the state-space form, the simulator and the Kalman marginal derive from it. As a
state-space model the state is x_t = (s_t, s_{t−1}) per dimension (second order; the lagged copy is a
point mass), s_t (first order; stateless: s_t = e_t exactly); the likelihood of the readouts is
computed exactly by ``inference.exact.kalman_filter`` (one filter per dialogue and dimension) and
enters as ``numpyro.factor("y", increments)`` with increments of shape (dialogue, turn) (the three
dimensions of a turn summed), so LOO works per turn. The simulator draws its noise as the pre-sample
state (s_0, s_{−1}) and one standard normal per turn and dimension and maps it through the family's
recursion (``LinearGaussian.path`` / ``observe``): the law of the state-space form, and per seed the
same data as a direct scan of the update rule.

=============  =====================  ===========================  =============
site           prior                  variants                     small truth
=============  =====================  ===========================  =============
``alpha``      Beta(2, 2)             first, second order          0.3
``mu``         Beta(1.5, 1.5)         second order                 0.6
``sigma_s``    HalfNormal(0.05)       first, second order          0.02
``sigma_r``    HalfNormal(0.2)        all                          0.1
``gain`` (κ)   LogNormal(0, 0.3)      all (``learn_gain=True``)    1.0
=============  =====================  ===========================  =============

Protocol [zoo; the paper's script was not available]: turns 1–5 neutral (e = 0), 6–12 hostile
(V, A, D) = (−0.8, 0.6, −0.3), 13–25 neutral-to-warm (0.2, 0, 0) (condition ``"hostile"``); the
``paper`` configuration adds ``"supportive"`` and ``"alternating"`` conditions.

Model comparison: fit the three variants to the same data (``with_variant``); ``VARIANTS`` lists
them simplest first, the order ``diagnostics.compare.choose_model(..., order=VARIANTS)`` needs to
choose by PSIS-LOO (the simplest model within 2 SE of the best), by leave-future-out over turns
(same rule on the paired per-turn differences; refits on :func:`first_turns` evaluated on the full
data by :func:`per_turn_log_likelihood`, for ``diagnostics.compare.psis_lfo``) and by the
log-evidence: exact (``inference.fit(..., method="quadrature")``, adaptive Gauss–Hermite
quadrature of the Kalman marginal likelihood over the parameters), or a tempered-SMC estimate
(``inference.fit(..., method="smc")``).

Calibration: simulation-based calibration of the default recipe on ``small`` (n = 100 replicates,
L = 99 draws; about 21 CPU-seconds per replicate in batches of 5, compilation included: 2130
CPU-s in all, run in three pieces): calibrated, no element flagged (χ² p ≥ 0.17 over α, μ, σ_s,
σ_r, κ, every ECDF inside its band), every fit R-hat ≤ 1.02. Twelve of the 100 fits had divergent
transitions (1 to 15 of 1000 draws), at prior draws with strong persistence (α ≥ 0.7 in eight) or
a near-zero state noise (σ_s ≤ 0.006 in four); their ranks are included. The ranks are stored in
``calibration/affect_vad/small``; the docs' calibration page is generated from them.

Example::

    import jax, zoo, inference
    entry = zoo.get("affect_vad")
    cfg = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), cfg)
    idata = inference.fit(entry, data, method="nuts", num_warmup=500, num_samples=500)
    entry.check(idata, truth, cfg)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference import exact
from inference.validate import is_traced
from zoo.core import Check, FixedParameter, Recipe, StateSpaceModel, ZooEntry, check_close, check_covers, check_ranges
from zoo.processes.linear_gaussian import LinearGaussian, linear_gaussian
from zoo.processes.series import validate_series

__all__ = [
    "VARIANTS",
    "PROTOCOLS",
    "AffectConfig",
    "AffectData",
    "protocol_inputs",
    "dialogue_inputs",
    "make_data",
    "with_variant",
    "simulate_states",
    "step_response",
    "overshoots",
    "has_complex_poles",
    "protocol_metrics",
    "lgssm_params",
    "family",
    "turn_log_likelihoods",
    "model",
    "simulate",
    "check",
    "exact_loglik",
    "first_turns",
    "per_turn_log_likelihood",
    "affect_ssm",
    "true_params",
    "paper_grid",
    "CONFIGS",
    "ENTRY",
]

#: The variants, simplest first: nested models, the order in which model choice prefers them.
VARIANTS = ("stateless", "first_order", "second_order")
DIMENSIONS = ("valence", "arousal", "dominance")

_NEUTRAL = (0.0, 0.0, 0.0)
_HOSTILE = (-0.8, 0.6, -0.3)
_WARM = (0.2, 0.0, 0.0)
_SUPPORTIVE = (0.7, 0.3, 0.2)

#: condition -> segments (first turn, last turn, VAD input), turns numbered from 1.
PROTOCOLS: dict[str, tuple] = {
    "hostile": ((1, 5, _NEUTRAL), (6, 12, _HOSTILE), (13, 25, _WARM)),
    "supportive": ((1, 5, _NEUTRAL), (6, 12, _SUPPORTIVE), (13, 25, _NEUTRAL)),
    "alternating": ((1, 5, _NEUTRAL), (6, 9, _HOSTILE), (10, 13, _SUPPORTIVE), (14, 17, _HOSTILE),
                    (18, 25, _NEUTRAL)),
}


# --------------------------------------------------------------------------------------------
# Configuration and data
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AffectConfig:
    """Configuration: the variant (fitted by ``model`` and simulated by ``simulate``), the data
    size, the protocol conditions (dialogue i follows ``conditions[i % len]``) and the truth.

    Fitting variant B to data simulated under variant A: ``with_variant(config_A, B)``.
    """

    COUNTS: ClassVar[tuple[str, ...]] = ("num_dialogues", "num_turns")
    POSITIVE: ClassVar[tuple[str, ...]] = ("true_alpha", "true_gain")

    variant: str = "second_order"
    num_dialogues: int = 20
    num_turns: int = 25
    conditions: tuple = ("hostile",)
    learn_gain: bool = True
    initial_scale: float = 0.1
    true_alpha: float = 0.3
    true_mu: float = 0.6
    true_sigma_s: float = 0.02
    true_sigma_r: float = 0.1
    true_gain: float = 1.0

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {VARIANTS}, got {self.variant!r}")
        if not self.conditions or any(c not in PROTOCOLS for c in self.conditions):
            raise ValueError(f"conditions: expected names from {sorted(PROTOCOLS)}, got {self.conditions!r}")
        if not 0 < self.true_alpha <= 1:
            raise ValueError(f"true_alpha: expected a value in (0, 1], got {self.true_alpha}")
        if not 0 <= self.true_mu < 1:
            raise ValueError(f"true_mu: expected a value in [0, 1), got {self.true_mu}")
        for name in ("true_sigma_s", "true_sigma_r", "initial_scale"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected a non-negative value, got {getattr(self, name)}")

    def fixed_parameters(self) -> dict[str, FixedParameter]:
        """The readout gain, at 1, unless ``learn_gain``."""
        return {} if self.learn_gain else {"gain": FixedParameter(1.0, "learn_gain=True")}


def with_variant(config: AffectConfig, variant: str) -> AffectConfig:
    """``config`` with another fitted variant (same data size, conditions and truth)."""
    return dataclasses.replace(config, variant=variant)


class AffectData(NamedTuple):
    """inputs (S, T, 3): the user-turn affect estimates e_t (known, finite);
    readouts (S, T, 3): the agent-turn affect readouts r_t (NaN = missing)."""

    inputs: jax.Array
    readouts: jax.Array


def make_data(inputs, readouts, turns=None) -> AffectData:
    """Validated :class:`AffectData`. ``turns`` (S, T) or (T,), if given, must run 1, 2, …, T in
    every dialogue (``ValueError`` "turns out of order" otherwise)."""
    inputs = np.asarray(inputs, dtype=float)
    readouts = np.asarray(readouts, dtype=float)
    if inputs.ndim == 2:
        inputs, readouts = inputs[None], readouts[None] if readouts.ndim == 2 else readouts
    if inputs.ndim != 3 or inputs.shape[-1] != 3:
        raise ValueError(f"inputs: expected shape (dialogue, turn, 3), got {inputs.shape}")
    if readouts.shape != inputs.shape:
        raise ValueError(f"readouts: expected shape {inputs.shape} (same as inputs), got {readouts.shape}")
    if not np.all(np.isfinite(inputs)):
        raise ValueError("inputs: the affect inputs e_t are known and must be finite (no NaN)")
    if np.any(np.isinf(readouts)):
        raise ValueError("readouts: expected finite values or NaN (missing), found inf")
    if turns is not None:
        turns = np.broadcast_to(np.asarray(turns), inputs.shape[:2])
        expected = np.arange(1, inputs.shape[1] + 1)
        bad = np.flatnonzero(np.any(turns != expected, axis=1))
        if bad.size:
            raise ValueError(f"turns: turns out of order in dialogue {int(bad[0])}: got "
                             f"{turns[bad[0]][:8].tolist()}...; expected 1, 2, ..., {inputs.shape[1]}")
    return AffectData(jnp.asarray(inputs), jnp.asarray(readouts))


def _validate_data(data) -> AffectData:
    if not isinstance(data, AffectData):
        if isinstance(data, Mapping) and {"inputs", "readouts"} <= set(data):
            data = AffectData(data["inputs"], data["readouts"])
        else:
            raise TypeError(f"data: expected AffectData(inputs, readouts), got {type(data).__name__}")
    if is_traced(data):  # a batch fit: shapes here, values on the concrete data
        if data.inputs.ndim != 3 or data.inputs.shape[-1] != 3 or data.readouts.shape != data.inputs.shape:
            raise ValueError(f"data: expected inputs and readouts of shape (dialogue, turn, 3), got "
                             f"{data.inputs.shape}, {data.readouts.shape}")
        return data
    return make_data(*data)


def protocol_inputs(condition: str, num_turns: int = 25) -> np.ndarray:
    """The protocol's VAD inputs e_t (num_turns, 3); the last segment extends past turn 25."""
    if condition not in PROTOCOLS:
        raise KeyError(f"condition: unknown protocol {condition!r}; expected one of {sorted(PROTOCOLS)}")
    e = np.zeros((num_turns, 3))
    segments = PROTOCOLS[condition]
    for first, last, value in segments:
        e[first - 1:last] = value
    last_end = segments[-1][1]
    if num_turns > last_end:
        e[last_end:] = segments[-1][2]
    return e


def dialogue_inputs(config: AffectConfig) -> np.ndarray:
    """Inputs of every dialogue (S, T, 3): dialogue i follows ``conditions[i % len(conditions)]``."""
    per = [protocol_inputs(c, config.num_turns) for c in config.conditions]
    return np.stack([per[i % len(per)] for i in range(config.num_dialogues)])


# --------------------------------------------------------------------------------------------
# Dynamics
# --------------------------------------------------------------------------------------------


def _order(variant: str) -> int:
    return VARIANTS.index(variant)


def simulate_states(key, inputs, alpha, mu, sigma_s, variant: str = "second_order",
                    initial_scale: float = 0.1) -> jax.Array:
    """Latent VAD path s_{1:T} (T, 3) for inputs e (T, 3) (one dialogue), started from
    s_0, s_{-1} ~ N(0, initial_scale²). With ``key=None`` the path is noise-free and starts at 0
    (the mean path). The dynamics are the family's (:func:`family`, :func:`lgssm_params`)."""
    inputs = jnp.asarray(inputs)
    params = {"alpha": alpha, "mu": mu, "sigma_s": sigma_s, "sigma_r": 1.0}
    return _states(_draw_path(key, params, inputs, variant, float(initial_scale)), variant)


def _draw_path(key, params, inputs, variant: str, initial_scale: float):
    """The state-space path x_{1:T} of one dialogue in the simulator's noise convention: the
    pre-sample state (s_0, s_{−1}) ~ N(0, initial_scale²) (rows of one (2, 3) draw) and one
    standard normal ξ_t per turn and dimension (a (T, 3) draw), mapped through the family's
    dynamics (``LinearGaussian.path``: x_1 = F x_pre + b_1 + Q^{1/2}ξ_1 is the initial law of
    :func:`lgssm_params`, N(b_1, F P_0 Fᵀ + Q), then x_t = F x_{t−1} + b_t + Q^{1/2}ξ_t).
    ``key=None``: no noise, x_pre = 0 (the mean path)."""
    fam = _family(variant, initial_scale, False)
    num_turns = inputs.shape[0]
    lg = fam.lgssm(params, inputs)  # fields per VAD dimension: F (3, dx, dx), Q (3, dx, dx)
    dx = lg.transition_matrix.shape[-1]
    if key is None:
        eps = jnp.zeros((num_turns, 3, dx))
    else:
        k0, kn = jax.random.split(key)
        pre = initial_scale * jax.random.normal(k0, (2, 3))  # s_0, s_{-1}
        xi = jax.random.normal(kn, (num_turns, 3))
        scale = jnp.sqrt(jnp.diagonal(lg.transition_cov, axis1=-2, axis2=-1))  # (3, dx): sigma_s, then 0
        eps = scale * xi[..., None]
        eps = eps.at[0].add(jnp.einsum("cij,cj->ci", lg.transition_matrix, pre.T[:, :dx]))
    return fam.path(params, eps.reshape((num_turns,) + fam.state_shape), inputs)


def step_response(alpha, mu, num_turns: int = 200, variant: str = "second_order") -> np.ndarray:
    """Noise-free valence curve under a unit step input switched on at turn 1: (num_turns,), or
    (..., num_turns) for arrays ``alpha``, ``mu`` (broadcast together)."""
    alpha, mu = np.broadcast_arrays(np.asarray(alpha, float), np.asarray(mu, float))
    e = jnp.zeros((num_turns, 3)).at[:, 0].set(1.0)
    curves = _step_curves(jnp.asarray(alpha.reshape(-1)), jnp.asarray(mu.reshape(-1)), e, variant)
    return np.asarray(curves).reshape(alpha.shape + (num_turns,))


@partial(jax.jit, static_argnums=(3,))
def _step_curves(alpha, mu, e, variant):
    return jax.vmap(lambda a, m: simulate_states(None, e, a, m, 0.0, variant)[:, 0])(alpha, mu)


def has_complex_poles(alpha: float, mu: float) -> bool:
    """Whether λ² − (1 − α + μ)λ + μ has complex roots: (1 − α + μ)² < 4μ."""
    return (1.0 - alpha + mu) ** 2 < 4.0 * mu


def overshoots(curve, target: float = 1.0, tol: float = 1e-12) -> bool:
    """Whether a step-response ``curve`` ever exceeds its target level."""
    return bool(np.max(np.asarray(curve)) > target + tol)


def protocol_metrics(states, inputs, *, onset: int = 6, offset: int = 12, baseline: float = 0.0,
                     recovery_level: float | None = None, recovery_band: float = 0.1) -> dict:
    """The paper's protocol metrics on the valence trace (turns numbered from 1).

    lag: turns from ``onset`` until s crosses half the step from ``baseline`` to the perturbation
    level; recovery_turn: first turn after ``offset`` with |s − recovery_level| < recovery_band
    (default level: the input right after the perturbation, e.g. the warm +0.2 of the hostile
    protocol; NaN if never); overshoot: largest excursion past the perturbation level during it,
    in units of the step; hysteresis_area: area of the loop traced by (e_t, s_t) (shoelace formula).
    """
    s = np.asarray(states)[:, 0] if np.ndim(states) == 2 else np.asarray(states)
    e = np.asarray(inputs)[:, 0] if np.ndim(inputs) == 2 else np.asarray(inputs)
    level = e[onset - 1]
    step = level - baseline
    half = baseline + 0.5 * step
    crossed = np.flatnonzero((s[onset - 1:] - half) * np.sign(step) >= 0)
    lag = float(crossed[0]) if crossed.size else float("nan")
    target = e[offset] if recovery_level is None else recovery_level
    after = np.flatnonzero(np.abs(s[offset:] - target) < recovery_band)
    recovery = float(offset + after[0] + 1) if after.size else float("nan")
    excursion = (s[onset - 1:offset] - level) * np.sign(step)
    overshoot = float(max(float(excursion.max()), 0.0) / abs(step)) + 0.0 if step != 0 else 0.0
    area = 0.5 * abs(np.dot(e, np.roll(s, -1)) - np.dot(s, np.roll(e, -1)))
    return {"lag": lag, "recovery_turn": recovery, "overshoot": overshoot, "hysteresis_area": float(area)}


# --------------------------------------------------------------------------------------------
# Linear-Gaussian form and the exact likelihood
# --------------------------------------------------------------------------------------------


def lgssm_params(params: Mapping[str, Any], inputs, variant: str, initial_scale: float = 0.1) -> exact.LGSSMParams:
    """LGSSM of ONE dimension of ONE dialogue with inputs e (T,): the one definition of the
    dynamics. State (s_t, s_{t−1}) (second order), s_t (first order; stateless: s_t = e_t, no
    noise), observation r_t = κ s_t + N(0, σ_r²). Index 0 is turn 1: its prior is the law of s_1
    given s_0, s_{−1} ~ N(0, initial_scale²)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    e = jnp.asarray(inputs)
    sigma_r = jnp.asarray(params["sigma_r"])
    gain = jnp.asarray(params.get("gain", 1.0))
    if variant == "stateless":
        zero = jnp.zeros((1, 1), e.dtype)
        return exact.LGSSMParams(initial_mean=e[:1], initial_cov=zero, transition_matrix=zero,
                                 transition_offset=e[1:, None], transition_cov=zero,
                                 emission_matrix=jnp.reshape(gain, (1, 1)), emission_offset=jnp.zeros((1,)),
                                 emission_cov=jnp.reshape(sigma_r**2, (1, 1)))
    alpha = jnp.asarray(params["alpha"])
    mu = jnp.asarray(params["mu"]) if variant == "second_order" else jnp.zeros_like(alpha)
    sigma_s = jnp.asarray(params["sigma_s"])
    v0 = initial_scale**2
    if variant == "second_order":
        one, zero = jnp.ones_like(alpha), jnp.zeros_like(alpha)
        F = jnp.stack([jnp.stack([1.0 - alpha + mu, -mu]), jnp.stack([one, zero])])
        Q = jnp.array([[1.0, 0.0], [0.0, 0.0]]) * sigma_s**2
        offsets = jnp.stack([alpha * e, jnp.zeros_like(e)], axis=-1)  # (T, 2)
        H = jnp.stack([gain, jnp.zeros_like(gain)])[None, :]
        P0 = v0 * jnp.eye(2)
    else:
        F = jnp.reshape(1.0 - alpha, (1, 1))
        Q = jnp.reshape(sigma_s**2, (1, 1))
        offsets = (alpha * e)[:, None]
        H = jnp.reshape(gain, (1, 1))
        P0 = v0 * jnp.eye(1)
    return exact.LGSSMParams(
        initial_mean=offsets[0],
        initial_cov=F @ P0 @ F.T + Q,
        transition_matrix=F,
        transition_offset=offsets[1:],
        transition_cov=Q,
        emission_matrix=H,
        emission_offset=jnp.zeros((1,)),
        emission_cov=jnp.reshape(sigma_r**2, (1, 1)),
    )


_PARAMETERS = ("alpha", "mu", "sigma_s", "sigma_r", "gain")
# how each Gaussian law of the state-space form is represented (see zoo.processes.linear_gaussian):
# the lagged copy s_{t-1} and the stateless s_t = e_t are point masses
_LAWS = {"second_order": ("dense", "degenerate"), "first_order": ("diagonal", "diagonal"),
         "stateless": ("degenerate", "degenerate")}


def _states(xs, variant: str):
    """The VAD state s_t of the state-space form's x_t ((s_t, s_{t-1}) per dimension in second order)."""
    return xs[..., 0] if variant == "second_order" else xs


@functools.cache
def _family(variant: str, initial_scale: float, learn_gain: bool) -> LinearGaussian:
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    initial, transition = _LAWS[variant]
    return linear_gaussian(
        lambda: _sample_parameters(variant, learn_gain),
        lambda params, inputs: jax.vmap(lambda e: lgssm_params(params, e, variant, initial_scale), in_axes=1)(inputs),
        state_shape=(3, 2) if variant == "second_order" else (3,), obs_shape=(3,),
        initial=initial, transition=transition, emission="diagonal", channels=3, inputs=True,
        predictive=lambda xs, ys: {"s": _states(xs, variant), "r": ys},
        validate=lambda readouts: validate_series(readouts, (3,), series="required", name="readouts"),
        name=f"affect_vad[{variant}]")


def family(config: AffectConfig) -> LinearGaussian:
    """The model written once (:func:`zoo.processes.linear_gaussian.linear_gaussian`): the prior and
    :func:`lgssm_params` per VAD dimension (three channels, the known inputs e_t per dialogue); the
    Kalman marginal, the state-space form and the simulator derive from it."""
    return _family(config.variant, float(config.initial_scale), bool(config.learn_gain))


def turn_log_likelihoods(params: Mapping[str, Any], data: AffectData, variant: str,
                         initial_scale: float = 0.1) -> jax.Array:
    """``log p(r_t | r_{<t}, e)`` per dialogue and turn (S, T), the three VAD dimensions summed.

    One Kalman filter per dialogue and dimension (stateless: s_t = e_t, so the filter reduces to
    Σ_d log N(r_td; κ e_td, σ_r²)). NaN readouts are missing (contribute 0).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    params = {k: jnp.asarray(v) for k, v in params.items() if k in _PARAMETERS}
    return _family(variant, float(initial_scale), False).increments(params, data.readouts, data.inputs)


# --------------------------------------------------------------------------------------------
# Entry: program, simulator, check
# --------------------------------------------------------------------------------------------


def _sample_parameters(variant: str, learn_gain: bool) -> dict:
    params: dict[str, Any] = {}
    if variant != "stateless":
        params["alpha"] = numpyro.sample("alpha", dist.Beta(2.0, 2.0))
        if variant == "second_order":
            params["mu"] = numpyro.sample("mu", dist.Beta(1.5, 1.5))
        params["sigma_s"] = numpyro.sample("sigma_s", dist.HalfNormal(0.05))
    params["sigma_r"] = numpyro.sample("sigma_r", dist.HalfNormal(0.2))
    if learn_gain:
        params["gain"] = numpyro.sample("gain", dist.LogNormal(0.0, 0.3))
    return params


def model(data: AffectData | None = None, *, config: AffectConfig) -> None:
    """NumPyro program: parameters, then ``factor("y", (dialogue, turn) increments)`` (the
    family's Kalman marginal).

    With ``data=None`` (prior predictive) the protocol inputs of ``config`` drive simulated latent
    paths; deterministic sites ``s`` (S, T, 3) and ``r`` (S, T, 3).
    """
    fam = family(config)
    params = fam.prior()
    if data is None:
        key = numpyro.prng_key()
        if key is None:
            return
        states, readouts = _simulate_readouts(key, params, jnp.asarray(dialogue_inputs(config)), config)
        numpyro.deterministic("s", states)
        numpyro.deterministic("r", readouts)
        return
    data = _validate_data(data)
    fam.factor(params, data.readouts, data.inputs)


def _simulate_readouts(key, params, inputs, config: AffectConfig):
    """States ``s`` and readouts ``r`` (S, T, 3) of dialogues with ``inputs`` (S, T, 3): one key
    for the latent paths (split per dialogue, :func:`_draw_path`) and one for the readout noise."""
    fam = family(config)
    k_s, k_r = jax.random.split(key)
    xs = jax.vmap(lambda k, e: _draw_path(k, params, e, config.variant, float(config.initial_scale)))(
        jax.random.split(k_s, inputs.shape[0]), inputs)
    noise = jax.random.normal(k_r, inputs.shape)
    readouts = jax.vmap(lambda x, n, e: fam.observe(params, x, n, e))(xs, noise, inputs)
    return _states(xs, config.variant), readouts


def true_params(config: AffectConfig) -> dict:
    """The true parameters of ``config.variant`` (only the sites that variant samples)."""
    params = {"sigma_r": config.true_sigma_r}
    if config.variant != "stateless":
        params["alpha"] = config.true_alpha
        params["sigma_s"] = config.true_sigma_s
        if config.variant == "second_order":
            params["mu"] = config.true_mu
    if config.learn_gain:
        params["gain"] = config.true_gain
    return params


def simulate(key, config: AffectConfig):
    """``(AffectData, truth)`` from ``config.variant`` with the config's truth; ``truth["s"]`` is
    the latent path (S, T, 3)."""
    params = {k: jnp.asarray(v) for k, v in true_params(config).items()}
    params.setdefault("gain", jnp.asarray(config.true_gain))
    inputs = jnp.asarray(dialogue_inputs(config))
    states, readouts = _simulate_readouts(key, params, inputs, config)
    truth = true_params(config)
    truth["s"] = np.asarray(states)
    return AffectData(inputs, readouts), truth


def exact_loglik(params: Mapping[str, Any], data: AffectData, config: AffectConfig) -> jax.Array:
    """``log p(readouts | inputs, params)`` by the Kalman filter (scalar)."""
    return turn_log_likelihoods(params, _validate_data(data), config.variant, config.initial_scale).sum()


def first_turns(data: AffectData, num_turns: int) -> AffectData:
    """The first ``num_turns`` turns of every dialogue (for leave-future-out refits)."""
    data = _validate_data(data)
    if not 1 <= int(num_turns) <= data.inputs.shape[1]:
        raise ValueError(f"num_turns: expected 1..{data.inputs.shape[1]}, got {num_turns}")
    return AffectData(data.inputs[:, : int(num_turns)], data.readouts[:, : int(num_turns)])


def per_turn_log_likelihood(draws: Mapping[str, Any], data: AffectData, config: AffectConfig) -> jax.Array:
    """``(N, T)``: ``log p(r_t | r_{<t}, e, θ_n)`` summed over dialogues, at N parameter draws.

    ``draws`` maps site names to arrays with a leading draw axis (N,). Evaluated on the full
    ``data`` whatever the draws were fitted to: the leave-future-out matrix a refit on the first
    i turns must return (the terms for t ≥ i are the predictive factors)."""
    data = _validate_data(data)
    names = [k for k in ("alpha", "mu", "sigma_s", "sigma_r", "gain") if k in draws]
    stacked = {k: jnp.asarray(draws[k]).reshape(-1) for k in names}
    one = lambda p: turn_log_likelihoods(p, data, config.variant, config.initial_scale).sum(0)  # noqa: E731
    return jax.lax.map(one, stacked)


def check(idata, truth: dict, config: AffectConfig) -> list[Check]:
    """Recovery (spec): 90% CIs cover α and μ; |E[μ] − μ| < 0.1 (second order). Also [zoo]:
    90% CI of σ_r covers its truth; first order: |E[α] − α| < 0.1; stateless: CI of κ covers."""
    checks: list[Check] = [check_covers(idata, "sigma_r", truth["sigma_r"])]
    if config.variant != "stateless":
        checks.append(check_covers(idata, "alpha", truth["alpha"]))
    if config.variant == "second_order":
        checks.append(check_covers(idata, "mu", truth["mu"]))
        checks.append(check_close(idata, "mu", truth["mu"], tol=0.1))
    elif config.variant == "first_order":
        checks.append(check_close(idata, "alpha", truth["alpha"], tol=0.1))
    elif config.learn_gain:
        checks.append(check_covers(idata, "gain", truth["gain"]))
    return checks


# --------------------------------------------------------------------------------------------
# State-space view (for particle backends and simulation)
# --------------------------------------------------------------------------------------------


def affect_ssm(config: AffectConfig) -> StateSpaceModel:
    """The model as a :class:`StateSpaceModel` over readouts (T, 3) or (S, T, 3), from
    :func:`family`.

    The inputs are the protocol of ``config`` and must be shared by all dialogues (one condition):
    this view fits the readouts of :func:`simulate`'s data (``data.readouts``). State: (3, 2) =
    (s_t, s_{t−1}) per dimension (second order; the lagged component is a point mass on the previous
    state), (3,) otherwise (stateless: s_t = e_t exactly).
    """
    if len(config.conditions) != 1:
        raise ValueError(f"conditions: the state-space view needs one protocol shared by all dialogues; "
                         f"got {config.conditions}")
    return family(config).ssm(jnp.asarray(protocol_inputs(config.conditions[0], config.num_turns)))


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def load_columns(columns: Mapping[str, np.ndarray], config: AffectConfig) -> AffectData:
    """CSV columns ``dialogue``, ``turn`` (1, 2, … in file order within a dialogue),
    ``e_valence, e_arousal, e_dominance`` (inputs) and ``r_valence, r_arousal, r_dominance``
    (readouts; empty/NaN = missing). Shorter dialogues are padded at the end (NaN readouts)."""
    names = ["dialogue", "turn"] + [f"e_{d}" for d in DIMENSIONS] + [f"r_{d}" for d in DIMENSIONS]
    missing = [n for n in names if n not in columns]
    if missing:
        raise ValueError(f"columns: missing column(s) {missing}; got {sorted(columns)}")
    dialogue = np.asarray(columns["dialogue"])
    turn = np.asarray(columns["turn"], dtype=float)
    labels = list(dict.fromkeys(dialogue.tolist()))
    rows = [np.flatnonzero(dialogue == lab) for lab in labels]
    for lab, idx in zip(labels, rows):
        if not np.array_equal(turn[idx], np.arange(1, len(idx) + 1)):
            raise ValueError(f"turn: turns out of order in dialogue {lab!r}: got {turn[idx][:8].tolist()}...; "
                             "expected 1, 2, 3, ... in file order")
    length = max(len(idx) for idx in rows)
    e = np.zeros((len(labels), length, 3))
    r = np.full((len(labels), length, 3), np.nan)
    for i, idx in enumerate(rows):
        e[i, : len(idx)] = np.stack([np.asarray(columns[f"e_{d}"], float)[idx] for d in DIMENSIONS], -1)
        r[i, : len(idx)] = np.stack([np.asarray(columns[f"r_{d}"], float)[idx] for d in DIMENSIONS], -1)
        if len(idx) < length:
            e[i, len(idx):] = e[i, len(idx) - 1]
    return make_data(e, r)


def dump_columns(data: AffectData, config: AffectConfig) -> dict:
    """Inverse of :func:`load_columns`."""
    data = _validate_data(data)
    e, r = np.asarray(data.inputs), np.asarray(data.readouts)
    s, t = e.shape[:2]
    out = {"dialogue": np.repeat(np.arange(s), t), "turn": np.tile(np.arange(1, t + 1), s)}
    for j, d in enumerate(DIMENSIONS):
        out[f"e_{d}"] = e[..., j].reshape(-1)
        out[f"r_{d}"] = r[..., j].reshape(-1)
    return out


# --------------------------------------------------------------------------------------------
# Configurations and the entry
# --------------------------------------------------------------------------------------------

SMALL = AffectConfig()
CONFIGS = {
    "small": SMALL,
    "small_first_order": dataclasses.replace(SMALL, variant="first_order", true_mu=0.0),
    "small_stateless": dataclasses.replace(SMALL, variant="stateless", true_mu=0.0),
    "paper": AffectConfig(num_dialogues=600, conditions=("hostile", "supportive", "alternating")),
}


def paper_grid(mus=(0.0, 0.3, 0.6, 0.9)) -> dict:
    """The paper-scale protocol replay: one config per momentum value (μ = 0 is first order)."""
    return {f"mu={m}": dataclasses.replace(CONFIGS["paper"], true_mu=m,
                                           variant="second_order" if m > 0 else "first_order")
            for m in mus}


ENTRY = ZooEntry(
    name="affect_vad",
    title="Controlling long-horizon behavior in language model agents with explicit state dynamics",
    reference="arXiv:2601.16087",
    summary=(
        "An agent's Valence-Arousal-Dominance state kept outside the language model and driven by "
        "per-turn affect estimates, as a latent linear-Gaussian process with known inputs: "
        "stateless, first-order (exponential smoothing) or second-order (momentum) dynamics, seen "
        "through noisy per-turn readouts. The readouts' likelihood is exact by Kalman filtering, "
        "so NUTS samples the smoothing rate, momentum and noise levels, and LOO and quadrature "
        "log-evidence tell which order generated a set of dialogues."
    ),
    model=model,
    simulate=simulate,
    configs=CONFIGS,
    recipe=Recipe("nuts", {"num_warmup": 500, "num_samples": 500, "num_chains": 2},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}),
    check=check,
    ssm=affect_ssm,
    exact_loglik=exact_loglik,
    dims={"y": ("dialogue", "turn"), "s": ("dialogue", "turn", "vad"), "r": ("dialogue", "turn", "vad")},
    data_doc=("AffectData(inputs (dialogue, turn, 3), readouts (dialogue, turn, 3)); NaN readouts are "
              "missing. CSV columns: dialogue, turn, e_valence, e_arousal, e_dominance, r_valence, "
              "r_arousal, r_dominance."),
    load_columns=load_columns,
    dump_columns=dump_columns,
    prior_data=lambda values, config: AffectData(jnp.asarray(dialogue_inputs(config)), values["r"]),
)
