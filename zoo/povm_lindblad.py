r"""The dissipative Ising chain on POVM probabilities (``povm_dissipative_ising``).

Model card
----------
N qubits on a ring (N = 3 on ``small``), each measured with the tetrahedral (SIC) POVM, so the state is a probability
vector ``P`` over the ``4^N`` outcome strings (:mod:`zoo.processes.povm`). The Lindblad equation
of the dissipative transverse-field Ising chain::

    H = (V/4) Σ_i σ^z_i σ^z_{i+1} + (g/2) Σ_i σ^x_i,     L_i = √γ σ^-_i,   σ^- = (X − iY)/2

becomes a real linear ODE on the measurement probabilities, ``Ṗ = 𝓛̃(g, V, γ) P`` with
``𝓛̃_{ba} = Tr(M_b 𝓛(N_a))`` (``N_a`` the dual frame), linear in the parameters, and is solved
exactly, ``P(t) = expm(𝓛̃ t) P(0)``, from all qubits in ``|0⟩`` (``P(0) = ⊗(1/2, 1/6, 1/6, 1/6)``).
Measurement is destructive, so the data are independent batches of shots at several times::

    counts(t_k) ~ Multinomial(S, P(t_k)),     k = 1..L

The likelihood is exact (``numpyro.sample("y", Multinomial, obs=counts)``, one term per time), so
NUTS samples ``(g, γ)`` through the matrix exponential. ``𝓛̃`` is not a rate matrix (negative
off-diagonal entries occur), so no CTMC code is used on it.

=============  ========================  ===========  ================================
parameter      prior                     small truth  role
=============  ========================  ===========  ================================
``g``          HalfNormal(2)             1.0          transverse field (drive)
``gamma`` γ    LogNormal(0, 0.5)         1.0          decay rate
``V``          fixed 2 (option           2.0          Ising coupling
               LogNormal(log 2, 0.3))
=============  ========================  ===========  ================================

Configs: ``small`` (N = 3 ring, 64 outcomes, times 0.5, 1, 2, 4, S = 2000 shots per time; NUTS
300/300 on two chains), ``pauli4`` (the same with the Pauli-4 POVM), ``four_qubits`` (the spec's
N = 4, 256 outcomes: each gradient of the likelihood costs a 256 × 256 matrix exponential, about
10× the ``small`` one, too slow for the default checks on two shared cores), ``paper`` (N = 5, 1024
outcomes, ten times, 10^4 shots). Times on a common grid share one exponential ``expm(𝓛̃ δ)``.

Steady-state ansatz (the paper's neural route, any N). An autoregressive Transformer
(:class:`zoo.nets.transformer.AutoregressiveTransformer`: one causal pre-LN layer, d_model 32, one
head, FF 16) gives ``P_θ(a) = Π_i P_θ(a_i | a_{<i})`` over the four outcomes per qubit, with exact
ancestral sampling. It is trained to the null vector of 𝓛̃ by minimising::

    ‖𝓛̃P_θ‖₁ = E_{a∼P_θ}[|R(a)|],
    R(a) = (𝓛̃P_θ)(a) / P_θ(a) = Σ_k Σ_b B_k[a_{ij}, b] P_θ(a[ij ← b]) / P_θ(a)

where ``B_k`` are the two-site 16 × 16 blocks of the generator on the bonds ``(i, j)`` (the
single-site field and decay folded into one bond each), so each sample needs ``P_θ`` at ``16 N``
strings and no ``4^N`` vector is formed (:func:`zoo.processes.povm.local_generator_ratio`). The
estimate is the mean of ``|R|`` over samples drawn each step; its gradient ``mean[∇|R| + (|R| −
mean|R|) ∇log P_θ]`` is unbiased (:func:`steady_state_loss`). ``‖·‖₁`` is not smooth: its
gradient is a sum of signs ``sign((𝓛̃P_θ)(a))`` that flip near the minimum, and Adam on it
stalls (N = 4, the paper's Adam 1e-2, betas 0.9/0.98: exact ‖𝓛̃P_θ‖₁ still 0.13 after 500
steps, ⟨σ^z⟩ off by 0.06, also with the noise-free 256-string sum). The default objective is
therefore the Euclidean norm, smooth away from the null vector and zero at the same ``P``::

    ‖𝓛̃P_θ‖₂ = (E_{a∼P_θ}[P_θ(a) R(a)²])^{1/2}

(the mean of ``P_θ(a)R(a)²`` and the same score-function gradient, scaled by ``1 / 2‖·‖₂``), with
the learning rate decayed on a cosine from 1e-2 to 1e-4; ``l1_steps`` ends the run with that many
steps of the paper's ‖·‖₁. Training runs through ``inference.train`` (checkpoint/resume) in
``scripts/train_povm_steady_state.py`` (:class:`SteadyStateConfig`; ``STEADY_CHECK``: N = 4
ring, 1000 steps of 250 samples; ``STEADY_PAPER``: N = 16 ring, 500 steps of 10^4 samples, the
paper's sample size, an accelerator run). Checks: the local-block ``(𝓛̃P)(a)`` equals the dense
generator's row product on every string (N = 4; 1e-10); the trained N = 4 ansatz against the
exact steady state (:func:`exact_steady_observables`, a slow test). The spec's 0.02 on
``⟨σ^x⟩``, ``⟨σ^z⟩`` is NOT reached reliably. Measured at N = 4 (g = 1, seed 0, float32
network, about 0.3 s CPU a step at 250 samples, observables and ‖𝓛̃P_θ‖₁ from exact sums over
the 256 strings, worst site), sampled training from a cold start at 250 samples a step:

- ‖·‖₁, Adam 1e-2 constant, 500 steps (the paper's recipe): ‖𝓛̃P_θ‖₁ ≈ 0.1; ⟨σ^x⟩ off by
  0.004, ⟨σ^z⟩ by 0.065;
- ‖·‖₂, cosine 1e-2 → 1e-4, 1000 steps (``STEADY_CHECK``; the slow test, 274 s user CPU in all): 0.020
  and 0.031;
- ‖·‖₂ for 800 steps then ‖·‖₁ for 400, cosine over 1200: after the ‖·‖₂ part ‖𝓛̃P_θ‖₁ = 0.07,
  0.005 and 0.006; at the end ‖𝓛̃P_θ‖₁ = 0.06, 0.006 and 0.019;
- the same ‖·‖₂ default over seeds (⟨σ^x⟩, ⟨σ^z⟩ errors; every site alike on the ring): 1000 steps,
  seeds 1 and 2: (0.007, 0.014), (0.003, 0.019); 2000 steps (cosine over 2000), seeds 0 and 3:
  (0.007, 0.007), (0.005, 0.022), 420 s CPU each;

so the ‖·‖₂ objective roughly halves the ⟨σ^z⟩ error, with a spread between runs of the same order
as the target: a longer run helps seed 0 but not every seed. With the noise-free 256-string sum as
the objective (float64): ‖·‖₁ with a constant rate stays at ‖𝓛̃P_θ‖₁ ≈ 0.06-0.13 for 500-1000 steps
at rates 1e-3-1e-2; a cosine decay over 2000 steps reaches 0.027 (⟨σ^x⟩, ⟨σ^z⟩ within 0.014, 0.015);
‖·‖₂ for 1000 steps then ‖·‖₁ for 500 reaches 0.02 (0.013, 0.009). A maximum-likelihood fit of the
same network to the exact state has ‖𝓛̃P_θ‖₁ = 0.02, and ‖·‖₁ descent started there goes on to 0.006
(0.002, 0.001): the network holds the steady state and the ‖·‖₁ minimum over the family sits at it;
reaching it from a random start within a CPU budget is what fails. Natural-gradient (Fisher)
preconditioning with the exact sum did not converge faster (‖𝓛̃P_θ‖₁ 0.2 after 200 steps, 1.4 s CPU
a step), and a sampled step at the paper's 10^4 samples costs over 4 s CPU here. Paper scale:
``scripts/train_povm_steady_state.py --qubits 16 --g 1.0 --g 2.0`` runs the N = 16 ring with the
paper's 500 steps of 10^4 samples, an accelerator job (not run here). On this project's CPU only a
smoke run was made: N = 16, g = 1, 40 steps of 100 samples, 90 s CPU (about 1.8 s a step after
compilation, 1 GB), L1 estimate 0.6 at the end (far from converged); at 10^4 samples a step would
take minutes on a CPU.

The 2-D benchmark: dissipative XYZ dynamics. On a periodic ``rows × cols`` lattice::

    H = Σ_⟨ij⟩ (J_x σ^x_iσ^x_j + J_y σ^y_iσ^y_j + J_z σ^z_iσ^z_j) + B Σ_i σ^z_i,     L_i = √γ σ^-_i

with the paper's J_x = 0.9, J_y = 1.6, J_z = 1, B = 0, γ = 1, from all ``|0⟩``. The generator is
built from the same two-site blocks as the chain (:func:`zoo.processes.povm.bond_blocks` on
:func:`zoo.processes.povm.lattice_bonds`). The bonds follow the paper's code: every site's right
and lower neighbour with wrap-around, so a periodic direction of length 2 lists each pair twice
and on the periodic 2 × 2 lattice every coupling is 2J. Exact ``⟨σ^z⟩(t)`` for 2 × 2 and 2 × 3
(256 and 4096 outcomes) comes from ``expm_multiply`` on the POVM vector (:func:`xyz_exact_path`)
and agrees with a density-matrix evolution written in the tests to 1e-8. "String states": the
Transformer reads the sites in a sequence order (:func:`zoo.processes.povm.string_order`, default
a boustrophedon "snake" that walks the lattice through neighbours). The bonds are relabelled to
sequence positions, and the law is the same with its digits permuted (tested). The dynamics
(:class:`DynamicsConfig`, :func:`dynamics_problem`, driver ``scripts/train_povm_dynamics.py``)
is the paper's forward-backward trapezoid. The network starts at ``P(0)`` exactly: readout
weights 0, bias ``log(1/2, 1/6, 1/6, 1/6)``. Each time step minimises::

    ‖(1 − τ𝓛̃/2)P_θ − (1 + τ𝓛̃/2)P_{θ_old}‖₁ = E_{a∼P_θ}[|r(a)|]

on draws of the NEW model, with the score-function gradient. Each step starts from the previous
parameters with a fresh Adam: 120 steps at 1e-2, halved after 80 (as the paper's code). The
paper's code writes ``dt = 0.008`` for ``τ/2``, so its step is τ = 0.016, the default here. At
2 × 2 the network is evaluated at the neighbouring strings through a table of its 256 values
(``tabulate``; the same numbers, one pass). Measured on 2 × 2, 1000 draws per Adam step:

- 10 steps (t = 0.16; exact site-mean ⟨σ^z⟩ falls from 1 to 0.58): about 22 s CPU a run. Over
  seeds 0-7 the worst site-mean error was 0.004-0.016 (mean 0.010), the worst single-site error
  0.013-0.041. The slow test asserts 0.03 and 0.06 for seed 0.
- 25 steps (t = 0.4, exact ⟨σ^z⟩ −0.03), about 50 s CPU a run: seeds 0, 1, 2 ended 0.007, 0.018
  and 0.063 off. The error drifts, and seed 2 breaks the lattice symmetry (its sites differ by
  up to 0.13).
- The exact trapezoid recursion differs from the exact path by 2e-4 (t = 0.16) and 6e-4
  (t = 0.4), so the error is the network's optimisation, not the time step.

Paper scale (4 × 4, the paper's sample sizes, long times) is an accelerator run and was not run
here.

Recovery check (``small``): one joint 99% coverage statement (``JOINT_COVERAGE``) over g and γ
and ``|E[g] − 1| < 0.1``.

Calibration: simulation-based calibration of the default recipe on ``small`` (n = 100 replicates,
L = 99 draws, ``zoo sbc povm_dissipative_ising --config small --n 100 --draws 99 --seed 0
--batch-size 5 --store``): calibrated, no element flagged (χ² p = 0.58 for g, 0.057 for γ over 20
bins, every ECDF inside its band; every fit R-hat ≤ 1.028, no divergence). About 13 CPU-s per
replicate on 2 shared cores (1304 CPU-s in all, compilation included). The ranks are stored in
``calibration/povm_dissipative_ising/small``; the docs' calibration page is generated from them.

Reference: D. Luo, Z. Chen, J. Carrasquilla, B. K. Clark (2022), "Autoregressive neural network
for simulating open quantum systems via a probabilistic formulation", Phys. Rev. Lett. 128,
090501, arXiv:2009.05580.

Example::

    import jax, zoo, inference
    entry = zoo.get("povm_dissipative_ising")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method="nuts", num_warmup=300, num_samples=300)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.validate import is_traced, positive_int
from zoo.core import (JOINT_COVERAGE, Check, Columns, FixedParameter, Recipe, ZooEntry, check_close, check_covers,
                      check_ranges)
from zoo.processes import povm as pv

__all__ = [
    "POVMIsingConfig",
    "generator",
    "initial_probabilities",
    "probabilities_at",
    "model",
    "exact_loglik",
    "simulate",
    "check",
    "validate_data",
    "outcome_names",
    "SteadyStateConfig",
    "SteadyStateAnsatz",
    "steady_state_loss",
    "SteadyStateProblem",
    "steady_state_problem",
    "exact_steady_observables",
    "STEADY_CHECK",
    "STEADY_PAPER",
    "xyz_exact_path",
    "DynamicsConfig",
    "transformer_log_prob",
    "product_state_params",
    "trapezoid_loss",
    "DynamicsProblem",
    "dynamics_problem",
    "sequence_sigma_z",
    "xyz_exact_sigma_z",
    "ENTRY",
]


@dataclasses.dataclass(frozen=True)
class POVMIsingConfig:
    """Configuration of the POVM dissipative-Ising entry.

    num_qubits: N (1..5; ``4^N`` outcomes). povm: ``"tetrahedral"`` or ``"pauli4"``.
    periodic: a ring (N >= 3) or an open chain. times: measurement times (increasing, > 0).
    shots: S shots per time. learn_V: also learn V (LogNormal(log 2, 0.3)) instead of fixing it.
    true_*: the parameters ``simulate`` uses.
    """

    COUNTS: ClassVar[tuple[str, ...]] = ("num_qubits", "shots")
    POSITIVE: ClassVar[tuple[str, ...]] = ("times", "true_gamma")

    num_qubits: int = 3
    povm: str = "tetrahedral"
    periodic: bool = True
    times: tuple = (0.5, 1.0, 2.0, 4.0)
    shots: int = 2000
    learn_V: bool = False
    true_g: float = 1.0
    true_gamma: float = 1.0
    true_V: float = 2.0

    def __post_init__(self) -> None:
        check_ranges(self)
        if isinstance(self.num_qubits, bool) or not isinstance(self.num_qubits, int) or not 1 <= self.num_qubits <= 5:
            raise ValueError(f"num_qubits: expected an integer in 1..5 (a dense 4^N generator), got {self.num_qubits!r}")
        if self.povm not in pv.POVMS:
            raise ValueError(f"povm: expected one of {pv.POVMS}, got {self.povm!r}")
        times = np.asarray(self.times, dtype=float)
        if times.ndim != 1 or times.size < 1 or np.any(np.diff(times) <= 0):  # positive, finite: check_ranges
            raise ValueError(f"times: expected increasing positive times, got {self.times!r}")
        for name in ("true_g", "true_V"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name}: expected a non-negative number, got {value!r}")

    def fixed_parameters(self) -> dict[str, FixedParameter]:
        """V, unless ``learn_V``."""
        return {} if self.learn_V else {"V": FixedParameter(float(self.true_V), "learn_V=True")}


@functools.cache
def _terms(config: POVMIsingConfig) -> pv.IsingTerms:
    return pv.dissipative_ising_terms(config.num_qubits, config.povm, config.periodic)


@functools.cache
def initial_probabilities(config: POVMIsingConfig) -> np.ndarray:
    """``P(0)`` of all qubits in ``|0⟩`` (``(4^N,)``)."""
    return pv.product_state([1.0, 0.0], pv.povm(config.povm), config.num_qubits)


def generator(params: dict, config: POVMIsingConfig):
    """``𝓛̃(g, V, γ)`` ``(4^N, 4^N)``; V from the config unless it is a parameter."""
    V = params.get("V", config.true_V) if config.learn_V else config.true_V
    return _terms(config).generator(params["g"], V, params["gamma"])


@functools.cache
def norm_bound(config: POVMIsingConfig) -> float:
    """``‖𝓛̃‖₁`` bound for g, γ (and V) up to 10 (prior tail mass beyond: below 1e-5): the
    matrix exponential's squarings are chosen for it."""
    terms = _terms(config)
    norms = [float(np.abs(m).sum(axis=0).max()) for m in terms]
    return 10.0 * norms[0] + (10.0 if config.learn_V else config.true_V) * norms[1] + 10.0 * norms[2]


