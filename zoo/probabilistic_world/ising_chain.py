r"""The Ising chain as a classical wave-function evolution (``ising_chain_wavefunction``).

Model card
----------
D independent chains of T Ising spins ``s_t ∈ {+1, −1}`` on time slices, one spin per slice
(Wetterich's generalised Ising model with M = 1), with weight::

    p[s] = Z⁻¹ f_in(s_1) Π_{t=1}^{T-1} K(s_{t+1}, s_t) f̄_f(s_T)
    K(s', s) = exp(β s' s + (h/2)(s' + s)),   f_in(s) = e^{η_in s},   f̄_f(s) = e^{η_f s}

so ``log p[s] = η_in s_1 + Σ_t [β s_t s_{t+1} + h (s_t + s_{t+1})/2] + η_f s_T − log Z``. The
transfer matrix in the basis (+1, −1) is ``T̂ = [[e^{β+h}, e^{−β}], [e^{−β}, e^{β−h}]]``; the
classical wave functions ``f(t+1) = T̂ f(t)`` (from the past) and ``f̄(t) = T̂ᵀ f̄(t+1)`` (from the
future) carry the time-local information, ``Z = f̄_fᵀ T̂^{T−1} f_in = f(t)·f̄(t)``, the local
probabilities are ``p_t(τ) = f_τ(t) f̄_τ(t)/Z`` and the density matrix ``ρ'(t) = f(t) f̄(t)ᵀ/Z``
(:mod:`zoo.processes.transfer_matrix`, computed in log space with rescaling at every slice). At
h = 0 with a free final boundary, ``⟨s_t⟩ = tanh(η_in) tanh(β)^{t−1}`` and
``⟨s_t s_{t+k}⟩ = tanh(β)^k``: boundary memory decays with correlation length ``−1/ln tanh β``.

Option ``readout="noisy"``: each spin is read through a flip with probability ε, and the
likelihood ``f̄_fᵀ D_T T̂ ⋯ T̂ D_1 f_in / Z`` (``D_t = diag p(y_t | s_t)``) is the forward algorithm.

The model is written once, as the transfer matrix and boundaries; its Markov form
(``p(s_{t+1} = τ | s_t = ρ) = T̂_{τρ} f̄_τ(t+1)/f̄_ρ(t)``,
:func:`zoo.processes.transfer_matrix.markov_form`) is handed to the discrete-HMM family
(:mod:`zoo.processes.discrete_hmm`), from which the marginal program (per-step
``numpyro.factor("y", (D, T))``), the exact sampler (backward wave functions, forward draws), the
state-space form for the particle backends and ``exact_loglik`` derive.

===============  ==========================  ===========  =====================================
parameter        prior                       small truth  role
===============  ==========================  ===========  =====================================
``beta`` β       HalfNormal(1)               0.6          coupling over temperature
``h``            Normal(0, 0.5)              0.1          field
``eta_in``       Normal(0, 1)                1.0          initial boundary field
``eta_final``    Normal(0, 1)                0.0          final boundary field
``epsilon`` ε    Beta(1, 9) (noisy readout)  0.05         readout flip probability
===============  ==========================  ===========  =====================================

Configs: ``small`` (D = 50, T = 64, exact readout; NUTS 500/500 on two chains), ``noisy`` (the
same chains read through flips, ε learned), ``independent`` (``coupling="zero"``: β held at 0,
the null model, simulated at β = 0), ``paper`` (D = 200 chains of T = 1000 slices; the paper's
M = 10–12 spins per slice, 4096-state transfer matrices, are not built here). The evidence of
β = 0 against β > 0 is read from tempered SMC runs (method ``"smc"``) of the ``coupling="free"``
and ``coupling="zero"`` models through ``diagnostics.compare.bayes_factors`` (the notebook and
the tests do it; ``zoo`` does not import ``diagnostics``).

Recovery check (``small``): one joint 99% coverage statement over β and h (``JOINT_COVERAGE``,
Bonferroni: each interval at 99.5%) and ``|E[β] − 0.6| < 0.05`` (the posterior sd of β is about
0.02 there: 2.5 sd).

Calibration: simulation-based calibration of the default recipe on ``small`` (n = 100 replicates,
L = 99 draws, about 7.5 CPU-seconds per replicate in batches of 5 plus about 16 CPU-seconds of
start-up and compilation): calibrated, no element flagged (χ² p ≥ 0.24 for β, h, η_in, η_f, every
ECDF inside its band; every fit R-hat ≤ 1.02). Five of the 100 fits had divergent transitions (1 to
52 of 1000 draws), at prior draws in the tails: β ≥ 1.7 in four (nearly frozen chains, few domain
walls) and β = 0.04 in one (the HalfNormal's boundary); their ranks are included. The ranks are
stored in ``calibration/ising_chain_wavefunction/small``; the docs' calibration page is generated
from them.

Reference: C. Wetterich (2020), "The probabilistic world", arXiv:2011.02867.

Example::

    import jax, zoo, inference
    entry = zoo.get("ising_chain_wavefunction")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
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
from numpyro.distributions import constraints

from inference.validate import is_traced, positive_int
from zoo.core import (JOINT_COVERAGE, Check, Columns, FixedParameter, Recipe, StateSpaceModel, ZooEntry, check_close,
                      check_covers, check_ranges)
from zoo.processes.discrete_hmm import DiscreteHMM, HMMParams, discrete_hmm, log_probabilities
from zoo.processes.series import validate_series
from zoo.processes.transfer_matrix import (
    SPINS,
    TransferChain,
    check_inverse_temperature,
    ising_log_kernel,
    markov_form,
)

__all__ = [
    "IsingChainConfig",
    "SpinReadout",
    "transfer_chain",
    "family",
    "model",
    "exact_loglik",
    "ising_ssm",
    "simulate",
    "check",
    "validate_data",
    "ENTRY",
]

_COUPLINGS = ("free", "zero")
_READOUTS = ("exact", "noisy")


@dataclasses.dataclass(frozen=True)
class IsingChainConfig:
    """Configuration of the Ising-chain entry.

    num_chains, num_steps: D chains of T spins (T is part of the model: the final boundary acts
        on the last slice, so data must have T slices).
    coupling: ``"free"`` (β learned) or ``"zero"`` (β = 0: independent slices, the null model).
    readout: ``"exact"`` (spins observed) or ``"noisy"`` (each read through a flip, ε learned).
    true_*: the parameters ``simulate`` draws from (β must be >= 0).
    """

    COUNTS: ClassVar[tuple[str, ...]] = ("num_chains", "num_steps")
    POSITIVE: ClassVar[tuple[str, ...]] = ()

    num_chains: int = 50
    num_steps: int = 64
    coupling: str = "free"
    readout: str = "exact"
    true_beta: float = 0.6
    true_h: float = 0.1
    true_eta_in: float = 1.0
    true_eta_final: float = 0.0
    true_epsilon: float = 0.05

    def __post_init__(self) -> None:
        check_ranges(self)
        positive_int("num_steps", self.num_steps, minimum=2)
        if self.coupling not in _COUPLINGS:
            raise ValueError(f"coupling: expected one of {_COUPLINGS}, got {self.coupling!r}")
        if self.readout not in _READOUTS:
            raise ValueError(f"readout: expected one of {_READOUTS}, got {self.readout!r}")
        check_inverse_temperature(self.true_beta, "true_beta")
        for name in ("true_h", "true_eta_in", "true_eta_final"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"{name}: expected a finite number, got {getattr(self, name)!r}")
        if not 0.0 <= self.true_epsilon < 0.5:
            raise ValueError(f"true_epsilon: expected a flip probability in [0, 0.5), got {self.true_epsilon!r}")

    def fixed_parameters(self) -> dict[str, FixedParameter]:
        """β = 0 under ``coupling="zero"``; ε = 0 under ``readout="exact"``."""
        fixed = {}
        if self.coupling == "zero":
            fixed["beta"] = FixedParameter(0.0, "coupling=free")
        if self.readout == "exact":
            fixed["epsilon"] = FixedParameter(0.0, "readout=noisy")
        return fixed


class SpinReadout(dist.Distribution):
    """A spin ``±1`` that is ``+1`` with probability ``p_up`` (broadcasting over states).

    ``log_prob`` reads ``log p_up`` / ``log(1 − p_up)`` with ``log 0`` as the most negative float
    (:func:`zoo.processes.discrete_hmm.log_probabilities`): an exact readout is ``p_up ∈ {0, 1}``.
    Draws are floats ``±1``.
    """

    arg_constraints = {"p_up": constraints.unit_interval}
    support = constraints.integer_interval(-1, 1)
    has_enumerate_support = False

    def __init__(self, p_up, *, validate_args=None):
        self.p_up = jnp.asarray(p_up)
        super().__init__(batch_shape=jnp.shape(self.p_up), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        u = jax.random.uniform(key, tuple(sample_shape) + self.batch_shape)
        return jnp.where(u < self.p_up, 1.0, -1.0)

    def log_prob(self, value):
        value = jnp.asarray(value)
        return jnp.where(value > 0, log_probabilities(self.p_up), log_probabilities(1.0 - self.p_up))


def transfer_chain(params: dict) -> TransferChain:
    """The one definition: ``log T̂`` and the boundary fields at ``params``."""
    s = jnp.asarray(SPINS)
    return TransferChain(ising_log_kernel(params["beta"], params["h"]), params["eta_in"] * s,
                         params["eta_final"] * s)


def _prior(config: IsingChainConfig) -> dict:
    beta = numpyro.sample("beta", dist.HalfNormal(1.0)) if config.coupling == "free" else jnp.zeros(())
    h = numpyro.sample("h", dist.Normal(0.0, 0.5))
    eta_in = numpyro.sample("eta_in", dist.Normal(0.0, 1.0))
    eta_final = numpyro.sample("eta_final", dist.Normal(0.0, 1.0))
    epsilon = numpyro.sample("epsilon", dist.Beta(1.0, 9.0)) if config.readout == "noisy" else jnp.zeros(())
    return {"beta": beta, "h": h, "eta_in": eta_in, "eta_final": eta_final, "epsilon": epsilon}


def _emission(params: dict, t, z) -> dist.Distribution:
    up = jnp.asarray(z) == 0  # state 0 is spin +1
    eps = params["epsilon"]
    return SpinReadout(jnp.where(up, 1.0 - eps, eps))


def validate_data(data, config: IsingChainConfig):
    """Spins ``±1`` (NaN missing), ``(D, T)`` or one chain ``(T,)``, with ``T = num_steps``.

    Shapes always; values only on concrete data (a tracer passes)."""
    array = validate_series(data, (), series="optional")
    if array.shape[-1] != config.num_steps:
        raise ValueError(f"data: expected chains of num_steps = {config.num_steps} slices (the final "
                         f"boundary acts on the last one), got {array.shape[-1]}; set num_steps to match")
    if not is_traced(array):
        values = np.asarray(array)
        bad = ~np.isnan(values) & (values != 1.0) & (values != -1.0)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"data: expected spins +1 or -1 (NaN missing), got {values[index]!r} at index {index}")
    return array


@functools.cache
def family(config: IsingChainConfig) -> DiscreteHMM:
    """The model written once (transfer matrix and boundaries, in Markov form) as a discrete HMM."""
    return discrete_hmm(
        lambda: _prior(config),
        lambda params: HMMParams(*markov_form(transfer_chain(params), config.num_steps)),
        _emission, num_states=2, obs_shape=(),
        validate=lambda data: validate_data(data, config), name="ising_chain_wavefunction")


def model(data=None, *, config: IsingChainConfig) -> None:
    """NumPyro program: the parameters, then ``factor("y", (D, T))`` (or a prior-predictive draw)."""
    family(config).model(data, num_steps=config.num_steps, num_series=config.num_chains)


def _complete(params: dict, config: IsingChainConfig) -> dict:
    full = dict(params)
    full.setdefault("beta", jnp.zeros(()))
    full.setdefault("epsilon", jnp.zeros(()))
    if config.coupling == "zero":
        full["beta"] = jnp.zeros(())
    if config.readout == "exact":
        full["epsilon"] = jnp.zeros(())
    return full


def exact_loglik(params: dict, data, config: IsingChainConfig) -> jax.Array:
    """``log p(data | params)`` summed over chains (fixed parameters filled in from the config)."""
    return family(config).log_likelihood(_complete(params, config), data)


def ising_ssm(config: IsingChainConfig) -> StateSpaceModel:
    """The state-space form (spin states 0 = +1, 1 = −1) for the particle backends."""
    return family(config).ssm()


def true_params(config: IsingChainConfig) -> dict:
    """The configured truth as arrays (β, h, η_in, η_f, ε)."""
    return {"beta": jnp.asarray(config.true_beta), "h": jnp.asarray(config.true_h),
            "eta_in": jnp.asarray(config.true_eta_in), "eta_final": jnp.asarray(config.true_eta_final),
            "epsilon": jnp.asarray(config.true_epsilon if config.readout == "noisy" else 0.0)}


def simulate(key: jax.Array, config: IsingChainConfig):
    """Exact draws of ``num_chains`` chains at the truth: ``(data (D, T) ±1, truth)``; ``truth``
    holds the parameters and the spins ``s`` (equal to the data under an exact readout)."""
    params = true_params(config)
    zs, ys = family(config).simulate(key, params, config.num_steps, num_series=config.num_chains)
    truth = {name: value for name, value in params.items()
             if name in _learned(config)}
    truth["s"] = jnp.asarray(SPINS)[zs]
    return ys, truth


def _learned(config: IsingChainConfig) -> tuple[str, ...]:
    names = ("beta",) if config.coupling == "free" else ()
    names += ("h", "eta_in", "eta_final")
    return names + (("epsilon",) if config.readout == "noisy" else ())


def check(idata, truth: dict, config: IsingChainConfig) -> list[Check]:
    """Recovery: ONE joint 99% coverage statement (``JOINT_COVERAGE``, Bonferroni over the checked
    parameters: β and h; η_in instead of β under ``coupling="zero"``; ε too with a noisy readout)
    and ``|E[β] − β| < 0.05`` (about 2.5 posterior sd on ``small``)."""
    names = ["beta", "h"] if config.coupling == "free" else ["h", "eta_in"]
    if config.readout == "noisy":
        names.append("epsilon")
    checks = [check_covers(idata, name, truth[name], prob=JOINT_COVERAGE, num_comparisons=len(names))
              for name in names]
    if config.coupling == "free":
        checks.append(check_close(idata, "beta", truth["beta"], tol=0.05))
    return checks


SMALL = IsingChainConfig()
NOISY = IsingChainConfig(readout="noisy")
INDEPENDENT = IsingChainConfig(coupling="zero", true_beta=0.0)
PAPER = IsingChainConfig(num_chains=200, num_steps=1000)

ENTRY = ZooEntry(
    name="ising_chain_wavefunction",
    title="The probabilistic world: the Ising chain as a classical wave-function evolution",
    reference="arXiv:2011.02867",
    summary=(
        "Chains of Ising spins on time slices whose probability is a product of transfer matrices "
        "between boundary fields. Classical wave functions propagated from the past and from the "
        "future give the partition function, local probabilities and a classical density matrix; "
        "the same law in Markov form gives the exact likelihood, so NUTS samples the coupling, the "
        "field and the boundary terms, and tempered SMC weighs β = 0 against β > 0 by evidence."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "noisy": NOISY, "independent": INDEPENDENT, "paper": PAPER},
    recipe=Recipe("nuts", {"num_warmup": 500, "num_samples": 500, "num_chains": 2},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}),
    check=check,
    ssm=ising_ssm,
    exact_loglik=exact_loglik,
    dims={"y": ("series", "time")},
    columns=Columns("s", validate=validate_data,
                    describe="spins +1/-1, (series, time) or one chain (time,); NaN missing",
                    names_doc="s"),
)
