r"""Reward-consistent dynamics models (MOREC) on a refrigerator (``morec_refrigerator``).

Model card
----------
Data: ``S`` episodes of ``T`` steps of a refrigerator whose temperature ``T_t`` (°C) is cooled by
an action ``a_t ∈ [0, 1]`` (compressor duty) and warmed by the room::

    T_{t+1} = T_t + k_amb (T_amb − T_t) − k_c a_t + σ ε_t,      ε_t ~ N(0, 1)

with ``T_amb = 25``, ``k_amb = 0.05``, ``k_c = 2``, ``σ = 0.1`` on ``small`` (the steady state at
``a = 0.5`` is 5 °C). The behaviour policy holds the temperature near 5 °C,
``a_t = clip(0.5 + 0.3 (T_t − 5) + N(0, 0.1²), 0, 1)``, from ``T_0 ~ U(3, 7)``; the test policy
``a_t ~ U(0, 0.2)`` from ``T_0 ~ U(10, 25)`` visits states the data never show.

Four programs share these data.

**Linear-physics twin** (``model``, the recipe; exact). The one-step transitions are a Bayesian
linear regression of ``ΔT = T_{t+1} − T_t`` on ``(1, T_t, a_t)``::

    w ~ N(0, s_w² I₃),      T_{t+1} ~ N(T_t + w₁ + w₂ T_t + w₃ a_t, σ²)

so ``k_amb = −w₂``, ``k_c = −w₃`` and ``w₁ = k_amb T_amb``. With ``σ`` known the posterior of
``w`` is Normal in closed form (:func:`twin_posterior`) and so is the evidence
(:func:`twin_log_evidence`); NUTS on ``model`` is checked against it.

==============  ============================  ============
parameter       prior                         small truth
==============  ============================  ============
``w₁``          N(0, 10²)                     1.25
``w₂``          N(0, 10²)                     −0.05
``w₃``          N(0, 10²)                     −2.0
``σ``           fixed (``noise``)             0.1
==============  ============================  ============

**Bayesian neural dynamics** (:func:`dynamics_model`, method ``"svi"``). A 2 × 32 SiLU MLP
``(f_θ, g_θ)`` of the normalised inputs ``((T − m_T)/s_T, (a − m_a)/s_a)`` (data statistics) with
``θ ~ N(0, 1)`` elementwise::

    T_{t+1} ~ N(T_t + m_Δ + s_Δ f_θ(T_t, a_t), (s_Δ softplus(g_θ(T_t, a_t)))²)

fitted by SVI with ``AutoNormal``; ``K`` guide draws of ``θ`` are the ensemble (:func:`ensemble_from`).

**Probabilistic ensemble** (:func:`fit_ensemble`, the trainer; MOPO-style). ``K`` Gaussian MLPs
(``zoo.nets.ensemble.GaussianMLP`` with learned log-variance bounds) trained by maximum likelihood
on bootstrap resamples, the ``elites`` best by hold-out MSE kept.

**Dynamics reward** (:func:`train_reward`, the trainer; MOREC's adversarial IRL, simplified). A
discriminator ``D_φ(T, a, ΔT)`` (2 × 32 MLP, sigmoid output) is trained GAIL-style against a
learner ``π_ψ(ΔT | T, a) = N(μ_ψ, σ_ψ²)`` that maximises ``E[−log(1 − D_φ)] + β H(π_ψ)``;
snapshots of ``φ`` are kept every ``snapshot_every`` steps and the last ``history`` of them define
the reward::

    r_D(T, a, ΔT) = −log(1 − mean_k clip(D_{φ_k}(T, a, ΔT), 0, 0.999))      (0 ≤ r_D ≤ 6.9)

The discriminator and the learner read ``(T, a, ΔT)`` on the plant's scale (:func:`reward_stats`):
``T`` and ``a`` standardised as if uniform on the operating range [0, ``t_amb``] × [0, 1], ``ΔT``
in units of 1 °C. The dynamics networks use the data's statistics (MOPO's normalisation), under
which the behaviour data span about ±0.3 °C around 5 °C, so a test-region state at 20 °C is some
55 standard deviations out and a discriminator's value there is whatever its extrapolation gives:
with that scaling the reward's peak over ``ΔT`` drifts 1 to 1.5 °C from the truth at 12 to 18 °C
and check (c)'s AUC is at chance (0.54; 0.51 and 0.50 after 1000 and 12000 steps, so not a matter
of training length), while in distribution the same reward separates true transitions from ±1 °C
offsets perfectly (AUC 1.0). ``reward_inputs="data"`` keeps that scaling for comparison.

The transition filter (:func:`filtered_rollout`) draws candidates from every ensemble member
(``resample`` each), scores them by ``r_D`` and picks one with probabilities
``softmax(r_D / temperature)`` (``temperature = 0.1``); a chosen ``r_D`` below ``threshold``
(0.6) marks the rollout as ended.

Checks: the recipe's (:func:`check`, spec (a)): joint 90% intervals cover ``k_amb`` and ``k_c``
and each posterior mean is within ``z`` posterior standard deviations of the truth, ``z`` from a
1% false-alarm budget shared by the two (2.81 sd). The spec's fixed "within 10%" is not a promise
these data can keep for ``k_amb``: its posterior sd is about 14% of its value on ``small`` (the
behaviour policy holds the temperature within about ±0.3 °C of 5 °C, so the ambient leak is seen
over a narrow range), and a calibrated posterior's mean misses by more than 10% on about 45% of
data sets. :func:`check_dynamics` (spec (b)): the
ensemble's 90% predictive intervals cover between 80% and 98% of held-out in-distribution one-step
transitions. :func:`check_reward` (spec (c)): on the unseen region ``r_D`` ranks true transitions
above ensemble samples offset by ±1 °C (AUC > 0.7, pooled over states as the spec has it; the
AUC at the same state, which is what the filter compares, is reported beside it) and the filtered
10-step rollout error is at most the unfiltered one (mean over 5 seeds). On ``small`` (data seed
0, SVI ensemble) the AUC is 0.82, 0.68 and 0.71 for reward-training seeds 0, 1, 2, so the AUC half
is met narrowly and not at every seed at this scale (the adversarial training's seed-to-seed
spread, about ±0.07, exceeds the AUC's sampling error on 200 + 200 transitions, about 0.03); the
filtered rollout error is 1.7, 2.0 and 1.5 °C against 2.7 °C unfiltered. With the exact physics'
reward in place of the learned one the AUC is 0.97 on the same transitions (the ensemble's own
error on the unseen states, about −0.5 °C, puts some offsets near the truth).

Prior predictive and calibration: under the twin's N(0, 10²) prior most plants run away under the
behaviour policy (roughly |1 + w₂ + 0.3 w₃| > 1 while the action is not clipped: temperatures reach
1e14 to 1e118 °C over 100 steps, and the Cholesky factor of XᵀX behind ``beta`` is then NaN). The
prior predictive is therefore the twin's joint restricted to data whose temperatures lie within
±``PRIOR_TEMP_LIMIT`` (100 °C), by rejection (:func:`prior_episodes`,
``inference.prior_predictive.rejection_draw``; about 9% of joint draws are kept on ``small``): an
event of the data alone, so each replicate's posterior is the twin's ``p(w | data)`` and simulation-
based calibration stays exact, while the replicates' ``w`` follow the prior times the chance that
the policy holds the plant. The exact posterior puts the true ``w`` at uniform quantiles over such
replicates (a test). Calibration: simulation-based calibration of the default recipe on ``small`` (n
= 100 replicates, L = 99 draws, ranks on ``w``, ``ENTRY.rank_sites``; ``zoo sbc morec_refrigerator
--config small --n 100 --draws 99 --seed 0 --store``; about 3 min wall in one process beside other
runs): calibrated (χ² p 0.11, 0.87, 0.31 for w₁, w₂, w₃; every ECDF inside its band; 1, 3 and 3
ranks at 0 or L). The recipe runs one chain, so no R-hat is recorded. The ranks are stored in
``calibration/morec_refrigerator/small``; the docs' calibration page is generated from them.

Data format: ``(S, T, 2)`` floats, channels ``temp`` and ``action`` per step (the last step's
action is not used); NaN marks a missing value and a transition touching one is left out.

The ``paper`` configuration describes the paper's offline-RL setting (D4RL MuJoCo transitions);
its data are not downloaded: :func:`load_offline_data` reads them from ``data_path`` in the
layout ``episode, step, s0..s{d-1}, a0..a{m-1}, reward`` and raises :class:`OfflineDataMissing`
when the file is absent.

Reference: F.-M. Luo, T. Xu, X. Cao, Y. Yu, "Reward-Consistent Dynamics Models are Strongly
Generalizable for Offline Reinforcement Learning", ICLR 2024, arXiv:2310.05422.

Example::

    import functools, jax, inference, zoo
    from inference.train import train
    from zoo.reward_consistent_dynamics import (dynamics_model, dynamics_svi_options, ensemble_from, train_reward,
                                                check_dynamics, check_reward)
    entry = zoo.get("morec_refrigerator")
    config = entry.config("small")
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    twin = inference.fit(entry, data, method="nuts", num_warmup=300, num_samples=300)
    fit, held_out = data[:-config.held_out], data[-config.held_out:]
    svi = inference.fit(functools.partial(dynamics_model, config=config), fit, method="svi",
                        **dynamics_svi_options(config))
    ensemble = ensemble_from(svi, fit, config)
    problem = train_reward(fit, config)
    reward = problem.finish(train(*problem[:5], evaluate=problem.evaluate, evaluate_every=problem.evaluate_every))
    check_dynamics(ensemble, held_out, config) + check_reward(reward, ensemble, config)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array, Float

from inference.prior_predictive import MAX_TRIES, rejection_draw
from zoo.core import Check, Columns, FixedParameter, Recipe, ZooEntry, check_covers, check_ranges, is_traced

__all__ = [
    "MORECConfig",
    "SMALL",
    "PAPER",
    "OfflineDataMissing",
    "validate_data",
    "transitions",
    "step_mean",
    "simulate",
    "simulate_policy",
    "model",
    "exact_loglik",
    "prior_data",
    "prior_episodes",
    "PRIOR_TEMP_LIMIT",
    "twin_posterior",
    "twin_log_evidence",
    "check",
    "check_mean_within_width",
    "MEAN_FALSE_ALARM",
    "Stats",
    "data_stats",
    "dynamics_model",
    "dynamics_svi_options",
    "TrainingProblem",
    "ensemble_from",
    "Ensemble",
    "ensemble_predict",
    "twin_ensemble",
    "fit_ensemble",
    "RewardModel",
    "train_reward",
    "dynamics_reward",
    "reward_stats",
    "filtered_rollout",
    "reward_scores",
    "rollout_errors",
    "check_dynamics",
    "check_reward",
    "load_offline_data",
    "ENTRY",
]


@dataclasses.dataclass(frozen=True)
class MORECConfig:
    """Simulator, policies, twin prior, networks and training of ``morec_refrigerator``.

    Plant: ``t_amb``, ``k_amb``, ``k_c``, ``noise`` (σ). Behaviour data: ``num_episodes`` ×
    ``num_steps`` from ``T_0 ~ U(init_low, init_high)``, ``a = clip(policy_offset + policy_gain
    (T − setpoint) + N(0, policy_noise²), 0, 1)``. Test region: ``T_0 ~ U(test_low, test_high)``,
    ``a ~ U(0, test_action_high)``. Twin: prior scale ``prior_scale``. Networks: ``hidden`` width
    (two layers). SVI: ``svi_steps`` at ``svi_learning_rate``; ``ensemble_size`` draws (K);
    ensemble MLE: ``ensemble_steps``, ``elites``. Reward: ``reward_steps`` at
    ``reward_learning_rate``, ``entropy`` (β), a snapshot every ``snapshot_every`` steps, the last
    ``history`` used; the reward's inputs scaled by the plant's operating range
    (``reward_inputs="plant"``: ``T`` uniform on [0, ``t_amb``], ``a`` on [0, 1], ``ΔT`` in units
    of ``reward_delta_scale`` °C) or by the data's statistics (``"data"``, MOPO's normalisation).
    Filter: ``resample`` candidates per member, ``temperature``, ``threshold``.
    Checks: ``rollout_steps``, ``num_rollouts``, ``offset`` (°C), ``held_out`` episodes.
    ``task`` is ``"refrigerator"`` (simulated) or ``"d4rl"`` (offline data at ``data_path``).
    """

    COUNTS: ClassVar[tuple[str, ...]] = ("num_episodes", "num_steps", "hidden", "svi_steps", "ensemble_size",
                                         "ensemble_steps", "elites", "reward_steps", "snapshot_every", "history",
                                         "resample", "rollout_steps", "num_rollouts", "held_out")
    POSITIVE: ClassVar[tuple[str, ...]] = ("k_amb", "k_c", "noise", "policy_noise", "test_action_high", "prior_scale",
                                           "svi_learning_rate", "reward_learning_rate", "temperature",
                                           "reward_delta_scale", "offset")

    task: str = "refrigerator"
    num_episodes: int = 50
    num_steps: int = 100
    t_amb: float = 25.0
    k_amb: float = 0.05
    k_c: float = 2.0
    noise: float = 0.1
    setpoint: float = 5.0
    policy_offset: float = 0.5
    policy_gain: float = 0.3
    policy_noise: float = 0.1
    init_low: float = 3.0
    init_high: float = 7.0
    test_low: float = 10.0
    test_high: float = 25.0
    test_action_high: float = 0.2
    prior_scale: float = 10.0
    hidden: int = 32
    svi_steps: int = 1500
    svi_learning_rate: float = 1e-2
    ensemble_size: int = 7
    ensemble_steps: int = 1500
    elites: int = 5
    reward_steps: int = 3000
    reward_learning_rate: float = 1e-3
    entropy: float = 0.1
    snapshot_every: int = 20
    history: int = 50
    resample: int = 4
    temperature: float = 0.1
    threshold: float = 0.6
    reward_inputs: str = "plant"
    reward_delta_scale: float = 1.0
    rollout_steps: int = 10
    num_rollouts: int = 200
    offset: float = 1.0
    held_out: int = 10
    data_path: str = ""
    env: str = ""

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.task not in ("refrigerator", "d4rl"):
            raise ValueError(f"task: expected 'refrigerator' or 'd4rl', got {self.task!r}")
        if self.reward_inputs not in ("plant", "data"):
            raise ValueError(f"reward_inputs: expected 'plant' or 'data', got {self.reward_inputs!r}")
        if self.task == "d4rl" and self.reward_inputs == "plant":
            raise ValueError("reward_inputs: the 'd4rl' task has no declared operating range; use 'data'")
        if self.num_steps < 2:
            raise ValueError(f"num_steps: expected at least 2 steps (one transition), got {self.num_steps}")
        if self.elites > self.ensemble_size:
            raise ValueError(f"elites: expected at most ensemble_size = {self.ensemble_size}, got {self.elites}")
        for name in ("t_amb", "setpoint", "policy_offset", "policy_gain", "init_low", "init_high", "test_low",
                     "test_high", "entropy", "threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not np.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
        if not self.init_low < self.init_high:
            raise ValueError(f"init_high: expected init_low < init_high, got {self.init_low} and {self.init_high}")
        if not self.test_low < self.test_high:
            raise ValueError(f"test_high: expected test_low < test_high, got {self.test_low} and {self.test_high}")
        if not 0 < self.test_action_high <= 1:
            raise ValueError(f"test_action_high: expected a number in (0, 1], got {self.test_action_high!r}")
        if self.entropy < 0:
            raise ValueError(f"entropy: expected a number >= 0, got {self.entropy!r}")
        if self.task == "refrigerator" and self.held_out >= self.num_episodes:
            raise ValueError(f"held_out: expected fewer than num_episodes = {self.num_episodes} episodes, "
                             f"got {self.held_out}")
        if self.task == "d4rl" and not self.data_path:
            raise ValueError("data_path: the 'd4rl' task reads its transitions from a CSV; give its path")

    def fixed_parameters(self) -> dict[str, FixedParameter]:
        """The twin's noise ``σ`` (known, so that its posterior is the closed-form Normal)."""
        return {"sigma": FixedParameter(float(self.noise), "noise")}