def probabilities_at(params: dict, config: POVMIsingConfig):
    """``P(t_k)`` ``(L, 4^N)`` by the matrix exponential (scaling and squaring for
    :func:`norm_bound`)."""
    return pv.evolve(generator(params, config), initial_probabilities(config), config.times,
                     norm_bound=norm_bound(config))


def _probs(params: dict, config: POVMIsingConfig):
    """The outcome law at each time: rounding below zero clipped to 1e-300, renormalised."""
    p = jnp.clip(probabilities_at(params, config), 1e-300)
    return p / p.sum(axis=-1, keepdims=True)


def outcome_names(config: POVMIsingConfig) -> tuple[str, ...]:
    """CSV column of each outcome string: ``n`` and one digit 1..4 per qubit (qubit 0 first)."""
    return tuple("n" + "".join(str(d + 1) for d in digits)
                 for digits in itertools.product(range(4), repeat=config.num_qubits))


def validate_data(data, config: POVMIsingConfig):
    """Counts ``(L, 4^N)``, one row per time, non-negative integers summing to ``shots`` in every
    row. Shapes always; values on concrete data only."""
    shape = (len(config.times), 4**config.num_qubits)
    if is_traced(data):
        array = jnp.asarray(data)
    else:
        try:
            array = np.asarray(data, dtype=float)
        except (TypeError, ValueError) as err:
            raise TypeError(f"data: expected an array of counts, got {type(data).__name__}") from err
    if tuple(array.shape) != shape:
        raise ValueError(f"data: expected counts of shape (time, outcome) = {shape}, got {tuple(np.shape(data))}")
    if is_traced(array):
        return array
    bad = ~np.isfinite(array) | (array < 0) | (array != np.round(array))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"data: expected non-negative whole counts, got {array[index]!r} at index {index}")
    totals = array.sum(axis=1)
    off = np.flatnonzero(totals != config.shots)
    if off.size:
        raise ValueError(f"data: expected counts summing to shots = {config.shots} at every time, got "
                         f"{totals[off[0]]:g} at time index {int(off[0])} (t = {config.times[off[0]]})")
    return array.astype(np.int64)


