r"""Winnerless transient-state network with reservoirs (entry ``gros_transient_states``, Gros & Kaczor).

Model card
----------
``gros_transient_states``: N rate neurons ``x_i`` and their reservoirs ``phi_i``; the memories are
the cliques of an excitatory graph (here ``C`` disjoint cliques of ``m`` neurons, ``N = C m``). The
network runs autonomously from clique to clique (transient states, winnerless competition)::

    dx_i   = [(1 - x_i) Θ(r_i) r_i + x_i Θ(-r_i) r_i] dt + s_x dW_i
    r_i    = b + f_w(phi_i) Σ_{j ~ i} w x_j + Σ_{j !~ i} z f_z(phi_j) x_j
    dphi_i = [Γ⁺ (1 - phi_i)(1 - x_i/x_c) Θ(x_c - x_i) - Γ⁻ phi_i Θ(x_i - x_c)] dt + s_phi dB_i
    f_a(phi) = u_a + (1 - u_a) [atan((phi - phi_c^a)/Γ_phi) - atan(-phi_c^a/Γ_phi)]
                             / [atan((1 - phi_c^a)/Γ_phi) - atan(-phi_c^a/Γ_phi)],   a in {w, z}
    y_k    = x(k Δ) + N(0, s_y² I),   k = 1..T

``j ~ i``: j and i share a clique (excitatory weight ``w``); ``j !~ i``: no shared clique (inhibitory
weight ``z < 0``). An active neuron (``x_i > x_c``) drains its reservoir at rate Γ⁻, an inactive one
refills at rate Γ⁺. When the reservoirs of the winning clique fall below ``phi_c^z`` the inhibition
it sends fades, the constant drive ``b`` lifts the other cliques and the one with the fullest
reservoirs wins the competition (ties are broken by the noise). A clique is *active* when all its
members have ``x > 0.5``; the decoded label is that clique, or -1 between states.

The drift is integrated by Euler–Maruyama with step ``dt`` (``Δ/dt`` sub-steps per observation).
``x`` is not clipped: the drift holds ``x`` within the noise scale of ``[0, 1]`` (0 and 1 attract),
and leaving it unclipped keeps the transition a product of Gaussian steps, a proper density. The
reservoirs carry a small noise ``s_phi`` for the same reason (a deterministic ``phi`` has no density).

======================  ======================================  =====================
parameter               prior                                   small truth
======================  ======================================  =====================
``gamma_minus`` (Γ⁻)    LogNormal(log 0.02, 0.5)                0.02
``gamma_plus`` (Γ⁺)     LogNormal(log 0.005, 0.5)               0.005
``b``                   fixed                                   0.5
``w``, ``z``            fixed                                   0.12, -1
``x_c``, ``Γ_phi``      fixed                                   0.85, 0.05
``phi_c^w``, ``u_w``    fixed                                   0.7, 0.05
``phi_c^z``, ``u_z``    fixed                                   0.7, 0.05
``s_x``, ``s_phi``      fixed (per unit time)                   0.01, 0.001
``s_y``                 fixed                                   0.05
======================  ======================================  =====================

The thresholds are fixed: Γ⁻ and ``phi_c`` are confounded through the dwell time. With ``b = 0``
no clique hands over (an inactive neuron receives only inhibition); ``b = 0.5`` with
``phi_c^z = 0.7`` gives dwell times of about 25-35 time units.

Small config: 4 cliques of 3 neurons, ``dt = 0.05``, ``Δ = 1``, 60 observations (one hand-over
between two transient states), clique 0 active and all reservoirs full at ``t = 0``. Paper config: 10 cliques
of 3 neurons and 1000 observations. ``long``: the small network observed for 400 time units.

State-space form (``ENTRY.ssm``): the state at observation k is the Euler–Maruyama sub-path
``(Δ/dt, 2N)`` of ``(x, phi)`` on ``(t_{k-1}, t_k]``; the emission is Gaussian on the sub-path's
last ``x``. The NumPyro program is this form's program (latent sub-paths as sites).

Recipe: ``pmmh`` on (Γ⁻, Γ⁺) with a bootstrap particle filter of 512 particles whose noise is
correlated from one iteration to the next (correlated PMMH, ``correlation=0.99``; ``paper``: 256
independent particles): the Heaviside steps make the likelihood's gradients vanish, so
gradient-based samplers do not apply to this program. The two rates have posterior widths twenty
times apart: the switch times fix log Γ⁻ to about 0.03, while Γ⁺ (the refill of the reservoirs of
a clique that has been active, which the data of ``small`` never see at work) keeps its prior
width 0.5. The random-walk proposal is therefore diagonal with one scale per rate
(``init_scale={"gamma_minus": 0.05, "gamma_plus": 0.9}``, about ``2.4/sqrt(2)`` posterior standard
deviations, held fixed), 4 chains of 50 warmup and 1000 kept iterations, started within
``init_radius = 0.1`` (unconstrained units) of the prior median. The filter's log-likelihood
estimate is noisy, which makes the chains sticky. Its standard deviation at the truth, almost all
of it from the observations around the hand-over (the particles that miss the hand-over time
die), depends on the data set: on ``small``'s own (seed 0, 20 filters) 1.3 at 256 particles, 0.7
at 512 and 0.5 at 1024; on two prior draws of ``zoo sbc --seed 0`` (replicates 16 and 9, 32
filters) 3.3 and 2.0 at 256 particles, 1.1 and 1.0 at 1024. On replicate 16, 256 independent
particles left the chains stuck (R-hat 1.23); correlating the filter's noise (ρ = 0.99) brought
R-hat to 1.16 with four times the ESS, and 512 correlated particles to 1.035 (bulk ESS 141 and 106
of 4000 draws; replicate 9: R-hat 1.041, ESS 142 and 261). Correlation alone is not enough
because the estimate is rough in Γ⁻: with the filter's noise held fixed, a 2% change of Γ⁻ moves
it by 2.9 of its standard deviations (the hand-over starts at other sub-steps, where other noise
decides it), so the particle count still has to bring the noise down. On ``small``'s own data
set the check's convergence verdicts are warnings, not failures (R-hat 1.007 for Γ⁻ and 1.004 for
Γ⁺, bulk ESS 367 and 393 of 4000 draws, acceptance 0.25), at about 18 CPU minutes for ``zoo check``.

Check: the central 99% interval of Γ⁻ (the zoo's one coverage statement per entry) covers the
truth and its posterior median is within 25% of it. The clique sequence decoded from a particle
filter's filtering means (``inference.fit(entry, data, method="pf", params=...)``, then
``decode_filtered``) is checked in the tests and the notebook: ``zoo`` does not import the
particle filter.

Semantic-learning variant (:func:`learn`; no posterior). The stimulus term of ``r_i`` is the
afferent input ``Σ_k v_ik y_k(t)`` from the pixels ``y`` of a stimulus (``drift(..., stimulus=v @ y)``).
Gros & Kaczor's learning rule is not retrieved; what follows is this project's reading of their
description (stimuli count in the sensitive periods, a global learning signal when the stimulus
changes which clique wins compared with the autonomous flow, a Hebbian update with normalisation):

* one episode per hand-over: a fresh bars-and-stripes stimulus (``L x L`` pixels; each of the
  ``L`` bars and ``L`` stripes present independently with probability ``p``; a pixel is on if a
  present component covers it), held fixed; the network with the stimulus and its autonomous twin
  (no stimulus, the same noise) run from the same state until each has a new winning clique
  (all members ``x > 0.5``, other than the clique that was active);
* the stimulus is on throughout, but an active clique's inhibition (``z f_z`` summed over its
  neurons, about -3) outweighs any afferent input (at most ``V``) until its reservoirs drain: the
  stimulus can decide only the hand-over, the sensitive period;
* learning signal ``s = 1`` if the two winners differ (the stimulus changed the outcome of the
  autonomous flow), else 0; it is global (every neuron sees it);
* Hebbian update with normalisation, with ``x`` at the onset of the driven winner::

      v_ik <- V (v_ik + ε s x_i y_k) / Σ_l (v_il + ε s x_i y_l)

  only the new winning clique's rows move (toward the active pixels, away from the others); the
  weights stay non-negative and each row sums to ``V``;
* the driven network goes on from its state at the hand-over with the next stimulus
  (:func:`jax.lax.scan` over episodes, :func:`jax.lax.while_loop` over Euler steps, one jit per
  config).

Read-out: the response of clique ``c`` to component ``j`` is the mean over its neurons of
``Σ_k v_ik`` over the component's pixels; the *assignment accuracy* (the spec's check) is the
number of distinct most-responsive cliques over the ``2L`` components; the *selectivity* is the
mean over components of the best clique's response over ``V`` (1: cliques tuned to single
components; about ``1/L`` for weights spread evenly). ``LEARNING`` (L = 3, 8 cliques of 3,
Γ⁻ = Γ⁺ = 0.1, ``p = 0.1``, ``ε = 0.1``, ``V = 1``, 500 episodes, the deterministic network with
initial reservoirs uniform in [0.8, 1]): assignment accuracy >= 5/6 for keys 0-9 (6/6 for four),
selectivity 0.50-0.64; the initial (untrained) weights reach 5/6 on 7 of 10 keys by chance with
8 cliques, at selectivity 0.36-0.41; with process noise ``noise = 0.01`` (common to the twin)
keys 0-2 give accuracy 1, 1, 5/6 and selectivity 0.55-0.57. About 3.5 s CPU per run after a
compile of about 3 s. The
reservoir rates are faster than the PMMH network's and the refill as fast as the drain, so that
most cliques are available at each hand-over (about 14 time units per episode). The cliques stay
partly mixed: when a component's clique is still drained, the stimulus hands the win to the next
best available clique, which is then tuned toward that component as well. ``LEARNING_PAPER``
(L = 5, 10 components, 12 cliques, ``p = 0.05`` so that most stimuli hold at most one
component, 6000 episodes, about 96,000 time units of autonomous activity): assignment accuracy
0.9 and 1.0, selectivity 0.56 and 0.51 for keys 0 and 1 (untrained: 0.8 and 0.7, selectivity
0.22), 46-63 s CPU per run. With ``p = 0.1`` and 3000 episodes: accuracy 0.8-0.9, selectivity
0.41-0.46. These configs are module constants, not ``ENTRY.configs``
(which hold the PMMH network)::

    run = tsn.learn(jax.random.PRNGKey(0), tsn.LEARNING)
    tsn.assignment_accuracy(run.weights, tsn.LEARNING), tsn.selectivity(run.weights, tsn.LEARNING)

SBC: in progress (the calibration table, ``zoo show``, says how far, and whether the stored
replicates are of the recipe above: a sweep under another recipe is replaced, not continued).
``zoo sbc`` ranks ``rank_sites``, the two rates (PMMH marginalises the path). A fit of the default
recipe (PMMH, 4 chains of 1050 iterations with 512 particles) costs about 1000 CPU-s (``zoo
check`` on ``small``'s own data: 1058 s of CPU on a shared core; no compilation to speak of: a
second fit in the same process costs the same): an iteration runs 4 particle filters over 60
observations of 20 Euler substeps of 24 states and moves their noise, some 60 million Gaussian
draws, drawn in float32 and fused into the move (:func:`inference.particle.correlated.draw_noise`,
:func:`~inference.particle.correlated.crank_nicolson`: one chain's iteration 0.27 to 0.31 s on one
busy core, 0.59 s with float64 noise). So n = 100 is about 28 CPU-hours, some 14 hours on two Dask
workers: longer than one machine's life, so ``zoo sbc gros_transient_states --config small
--n 100 --draws 99 --seed 0 --workers 2 --store`` stores the ranks in the repository after every
replicate, and the same command on a fresh clone continues from them.

Example::

    import jax, zoo, inference
    entry = zoo.get("gros_transient_states")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(entry, data, method="pmmh", **entry.recipe.options_for("small"))
    print(entry.check(idata, truth, config))

Reference: C. Gros, G. Kaczor, "Semantic learning in autonomously active recurrent neural
networks", Logic Journal of the IGPL 18, 686 (2010), arXiv:0811.4744; C. Gros, "Neural networks
with transient state dynamics", New J. Phys. 9, 109 (2007), arXiv:0705.0078.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.validate import concrete
from zoo.core import Check, Columns, Recipe, StateSpaceModel, ZooEntry, check_ranges
from zoo.processes.reactions import EulerMaruyamaPath

REFERENCE = "arXiv:0811.4744"
PARAMETERS = ("gamma_minus", "gamma_plus")


@dataclasses.dataclass(frozen=True)
class TransientStateConfig:
    """Sizes, fixed network constants, priors (log-normal ``(loc, scale)``), truth and numerics.

    ``process_noise`` and ``reservoir_noise`` are diffusion coefficients per unit time (the
    Euler step's standard deviation is ``noise * sqrt(dt)``); ``obs_noise`` the observation SD.
    """

    COUNTS: ClassVar[tuple[str, ...]] = ("num_cliques", "clique_size", "num_obs")
    POSITIVE: ClassVar[tuple[str, ...]] = ("obs_interval", "dt", "w", "x_c", "gamma_phi", "process_noise",
                                           "reservoir_noise", "obs_noise", "true_gamma_minus", "true_gamma_plus")

    num_cliques: int = 4
    clique_size: int = 3
    num_obs: int = 60
    obs_interval: float = 1.0
    dt: float = 0.05
    drive: float = 0.5
    w: float = 0.12
    z: float = -1.0
    x_c: float = 0.85
    gamma_phi: float = 0.05
    phi_c_w: float = 0.7
    phi_c_z: float = 0.7
    u_w: float = 0.05
    u_z: float = 0.05
    process_noise: float = 0.01
    reservoir_noise: float = 0.001
    obs_noise: float = 0.05
    true_gamma_minus: float = 0.02
    true_gamma_plus: float = 0.005
    prior_gamma_minus: tuple[float, float] = (math.log(0.02), 0.5)
    prior_gamma_plus: tuple[float, float] = (math.log(0.005), 0.5)
    initial_clique: int = 0

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.num_cliques < 2:
            raise ValueError(f"num_cliques: expected at least 2 cliques to compete, got {self.num_cliques}")
        if not self.z < 0:
            raise ValueError(f"z: expected a negative (inhibitory) weight, got {self.z!r}")
        if not 0 < self.x_c < 1:
            raise ValueError(f"x_c: expected an activity threshold in (0, 1), got {self.x_c!r}")
        for name in ("phi_c_w", "phi_c_z", "u_w", "u_z"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name}: expected a value in [0, 1], got {value!r}")
        if self.dt > 0.05 + 1e-12:
            raise ValueError(f"dt: the Heaviside dynamics are stiff; expected dt <= 0.05, got {self.dt}")
        substeps = self.obs_interval / self.dt
        if abs(substeps - round(substeps)) > 1e-9:
            raise ValueError(f"dt: must divide obs_interval ({self.obs_interval}), got {self.dt}")
        for name in ("prior_gamma_minus", "prior_gamma_plus"):
            loc, scale = getattr(self, name)
            if not (np.isfinite(loc) and scale > 0):
                raise ValueError(f"{name}: expected (loc, scale) with scale > 0, got {getattr(self, name)!r}")
        if not 0 <= self.initial_clique < self.num_cliques:
            raise ValueError(f"initial_clique: expected 0..{self.num_cliques - 1}, got {self.initial_clique}")

    @property
    def num_neurons(self) -> int:
        return self.num_cliques * self.clique_size

    @property
    def num_substeps(self) -> int:
        return int(round(self.obs_interval / self.dt))

    @property
    def obs_times(self) -> np.ndarray:
        """Observation times ``k Δ``, k = 1..T (the known initial state is at t = 0)."""
        return self.obs_interval * np.arange(1, self.num_obs + 1)

    @property
    def clique_of(self) -> np.ndarray:
        """The clique of each neuron ``(N,)`` (disjoint cliques of ``clique_size``)."""
        return np.repeat(np.arange(self.num_cliques), self.clique_size)

    def fixed_parameters(self):
        from zoo.core import FixedParameter

        return {"b": FixedParameter(self.drive, "drive"), "phi_c_w": FixedParameter(self.phi_c_w, "phi_c_w"),
                "phi_c_z": FixedParameter(self.phi_c_z, "phi_c_z")}


# --------------------------------------------------------------------------------------------
# The network: one definition of the drift
# --------------------------------------------------------------------------------------------


def reservoir_gate(phi, phi_c, u, gamma_phi):
    """``f(phi) = u + (1-u) [atan((phi-phi_c)/Γ) - atan(-phi_c/Γ)] / [atan((1-phi_c)/Γ) - atan(-phi_c/Γ)]``:
    ``f(0) = u``, ``f(1) = 1``, a smoothed step at ``phi_c`` of width ``Γ``."""
    low = jnp.arctan(-phi_c / gamma_phi)
    return u + (1 - u) * (jnp.arctan((phi - phi_c) / gamma_phi) - low) / (jnp.arctan((1 - phi_c) / gamma_phi) - low)


def coupling(config: TransientStateConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(W, Z)`` ``(N, N)``: ``w`` between clique mates (no self-coupling), ``z`` between neurons
    that share no clique."""
    clique = config.clique_of
    same = clique[:, None] == clique[None, :]
    W = config.w * (same & ~np.eye(config.num_neurons, dtype=bool))
    Z = config.z * ~same
    return W.astype(float), Z.astype(float)


def drift(state, gamma_minus, gamma_plus, config: TransientStateConfig, stimulus=0.0):
    """The noise-free rate of ``(x, phi)`` ``(2N,)`` (one state); ``stimulus`` is the afferent
    input ``Σ_k v_ik y_k`` added to ``r_i`` (``(N,)``, or 0 for the autonomous network)."""
    n = config.num_neurons
    W, Z = coupling(config)
    x, phi = state[..., :n], state[..., n:]
    f_w = reservoir_gate(phi, config.phi_c_w, config.u_w, config.gamma_phi)
    f_z = reservoir_gate(phi, config.phi_c_z, config.u_z, config.gamma_phi)
    r = config.drive + f_w * (x @ W.T) + (f_z * x) @ Z.T + stimulus
    dx = jnp.where(r > 0, (1 - x) * r, x * r)
    dphi = (gamma_plus * (1 - phi) * (1 - x / config.x_c) * (x < config.x_c)
            - gamma_minus * phi * (x > config.x_c))
    return jnp.concatenate([dx, dphi], axis=-1)


def _moments_fn(config: TransientStateConfig):
    """``(rates (2,), state (2N,)) -> (mean, scale)`` of one Euler–Maruyama step."""
    n, dt = config.num_neurons, config.dt
    # numpy, not jnp: a constant of every program, never a tracer of the trace that first built it
    # (the function is cached per config, so a traced scale would leak into later programs)
    scale = np.concatenate([np.full(n, config.process_noise), np.full(n, config.reservoir_noise)]) * math.sqrt(dt)

    def moments(rates, state):
        return state + dt * drift(state, rates[0], rates[1], config), scale

    return moments


_MOMENTS: dict = {}


def _moments(config: TransientStateConfig):
    if config not in _MOMENTS:  # one function object per config: distributions compare aux fields
        _MOMENTS[config] = _moments_fn(config)
    return _MOMENTS[config]


def initial_state(config: TransientStateConfig) -> jax.Array:
    """``(x, phi)`` at ``t = 0``: the initial clique on, the others off, all reservoirs full."""
    x0 = (config.clique_of == config.initial_clique).astype(float)
    return jnp.concatenate([jnp.asarray(x0), jnp.ones(config.num_neurons)])


def _rates(params: dict) -> jax.Array:
    return jnp.stack([jnp.asarray(params["gamma_minus"], float), jnp.asarray(params["gamma_plus"], float)])


def _prior(config: TransientStateConfig) -> dict:
    return {"gamma_minus": numpyro.sample("gamma_minus", dist.LogNormal(*config.prior_gamma_minus)),
            "gamma_plus": numpyro.sample("gamma_plus", dist.LogNormal(*config.prior_gamma_plus))}


def state_space_model(config: TransientStateConfig) -> StateSpaceModel:
    """The state-space form: state = the sub-path ``(Δ/dt, 2N)`` of ``(x, phi)`` over one
    observation interval (a product of Gaussian Euler steps); ``y_k ~ N(x(t_k), s_y²)``."""
    n, substeps = config.num_neurons, config.num_substeps
    moments = _moments(config)
    z0 = initial_state(config)

    def initial(params):
        return EulerMaruyamaPath(z0, moments, substeps, params=_rates(params), diagonal=True)

    def transition(params, t, z_prev):
        return EulerMaruyamaPath(z_prev[..., -1, :], moments, substeps, params=_rates(params), diagonal=True)

    def emission(params, t, z):
        return dist.Normal(z[..., -1, :n], config.obs_noise).to_event(1)

    return StateSpaceModel(prior=lambda: _prior(config), initial=initial, transition=transition,
                           emission=emission, state_shape=(substeps, 2 * n), obs_shape=(n,),
                           name="gros_transient_states")


# --------------------------------------------------------------------------------------------
# Data, program, simulator
# --------------------------------------------------------------------------------------------


def validate_data(data, config: TransientStateConfig) -> jax.Array:
    """Activities ``(T, N)``: finite or NaN (missing)."""
    array = jnp.asarray(data, dtype=float)
    expected = (config.num_obs, config.num_neurons)
    if array.shape != expected:
        raise ValueError(f"data: gros_transient_states expects neuron activities of shape {expected} "
                         f"(time, neuron), got {np.shape(data)}")
    value = concrete(array)
    if value is not None and np.any(np.isinf(value)):
        raise ValueError("data: activities must be finite (NaN = missing)")
    return array


def model(data=None, *, config: TransientStateConfig) -> None:
    """NumPyro program: (Γ⁻, Γ⁺), then the latent sub-paths and the noisy activities (the
    state-space form's program; with ``data=None`` the prior predictive)."""
    ssm = state_space_model(config)
    if data is None:
        ssm.model(None, num_steps=config.num_obs)
        return
    ssm.model(validate_data(data, config))


def truth_params(config: TransientStateConfig) -> dict:
    return {"gamma_minus": np.float64(config.true_gamma_minus), "gamma_plus": np.float64(config.true_gamma_plus)}


def simulate(key: jax.Array, config: TransientStateConfig):
    """Activities at ``t_k = kΔ`` ``(T, N)`` and the truth: rates, the path ``x`` ``(T, N)``,
    ``phi`` ``(T, N)`` and the active clique per observation time ``clique`` ``(T,)``."""
    truth = truth_params(config)
    ssm = state_space_model(config)
    zs, ys = jax.jit(lambda k: ssm.simulate(k, {k_: jnp.asarray(v) for k_, v in truth.items()}, config.num_obs))(key)
    n = config.num_neurons
    end = np.asarray(zs[:, -1])
    truth["x"] = end[:, :n]
    truth["phi"] = end[:, n:]
    truth["clique"] = active_clique(truth["x"], config)
    return np.asarray(ys), truth


def active_clique(x, config: TransientStateConfig, threshold: float = 0.5) -> np.ndarray:
    """Per time, the clique all of whose members have ``x > threshold`` (the first if several),
    or -1 when none is: ``(T,)`` from activities ``(T, N)``."""
    return np.asarray(_clique_label(jnp.asarray(x), config, threshold))


def _clique_label(x, config: TransientStateConfig, threshold: float = 0.5):
    """:func:`active_clique` in JAX (traceable): activities ``(..., N)`` -> labels ``(...)``."""
    members = jnp.all((x > threshold).reshape(*x.shape[:-1], config.num_cliques, config.clique_size), axis=-1)
    return jnp.where(members.any(-1), jnp.argmax(members, axis=-1), -1)


def decode_filtered(x_filtered_mean, config: TransientStateConfig) -> np.ndarray:
    """The clique sequence ``(T,)`` decoded (:func:`active_clique`) from a particle filter's
    filtering means of the state ``(T, Δ/dt, 2N)`` (the sub-paths; the activities at ``t_k`` are
    the last sub-step's first ``N`` components), e.g. ``posterior["x_filtered_mean"]`` of
    ``inference.fit(entry, data, method="pf", params=...)``."""
    means = np.asarray(x_filtered_mean)
    expected = (config.num_obs, config.num_substeps, 2 * config.num_neurons)
    if means.shape != expected:
        raise ValueError(f"x_filtered_mean: expected filtering means of the sub-path states of shape "
                         f"{expected}, got {means.shape}")
    return active_clique(means[:, -1, :config.num_neurons], config)


def check(idata, truth: dict, config: TransientStateConfig) -> list[Check]:
    """The central interval of Γ⁻ covers the truth; its posterior median within 25%.

    The interval is the zoo's one coverage statement per entry at level ``JOINT_COVERAGE``
    (0.99: a 1% false-alarm budget per data set) rather than the spec's 90%. The decoded clique
    sequence is not judged here (it needs a particle filter, which ``zoo`` does not import): the
    tests and the notebook decode it with ``inference.fit(entry, data, method="pf", params=...)``
    and ``decode_filtered``.
    """
    from zoo.core import JOINT_COVERAGE, check_covers, posterior_draws

    median = float(np.median(posterior_draws(idata, "gamma_minus")))
    rel = abs(median - float(truth["gamma_minus"])) / float(truth["gamma_minus"])
    return [check_covers(idata, "gamma_minus", truth["gamma_minus"], JOINT_COVERAGE),
            Check("posterior median of gamma_minus within 25%", rel < 0.25, rel, "relative error < 0.25",
                  f"median {median:.5f}, truth {float(truth['gamma_minus']):.5f}")]


def neuron_names(config: TransientStateConfig) -> tuple[str, ...]:
    return tuple(f"x{i}" for i in range(config.num_neurons))


# --------------------------------------------------------------------------------------------
# Semantic learning: afferent weights trained during the sensitive periods (no posterior)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SemanticLearningConfig:
    """The semantic-learning variant: the network of ``network`` (its Γ⁻, Γ⁺ are the
    ``true_*`` rates) driven by bars-and-stripes stimuli of ``side x side`` pixels through
    afferent weights ``v`` ``(N, side²)``, each row summing to ``afferent_norm``.

    One episode is one hand-over between transient states: a fresh stimulus, then the network
    with the stimulus and its autonomous twin (no stimulus, the same noise) run from the same
    state until both have a new winning clique (at most ``max_steps`` Euler steps of ``dt``).
    ``noise`` is the process noise on ``x`` (per unit time; 0: the deterministic network).
    """

    network: TransientStateConfig = TransientStateConfig(num_cliques=8, true_gamma_minus=0.1,
                                                         true_gamma_plus=0.1)
    side: int = 3
    component_prob: float = 0.1
    afferent_norm: float = 1.0
    learning_rate: float = 0.1
    num_episodes: int = 500
    max_steps: int = 2000
    noise: float = 0.0

    def __post_init__(self) -> None:
        for name in ("side", "num_episodes", "max_steps"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.side < 2:
            raise ValueError(f"side: expected at least 2 pixels per side, got {self.side}")
        if not 0 < self.component_prob < 1:
            raise ValueError(f"component_prob: expected a probability in (0, 1), got {self.component_prob!r}")
        for name in ("afferent_norm", "learning_rate"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise: expected a non-negative number, got {self.noise!r}")

    @property
    def num_components(self) -> int:
        return 2 * self.side

    @property
    def num_pixels(self) -> int:
        return self.side * self.side


def bars_and_stripes_components(side: int) -> np.ndarray:
    """The ``2 L`` components ``(2L, L²)``: the ``L`` horizontal bars (rows), then the ``L``
    vertical stripes (columns), each a 0/1 image flattened row by row."""
    eye = np.eye(side, dtype=bool)
    bars = eye[:, :, None] & np.ones((1, 1, side), bool)
    stripes = eye[:, None, :] & np.ones((1, side, 1), bool)
    return np.concatenate([bars, stripes]).reshape(2 * side, side * side).astype(float)


def bars_and_stripes(key, side: int, prob: float, shape: tuple[int, ...] = ()):
    """Stimuli of batch ``shape``: each of the ``L`` bars and ``L`` stripes present independently
    with probability ``prob``; a pixel is on if any present component covers it. Returns the
    images ``shape + (L²,)`` (0/1) and the components present ``shape + (2L,)`` (bool)."""
    present = jax.random.bernoulli(key, prob, (*shape, 2 * side))
    image = present[..., :side, None] | present[..., None, side:]
    return image.reshape(*shape, side * side).astype(float), present


def hebbian_update(v, x, image, signal, learning_rate: float, afferent_norm: float):
    """The update of the afferent weights ``(N, P)`` after a hand-over: the Hebbian increment
    ``ε s x_i y_k`` (``s`` the 0/1 learning signal, ``x`` the activities at the new winner,
    ``y`` the stimulus), then each row rescaled to sum ``afferent_norm`` (weights stay >= 0).
    With ``s = 0``, or for a silent neuron or an empty stimulus, the row is unchanged."""
    grown = v + learning_rate * signal * x[:, None] * image[None, :]
    return afferent_norm * grown / grown.sum(axis=1, keepdims=True)


def _next_winners(state, drive_in, label, key, config: SemanticLearningConfig):
    """Run the driven network and its autonomous twin from ``state`` with common noise until
    each has a winning clique other than ``label`` (or ``max_steps``): the driven end state,
    the two winners (-1 if none) and the number of steps."""
    net = config.network
    n = net.num_neurons
    gm, gp = net.true_gamma_minus, net.true_gamma_plus
    scale = config.noise * math.sqrt(net.dt)

    def step(s, k, stimulus):
        noise = scale * jax.random.normal(k, (n,))
        s = s + net.dt * drift(s, gm, gp, net, stimulus)
        return s.at[:n].add(noise)

    def winner(s, found):
        new = _clique_label(s[:n], net)
        return jnp.where((found < 0) & (new >= 0) & (new != label), new, found)

    def cond(carry):
        _, _, won, won_twin, i = carry
        return ((won < 0) | (won_twin < 0)) & (i < config.max_steps)

    def body(carry):
        s, s_twin, won, won_twin, i = carry
        k = jax.random.fold_in(key, i)
        # the driven network stops at its new winner (the next episode starts there)
        s_next = jnp.where(won < 0, step(s, k, drive_in), s)
        s_twin = step(s_twin, k, 0.0)
        return s_next, s_twin, winner(s_next, won), winner(s_twin, won_twin), i + 1

    none = jnp.asarray(-1)
    s, _, won, won_twin, steps = jax.lax.while_loop(cond, body, (state, state, none, none, jnp.asarray(0)))
    return s, won, won_twin, steps


class LearningRun(NamedTuple):
    """Result of :func:`learn`: the final afferent weights ``(N, P)`` and per episode the
    stimulus components ``(E, 2L)``, the driven and autonomous winners ``(E,)``, the learning
    signal ``(E,)`` and the Euler steps until both the driven network and its twin had a new
    winner ``(E,)``."""

    weights: jax.Array
    components: jax.Array
    winner: jax.Array
    autonomous_winner: jax.Array
    signal: jax.Array
    steps: jax.Array


def initial_learning_state(key, config: SemanticLearningConfig):
    """Clique ``network.initial_clique`` on, reservoirs uniform in [0.8, 1] (no exact ties), and
    afferent weights uniform in [0.5, 1.5] per pixel, each row normalised to ``afferent_norm``."""
    net = config.network
    k_phi, k_v = jax.random.split(key)
    state = initial_state(net).at[net.num_neurons:].set(jax.random.uniform(k_phi, (net.num_neurons,), minval=0.8))
    v = jax.random.uniform(k_v, (net.num_neurons, config.num_pixels), minval=0.5, maxval=1.5)
    return state, config.afferent_norm * v / v.sum(axis=1, keepdims=True)


def learn(key, config: SemanticLearningConfig, weights=None) -> LearningRun:
    """Train the afferent weights on bars-and-stripes stimuli, one episode per hand-over
    (:func:`jax.lax.scan` over ``num_episodes``; ``key`` splits into the initial state's key
    and the run's, whose ``fold_in(., e)`` is the key of episode ``e``). The learning signal is 1
    when the stimulus changed which clique wins compared with the autonomous twin; it gates
    :func:`hebbian_update`. ``weights`` (optional) replaces the initial afferent weights."""
    net = config.network
    if weights is not None:
        v0 = jnp.asarray(weights, float)
        value = concrete(v0)
        if v0.shape != (net.num_neurons, config.num_pixels) or (value is not None and not (
                np.all(np.isfinite(value)) and np.all(value >= 0) and np.all(value.sum(1) > 0))):
            raise ValueError(f"weights: expected finite non-negative afferent weights of shape "
                             f"{(net.num_neurons, config.num_pixels)} with no all-zero row, got shape {v0.shape}")
    k_init, k_run = jax.random.split(key)
    state, initial_weights = initial_learning_state(k_init, config)
    v0 = initial_weights if weights is None else v0
    return _learn_jit(config)(k_run, state, v0)


_LEARN: dict = {}


def _learn_jit(config: SemanticLearningConfig):
    if config in _LEARN:
        return _LEARN[config]
    net = config.network

    def episode(carry, e):
        state, v, label, key = carry
        k_stim, k_run = jax.random.split(jax.random.fold_in(key, e))
        image, present = bars_and_stripes(k_stim, config.side, config.component_prob)
        state, won, won_twin, steps = _next_winners(state, v @ image, label, k_run, config)
        signal = ((won >= 0) & (won != won_twin)).astype(float)
        v = hebbian_update(v, state[:net.num_neurons], image, signal, config.learning_rate, config.afferent_norm)
        label = jnp.where(won >= 0, won, label)
        return (state, v, label, key), (present, won, won_twin, signal, steps)

    @jax.jit
    def run(key, state, v0):
        label = _clique_label(state[:net.num_neurons], net)
        (_, v, _, _), out = jax.lax.scan(episode, (state, v0, label, key), jnp.arange(config.num_episodes))
        return LearningRun(v, *out)

    _LEARN[config] = run
    return run


def clique_responses(weights, config: SemanticLearningConfig) -> np.ndarray:
    """The afferent input of each clique to each single component ``(C, 2L)``: the mean over the
    clique's neurons of ``Σ_k v_ik y_k`` with ``y`` the component's image."""
    net = config.network
    per_neuron = np.asarray(weights) @ bars_and_stripes_components(config.side).T
    return per_neuron.reshape(net.num_cliques, net.clique_size, -1).mean(axis=1)


def assignment_accuracy(weights, config: SemanticLearningConfig) -> float:
    """The number of distinct cliques among the components' most responsive cliques, over the
    number of components (1: every component has a clique of its own)."""
    best = clique_responses(weights, config).argmax(axis=0)
    return len(set(best.tolist())) / config.num_components


def selectivity(weights, config: SemanticLearningConfig) -> float:
    """The mean over components of the most responsive clique's response, over ``afferent_norm``:
    1 when each such clique's weights lie on its component's pixels only, about ``1/L`` for
    weights spread evenly over the image."""
    return float(clique_responses(weights, config).max(axis=0).mean() / config.afferent_norm)


SMALL = TransientStateConfig()
LONG = TransientStateConfig(num_obs=400)
PAPER = TransientStateConfig(num_cliques=10, clique_size=3, num_obs=1000)
LEARNING = SemanticLearningConfig()
LEARNING_PAPER = SemanticLearningConfig(network=TransientStateConfig(num_cliques=12, true_gamma_minus=0.1,
                                                                     true_gamma_plus=0.1),
                                        side=5, component_prob=0.05, num_episodes=6000)

ENTRY = ZooEntry(
    name="gros_transient_states",
    title="Winnerless transient-state network with reservoirs: PMMH on the reservoir rates",
    reference=REFERENCE,
    summary=(
        "A recurrent rate network whose memories are cliques of an excitatory graph runs "
        "autonomously from clique to clique: active neurons drain a reservoir that gates their "
        "excitation and the inhibition they send, and when it runs low the next clique takes over. "
        "Noisy snapshots of the activities are fitted by particle marginal Metropolis–Hastings "
        "with a bootstrap filter on the reservoir depletion and refill rates, and the sequence of "
        "transient states is decoded from the filtering means."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "long": LONG, "paper": PAPER},
    recipe=Recipe("pmmh", {"num_particles": 512, "correlation": 0.99, "num_warmup": 50, "num_samples": 1000,
                           "num_chains": 4, "adapt": False, "init_scale": {"gamma_minus": 0.05, "gamma_plus": 0.9},
                           "init_radius": 0.1},
                  {"num_particles": 256, "correlation": 0.0, "num_warmup": 2000, "num_samples": 2000,
                   "num_chains": 4, "adapt": True}),
    check=check,
    ssm=state_space_model,
    dims={"y": ("time", "neuron"), "x": ("time", "substep", "state")},
    columns=Columns(neuron_names, series=None, grid=lambda config: config.obs_times,
                    validate=validate_data, describe="neuron activities x_i at t = k·Δ, k = 1..T",
                    names_doc="x0..x{N-1}"),
    # PMMH samples the rates with the path marginalised by the particle filter: they are what SBC ranks
    rank_sites=("gamma_minus", "gamma_plus"),
)