class OfflineDataMissing(FileNotFoundError):
    """The offline data set a ``d4rl`` configuration names is not on disk (nothing is downloaded)."""


# --------------------------------------------------------------------------------------------
# The plant and its data
# --------------------------------------------------------------------------------------------


def step_mean(temp, action, config: MORECConfig, w=None):
    """The plant's mean next temperature ``T + w·(1, T, a)``; by default ``w`` is the config's
    plant, ``(k_amb T_amb, −k_amb, −k_c)``: ``T + k_amb (T_amb − T) − k_c a``."""
    w = _truth(config)["w"] if w is None else jnp.asarray(w)
    return temp + _design(temp, action) @ w


def validate_data(data, config: MORECConfig):
    """``data`` as ``(S, T, 2)`` floats with channels ``(temp, action)`` (one ``(T, 2)`` episode is
    accepted), ``T >= 2``; NaN is missing; finite actions must lie in [0, 1]; no infinities."""
    traced = is_traced(data)
    array = jnp.asarray(data, dtype=float) if traced else np.asarray(data, dtype=float)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[-1] != 2 or array.shape[1] < 2:
        raise ValueError(f"data: expected shape (episode, time >= 2, 2) with channels (temp, action), or (time, 2); "
                         f"got shape {np.shape(data)}")
    if not traced:
        if np.isinf(array).any():
            raise ValueError("data: infinite values are not allowed (use NaN for missing)")
        actions = array[..., 1]
        bad = np.isfinite(actions) & ((actions < 0) | (actions > 1))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"data: actions must lie in [0, 1]; got {float(actions[where]):g} at (episode, time) = "
                             f"{where}")
    return jnp.asarray(array)