def _prior(config: POVMIsingConfig) -> dict:
    params = {"g": numpyro.sample("g", dist.HalfNormal(2.0)),
              "gamma": numpyro.sample("gamma", dist.LogNormal(0.0, 0.5))}
    if config.learn_V:
        params["V"] = numpyro.sample("V", dist.LogNormal(np.log(2.0), 0.3))
    return params


def model(data=None, *, config: POVMIsingConfig) -> None:
    """NumPyro program: ``g``, ``γ`` (and ``V``), then ``y ~ Multinomial(S, P(t_k))`` per time."""
    counts = None if data is None else validate_data(data, config)
    params = _prior(config)
    probs = _probs(params, config)
    numpyro.sample("y", dist.Multinomial(total_count=config.shots, probs=probs), obs=counts)


def exact_loglik(params: dict, data, config: POVMIsingConfig):
    """``Σ_k log Multinomial(counts_k; S, P(t_k))``."""
    counts = validate_data(data, config)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    return dist.Multinomial(total_count=config.shots, probs=_probs(params, config)).log_prob(counts).sum()


def true_params(config: POVMIsingConfig) -> dict:
    params = {"g": jnp.asarray(config.true_g), "gamma": jnp.asarray(config.true_gamma)}
    if config.learn_V:
        params["V"] = jnp.asarray(config.true_V)
    return params


