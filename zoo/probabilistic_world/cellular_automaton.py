r"""A probabilistic cellular automaton read through noise (``cellular_automaton_hmm``).

Model card
----------
Wetterich's unique-jump chains: M bits on a ring move one site to the right per time step, a
deterministic automaton with a probabilistic start, observed through independent bit flips::

    x_1,i ~ Bernoulli(p_i)                       i = 0..M-1, independently
    x_{t+1,i} = x_{t,i-1 mod M}                  (Ŝ: the cyclic shift on 2^M configurations)
    y_{t,i} = x_{t,i} flipped with probability ε

The step evolution operator ``Ŝ`` is a permutation matrix, so it is orthogonal and the real wave
function ``q(t) = √p_t`` evolves linearly, ``q(t+1) = Ŝ q(t)``, with ``‖q(t)‖ = 1``
(:func:`zoo.processes.transfer_matrix.real_wave_function`): the automaton is a quantum system
with a real wave function and discrete time. As a transfer chain it is ``log T̂ = log Ŝ``
(``-inf`` off the permutation), ``f_in = p_1`` and a free final boundary; its Markov form is
handed to the discrete-HMM family (:mod:`zoo.processes.discrete_hmm`), whose forward algorithm on
the 2^M configurations is the exact likelihood of the noisy readout.

==================  ====================  ===============================  ===========================
parameter           prior                 small truth                      role
==================  ====================  ===============================  ===========================
``occupation`` p_i  Beta(2, 2) per site   (0.2, 0.7, 0.5, 0.35, 0.8, 0.6)  initial occupation per site
``epsilon`` ε       Beta(1, 19)           0.05                             readout flip probability
==================  ====================  ===============================  ===========================

Configs: ``small`` (M = 6, 64 configurations, 100 chains of 16 steps; NUTS 500/500 on two
chains), ``paper`` (M = 8, 256 configurations, 200 chains of 40 steps; the Markov form stores
one ``2^M × 2^M`` matrix per step).

Recovery check (``small``): one joint 99% coverage statement (``JOINT_COVERAGE``, Bonferroni
over the six occupations and ε) covers the truth.

Calibration: the sweep stored in ``calibration/cellular_automaton_hmm/small`` (n = 100, L = 99,
``zoo sbc cellular_automaton_hmm --config small --n 100 --draws 99 --seed 0``, the default
recipe) is calibrated: no element flagged (χ² p ≥ 0.08 for the occupations, 0.02 for ε, within
the family-wise threshold; no ECDF point outside its band; 1 to 3 ranks at 0 or 99 per element),
every fit's R-hat at most 1.021, no divergent transition; about 1.3 min wall per replicate on 2
shared cores.

Reference: C. Wetterich (2020), "The probabilistic world", arXiv:2011.02867 (probabilistic
cellular automata as quantum systems).

Example::

    import jax, zoo, inference
    entry = zoo.get("cellular_automaton_hmm")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method="nuts", num_warmup=500, num_samples=500)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.validate import is_traced
from zoo.core import JOINT_COVERAGE, Check, Columns, Recipe, StateSpaceModel, ZooEntry, check_covers, check_ranges
from zoo.processes.discrete_hmm import DiscreteHMM, HMMParams, discrete_hmm
from zoo.processes.series import validate_series
from zoo.processes.transfer_matrix import TransferChain, markov_form, real_wave_function

__all__ = [
    "AutomatonConfig",
    "configuration_bits",
    "shift_operator",
    "transfer_chain",
    "wave_functions",
    "family",
    "model",
    "exact_loglik",
    "automaton_ssm",
    "simulate",
    "check",
    "validate_data",
    "ENTRY",
]


@dataclasses.dataclass(frozen=True)
class AutomatonConfig:
    """Configuration of the cellular-automaton entry.

    num_sites: M bits on the ring (2^M configurations, at most 12).
    num_chains, num_steps: D independent runs of T steps.
    true_occupation: per-site initial occupation (M values in (0, 1)); true_epsilon: flip probability.
    """

    COUNTS: ClassVar[tuple[str, ...]] = ("num_sites", "num_chains", "num_steps")
    POSITIVE: ClassVar[tuple[str, ...]] = ()

    num_sites: int = 6
    num_chains: int = 100
    num_steps: int = 16
    true_occupation: tuple = (0.2, 0.7, 0.5, 0.35, 0.8, 0.6)
    true_epsilon: float = 0.05

    def __post_init__(self) -> None:
        check_ranges(self)
        if isinstance(self.num_sites, bool) or not isinstance(self.num_sites, int) or not 1 <= self.num_sites <= 12:
            raise ValueError(f"num_sites: expected an integer in 1..12 (2^M configurations), got {self.num_sites!r}")
        occ = np.asarray(self.true_occupation, dtype=float)
        if occ.shape != (self.num_sites,) or not np.all((occ > 0) & (occ < 1)):
            raise ValueError(f"true_occupation: expected {self.num_sites} probabilities in (0, 1), "
                             f"got {self.true_occupation!r}")
        if not 0.0 <= self.true_epsilon < 0.5:
            raise ValueError(f"true_epsilon: expected a flip probability in [0, 0.5), got {self.true_epsilon!r}")


@functools.cache
def configuration_bits(num_sites: int) -> np.ndarray:
    """``(2^M, M)`` bits of every configuration: configuration ``k`` has ``x_i = (k >> i) & 1``."""
    k = np.arange(2**num_sites)
    return ((k[:, None] >> np.arange(num_sites)[None, :]) & 1).astype(float)


@functools.cache
def shift_operator(num_sites: int) -> np.ndarray:
    """``Ŝ (2^M, 2^M)``: column ``k`` has its one at the configuration with every bit moved one site
    to the right on the ring (``x'_i = x_{i-1 mod M}``)."""
    bits = configuration_bits(num_sites).astype(int)
    moved = np.roll(bits, 1, axis=1)
    target = moved @ (1 << np.arange(num_sites))
    s = np.zeros((2**num_sites, 2**num_sites))
    s[target, np.arange(2**num_sites)] = 1.0
    return s


def _initial_log_probs(occupation, num_sites: int):
    bits = jnp.asarray(configuration_bits(num_sites))
    return bits @ jnp.log(occupation) + (1.0 - bits) @ jnp.log1p(-occupation)


def transfer_chain(params: dict, config: AutomatonConfig) -> TransferChain:
    """The one definition: ``log T̂ = log Ŝ``, ``log f_in = log p_1``, a free final boundary."""
    m = config.num_sites
    with np.errstate(divide="ignore"):
        log_s = np.log(shift_operator(m))
    return TransferChain(jnp.asarray(log_s), _initial_log_probs(params["occupation"], m), jnp.zeros(2**m))


def wave_functions(params: dict, config: AutomatonConfig):
    """The real wave functions ``q(t)`` ``(T, 2^M)``, ``q(1) = √p_1``, ``q(t+1) = Ŝ q(t)``."""
    p1 = jnp.exp(_initial_log_probs(jnp.asarray(params["occupation"]), config.num_sites))
    return real_wave_function(shift_operator(config.num_sites), p1, config.num_steps)


def _prior(config: AutomatonConfig) -> dict:
    occupation = numpyro.sample("occupation", dist.Beta(2.0, 2.0).expand([config.num_sites]).to_event(1))
    epsilon = numpyro.sample("epsilon", dist.Beta(1.0, 19.0))
    return {"occupation": occupation, "epsilon": epsilon}


def _emission(params: dict, t, z, config: AutomatonConfig) -> dist.Distribution:
    bits = jnp.asarray(configuration_bits(config.num_sites))[z]
    eps = params["epsilon"]
    return dist.Bernoulli(probs=bits * (1.0 - eps) + (1.0 - bits) * eps).to_event(1)


def validate_data(data, config: AutomatonConfig):
    """Bits 0/1 (NaN missing): ``(D, T, M)`` or one run ``(T, M)``. Shapes always; values on
    concrete data only."""
    array = validate_series(data, (config.num_sites,), series="optional")
    if not is_traced(array):
        values = np.asarray(array)
        bad = ~np.isnan(values) & (values != 0.0) & (values != 1.0)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"data: expected bits 0 or 1 (NaN missing), got {values[index]!r} at index {index}")
    return array