def transitions(data, config: MORECConfig):
    """``(temp (S, T-1), action (S, T-1), next_temp (S, T-1), observed (S, T-1) bool)`` of
    validated data; a transition with any NaN is not observed (its values are replaced by 0)."""
    array = validate_data(data, config)
    temp, action, nxt = array[:, :-1, 0], array[:, :-1, 1], array[:, 1:, 0]
    observed = jnp.isfinite(temp) & jnp.isfinite(action) & jnp.isfinite(nxt)
    clean = lambda x: jnp.where(observed, x, 0.0)  # noqa: E731
    return clean(temp), clean(action), clean(nxt), observed


def simulate_policy(key, config: MORECConfig, policy: str = "behaviour", *, num_episodes: int | None = None,
                    num_steps: int | None = None, w=None):
    """``(S, T, 2)`` episodes ``(temp, action)`` of the plant under the ``"behaviour"`` policy (from
    ``T_0 ~ U(init_low, init_high)``) or the ``"test"`` policy (``a ~ U(0, test_action_high)``
    from ``T_0 ~ U(test_low, test_high)``); ``w``: the plant's coefficients (:func:`step_mean`;
    default the config's). The last step's action is drawn but no transition uses it."""
    if policy not in ("behaviour", "test"):
        raise ValueError(f"policy: expected 'behaviour' or 'test', got {policy!r}")
    S = config.num_episodes if num_episodes is None else num_episodes
    T = config.num_steps if num_steps is None else num_steps
    k0, k_act, k_eps = jax.random.split(key, 3)
    low, high = (config.init_low, config.init_high) if policy == "behaviour" else (config.test_low, config.test_high)
    temp0 = jax.random.uniform(k0, (S,), minval=low, maxval=high)
    if policy == "behaviour":
        noise = config.policy_noise * jax.random.normal(k_act, (T, S))
    else:
        noise = jax.random.uniform(k_act, (T, S), maxval=config.test_action_high)
    eps = config.noise * jax.random.normal(k_eps, (T, S))

    def act(temp, u):
        if policy == "behaviour":
            return jnp.clip(config.policy_offset + config.policy_gain * (temp - config.setpoint) + u, 0.0, 1.0)
        return u

    def step(temp, xs):
        u, e = xs
        a = act(temp, u)
        return step_mean(temp, a, config, w) + e, (temp, a)

    _, (temps, actions) = jax.lax.scan(step, temp0, (noise, eps))
    return jnp.stack([temps.T, actions.T], axis=-1)


def _truth(config: MORECConfig) -> dict:
    w = jnp.array([config.k_amb * config.t_amb, -config.k_amb, -config.k_c])
    return {"w": w, "k_amb": jnp.asarray(config.k_amb), "k_c": jnp.asarray(config.k_c),
            "t_amb": jnp.asarray(config.t_amb)}


def simulate(key, config: MORECConfig):
    """``(data (S, T, 2), truth)``: behaviour-policy episodes; ``truth``: ``w``, ``k_amb``, ``k_c``,
    ``t_amb``. A ``d4rl`` configuration has no simulator (:func:`load_offline_data`)."""
    if config.task != "refrigerator":
        load_offline_data(config)  # names the missing file, or says the data are real
        raise ValueError("config: the 'd4rl' task has no simulator; its data are the offline transitions "
                         "(load_offline_data)")
    return simulate_policy(key, config, "behaviour"), _truth(config)


# --------------------------------------------------------------------------------------------
# The linear-physics twin (exact)
# --------------------------------------------------------------------------------------------


def _design(temp, action):
    return jnp.stack([jnp.ones_like(temp), temp, action], axis=-1)


def _whitening(data, config: MORECConfig):
    """The lower Cholesky factor ``L`` of ``XᵀX`` over the observed transitions (the identity
    without data): the twin samples ``β = Lᵀ w / σ``, whose posterior is close to N(·, I)."""
    if data is None:
        return jnp.eye(3)
    temp, action, _, observed = transitions(data, config)
    X = _design(temp, action) * observed[..., None]
    gram = jnp.einsum("sti,stj->ij", X, X) + 1e-9 * jnp.eye(3)
    return jnp.linalg.cholesky(gram)


#: The prior predictive keeps data whose temperatures all lie within ±PRIOR_TEMP_LIMIT °C (a
#: refrigerator's data, and far beyond the operating range [0, t_amb]). Under the twin's N(0, 10²)
#: prior about 9% of draws of ``w`` give such data on ``small``; the rest are plants the behaviour
#: policy cannot hold, whose temperatures reach 1e14 to 1e118 °C over 100 steps.
PRIOR_TEMP_LIMIT = 100.0


def _in_range(episodes) -> jax.Array:
    temps = episodes[..., 0]
    return jnp.all(jnp.isfinite(temps) & (jnp.abs(temps) <= PRIOR_TEMP_LIMIT))