def simulate(key: jax.Array, config: POVMIsingConfig):
    """``(counts (L, 4^N), truth)``: independent shots at each time from the exact ``P(t_k)``."""
    params = true_params(config)
    probs = _probs(params, config)
    counts = dist.Multinomial(total_count=config.shots, probs=probs).sample(key)
    truth = dict(params)
    truth["P"] = probabilities_at(params, config)
    return np.asarray(counts, dtype=np.int64), truth


def check(idata, truth: dict, config: POVMIsingConfig) -> list[Check]:
    """Recovery: ONE joint 99% coverage statement (``JOINT_COVERAGE``) over g and γ (and V when
    learned) and ``|E[g] − g| < 0.1``."""
    names = ["g", "gamma"] + (["V"] if config.learn_V else [])
    checks = [check_covers(idata, name, truth[name], prob=JOINT_COVERAGE, num_comparisons=len(names))
              for name in names]
    checks.append(check_close(idata, "g", truth["g"], tol=0.1))
    return checks


@dataclasses.dataclass(frozen=True)
class SteadyStateConfig:
    """The autoregressive Transformer steady-state ansatz (Luo et al. 2022) of the chain.

    num_qubits: N >= 2 (any length: only two-site blocks are formed). povm, periodic: as in
    :class:`POVMIsingConfig`. g, V, gamma: the Lindbladian. d_model, num_heads, ff: the
    Transformer (one layer; the paper's 32, 1, 16). learning_rate, b1, b2: Adam (1e-2, 0.9, 0.98).
    final_learning_rate: the rate is decayed on a cosine from ``learning_rate`` to it over
    ``num_steps`` (None: constant, the paper's). num_steps, num_samples: training steps and
    samples of ``P_θ`` per step (500, 10^4 at paper scale). l1_steps: the last ``l1_steps`` steps
    minimise the paper's ‖𝓛̃P_θ‖₁, the ones before ‖𝓛̃P_θ‖₂ (0: ‖·‖₂ throughout; ``num_steps``:
    ‖·‖₁ throughout, the paper's). seed: initialisation and the training run's keys.
    """

    num_qubits: int = 4
    povm: str = "tetrahedral"
    periodic: bool = True
    g: float = 1.0
    V: float = 2.0
    gamma: float = 1.0
    d_model: int = 32
    num_heads: int = 1
    ff: int = 16
    learning_rate: float = 1e-2
    final_learning_rate: float | None = 1e-4
    b1: float = 0.9
    b2: float = 0.98
    num_steps: int = 500
    num_samples: int = 10_000
    l1_steps: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        positive_int("num_qubits", self.num_qubits, minimum=2)
        if self.povm not in pv.POVMS:
            raise ValueError(f"povm: expected one of {pv.POVMS}, got {self.povm!r}")
        for name in ("g", "V", "gamma", "learning_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not np.isfinite(value) or value < 0 \
                    or (name in ("gamma", "learning_rate") and value == 0):
                kind = "positive" if name in ("gamma", "learning_rate") else "non-negative"
                raise ValueError(f"{name}: expected a {kind} number, got {value!r}")
        for name in ("b1", "b2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}: expected a number in [0, 1), got {getattr(self, name)!r}")
        for name in ("d_model", "num_heads", "ff", "num_steps", "num_samples"):
            positive_int(name, getattr(self, name))
        positive_int("l1_steps", self.l1_steps, minimum=0)
        final = self.final_learning_rate
        if final is not None and (isinstance(final, bool) or not np.isfinite(final) or not 0 < final <= self.learning_rate):
            raise ValueError(f"final_learning_rate: expected None or a number in (0, learning_rate = "
                             f"{self.learning_rate!r}], got {final!r}")
        positive_int("seed", self.seed, minimum=0)

    def module(self):
        """The :class:`zoo.nets.transformer.AutoregressiveTransformer` over the N POVM outcomes."""
        from zoo.nets.transformer import AutoregressiveTransformer
        return AutoregressiveTransformer(length=self.num_qubits, num_classes=4, d_model=self.d_model,
                                         num_heads=self.num_heads, ff=self.ff)

    def local_terms(self) -> pv.LocalIsingTerms:
        return pv.dissipative_ising_local_terms(self.num_qubits, self.povm, self.periodic)


class SteadyStateAnsatz(NamedTuple):
    """A trained ansatz: ``config``, flax ``params``, the loss (``‖𝓛̃P_θ‖₁`` estimate) per step."""

    config: SteadyStateConfig
    params: dict
    losses: np.ndarray

    def log_prob(self, a):
        """``log P_θ(a)`` for strings ``a (..., N)`` of outcomes 0..3."""
        module = self.config.module()
        return module.apply(self.params, jnp.asarray(a), method=module.log_prob)

    def sample(self, key: jax.Array, num_samples: int):
        """Exact ancestral samples ``(num_samples, N)``."""
        from zoo.nets.transformer import autoregressive_sample
        return autoregressive_sample(self.config.module(), self.params, key, num_samples)

    def observables(self, key: jax.Array | None = None, num_samples: int = 10_000):
        """``⟨σ^x_i⟩, ⟨σ^y_i⟩, ⟨σ^z_i⟩`` per site ``(N, 3)`` and their standard errors ``(N, 3)``: exact
        (all ``4^N`` strings, errors 0) for N <= 6, else from ``num_samples`` exact samples
        (the one-shot estimator ``Tr(σ N_{a_i})`` averaged; key required)."""
        n = self.config.num_qubits
        elements = pv.povm(self.config.povm)
        if n <= 6:
            strings = jnp.asarray(list(itertools.product(range(4), repeat=n)))
            probs = jnp.exp(self.log_prob(strings))
            mean = pv.pauli_expectations(probs / probs.sum(), elements, n)
            return np.asarray(mean), np.zeros((n, 3))
        if key is None:
            raise ValueError("key: expected a PRNG key (observables of N > 6 qubits are sampled)")
        a = np.asarray(self.sample(key, num_samples))
        shots = pv.pauli_weights(elements)[a]  # (S, N, 3): Tr(σ N_{a_i})
        return shots.mean(axis=0), shots.std(axis=0, ddof=1) / np.sqrt(num_samples)


def steady_state_loss(config: SteadyStateConfig):
    """``loss_fn(params, step, key)`` for :func:`inference.train.train` (the batch is the step
    number, ``None`` for the ‖·‖₁ value): at steps before ``num_steps − l1_steps`` the Euclidean
    objective ``‖𝓛̃P_θ‖₂`` (value: the square root of the mean of ``P_θ(a_s)R(a_s)²``, an
    estimate of ``‖𝓛̃P_θ‖₂²``; gradient: that mean's unbiased score-function gradient over ``2 ×``
    the value), after them the L1 objective
    ``‖𝓛̃P_θ‖₁ = Σ_a |(𝓛̃P_θ)(a)| = E_{a∼P_θ}[|R(a)|]``, ``R(a) = (𝓛̃P_θ)(a) / P_θ(a)`` from the
    two-site blocks (:func:`zoo.processes.povm.local_generator_ratio`), estimated on
    ``num_samples`` exact samples drawn with the loss key. Its value is the estimate
    ``mean |R(a_s)|``; its gradient is the unbiased ``mean[∇|R(a_s)| + (|R(a_s)| − mean|R|) ∇log
    P_θ(a_s)]`` (product rule on ``P_θ(a)|R(a)|``, score term with the batch mean as baseline). The
    batch is unused (the samples come from the model itself)."""
    from zoo.nets.transformer import autoregressive_sample
    module = config.module()
    terms = config.local_terms()
    blocks = jnp.asarray(terms.blocks(config.g, config.V, config.gamma), module.dtype)  # the network's precision
    bonds = jnp.asarray(terms.bonds)

    def loss_fn(params, step, key):
        a = autoregressive_sample(module, jax.lax.stop_gradient(params), key, config.num_samples)
        ratio, log_p = pv.local_generator_ratio(
            blocks, bonds, lambda x: module.apply(params, x, method=module.log_prob), a)
        score = log_p - jax.lax.stop_gradient(log_p)  # value 0, gradient ∇log P_θ(a_s)

        def l1():
            return _score_l1(jnp.abs(ratio), score)

        def l2():
            square = jnp.exp(log_p) * ratio**2  # (𝓛̃P_θ)(a)² / P_θ(a): mean estimates ‖𝓛̃P_θ‖₂²
            total = jnp.mean(square + jax.lax.stop_gradient(square - square.mean()) * score)
            norm = jnp.sqrt(jax.lax.stop_gradient(total))
            return norm + (total - jax.lax.stop_gradient(total)) / (2.0 * norm + 1e-30)

        if step is None or config.l1_steps >= config.num_steps:
            return l1()
        if config.l1_steps == 0:
            return l2()
        return jax.lax.cond(step < config.num_steps - config.l1_steps, l2, l1)

    return loss_fn


class SteadyStateProblem(NamedTuple):
    """Inputs of ``inference.train.train(loss_fn, init_params, make_batch, optimizer, num_steps,
    seed=seed)`` for the steady-state ansatz (the driver is ``scripts/train_povm_steady_state.py``:
    ``zoo`` itself never imports ``inference.train``). ``make_batch`` returns the step number (the
    samples come from the model, drawn inside the loss with its key; the step picks ‖·‖₂ or ‖·‖₁);
    ``optimizer``: Adam (``learning_rate`` cosine-decayed to ``final_learning_rate``, ``b1``,
    ``b2``); ``init_params``: the Transformer at ``PRNGKey(seed)``."""

    loss_fn: object
    init_params: dict
    make_batch: object
    optimizer: object
    num_steps: int
    seed: int


def _init_params(module, seed: int) -> dict:
    """The Transformer's parameters at ``PRNGKey(seed)`` (one compiled initialiser)."""
    return jax.jit(module.init)(jax.random.PRNGKey(seed), jnp.zeros((1, module.length), jnp.int32))


@functools.cache
def _compiled_log_prob(module):
    return jax.jit(lambda params, a: module.apply(params, a, method=module.log_prob))


def steady_state_problem(config: SteadyStateConfig) -> SteadyStateProblem:
    """Everything the training loop needs for ``config`` (see :class:`SteadyStateProblem`)."""
    import optax

    if not isinstance(config, SteadyStateConfig):
        raise TypeError(f"config: expected a SteadyStateConfig, got {type(config).__name__}")
    init = _init_params(config.module(), config.seed)
    rate = config.learning_rate if config.final_learning_rate is None else optax.cosine_decay_schedule(
        config.learning_rate, config.num_steps, alpha=config.final_learning_rate / config.learning_rate)
    return SteadyStateProblem(steady_state_loss(config), init, lambda key, step: jnp.asarray(step, jnp.int32),
                              optax.adam(rate, b1=config.b1, b2=config.b2),
                              int(config.num_steps), int(config.seed))


def exact_steady_observables(config: SteadyStateConfig) -> np.ndarray:
    """``⟨σ^x_i⟩, ⟨σ^y_i⟩, ⟨σ^z_i⟩`` ``(N, 3)`` of the exact steady state (the normalised null
    vector of the dense ``𝓛̃``; N <= 5)."""
    if config.num_qubits > 5:
        raise ValueError(f"num_qubits: the exact steady state needs the dense 4^N generator, N <= 5; "
                         f"got {config.num_qubits}")
    dense = pv.dissipative_ising_terms(config.num_qubits, config.povm, config.periodic).generator(
        config.g, config.V, config.gamma)
    return np.asarray(pv.pauli_expectations(pv.steady_state(np.asarray(dense)), pv.povm(config.povm),
                                            config.num_qubits))


# --- the 2-D benchmark: the dissipative XYZ lattice, exact and with the Transformer dynamics -----


def xyz_exact_path(rows: int, cols: int, times, Jx: float = 0.9, Jy: float = 1.6, Jz: float = 1.0, B: float = 0.0,
                   gamma: float = 1.0, *, povm: str = "tetrahedral", periodic: bool = True) -> np.ndarray:
    """``P(t_k)`` ``(L, 4^N)`` of the dissipative XYZ lattice (:func:`zoo.processes.povm.dissipative_xyz_local_terms`,
    the paper code's bonds) from all qubits in ``|0⟩``: the action of ``expm(𝓛̃ Δt)`` on the POVM
    vector, gap by gap (``scipy.sparse.linalg.expm_multiply`` on the generator embedded from the
    two-site blocks; N = rows·cols <= 6, 4096 outcomes)."""
    import scipy.sparse.linalg

    terms = pv.dissipative_xyz_local_terms(rows, cols, povm, periodic)
    if terms.num_qubits > 6:
        raise ValueError(f"rows: the exact path forms the 4^N vector, N = rows·cols <= 6; got {rows} × {cols}")
    grid = np.asarray(times, dtype=float)
    if grid.ndim != 1 or grid.size < 1 or np.any(grid <= 0) or np.any(np.diff(grid) <= 0):
        raise ValueError(f"times: expected increasing positive times, got {grid.tolist()}")
    gen = terms.sparse(Jx, Jy, Jz, B, gamma)
    p = pv.product_state([1.0, 0.0], pv.povm(povm), terms.num_qubits)
    out = []
    for gap in np.diff(np.concatenate([[0.0], grid])):
        p = scipy.sparse.linalg.expm_multiply(gen * gap, p)
        out.append(p)
    return np.stack(out)


@dataclasses.dataclass(frozen=True)
class DynamicsConfig:
    """The autoregressive Transformer dynamics of the dissipative XYZ lattice (Luo et al. 2022).

    rows, cols: the lattice (periodic unless ``periodic=False``; bonds as the paper's code,
    :func:`zoo.processes.povm.lattice_bonds`). Jx, Jy, Jz, B, gamma: the Lindbladian (the paper's
    0.9, 1.6, 1.0, 0, 1). povm: the POVM. order: ``"snake"`` or ``"rows"``, the sites' order in
    the sequence (:func:`zoo.processes.povm.string_order`). tau: the time step of the
    forward-backward trapezoid, ``(1 − τ𝓛̃/2)P(t+τ) = (1 + τ𝓛̃/2)P(t)`` (the paper's code writes
    ``dt = τ/2 = 0.008``, so τ = 0.016). num_time_steps: steps taken. inner_steps: Adam steps per
    time step, from a fresh Adam at the previous parameters (the paper's 120, rate halved after
    two thirds); learning_rate, b1, b2: Adam (1e-2, 0.9, 0.98). num_samples: draws of the new
    model per Adam step. d_model, num_heads, ff: the Transformer. tabulate: evaluate ``P_θ`` at
    the neighbouring strings by a table over all ``4^N`` strings (one pass of the network, N <=
    8) instead of one network pass per neighbour: the same values, far cheaper at small N.
    seed: the time step ``k`` trains with seed ``seed·10^4 + k``.
    """

    rows: int = 2
    cols: int = 2
    periodic: bool = True
    Jx: float = 0.9
    Jy: float = 1.6
    Jz: float = 1.0
    B: float = 0.0
    gamma: float = 1.0
    povm: str = "tetrahedral"
    order: str = "snake"
    tau: float = 0.016
    num_time_steps: int = 10
    inner_steps: int = 120
    learning_rate: float = 1e-2
    b1: float = 0.9
    b2: float = 0.98
    num_samples: int = 1000
    d_model: int = 32
    num_heads: int = 1
    ff: int = 16
    tabulate: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        positive_int("rows", self.rows, minimum=2)
        positive_int("cols", self.cols, minimum=2)
        if self.povm not in pv.POVMS:
            raise ValueError(f"povm: expected one of {pv.POVMS}, got {self.povm!r}")
        if self.order not in ("snake", "rows"):
            raise ValueError(f"order: expected 'snake' or 'rows', got {self.order!r}")
        for name in ("Jx", "Jy", "Jz", "B", "gamma", "tau", "learning_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
        for name in ("gamma", "tau", "learning_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)!r}")
        for name in ("b1", "b2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}: expected a number in [0, 1), got {getattr(self, name)!r}")
        for name in ("num_time_steps", "inner_steps", "num_samples", "d_model", "num_heads", "ff"):
            positive_int(name, getattr(self, name))
        positive_int("seed", self.seed, minimum=0)
        if self.tabulate and self.num_qubits > 8:
            raise ValueError(f"tabulate: a table of all 4^N strings needs N <= 8, got N = {self.num_qubits}")

    @property
    def num_qubits(self) -> int:
        return self.rows * self.cols

    def module(self):
        """The :class:`zoo.nets.transformer.AutoregressiveTransformer` over the sequence of sites."""
        from zoo.nets.transformer import AutoregressiveTransformer
        return AutoregressiveTransformer(length=self.num_qubits, num_classes=4, d_model=self.d_model,
                                         num_heads=self.num_heads, ff=self.ff)

    def string_order(self) -> np.ndarray:
        """``order[s]``: the lattice site at sequence position ``s``."""
        return pv.string_order(self.rows, self.cols, self.order)

    def sequence_terms(self) -> tuple:
        """``(blocks (K, 16, 16), bonds (K, 2))`` of the generator with the bonds in sequence positions."""
        terms = pv.dissipative_xyz_local_terms(self.rows, self.cols, self.povm, self.periodic)
        blocks = terms.blocks(self.Jx, self.Jy, self.Jz, self.B, self.gamma)
        return blocks, pv.relabel_bonds(terms.bonds, self.string_order())


def _strings(n: int):
    return jnp.asarray(list(itertools.product(range(4), repeat=n)), dtype=jnp.int32)


def _string_index(a):
    return a @ (4 ** jnp.arange(a.shape[-1] - 1, -1, -1, dtype=a.dtype))


def transformer_log_prob(module, params, *, tabulate: bool):
    """A batched ``log P_θ((M, N) strings) -> (M,)`` of the Transformer: the network on the strings,
    or (``tabulate``) a lookup into its values on all ``4^N`` strings, computed once."""
    if not tabulate:
        return lambda a: module.apply(params, a, method=module.log_prob)
    table = _compiled_log_prob(module)(params, _strings(module.length))
    return lambda a: table[_string_index(a)]


def product_state_params(module, params, single) -> dict:
    """``params`` with the readout set so that ``P_θ = ⊗ single`` exactly: readout weights 0, bias
    ``log single`` (every conditional is ``single``); how the dynamics starts from ``P(0)``."""
    readout = params["params"]["decoder"]["readout"]
    new = {"kernel": jnp.zeros_like(readout["kernel"]),
           "bias": jnp.log(jnp.asarray(single, readout["bias"].dtype))}
    decoder = {**params["params"]["decoder"], "readout": new}
    return {**params, "params": {**params["params"], "decoder": decoder}}


def _score_l1(size, score):
    """The unbiased surrogate of ``E_{a∼P_θ}[|r_θ(a)|]`` on draws of ``P_θ``: value ``mean|r|``,
    gradient ``mean[∇|r| + (|r| − mean|r|) ∇log P_θ]`` (``score``: value 0, gradient ∇log P_θ(a))."""
    return jnp.mean(size + jax.lax.stop_gradient(size - size.mean()) * score)


def trapezoid_loss(config: DynamicsConfig):
    """``loss_fn(params, old_params, key)``: the paper's forward-backward trapezoid objective::

        ‖(1 − τ𝓛̃/2)P_θ − (1 + τ𝓛̃/2)P_old‖₁ = E_{a∼P_θ}[|r(a)|]

    (``r`` of :func:`zoo.processes.povm.trapezoid_ratio`, ``P_old`` the previous time's network,
    held fixed) estimated on ``num_samples`` exact draws of the NEW model (key), value ``mean|r|``,
    gradient the unbiased score-function form (as the steady-state ‖·‖₁)."""
    from zoo.nets.transformer import autoregressive_sample
    module = config.module()
    blocks, bonds = config.sequence_terms()
    blocks = jnp.asarray(blocks, module.dtype)
    bonds = jnp.asarray(bonds)

    def loss_fn(params, old_params, key):
        a = autoregressive_sample(module, jax.lax.stop_gradient(params), key, config.num_samples)
        old = transformer_log_prob(module, jax.lax.stop_gradient(old_params), tabulate=config.tabulate)
        r, log_p = pv.trapezoid_ratio(blocks, bonds, transformer_log_prob(module, params, tabulate=config.tabulate),
                                      old, a, config.tau)
        return _score_l1(jnp.abs(r), log_p - jax.lax.stop_gradient(log_p))

    return loss_fn


class DynamicsProblem(NamedTuple):
    """Inputs of the time stepping (the driver is ``scripts/train_povm_dynamics.py``: ``zoo`` never
    imports ``inference.train``). Each time step ``k`` runs ``inference.train.train(loss_fn,
    old_params, lambda key, step: old_params, optimizer, inner_steps, seed=seed·10^4 + k)`` (the
    batch is the previous parameters; one compiled update serves every step). ``init_params``:
    the Transformer holding ``P(0)`` (all ``|0⟩``) exactly (:func:`product_state_params`)."""

    loss_fn: object
    init_params: dict
    optimizer: object
    inner_steps: int
    seed: int


def dynamics_problem(config: DynamicsConfig) -> DynamicsProblem:
    """Everything the time stepping needs for ``config`` (see :class:`DynamicsProblem`)."""
    import optax

    if not isinstance(config, DynamicsConfig):
        raise TypeError(f"config: expected a DynamicsConfig, got {type(config).__name__}")
    module = config.module()
    init = _init_params(module, config.seed)
    single = pv.product_state([1.0, 0.0], pv.povm(config.povm), 1)
    rate = optax.piecewise_constant_schedule(config.learning_rate, {int(2 * config.inner_steps // 3): 0.5})
    return DynamicsProblem(trapezoid_loss(config), product_state_params(module, init, single),
                           optax.adam(rate, b1=config.b1, b2=config.b2), int(config.inner_steps), int(config.seed))


def sequence_sigma_z(config: DynamicsConfig, params) -> np.ndarray:
    """``⟨σ^z_i⟩`` per LATTICE site ``(N,)`` of the Transformer ``params`` (exact sum over the
    ``4^N`` sequence strings, N <= 8; sequence position ``s`` is site ``order[s]``)."""
    module = config.module()
    probs = jnp.exp(transformer_log_prob(module, params, tabulate=True)(_strings(config.num_qubits)))
    per_position = np.asarray(pv.pauli_expectations(probs / probs.sum(), pv.povm(config.povm), config.num_qubits))[:, 2]
    return per_position[np.argsort(config.string_order())]


def xyz_exact_sigma_z(config: DynamicsConfig, times, *, trapezoid: bool = False) -> np.ndarray:
    """``⟨σ^z_i⟩(t_k)`` ``(L, N)`` for ``config``'s lattice: of the exact path (:func:`xyz_exact_path`),
    or (``trapezoid``; times multiples of τ) of the exact trapezoid recursion ``P_{k+1} = (1 −
    τ𝓛̃/2)⁻¹(1 + τ𝓛̃/2)P_k`` that the network's steps approximate (its difference from the exact
    path is the time discretisation's error alone)."""
    if not trapezoid:
        path = xyz_exact_path(config.rows, config.cols, times, config.Jx, config.Jy, config.Jz, config.B,
                              config.gamma, povm=config.povm, periodic=config.periodic)
    else:
        import scipy.sparse
        import scipy.sparse.linalg

        steps = np.round(np.asarray(times, dtype=float) / config.tau).astype(int)
        if np.any(np.abs(steps * config.tau - np.asarray(times)) > 1e-9) or np.any(steps < 1):
            raise ValueError(f"times: expected positive multiples of tau = {config.tau}, got {list(times)}")
        terms = pv.dissipative_xyz_local_terms(config.rows, config.cols, config.povm, config.periodic)
        gen = terms.sparse(config.Jx, config.Jy, config.Jz, config.B, config.gamma)
        eye = scipy.sparse.identity(gen.shape[0], format="csc")
        solve = scipy.sparse.linalg.factorized((eye - 0.5 * config.tau * gen).tocsc())
        forward = eye + 0.5 * config.tau * gen
        p = pv.product_state([1.0, 0.0], pv.povm(config.povm), config.num_qubits)
        path = []
        for k in range(1, steps.max() + 1):
            p = solve(forward @ p)
            if k in steps:
                path.append(p)
    return np.stack([np.asarray(pv.pauli_expectations(p, pv.povm(config.povm), config.num_qubits))[:, 2] for p in path])


SMALL = POVMIsingConfig()
PAULI4 = POVMIsingConfig(povm="pauli4")
FOUR_QUBITS = POVMIsingConfig(num_qubits=4)
PAPER = POVMIsingConfig(num_qubits=5, times=tuple(0.5 * k for k in range(1, 11)), shots=10_000)
STEADY_CHECK = SteadyStateConfig(num_qubits=4, num_steps=1000, num_samples=250)
STEADY_PAPER = SteadyStateConfig(num_qubits=16, num_steps=500, num_samples=10_000)

ENTRY = ZooEntry(
    name="povm_dissipative_ising",
    title="Autoregressive Transformer Neural Network for Simulating Open Quantum Systems via a "
          "Probabilistic Formulation: the dissipative Ising chain on POVM probabilities",
    reference="arXiv:2009.05580",
    summary=(
        "A chain of qubits with a transverse field, Ising coupling and decay, written as a real "
        "linear equation for the probabilities of an informationally complete measurement. For a "
        "few qubits the matrix exponential is exact, so measurement counts at several times give "
        "an exact multinomial likelihood and NUTS recovers the field and the decay rate."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "pauli4": PAULI4, "four_qubits": FOUR_QUBITS, "paper": PAPER},
    recipe=Recipe("nuts", {"num_warmup": 300, "num_samples": 300, "num_chains": 2},
                  {"num_warmup": 500, "num_samples": 500, "num_chains": 4}),
    check=check,
    exact_loglik=exact_loglik,
    dims={"y": ("time", "outcome")},
    columns=Columns(outcome_names, series=None, grid=lambda config: np.asarray(config.times, dtype=float),
                    integer=True, missing=None, validate=validate_data,
                    describe="counts per POVM outcome string (time, outcome), rows summing to shots",
                    names_doc="n11..1 .. n44..4 (one digit 1-4 per qubit)",
                    grid_hint="the config's measurement times"),
)