@functools.cache
def family(config: AutomatonConfig) -> DiscreteHMM:
    """The automaton (transfer chain in Markov form) and its readout as a discrete HMM."""
    return discrete_hmm(
        lambda: _prior(config),
        lambda params: HMMParams(*markov_form(transfer_chain(params, config), config.num_steps)),
        lambda params, t, z: _emission(params, t, z, config),
        num_states=2**config.num_sites, obs_shape=(config.num_sites,),
        validate=lambda data: validate_data(data, config), name="cellular_automaton_hmm")


def model(data=None, *, config: AutomatonConfig) -> None:
    """NumPyro program: occupations and ε, then ``factor("y", (D, T))`` (or a prior-predictive draw)."""
    family(config).model(data, num_steps=config.num_steps, num_series=config.num_chains)


def exact_loglik(params: dict, data, config: AutomatonConfig) -> jax.Array:
    """``log p(data | params)`` by the forward algorithm on the 2^M configurations."""
    return family(config).log_likelihood(params, data)


def automaton_ssm(config: AutomatonConfig) -> StateSpaceModel:
    """The state-space form (configuration index as the state) for the particle backends."""
    return family(config).ssm()


def true_params(config: AutomatonConfig) -> dict:
    return {"occupation": jnp.asarray(config.true_occupation), "epsilon": jnp.asarray(config.true_epsilon)}