@functools.partial(jax.jit, static_argnums=2)
def _episodes_in_range(key, w, config: MORECConfig):
    """``(episodes (S, T, 2), accepted)``: behaviour-policy episodes of the plant ``w`` restricted to
    temperatures within ±:data:`PRIOR_TEMP_LIMIT` by rejection (``rejection_draw``)."""
    return rejection_draw(key, lambda k: simulate_policy(k, config, "behaviour", w=w), _in_range)


@functools.partial(jax.jit, static_argnums=1)
def prior_episodes(key, config: MORECConfig):
    """``((w, episodes), accepted)``: one joint draw of ``w ~ N(0, prior_scale² I)`` and
    behaviour-policy episodes, restricted to temperatures within ±:data:`PRIOR_TEMP_LIMIT` by
    rejection (``inference.prior_predictive.rejection_draw``, at most ``MAX_TRIES`` draws). The
    restriction is an event of the data alone, so the posterior of a replicate is the twin's
    ``p(w | data)`` and simulation-based calibration stays exact, while the replicates' ``w``
    follow the prior times ``P(data in range | w)``: plants the policy holds."""

    def draw(k):
        k_w, k_episodes = jax.random.split(k)
        w = config.prior_scale * jax.random.normal(k_w, (3,))
        return w, simulate_policy(k_episodes, config, "behaviour", w=w)

    return rejection_draw(key, draw, lambda value: _in_range(value[1]))


def model(data=None, *, config: MORECConfig) -> None:
    """The twin: ``w (3,) ~ N(0, prior_scale²)``, deterministic ``k_amb = −w₂``, ``k_c = −w₃``,
    ``t_amb = −w₁/w₂``, then each observed transition ``y (S, T-1)`` ~ N(T + w·(1, T, a), σ²).

    ``w`` is sampled as ``β = Lᵀ w / σ`` (site ``beta``, its prior the image of ``w``'s), with
    ``L`` the Cholesky factor of ``XᵀX`` (:func:`_whitening`; Stan's QR reparameterisation): the
    same model, but a posterior NUTS crosses in a few steps although ``w₁`` and ``w₂`` are
    correlated beyond −0.99 on behaviour data. Without data the prior predictive: ``w`` and
    behaviour-policy episodes (:func:`simulate_policy`) drawn jointly and restricted to data within
    ±:data:`PRIOR_TEMP_LIMIT` °C (:func:`prior_episodes`); deterministic sites ``temp`` and
    ``action`` (the data, :func:`prior_data`) and ``data_in_range``. At a ``w`` substituted from
    outside (a posterior predictive) the episodes are drawn at that ``w``, restricted the same
    way. Without data ``L = I``, so the prior draw's ``beta`` is not the fit's: simulation-based
    calibration ranks ``w`` (``ENTRY.rank_sites``)."""
    key = numpyro.prng_key() if data is None else None
    drawn = {}
    if key is not None:  # no key: an unseeded trace
        key, k_joint = jax.random.split(key)
        (w_drawn, _), _ = prior_episodes(k_joint, config)
        drawn = {"beta": w_drawn / config.noise}  # without data L = I: β = w / σ
    L = _whitening(data, config)
    scale = config.prior_scale / config.noise
    prior_tril = jnp.linalg.cholesky(L.T @ L)  # cov(β) = scale² Lᵀ L
    with numpyro.handlers.substitute(data=drawn):  # an outer substitute (a posterior predictive) wins
        beta = numpyro.sample("beta", dist.MultivariateNormal(jnp.zeros(3), scale_tril=scale * prior_tril))
    w = numpyro.deterministic("w", config.noise * jax.scipy.linalg.solve_triangular(L.T, beta, lower=False))
    numpyro.deterministic("k_amb", -w[1])
    numpyro.deterministic("k_c", -w[2])
    numpyro.deterministic("t_amb", -w[0] / w[1])
    if data is not None:
        temp, action, nxt, observed = transitions(data, config)
        loc = temp + _design(temp, action) @ w
        numpyro.sample("y", dist.Normal(loc, config.noise).mask(observed).to_event(2), obs=nxt)
        return
    if key is None:
        return
    episodes, valid = _episodes_in_range(key, w, config)
    if not is_traced(valid) and not bool(valid):
        raise ValueError(f"w: no behaviour-policy episodes with temperatures within ±{PRIOR_TEMP_LIMIT:g} C in "
                         f"{MAX_TRIES} prior-predictive draws at w = {np.asarray(w).round(4).tolist()}")
    numpyro.deterministic("data_in_range", valid)
    numpyro.deterministic("temp", episodes[..., 0])
    numpyro.deterministic("action", episodes[:, :-1, 1])


def prior_data(values: Mapping[str, Any], config: MORECConfig):
    """The ``(S, T, 2)`` data of a prior-predictive replicate (``ZooEntry.prior_data``) from the
    program's sites ``temp (S, T)`` and ``action (S, T-1)``; the last step's action, which no
    transition uses, is NaN (missing)."""
    temp, action = jnp.asarray(values["temp"]), jnp.asarray(values["action"])
    last = jnp.full(action.shape[:-1] + (1,), jnp.nan, dtype=action.dtype)
    return jnp.stack([temp, jnp.concatenate([action, last], axis=-1)], axis=-1)


def exact_loglik(params: Mapping[str, Any], data, config: MORECConfig):
    """``log p(data | w, σ)`` of the twin (a sum of Normal log densities over observed transitions)."""
    temp, action, nxt, observed = transitions(data, config)
    loc = temp + _design(temp, action) @ jnp.asarray(params["w"])
    return jnp.sum(jnp.where(observed, dist.Normal(loc, config.noise).log_prob(nxt), 0.0))


def _regression(data, config: MORECConfig):
    temp, action, nxt, observed = transitions(data, config)
    X = _design(temp, action)[observed]
    y = (nxt - temp)[observed]
    return np.asarray(X, float), np.asarray(y, float)


def twin_posterior(data, config: MORECConfig) -> tuple[Float[Array, "3"], Float[Array, "3 3"]]:
    """The exact posterior ``N(m, C)`` of ``w`` given the data (``σ`` known):
    ``C = (XᵀX/σ² + I/s_w²)⁻¹``, ``m = C Xᵀ(T' − T)/σ²``, ``X`` rows ``(1, T, a)``."""
    X, y = _regression(data, config)
    precision = X.T @ X / config.noise**2 + np.eye(3) / config.prior_scale**2
    cov = np.linalg.inv(precision)
    return jnp.asarray(cov @ X.T @ y / config.noise**2), jnp.asarray(cov)


def twin_log_evidence(data, config: MORECConfig) -> float:
    """``log p(data)`` of the twin with ``w`` integrated out, in closed form (σ known):
    ``y = T' − T ~ N(0, σ² I + s_w² X Xᵀ)`` by the matrix determinant lemma and Woodbury."""
    X, y = _regression(data, config)
    n = len(y)
    s2, p2 = config.noise**2, config.prior_scale**2
    precision = X.T @ X / s2 + np.eye(3) / p2
    b = X.T @ y / s2
    chol = np.linalg.cholesky(precision)
    logdet = n * math.log(s2) + 3 * math.log(p2) + 2 * np.sum(np.log(np.diag(chol)))
    quad = y @ y / s2 - b @ np.linalg.solve(precision, b)
    return float(-0.5 * (n * math.log(2 * math.pi) + logdet + quad))


#: The false-alarm budget of the twin's closeness statement, shared by ``k_amb`` and ``k_c``.
MEAN_FALSE_ALARM = 0.01


def check_mean_within_width(idata, var: str, truth, *, false_alarm: float = MEAN_FALSE_ALARM,
                            num_comparisons: int = 1) -> Check:
    """A :class:`Check` that ``|E[var] − truth| < z · sd[var] · sqrt(1 + 1/n)`` with ``sd`` the
    posterior standard deviation, ``n`` the number of draws (the Monte Carlo error of ``E``) and
    ``z = Φ⁻¹(1 − false_alarm / (2 · num_comparisons))``: under a calibrated, near-Normal posterior
    the mean misses by more than that on a fraction ``false_alarm`` of data sets (shared by
    ``num_comparisons`` such statements). The tolerance is the posterior's width, not a fixed
    fraction of the truth."""
    from scipy.stats import norm

    draws = np.asarray(idata.posterior[var].values, float).ravel()
    mean, sd = float(draws.mean()), float(draws.std())
    z = float(norm.ppf(1 - false_alarm / (2 * num_comparisons)))
    tol = z * sd * math.sqrt(1 + 1 / draws.size)
    truth = float(np.asarray(truth))
    return Check(f"posterior mean of {var} within {z:.2f} posterior sd of truth", abs(mean - truth) < tol,
                 abs(mean - truth), f"< {tol:.4g} ({z:.2f} sd; false-alarm budget {false_alarm:g}"
                 f"{' shared by %d' % num_comparisons if num_comparisons > 1 else ''})",
                 f"E[{var}] = {mean:.4g}, sd {sd:.3g} ({sd / abs(truth):.1%} of the truth), truth = {truth:.4g}, "
                 f"relative error {abs(mean - truth) / abs(truth):.1%}")


def check(idata, truth: Mapping[str, Any], config: MORECConfig) -> list[Check]:
    """The twin (spec check (a)): joint 90% intervals cover ``k_amb`` and ``k_c`` (Bonferroni over
    the two), and each posterior mean lies within ``z`` posterior sd of the truth
    (:func:`check_mean_within_width`, a false-alarm budget of 1% shared by the two).

    The spec's "posterior mean within 10% of the truth" is a fixed tolerance the data cannot
    promise for ``k_amb``: on ``small`` (4950 transitions, temperatures held within about ±0.3 °C
    of 5 °C) the posterior sd of ``k_amb`` is about 14% of its value (mean over 40 data sets;
    sd of ``k_c``: 0.7%), so a calibrated posterior's mean misses by more than 10% on about 45% of
    data sets (measured: 18 of 40). The closeness statement is therefore made in units of the
    posterior's own width."""
    return [check_covers(idata, "k_amb", truth["k_amb"], num_comparisons=2),
            check_covers(idata, "k_c", truth["k_c"], num_comparisons=2),
            check_mean_within_width(idata, "k_amb", truth["k_amb"], num_comparisons=2),
            check_mean_within_width(idata, "k_c", truth["k_c"], num_comparisons=2)]


# --------------------------------------------------------------------------------------------
# Bayesian neural dynamics (SVI): posterior draws are the ensemble
# --------------------------------------------------------------------------------------------


class Stats(NamedTuple):
    """Data statistics that normalise the networks' inputs and outputs: means and standard
    deviations of ``(T, a, ΔT)`` over the observed transitions (each ``(3,)``)."""

    mean: jax.Array
    scale: jax.Array


def data_stats(data, config: MORECConfig) -> Stats:
    """:class:`Stats` of the observed transitions of ``data``."""
    temp, action, nxt, observed = transitions(data, config)
    values = jnp.stack([temp, action, nxt - temp], axis=-1)
    weight = observed[..., None].astype(float)
    count = jnp.maximum(jnp.sum(weight, axis=(0, 1)), 1.0)
    mean = jnp.sum(values * weight, axis=(0, 1)) / count
    var = jnp.sum((values - mean) ** 2 * weight, axis=(0, 1)) / count
    return Stats(mean, jnp.sqrt(var) + 1e-6)


def _normalise(temp, action, stats: Stats):
    return jnp.stack([(temp - stats.mean[0]) / stats.scale[0], (action - stats.mean[1]) / stats.scale[1]], axis=-1)


def _dynamics_net(config: MORECConfig):
    from zoo.nets.mlp import MLP

    return MLP(hidden=(config.hidden, config.hidden), out_features=2, activation="silu")


def _delta_law(out, stats: Stats):
    """``(mean, scale)`` of ``ΔT`` from the network's two outputs."""
    return stats.mean[2] + stats.scale[2] * out[..., 0], stats.scale[2] * jax.nn.softplus(out[..., 1]) + 1e-6


def dynamics_model(data, *, config: MORECConfig, stats: Stats | None = None) -> None:
    """The Bayesian neural dynamics on data ``(S, T, 2)``: network weights ``dynamics.*`` ~ N(0, 1)
    (``numpyro.contrib.module.random_flax_module``), then each observed transition
    ``y (S, T-1)`` ~ N(T + mean, scale²) with ``(mean, scale)`` from the network (inputs and
    outputs scaled by ``stats``, by default those of ``data``)."""
    from numpyro.contrib.module import random_flax_module

    if data is None:
        raise ValueError("data: the neural dynamics conditions on the observed states and actions; pass data (S, T, 2)")
    temp, action, nxt, observed = transitions(data, config)
    stats = data_stats(data, config) if stats is None else stats
    net = random_flax_module("dynamics", _dynamics_net(config), prior=dist.Normal(0.0, 1.0), input_shape=(2,))
    mean, scale = _delta_law(net(_normalise(temp, action, stats)), stats)
    numpyro.sample("y", dist.Normal(temp + mean, scale).mask(observed).to_event(2), obs=nxt)


def dynamics_svi_options(config: MORECConfig) -> dict:
    """Options of ``inference.fit(partial(dynamics_model, config=config), data, method="svi",
    **options)``: ``AutoNormal``, Adam at ``svi_learning_rate`` for ``svi_steps``, ``ensemble_size``
    guide draws (the ensemble)."""
    return {"guide": "AutoNormal", "num_steps": config.svi_steps, "learning_rate": config.svi_learning_rate,
            "num_samples": config.ensemble_size, "posterior_predictive": False}


class Ensemble(NamedTuple):
    """K one-step Gaussian dynamics models of ``ΔT``: ``params`` (a pytree with a leading member
    axis K) applied by ``apply(params_k, x (..., 2)) -> (mean, scale)`` of ``ΔT`` in °C to the
    normalised inputs ``x``; ``stats`` normalise."""

    params: Any
    apply: Any
    stats: Stats

    @property
    def size(self) -> int:
        return int(jax.tree_util.tree_leaves(self.params)[0].shape[0])


def ensemble_from(idata, data, config: MORECConfig) -> Ensemble:
    """The ensemble of an SVI fit of :func:`dynamics_model` to ``data``: every posterior draw of the
    network weights (variables ``dynamics/<layer>.<leaf>``) is one member."""
    stats = data_stats(data, config)
    values = {"dynamics." + name[len("dynamics/"):]: np.asarray(var.values).reshape((-1,) + var.values.shape[2:])
              for name, var in idata.posterior.data_vars.items() if name.startswith("dynamics/")}
    if not values:
        raise ValueError(f"idata: no network draws 'dynamics/*' in the posterior; got {sorted(idata.posterior.data_vars)}")
    from zoo.nets.params import module_params

    tree = module_params(values, "dynamics")["params"]
    net = _dynamics_net(config)

    def apply(params, x):
        return _delta_law(net.apply({"params": params}, x), stats)

    return Ensemble(tree, apply, stats)