def simulate(key: jax.Array, config: AutomatonConfig):
    """``(data (D, T, M) bits, truth)``; ``truth`` holds the parameters and the true bits ``x``."""
    params = true_params(config)
    zs, ys = family(config).simulate(key, params, config.num_steps, num_series=config.num_chains)
    truth = dict(params)
    truth["x"] = jnp.asarray(configuration_bits(config.num_sites))[zs]
    return jnp.asarray(ys, dtype=jnp.result_type(float)), truth


def check(idata, truth: dict, config: AutomatonConfig) -> list[Check]:
    """Recovery: ONE joint 99% coverage statement (``JOINT_COVERAGE``) over the occupations and ε."""
    return [check_covers(idata, name, truth[name], prob=JOINT_COVERAGE, num_comparisons=2)
            for name in ("occupation", "epsilon")]


def channels(config: AutomatonConfig) -> tuple[str, ...]:
    """CSV names of the bits: ``b0..b{M-1}``."""
    return tuple(f"b{i}" for i in range(config.num_sites))


SMALL = AutomatonConfig()
PAPER = AutomatonConfig(num_sites=8, num_chains=200, num_steps=40,
                        true_occupation=(0.2, 0.7, 0.5, 0.35, 0.8, 0.6, 0.3, 0.45))

ENTRY = ZooEntry(
    name="cellular_automaton_hmm",
    title="The probabilistic world: a probabilistic cellular automaton with a real wave function",
    reference="arXiv:2011.02867",
    summary=(
        "Bits on a ring that move one site per step, a deterministic automaton started at random "
        "and read through bit flips. Its step operator is a permutation, so a real wave function "
        "evolves linearly with unit norm; as a transfer chain in Markov form it is a hidden Markov "
        "model on the 2^M configurations, whose exact likelihood lets NUTS recover the initial "
        "occupations and the flip probability."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER},
    recipe=Recipe("nuts", {"num_warmup": 500, "num_samples": 500, "num_chains": 2},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}),
    check=check,
    ssm=automaton_ssm,
    exact_loglik=exact_loglik,
    dims={"y": ("series", "time", "site"), "occupation": ("site",)},
    columns=Columns(channels, validate=validate_data,
                    describe="bits 0/1, (series, time, site) or one run (time, site); NaN missing",
                    names_doc="b0..b{M-1}"),
)