def ensemble_predict(ensemble: Ensemble, temp, action) -> tuple[jax.Array, jax.Array]:
    """``(mean, scale)`` of the next temperature under each member: ``(K, *temp.shape)`` each."""
    x = _normalise(jnp.asarray(temp, float), jnp.asarray(action, float), ensemble.stats)
    mean, scale = jax.vmap(lambda p: ensemble.apply(p, x))(ensemble.params)
    return jnp.asarray(temp) + mean, scale


def twin_ensemble(w, data, config: MORECConfig) -> Ensemble:
    """The linear twin as an :class:`Ensemble`: one member per row of ``w (K, 3)`` (e.g. posterior
    draws, :func:`twin_posterior`), each predicting ``ΔT ~ N(w₁ + w₂ T + w₃ a, σ²)``; ``stats`` of
    ``data`` only carry the inputs' scaling, which the twin undoes. The exact model beside the
    neural ensembles in :func:`check_dynamics`, :func:`filtered_rollout` and :func:`check_reward`."""
    w = jnp.asarray(w, float)
    if w.ndim != 2 or w.shape[-1] != 3:
        raise ValueError(f"w: expected shape (K, 3) (one coefficient vector per member), got {w.shape}")
    stats = data_stats(data, config)

    def apply(params, x):
        temp = stats.mean[0] + stats.scale[0] * x[..., 0]
        action = stats.mean[1] + stats.scale[1] * x[..., 1]
        mean = params[0] + params[1] * temp + params[2] * action
        return mean, jnp.full_like(mean, config.noise)

    return Ensemble(w, apply, stats)


# --------------------------------------------------------------------------------------------
# Probabilistic ensemble by maximum likelihood (MOPO-style), for the trainer
# --------------------------------------------------------------------------------------------


class TrainingProblem(NamedTuple):
    """What ``inference.train.train(loss_fn, init_params, make_batch, optimizer, num_steps,
    evaluate=evaluate, evaluate_every=evaluate_every)`` takes, and ``finish(result)`` that builds
    the trained object from its :class:`~inference.train.TrainResult`."""

    loss_fn: Any
    init_params: Any
    make_batch: Any
    optimizer: Any
    num_steps: int
    evaluate: Any
    evaluate_every: int
    finish: Any


def _flat_transitions(data, config: MORECConfig):
    temp, action, nxt, observed = transitions(data, config)
    keep = np.asarray(observed)
    return (np.asarray(temp)[keep], np.asarray(action)[keep], np.asarray(nxt - temp)[keep])


def fit_ensemble(data, config: MORECConfig, *, seed: int = 0, batch_size: int = 256) -> TrainingProblem:
    """The MOPO-style probabilistic ensemble as a :class:`TrainingProblem`: ``ensemble_size``
    :class:`~zoo.nets.ensemble.GaussianMLP` members (2 × ``hidden``, SiLU) trained by Gaussian
    NLL (with the learned log-variance bound penalty 0.01) on bootstrap minibatches of the
    transitions of all but the last ``held_out`` episodes; ``finish`` keeps the ``elites``
    members with the lowest MSE on the held-out episodes and returns an :class:`Ensemble`."""
    import optax

    from zoo.nets.ensemble import Ensemble as EnsembleNet
    from zoo.nets.ensemble import GaussianMLP, gaussian_nll

    array = validate_data(data, config)
    if array.shape[0] <= config.held_out:
        raise ValueError(f"data: expected more than held_out = {config.held_out} episodes, got {array.shape[0]}")
    train_data, test_data = array[:-config.held_out], array[-config.held_out:]
    stats = data_stats(train_data, config)
    temp, action, delta = _flat_transitions(train_data, config)
    x_all = _normalise(temp, action, stats)
    y_all = ((delta - stats.mean[2]) / stats.scale[2])[:, None]
    K = config.ensemble_size
    net = EnsembleNet(GaussianMLP(hidden=(config.hidden, config.hidden), out_features=1), size=K, split_inputs=True)
    init_params = net.init(jax.random.PRNGKey(seed), jnp.zeros((K, 1, 2)))

    def make_batch(key, step):
        idx = jax.random.randint(key, (K, batch_size), 0, x_all.shape[0])
        return x_all[idx], y_all[idx]

    def loss_fn(params, batch, key):
        x, y = batch
        mean, log_var = net.apply(params, x)
        return K * gaussian_nll(mean, log_var, y, params, bound_penalty=0.01)

    t_temp, t_action, t_delta = _flat_transitions(test_data, config)
    x_test = _normalise(t_temp, t_action, stats)

    def member_mse(params):
        mean, _ = net.apply(params, jnp.broadcast_to(x_test, (K,) + x_test.shape))
        return jnp.mean((stats.mean[2] + stats.scale[2] * mean[..., 0] - t_delta) ** 2, axis=-1)

    def evaluate(params):
        return float(jnp.mean(member_mse(params)))

    def finish(result) -> Ensemble:
        params = result.params
        elite = np.argsort(np.asarray(member_mse(params)))[:config.elites]
        member = GaussianMLP(hidden=(config.hidden, config.hidden), out_features=1)
        members = jax.tree_util.tree_map(lambda leaf: leaf[elite], params["params"]["member"])

        def apply(p, x):
            mean, log_var = member.apply({"params": p}, x)
            return stats.mean[2] + stats.scale[2] * mean[..., 0], stats.scale[2] * jnp.exp(0.5 * log_var[..., 0])

        return Ensemble(members, apply, stats)

    return TrainingProblem(loss_fn, init_params, make_batch, optax.adam(1e-3), config.ensemble_steps, evaluate,
                           max(1, config.ensemble_steps // 10), finish)


# --------------------------------------------------------------------------------------------
# The dynamics reward: discriminator against a learner dynamics policy (adversarial IRL)
# --------------------------------------------------------------------------------------------


def reward_stats(data, config: MORECConfig) -> Stats:
    """The scaling of the dynamics reward's inputs ``(T, a, ΔT)``. ``reward_inputs="plant"``: the
    mean and standard deviation of the uniform law on the plant's operating range, ``T`` on
    [0, ``t_amb``] (an unheated refrigerator stays below the room), ``a`` on [0, 1], and ``ΔT``
    centred at 0 in units of ``reward_delta_scale``; ``"data"``: :func:`data_stats`. With data
    statistics a state of the unseen region is tens of standard deviations from the data
    (``T`` varies by about 0.27 °C in the behaviour data) and the discriminator's extrapolation
    there is arbitrary; with the plant's scale it is a modest step (see :func:`check_reward`)."""
    if config.reward_inputs == "data":
        return data_stats(data, config)
    root12 = math.sqrt(12.0)
    return Stats(jnp.array([config.t_amb / 2, 0.5, 0.0]),
                 jnp.array([abs(config.t_amb) / root12, 1 / root12, config.reward_delta_scale]))


def _reward_features(temp, action, delta, stats: Stats):
    x = _normalise(temp, action, stats)
    return jnp.concatenate([x, ((delta - stats.mean[2]) / stats.scale[2])[..., None]], axis=-1)


class RewardModel(NamedTuple):
    """MOREC's dynamics reward: the stacked discriminator snapshots ``params`` (leading axis:
    snapshots, oldest first), the network ``net`` and the data ``stats``."""

    params: Any
    net: Any
    stats: Stats


def dynamics_reward(reward: RewardModel, temp, action, next_temp) -> jax.Array:
    """``r_D = −log(1 − mean_k clip(D_k(T, a, ΔT), 0, 0.999))`` over the snapshots (any batch shape)."""
    features = _reward_features(jnp.asarray(temp, float), jnp.asarray(action, float),
                                jnp.asarray(next_temp, float) - jnp.asarray(temp, float), reward.stats)
    probs = jax.vmap(lambda p: jax.nn.sigmoid(reward.net.apply({"params": p}, features)[..., 0]))(reward.params)
    return -jnp.log1p(-jnp.mean(jnp.clip(probs, 0.0, 0.999), axis=0))


def train_reward(data, config: MORECConfig, *, seed: int = 0, batch_size: int = 256) -> TrainingProblem:
    """The adversarial IRL of the dynamics reward as a :class:`TrainingProblem`.

    Parameters ``{"disc": φ, "policy": ψ}``; each step draws a minibatch of data transitions and
    lets the learner ``π_ψ(ΔT | T, a) = N(μ_ψ, σ_ψ²)`` (2 × ``hidden`` SiLU MLP) propose ``ΔT`` at
    the same ``(T, a)`` (reparameterised). One loss, one simultaneous gradient step for both
    players (each sees the other through ``stop_gradient``)::

        L_D = −mean log D_φ(data) − mean log(1 − D_φ(learner))
        L_π = −mean [−log(1 − D_φ(learner))] − β mean log σ_ψ

    ``evaluate`` (every ``snapshot_every`` steps) records a snapshot of ``φ`` and returns the
    discriminator's loss; ``finish(result)`` keeps the last ``history`` snapshots as a
    :class:`RewardModel`. Snapshots are collected by this problem object as training runs, so a
    run resumed from a checkpoint holds only the snapshots taken after the resume.
    """
    import optax

    from zoo.nets.mlp import MLP

    stats = reward_stats(data, config)
    temp, action, delta = _flat_transitions(data, config)
    disc = MLP(hidden=(config.hidden, config.hidden), out_features=1, activation="silu")
    policy = MLP(hidden=(config.hidden, config.hidden), out_features=2, activation="silu")
    k_d, k_p = jax.random.split(jax.random.PRNGKey(seed))
    init_params = {"disc": disc.init(k_d, jnp.zeros((3,)))["params"],
                   "policy": policy.init(k_p, jnp.zeros((2,)))["params"]}
    temp, action, delta = jnp.asarray(temp), jnp.asarray(action), jnp.asarray(delta)

    def make_batch(key, step):
        idx = jax.random.randint(key, (batch_size,), 0, temp.shape[0])
        return temp[idx], action[idx], delta[idx]

    def logits(phi, t, a, d):
        return disc.apply({"params": phi}, _reward_features(t, a, d, stats))[..., 0]

    def loss_fn(params, batch, key):
        t, a, d = batch
        out = policy.apply({"params": params["policy"]}, _normalise(t, a, stats))
        mu, log_sd = out[..., 0], jnp.clip(out[..., 1], -5.0, 2.0)
        fake = stats.mean[2] + stats.scale[2] * (mu + jnp.exp(log_sd) * jax.random.normal(key, t.shape))
        real_logit = logits(params["disc"], t, a, d)
        fake_logit = logits(params["disc"], t, a, jax.lax.stop_gradient(fake))
        loss_d = jnp.mean(jax.nn.softplus(-real_logit)) + jnp.mean(jax.nn.softplus(fake_logit))
        reward = jax.nn.softplus(logits(jax.lax.stop_gradient(params["disc"]), t, a, fake))  # −log(1 − D)
        loss_p = -jnp.mean(reward) - config.entropy * jnp.mean(log_sd)
        return loss_d + loss_p

    snapshots: list = []
    eval_batch = make_batch(jax.random.PRNGKey(seed + 1), 0)

    def evaluate(params):
        snapshots.append(jax.tree_util.tree_map(np.asarray, params["disc"]))
        t, a, d = eval_batch
        return float(jnp.mean(jax.nn.softplus(-logits(params["disc"], t, a, d))))

    def finish(result) -> RewardModel:
        kept = snapshots[-config.history:] or [jax.tree_util.tree_map(np.asarray, result.params["disc"])]
        stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *kept)
        return RewardModel(stacked, disc, stats)

    return TrainingProblem(loss_fn, init_params, make_batch, optax.adam(config.reward_learning_rate),
                           config.reward_steps, evaluate, config.snapshot_every, finish)


# --------------------------------------------------------------------------------------------
# The transition filter and the checks of the learned pieces
# --------------------------------------------------------------------------------------------


def _candidates(key, ensemble: Ensemble, temp, action, resample: int):
    """``(K · resample, *temp.shape)`` next-temperature draws from every member."""
    mean, scale = ensemble_predict(ensemble, temp, action)
    eps = jax.random.normal(key, (resample,) + mean.shape)
    draws = mean[None] + scale[None] * eps
    return draws.reshape((-1,) + jnp.shape(temp))


def filtered_rollout(key, ensemble: Ensemble, temp0, actions, config: MORECConfig,
                     reward: RewardModel | None = None):
    """Model rollouts from ``temp0 (N,)`` under ``actions (N, H)``: ``(temps (N, H+1), alive (N, H))``.

    With ``reward``: at each step candidates from every member (``resample`` each) are scored
    by ``r_D`` and one is drawn with probabilities ``softmax(r_D / temperature)``; ``alive`` turns
    False from the first step whose chosen ``r_D < threshold``. Without: one member at random,
    one draw from it (the unfiltered ensemble rollout); ``alive`` is all True."""
    temp0 = jnp.asarray(temp0, float)
    actions = jnp.asarray(actions, float)
    N = temp0.shape[0]

    def step(carry, xs):
        temp, alive = carry
        a, k = xs
        k_c, k_pick = jax.random.split(k)
        cands = _candidates(k_c, ensemble, temp, a, config.resample)  # (C, N)
        if reward is None:
            pick = jax.random.randint(k_pick, (N,), 0, cands.shape[0])
            alive_next = alive
        else:
            r = dynamics_reward(reward, jnp.broadcast_to(temp, cands.shape), jnp.broadcast_to(a, cands.shape), cands)
            pick = jax.random.categorical(k_pick, (r / config.temperature).T, axis=-1)
            alive_next = alive & (jnp.take_along_axis(r, pick[None], axis=0)[0] >= config.threshold)
        nxt = jnp.take_along_axis(cands, pick[None], axis=0)[0]
        return (nxt, alive_next), (nxt, alive_next)

    keys = jax.random.split(key, actions.shape[1])
    _, (temps, alive) = jax.lax.scan(step, (temp0, jnp.ones(N, bool)), (actions.T, keys))
    return jnp.concatenate([temp0[:, None], temps.T], axis=1), alive.T


def _test_episodes(key, config: MORECConfig, num_steps: int):
    return simulate_policy(key, config, "test", num_episodes=config.num_rollouts, num_steps=num_steps)


def reward_scores(key, reward: RewardModel, ensemble: Ensemble, config: MORECConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(true, offset)`` reward scores on the unseen region: ``r_D`` of true test-policy transitions
    and of ensemble draws at the same ``(T, a)`` shifted by ``±offset`` °C (sign at random)."""
    k_data, k_draw, k_sign, k_member = jax.random.split(key, 4)
    episodes = _test_episodes(k_data, config, 2)
    temp, action, nxt = episodes[:, 0, 0], episodes[:, 0, 1], episodes[:, 1, 0]
    mean, scale = ensemble_predict(ensemble, temp, action)
    member = jax.random.randint(k_member, temp.shape, 0, mean.shape[0])
    draw = (jnp.take_along_axis(mean, member[None], 0)[0]
            + jnp.take_along_axis(scale, member[None], 0)[0] * jax.random.normal(k_draw, temp.shape))
    sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, temp.shape), 1.0, -1.0)
    true = dynamics_reward(reward, temp, action, nxt)
    fake = dynamics_reward(reward, temp, action, draw + sign * config.offset)
    return np.asarray(true), np.asarray(fake)


def rollout_errors(key, ensemble: Ensemble, reward: RewardModel, config: MORECConfig) -> tuple[float, float]:
    """``(filtered, unfiltered)`` mean absolute error of ``rollout_steps``-step model rollouts
    against the plant under the test policy (same start and actions), over ``num_rollouts`` starts."""
    k_data, k_f, k_u = jax.random.split(key, 3)
    H = config.rollout_steps
    episodes = _test_episodes(k_data, config, H + 1)
    temp0, actions, true = episodes[:, 0, 0], episodes[:, :H, 1], episodes[:, :, 0]
    filtered, _ = filtered_rollout(k_f, ensemble, temp0, actions, config, reward)
    unfiltered, _ = filtered_rollout(k_u, ensemble, temp0, actions, config, None)
    error = lambda path: float(jnp.mean(jnp.abs(path[:, 1:] - true[:, 1:])))  # noqa: E731
    return error(filtered), error(unfiltered)


def check_dynamics(ensemble: Ensemble, held_out, config: MORECConfig) -> list[Check]:
    """Spec check (b): the ensemble's 90% predictive interval (the mixture of its members' Normals,
    from 400 draws per transition) covers between 80% and 98% of the observed one-step transitions
    of ``held_out`` episodes (in-distribution data the fit did not see)."""
    temp, action, nxt, observed = transitions(held_out, config)
    keep = np.asarray(observed)
    temp, action, nxt = jnp.asarray(np.asarray(temp)[keep]), jnp.asarray(np.asarray(action)[keep]), np.asarray(nxt)[keep]
    mean, scale = ensemble_predict(ensemble, temp, action)
    key = jax.random.PRNGKey(0)
    member = jax.random.randint(key, (400, temp.shape[0]), 0, mean.shape[0])
    draws = (jnp.take_along_axis(mean, member, 0)
             + jnp.take_along_axis(scale, member, 0) * jax.random.normal(jax.random.fold_in(key, 1), member.shape))
    lo, hi = np.quantile(np.asarray(draws), [0.05, 0.95], axis=0)
    coverage = float(np.mean((lo <= nxt) & (nxt <= hi)))
    return [Check("90% predictive interval coverage (held-out, in distribution)", 0.8 <= coverage <= 0.98, coverage,
                  "in [0.8, 0.98]", f"{len(nxt)} one-step transitions")]


def check_reward(reward: RewardModel, ensemble: Ensemble, config: MORECConfig, *, num_seeds: int = 5) -> list[Check]:
    """Spec check (c) on the unseen region (test policy): the AUC of ``r_D`` separating true
    transitions from ensemble draws offset by ±``offset`` °C exceeds 0.7 (``num_rollouts`` of each,
    :func:`rank_auc`); the filtered ``rollout_steps``-step rollout error is at most the unfiltered one
    (mean over ``num_seeds`` seeds)."""
    true, fake = reward_scores(jax.random.PRNGKey(100), reward, ensemble, config)
    from diagnostics.metrics import rank_auc

    auc = rank_auc(true, fake)
    paired = float(np.mean((true > fake) + 0.5 * (true == fake)))
    errors = np.array([rollout_errors(jax.random.PRNGKey(200 + s), ensemble, reward, config) for s in range(num_seeds)])
    filtered, unfiltered = errors.mean(axis=0)
    return [Check("AUC of r_D: true vs offset transitions (unseen region)", auc > 0.7, auc, "> 0.7",
                  f"{len(true)} + {len(fake)} transitions, offset ±{config.offset:g} C; pooled over states (the "
                  f"spec's); at the same state (what the filter compares): {paired:.3f}"),
            Check("filtered rollout error <= unfiltered", bool(filtered <= unfiltered), float(filtered),
                  f"<= {unfiltered:.4f} (unfiltered)", f"{config.rollout_steps}-step rollouts, mean over {num_seeds} seeds")]


# --------------------------------------------------------------------------------------------
# The paper's setting: offline data on disk
# --------------------------------------------------------------------------------------------


def load_offline_data(config: MORECConfig) -> dict[str, np.ndarray]:
    """The offline transitions of a ``d4rl`` configuration from the CSV at ``data_path``: columns
    ``episode, step, s0..s{d-1}, a0..a{m-1}, reward`` (one row per step), returned as
    ``{"episode", "step", "state" (n, d), "action" (n, m), "reward" (n,)}``. Nothing is downloaded:
    a missing file raises :class:`OfflineDataMissing` naming the path and the layout."""
    if config.task != "d4rl":
        raise ValueError(f"config: task {config.task!r} is simulated; load_offline_data reads a 'd4rl' configuration")
    path = config.data_path
    if not os.path.exists(path):
        raise OfflineDataMissing(f"data_path: no offline data at {path!r} ({config.env or 'D4RL'}); export the "
                                 "data set to a CSV with columns episode, step, s0..s{d-1}, a0..a{m-1}, reward "
                                 "(nothing is downloaded)")
    import pandas as pd

    frame = pd.read_csv(path)
    states = sorted((c for c in frame.columns if c[:1] == "s" and c[1:].isdigit()), key=lambda c: int(c[1:]))
    acts = sorted((c for c in frame.columns if c[:1] == "a" and c[1:].isdigit()), key=lambda c: int(c[1:]))
    missing = [c for c in ("episode", "step", "reward") if c not in frame.columns]
    if missing or not states or not acts:
        raise ValueError(f"data_path: {path!r} lacks columns {missing + ([] if states else ['s0']) + ([] if acts else ['a0'])}; "
                         "expected episode, step, s0..s{d-1}, a0..a{m-1}, reward")
    return {"episode": frame["episode"].to_numpy(int), "step": frame["step"].to_numpy(int),
            "state": frame[states].to_numpy(float), "action": frame[acts].to_numpy(float),
            "reward": frame["reward"].to_numpy(float)}


SMALL = MORECConfig()
PAPER = MORECConfig(task="d4rl", data_path="data/d4rl/halfcheetah-medium-v2.csv", env="halfcheetah-medium-v2",
                    hidden=200, ensemble_size=7, elites=5, svi_steps=100_000, ensemble_steps=100_000,
                    reward_steps=3_000_000, history=200, num_episodes=1000, num_steps=1000, reward_inputs="data")

ENTRY = ZooEntry(
    name="morec_refrigerator",
    title="Reward-consistent dynamics models (MOREC) on a refrigerator, with the linear-physics twin",
    reference="arXiv:2310.05422",
    summary=(
        "Offline data of a refrigerator's temperature under a behaviour policy that holds it near 5 C. "
        "A Bayesian neural dynamics model (SVI, posterior draws as the ensemble) and a MOPO-style "
        "probabilistic ensemble learn the one-step transitions; a discriminator trained against a learner "
        "dynamics policy (adversarial IRL, historical averaging) gives MOREC's dynamics reward, which filters "
        "model rollouts on states the data never visit. The linear-physics twin is a conjugate Bayesian "
        "regression, so NUTS on it (the recipe) is checked against the closed-form posterior."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER},
    recipe=Recipe("nuts", {"num_warmup": 300, "num_samples": 300, "num_chains": 1},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}),
    check=check,
    exact_loglik=exact_loglik,
    prior_data=prior_data,
    rank_sites=("w",),
    dims={"w": ("coef",), "beta": ("coef",), "temp": ("episode", "time"), "action": ("episode", "transition")},
    columns=Columns(("temp", "action"), validate=validate_data,
                    describe="refrigerator temperature (C) and action in [0, 1] per step (a (time, 2) array is "
                             "one episode; the last step's action is not used)"),
)
