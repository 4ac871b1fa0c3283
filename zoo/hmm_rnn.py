r"""RNNs emulating hidden Markov models (entry ``hmm_rnn``).

Model card
----------
Torre, Viscione, Pompe, Grewe & Mante, "Mechanistic interpretability of RNNs emulating hidden
Markov models", NeurIPS 2025, arXiv:2510.25674 (code: EliaTorre/hmmrnn).

**Target HMMs** (K = 3 output symbols, uniform start distribution π₀ = 1/M)::

    z_0 ~ Uniform{0..M-1},   z_t | z_{t-1} ~ Categorical(A[z_{t-1}]),   y_t | z_t ~ Categorical(E[z_t])

* linear chain, M ∈ {2,3,4,5}: q = 0.05^{1/(M-1)}; end rows stay 1−q and move q to the neighbour,
  interior rows stay 1−2q and move q to each side (M=2: stay 0.95);
* fully connected, M = 3: stay 0.99, 0.005 to each other state;
* cyclic, M = 4: stay 0.9, 0.05 to each ring neighbour, E = [[1,0,0],[.6,0,.4],[0,0,1],[.4,0,.6]];
* "linear" emissions (chain, fully connected): a_i = i/(M−1), E_i = [0.99(1−a_i), 0.01, 0.99 a_i].

States are labelled in increasing order of ``E[:, K-1]`` (the probability of the last symbol); the
cyclic HMM's ring is relabelled accordingly (ring 0-1-3-2-0 in these labels).

**Program** (latent path summed out by the forward algorithm, ``zoo.hmm.hmm_marginal_factor``):

======================  ==========================================================  =============
site                    prior                                                       chain2 truth
======================  ==========================================================  =============
``p`` (chain, M=2)      Beta(20, 2): stay probability                               0.95
``q`` (chain, M≥3)      Uniform(0, 0.5): move probability                           0.05^{1/(M−1)}
``transition_rows*``    (``transition_prior="rows"``) Dirichlet(1) over the allowed
                        entries of each row; structural zeros stay exactly 0        —
``emission_logit_last`` logit E_i[K−1], ordered increasing in i: the order
                        statistics of K iid logit-Beta(1, K−1) draws                logit(0), logit(.99)
``emission_rest``       E_i[:K−1] / (1 − E_i[K−1]) ~ Dirichlet(1)                   —
======================  ==========================================================  =============

The two emission sites together are exactly E_i ~ Dirichlet(1, …, 1) iid, restricted to
E_0[K−1] < E_1[K−1] < … (the ordering removes label switching). Deterministic sites:
``transition_matrix`` (M, M), ``emission_probs`` (M, K); the likelihood is
``numpyro.factor("y", increments)`` with per-step increments (sequence, time).

**Emulation study.** A noise-driven, bias-free ReLU RNN (``zoo.nets.rnn.NoiseDrivenRNN``:
h_t = ReLU(W_hh h_{t−1} + W_ih x_t), x_t ~ N(0, I_d), logits = A h_t, y_t = hard straight-through
Gumbel-softmax) is trained with optax to make its one-hot output sequences indistinguishable
from the HMM's: loss = debiased Sinkhorn divergence (``inference.losses``, cost ½‖·‖²,
blur 0.2, ε = 0.04) between a batch of RNN sequences and a batch of HMM sequences, each flattened
to a T·K vector. Zoo extension (``RNNConfig.transition_weight`` λ; λ = 0 is the paper's loss):
``+ λ (‖F − F*‖² + ‖f − f*‖²)`` with F = mean_{b,t} o_t ⊗ o_{t+1} and f = mean_{b,t} o_t the pooled
pair and symbol frequencies of the batch's straight-through one-hots and F*, f* those of the HMM
training set (:func:`transition_statistics_penalty`); at CPU batch sizes the Sinkhorn term alone
left max |ΔP(y_{t+1} | y_t)| at 0.07–0.10 (spec: < 0.05). :func:`emulation_problem` builds
``(loss_fn, init_params, make_batch, optimizer)`` for ``inference.train.train``;
:func:`emulation_checks` compares emission statistics; :func:`analyse_emulator` gives fixed
points, orbit radii under noise and kick units.

Example::

    import jax, zoo, inference
    entry = zoo.get("hmm_rnn")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method="nuts", num_warmup=500, num_samples=500, num_chains=1)
    entry.check(idata, truth, entry.configs["small"])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.distributions import constraints
from numpyro.distributions.transforms import SigmoidTransform

from inference import exact
from zoo.core import Check, Recipe, StateSpaceModel, ZooEntry, posterior_draws
from zoo.hmm import categorical_log_likelihoods, hmm_increments, hmm_marginal_factor
from zoo.nets import rnn as rnn_net
from inference.losses import sinkhorn_divergence

__all__ = [
    "HMMRNNConfig",
    "RNNConfig",
    "Architecture",
    "SortedIID",
    "architecture",
    "validate_symbols",
    "validate_hmm",
    "hmm_matrices",
    "simulate_sequences",
    "log_likelihood",
    "smoothed_marginals",
    "viterbi_paths",
    "posterior_paths",
    "EmissionStatistics",
    "emission_statistics",
    "hmm_emission_statistics",
    "EmulationProblem",
    "emulation_problem",
    "transition_statistics_penalty",
    "pooled_output_statistics",
    "generate",
    "emulation_checks",
    "EmulatorAnalysis",
    "analyse_emulator",
    "model",
    "simulate",
    "check",
    "exact_loglik",
    "true_sites",
    "hmm_rnn_ssm",
    "CategoricalMissing",
    "rnn_outputs_onehot",
    "ENTRY",
    "CONFIGS",
    "RNN_CONFIGS",
]

ARCHITECTURES = ("chain", "fully_connected", "cyclic")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HMMRNNConfig:
    """One of the paper's HMMs and the size of the data set fitted by NUTS.

    architecture: ``"chain"`` (M = 2..5), ``"fully_connected"`` or ``"cyclic"`` (M = 4).
    transition_prior: ``"tied"`` (chain only: one scalar, ``p`` for M=2, ``q`` for M≥3) or
        ``"rows"`` (each row Dirichlet(1) over its allowed entries).
    learn_emissions: if False the emission matrix is fixed at the truth (used by the
        one-parameter exactness test).
    """

    architecture: str = "chain"
    num_states: int = 2
    num_outputs: int = 3
    num_sequences: int = 100
    num_steps: int = 100
    transition_prior: str = "tied"
    learn_emissions: bool = True

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture: expected one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.architecture == "chain" and not 2 <= self.num_states:
            raise ValueError(f"num_states: a linear chain needs at least 2 states, got {self.num_states}")
        if self.architecture == "cyclic" and self.num_states != 4:
            raise ValueError(f"num_states: the paper's cyclic HMM has 4 states, got {self.num_states}")
        if self.architecture == "fully_connected" and self.num_states < 2:
            raise ValueError(f"num_states: expected at least 2, got {self.num_states}")
        if self.num_outputs != 3 and self.architecture == "cyclic":
            raise ValueError(f"num_outputs: the cyclic HMM emits 3 symbols, got {self.num_outputs}")
        if self.num_outputs < 2:
            raise ValueError(f"num_outputs: expected at least 2 symbols, got {self.num_outputs}")
        if self.transition_prior not in ("tied", "rows"):
            raise ValueError(f"transition_prior: expected 'tied' or 'rows', got {self.transition_prior!r}")
        if self.transition_prior == "tied" and self.architecture != "chain":
            raise ValueError("transition_prior: 'tied' is defined for the linear chain only; use 'rows'")
        for name in ("num_sequences", "num_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class RNNConfig:
    """The noise-driven RNN and its Sinkhorn training (paper defaults in ``RNN_CONFIGS['paper']``).

    num_sequences: HMM sequences in the training set; batch_size: sequences per step on each
    side of the Sinkhorn divergence; grad_clip: global gradient-norm clip; blur: ε = blur²;
    lr_schedule: ``"constant"`` (the paper) or ``"cosine"`` (decay to 10% over training).
    transition_weight: λ of the auxiliary transition-statistics term (a zoo extension of the
        paper's loss, see :func:`transition_statistics_penalty`); 0 is the paper's loss. The
        default 10⁴ was chosen by measurement on chain3 (see ``RNN_CONFIGS``).
    """

    hidden_size: int = 50
    noise_dim: int = 10
    num_sequences: int = 3000
    batch_size: int = 512
    num_train_steps: int = 300
    learning_rate: float = 1e-3
    grad_clip: float = 0.9
    blur: float = 0.2
    tau: float = 1.0
    sinkhorn_scaling: float = 0.9
    lr_schedule: str = "constant"
    transition_weight: float = 1e4

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule: expected 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not (math.isfinite(float(self.transition_weight)) and float(self.transition_weight) >= 0):
            raise ValueError(f"transition_weight: expected a finite float >= 0, got {self.transition_weight}")
        for name in ("hidden_size", "noise_dim", "num_sequences", "batch_size", "num_train_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")


# --------------------------------------------------------------------------------------------
# The paper's HMMs
# --------------------------------------------------------------------------------------------


class Architecture(NamedTuple):
    """mask (M, M) bool of allowed transitions, transition (M, M), emissions (M, K): the truth,
    in the model's labelling (states ordered by increasing ``emissions[:, -1]``)."""

    mask: np.ndarray
    transition: np.ndarray
    emissions: np.ndarray


def _chain_transition(num_states: int, q: float) -> np.ndarray:
    m = num_states
    a = np.zeros((m, m))
    for i in range(m):
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < m]
        for j in neighbours:
            a[i, j] = q
        a[i, i] = 1.0 - q * len(neighbours)
    return a


def _linear_emissions(num_states: int, num_outputs: int) -> np.ndarray:
    a = np.arange(num_states) / (num_states - 1)
    e = np.zeros((num_states, num_outputs))
    e[:, 0] = 0.99 * (1 - a)
    e[:, -1] = 0.99 * a
    e[:, 1:-1] = 0.01 / (num_outputs - 2) if num_outputs > 2 else 0.0
    if num_outputs == 2:
        e[:, 0] += 0.005
        e[:, -1] += 0.005
    return e


def architecture(config: HMMRNNConfig) -> Architecture:
    """The true HMM of ``config`` (paper values), relabelled so that ``E[:, -1]`` increases."""
    m, k = config.num_states, config.num_outputs
    if config.architecture == "chain":
        q = 0.05 ** (1.0 / (m - 1))
        trans = _chain_transition(m, q)
        emis = _linear_emissions(m, k)
    elif config.architecture == "fully_connected":
        trans = np.full((m, m), 0.01 / (m - 1))
        np.fill_diagonal(trans, 0.99)
        emis = _linear_emissions(m, k)
    else:
        trans = np.zeros((4, 4))
        for i in range(4):
            trans[i, i] = 0.9
            trans[i, (i + 1) % 4] = trans[i, (i - 1) % 4] = 0.05
        emis = np.array([[1.0, 0.0, 0.0], [0.6, 0.0, 0.4], [0.0, 0.0, 1.0], [0.4, 0.0, 0.6]])
    perm = np.argsort(emis[:, -1], kind="stable")
    trans, emis = trans[perm][:, perm], emis[perm]
    return Architecture(mask=trans > 0, transition=trans, emissions=emis)


def _row_groups(mask: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Rows grouped by their number n of allowed entries: n -> (rows (r,), columns (r, n))."""
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(mask):
        groups.setdefault(int(row.sum()), []).append(i)
    return {n: (np.array(rows), np.stack([np.flatnonzero(mask[i]) for i in rows])) for n, rows in groups.items()}


def _row_site(n: int, groups: dict) -> str:
    return "transition_rows" if len(groups) == 1 else f"transition_rows_{n}"


# --------------------------------------------------------------------------------------------
# Ordered emission prior
# --------------------------------------------------------------------------------------------


class SortedIID(dist.Distribution):
    """Order statistics of ``n`` iid draws of a univariate, real-supported ``base``.

    Density on the ordered region ``x_0 < … < x_{n-1}``: ``n! Π_i base(x_i)``; ``sample`` sorts
    iid draws. Support ``ordered_vector`` (NUTS moves through ``OrderedTransform``).
    """

    arg_constraints: dict = {}
    support = constraints.ordered_vector
    pytree_data_fields = ("base",)
    pytree_aux_fields = ("n",)

    def __init__(self, base: dist.Distribution, n: int, *, validate_args=None):
        if base.batch_shape or base.event_shape:
            raise ValueError("base: expected a univariate distribution without batch shape")
        self.base, self.n = base, int(n)
        super().__init__(batch_shape=(), event_shape=(self.n,), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        return jnp.sort(self.base.sample(key, tuple(sample_shape) + (self.n,)), axis=-1)

    def log_prob(self, value):
        return math.lgamma(self.n + 1) + jnp.sum(self.base.log_prob(value), axis=-1)


def _logit_beta(a: float, b: float) -> dist.Distribution:
    """Law of ``logit(u)`` for ``u ~ Beta(a, b)``."""
    return dist.TransformedDistribution(dist.Beta(a, b), SigmoidTransform().inv)


# --------------------------------------------------------------------------------------------
# Validation and matrices
# --------------------------------------------------------------------------------------------


def validate_symbols(ys, num_outputs: int, name: str = "ys") -> jax.Array:
    """Integer symbols in ``0..num_outputs-1`` (``-1`` = missing); returns an int32 array.

    Raises ``ValueError`` naming ``name`` for symbols outside the alphabet or non-integers.
    """
    if isinstance(ys, jax.core.Tracer):
        return ys.astype(jnp.int32)
    array = np.asarray(ys)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.isfinite(array)) \
                or not np.all(np.mod(array, 1) == 0):
            raise ValueError(f"{name}: emission symbols must be integers in 0..{num_outputs - 1} (-1 = missing)")
    if array.size and (array.min() < -1 or array.max() >= num_outputs):
        bad = array[(array < -1) | (array >= num_outputs)]
        raise ValueError(
            f"{name}: emission symbols outside the alphabet 0..{num_outputs - 1} (-1 = missing): "
            f"found {np.unique(bad)[:5].tolist()}"
        )
    return jnp.asarray(array, dtype=jnp.int32)


def validate_hmm(transition_matrix, emission_probs, initial_probs=None, mask=None):
    """Check an HMM's matrices: rows of ``transition_matrix`` (M, M) and ``emission_probs`` (M, K)
    are probability vectors, ``initial_probs`` (M,) too (uniform if None); with ``mask`` no mass
    on structural zeros. Returns the three as arrays; raises ``ValueError`` naming the argument."""
    trans = jnp.asarray(transition_matrix)
    if trans.ndim != 2 or trans.shape[0] != trans.shape[1]:
        raise ValueError(f"transition_matrix: expected a square (M, M) matrix, got shape {trans.shape}")
    trans = exact.validate_probabilities(trans, "transition_matrix")
    emis = jnp.asarray(emission_probs)
    if emis.ndim != 2 or emis.shape[0] != trans.shape[0]:
        raise ValueError(f"emission_probs: expected shape ({trans.shape[0]}, K), got {emis.shape}")
    emis = exact.validate_probabilities(emis, "emission_probs")
    m = trans.shape[0]
    init = jnp.full((m,), 1.0 / m) if initial_probs is None else exact.validate_probabilities(initial_probs, "initial_probs")
    if init.shape != (m,):
        raise ValueError(f"initial_probs: expected shape ({m},), got {init.shape}")
    if mask is not None and not isinstance(trans, jax.core.Tracer):
        if np.any(np.asarray(trans)[~np.asarray(mask)] != 0):
            raise ValueError("transition_matrix: puts mass on transitions the architecture forbids")
    return init, trans, emis


def hmm_matrices(params: dict, config: HMMRNNConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(initial_probs, transition_matrix, emission_probs)`` from site values ``params``.

    Accepts either the matrices themselves (keys ``transition_matrix``, ``emission_probs``) or
    the sampled sites (``p``/``q``/``transition_rows*``, ``emission_logit_last``, ``emission_rest``).
    """
    arch = architecture(config)
    m = config.num_states
    initial = jnp.full((m,), 1.0 / m)
    if "transition_matrix" in params:
        trans = jnp.asarray(params["transition_matrix"])
    else:
        trans = _transition_from_sites(params, config, arch)
    if "emission_probs" in params:
        emis = jnp.asarray(params["emission_probs"])
    elif config.learn_emissions:
        emis = _emissions_from_sites(params["emission_logit_last"], params.get("emission_rest"), config)
    else:
        emis = jnp.asarray(arch.emissions)
    return initial, trans, emis


def _transition_from_sites(params: dict, config: HMMRNNConfig, arch: Architecture) -> jax.Array:
    m = config.num_states
    if config.transition_prior == "tied":
        if m == 2:
            p = jnp.asarray(params["p"])
            return jnp.stack([jnp.stack([p, 1 - p]), jnp.stack([1 - p, p])])
        q = jnp.asarray(params["q"])
        moves = jnp.asarray(_chain_transition(m, 1.0) - np.diag(np.diag(_chain_transition(m, 1.0))))
        neighbours = moves.sum(1)
        return q * moves + jnp.diag(1.0 - q * neighbours)
    groups = _row_groups(arch.mask)
    trans = jnp.zeros((m, m))
    for n, (rows, cols) in groups.items():
        trans = trans.at[rows[:, None], cols].set(jnp.asarray(params[_row_site(n, groups)]))
    return trans


def _emissions_from_sites(logit_last, rest, config: HMMRNNConfig) -> jax.Array:
    last = jax.nn.sigmoid(jnp.asarray(logit_last))
    if config.num_outputs == 2:
        return jnp.stack([1 - last, last], axis=-1)
    return jnp.concatenate([(1 - last)[..., None] * rest, last[..., None]], axis=-1)


# --------------------------------------------------------------------------------------------
# Exact computations through inference.exact (one sequence unless stated)
# --------------------------------------------------------------------------------------------


def simulate_sequences(key, transition_matrix, emission_probs, num_sequences: int, num_steps: int,
                       initial_probs=None) -> tuple[jax.Array, jax.Array]:
    """Sample ``(states, ys)``, both ``(num_sequences, num_steps)`` int32, from an HMM."""
    init, trans, emis = validate_hmm(transition_matrix, emission_probs, initial_probs)
    if int(num_sequences) < 1 or int(num_steps) < 1:
        raise ValueError(f"num_sequences, num_steps: expected positive integers, got {num_sequences}, {num_steps}")
    return _simulate(key, init, trans, emis, int(num_sequences), int(num_steps))


def _simulate(key, init, trans, emis, num_sequences, num_steps):
    log_t, log_e = jnp.log(trans), jnp.log(emis)

    def one(k):
        k0, ky0, kr = jax.random.split(k, 3)
        z0 = jax.random.categorical(k0, jnp.log(init))
        y0 = jax.random.categorical(ky0, log_e[z0])

        def step(z, kk):
            kz, ky = jax.random.split(kk)
            z = jax.random.categorical(kz, log_t[z])
            return z, (z, jax.random.categorical(ky, log_e[z]))

        _, (zs, ys) = jax.lax.scan(step, z0, jax.random.split(kr, num_steps - 1))
        return jnp.concatenate([z0[None], zs]), jnp.concatenate([y0[None], ys])

    zs, ys = jax.vmap(one)(jax.random.split(key, num_sequences))
    return zs.astype(jnp.int32), ys.astype(jnp.int32)


def _loglik_table(ys, emis, num_outputs):
    return categorical_log_likelihoods(emis, validate_symbols(ys, num_outputs))


def log_likelihood(ys, transition_matrix, emission_probs, initial_probs=None) -> jax.Array:
    """``log p(y)`` by the forward algorithm; ``ys`` (T,) or (S, T) (summed over sequences)."""
    init, trans, emis = validate_hmm(transition_matrix, emission_probs, initial_probs)
    ys = validate_symbols(ys, emis.shape[1])
    ys = ys[None] if ys.ndim == 1 else ys
    ll = jax.vmap(lambda y: categorical_log_likelihoods(emis, y))(ys)
    return hmm_increments(init, trans, ll).sum()


def smoothed_marginals(ys, transition_matrix, emission_probs, initial_probs=None) -> jax.Array:
    """``p(z_t = k | y)`` (T, K) for one sequence ``ys`` (T,), by forward–backward."""
    init, trans, emis = validate_hmm(transition_matrix, emission_probs, initial_probs)
    return exact.hmm_smoother(init, trans, _loglik_table(ys, emis, emis.shape[1])).smoothed_probs


def viterbi_paths(ys, transition_matrix, emission_probs, initial_probs=None) -> jax.Array:
    """Most probable state paths: ``ys`` (T,) -> (T,), or (S, T) -> (S, T)."""
    init, trans, emis = validate_hmm(transition_matrix, emission_probs, initial_probs)
    ys = validate_symbols(ys, emis.shape[1])
    one = lambda y: exact.hmm_viterbi(init, trans, categorical_log_likelihoods(emis, y))  # noqa: E731
    return one(ys) if ys.ndim == 1 else jax.vmap(one)(ys)


def posterior_paths(key, ys, transition_matrix, emission_probs, num_samples: int,
                    initial_probs=None) -> jax.Array:
    """``num_samples`` draws of ``z | y`` by forward filtering, backward sampling: (num_samples, T)."""
    init, trans, emis = validate_hmm(transition_matrix, emission_probs, initial_probs)
    ll = _loglik_table(ys, emis, emis.shape[1])
    keys = jax.random.split(key, int(num_samples))
    return jax.vmap(lambda k: exact.hmm_posterior_sample(k, init, trans, ll))(keys)


# --------------------------------------------------------------------------------------------
# Entry: program, simulator, check
# --------------------------------------------------------------------------------------------


def _sample_parameters(config: HMMRNNConfig) -> dict:
    arch = architecture(config)
    m, k = config.num_states, config.num_outputs
    params: dict[str, Any] = {}
    if config.transition_prior == "tied":
        if m == 2:
            params["p"] = numpyro.sample("p", dist.Beta(20.0, 2.0))
        else:
            params["q"] = numpyro.sample("q", dist.Uniform(0.0, 0.5))
    else:
        groups = _row_groups(arch.mask)
        for n, (rows, _) in groups.items():
            site = _row_site(n, groups)
            params[site] = numpyro.sample(site, dist.Dirichlet(jnp.ones(n)).expand([len(rows)]).to_event(1))
    if config.learn_emissions:
        params["emission_logit_last"] = numpyro.sample(
            "emission_logit_last", SortedIID(_logit_beta(1.0, k - 1.0), m))
        if k > 2:
            params["emission_rest"] = numpyro.sample(
                "emission_rest", dist.Dirichlet(jnp.ones(k - 1)).expand([m]).to_event(1))
    _, trans, emis = hmm_matrices(params, config)
    numpyro.deterministic("transition_matrix", trans)
    if config.learn_emissions:  # a fixed matrix is no posterior quantity (and has no ESS)
        numpyro.deterministic("emission_probs", emis)
    return {"transition_matrix": trans, "emission_probs": emis}


def model(data=None, *, config: HMMRNNConfig) -> None:
    """NumPyro program. ``data``: int symbols (S, T) or (T,), -1 = missing; None = prior predictive
    (deterministic sites ``states`` and ``y`` of shape (num_sequences, num_steps))."""
    mats = _sample_parameters(config)
    m = config.num_states
    initial = jnp.full((m,), 1.0 / m)
    if data is None:
        key = numpyro.prng_key()
        if key is None:
            return
        zs, ys = _simulate(key, initial, mats["transition_matrix"], mats["emission_probs"],
                           config.num_sequences, config.num_steps)
        numpyro.deterministic("states", zs)
        numpyro.deterministic("y", ys)
        return
    ys = validate_symbols(data, config.num_outputs, "data")
    ys = ys[None] if ys.ndim == 1 else ys
    if ys.ndim != 2:
        raise ValueError(f"data: expected symbols of shape (sequence, time), got {ys.shape}")
    ll = jax.vmap(lambda y: categorical_log_likelihoods(mats["emission_probs"], y))(ys)
    hmm_marginal_factor(initial, mats["transition_matrix"], ll, name="y")


def exact_loglik(params: dict, data, config: HMMRNNConfig) -> jax.Array:
    """``log p(data | params)`` by the forward algorithm (params: site values or matrices)."""
    initial, trans, emis = hmm_matrices(params, config)
    ys = validate_symbols(data, config.num_outputs, "data")
    ys = ys[None] if ys.ndim == 1 else ys
    ll = jax.vmap(lambda y: categorical_log_likelihoods(emis, y))(ys)
    return hmm_increments(initial, trans, ll).sum()


def true_sites(config: HMMRNNConfig) -> dict:
    """True values of the sampled sites and deterministic matrices of ``config``."""
    arch = architecture(config)
    truth: dict[str, Any] = {"transition_matrix": arch.transition, "emission_probs": arch.emissions}
    m = config.num_states
    if config.transition_prior == "tied":
        if m == 2:
            truth["p"] = float(arch.transition[0, 0])
        else:
            truth["q"] = float(arch.transition[0, 1])
    else:
        groups = _row_groups(arch.mask)
        for n, (rows, cols) in groups.items():
            truth[_row_site(n, groups)] = arch.transition[rows[:, None], cols]
    return truth


def simulate(key, config: HMMRNNConfig):
    """``(ys (num_sequences, num_steps) int32, truth)``; truth includes the state paths ``states``."""
    arch = architecture(config)
    zs, ys = simulate_sequences(key, arch.transition, arch.emissions, config.num_sequences, config.num_steps)
    truth = true_sites(config)
    truth["states"] = np.asarray(zs)
    return ys, truth


def _covers_interior(idata, var: str, truth, prob: float) -> Check:
    """Coverage of the elements of ``var`` with truth strictly inside (0, 1), Bonferroni-split."""
    draws = posterior_draws(idata, var)
    truth = np.asarray(truth, dtype=float)
    inside = (truth > 0) & (truth < 1)
    n = max(int(inside.sum()), 1)
    level = 1 - (1 - prob) / n
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    ok = (lo <= truth) & (truth <= hi)
    missed = np.argwhere(inside & ~ok).tolist()
    return Check(
        name=f"{var}: simultaneous {int(prob * 100)}% intervals cover the interior true entries",
        passed=bool(np.all(ok[inside])), value=float(np.mean(ok[inside])) if inside.any() else 1.0,
        target=f"all {n} entries with 0 < truth < 1 covered at level {level:.4f} each",
        detail=f"missed entries: {missed}" if missed else "",
    )


def _close(idata, var: str, truth, tol: float, index=()) -> Check:
    mean = posterior_draws(idata, var).mean(0)
    mean = np.asarray(mean)[index] if index != () else np.asarray(mean)
    truth = np.asarray(truth, dtype=float)
    err = float(np.max(np.abs(mean - truth)))
    label = f"{var}{list(index) if index != () else ''}"
    return Check(name=f"posterior mean of {label} close to truth", passed=err < tol, value=err,
                 target=f"|E - truth| < {tol}",
                 detail=f"E = {np.round(mean, 4).tolist()}, truth = {np.round(truth, 4).tolist()}")


def check(idata, truth: dict, config: HMMRNNConfig) -> list[Check]:
    """Recovery. chain2 (spec): 90% CI of p covers 0.95, |E[p] − 0.95| < 0.01,
    |E[E_0[0]] − 0.99| < 0.02. Other configs [zoo]: simultaneous 90% coverage of the interior
    transition and emission entries, and |E − truth| < 0.05 on every entry."""
    checks: list[Check] = []
    if config.transition_prior == "tied" and config.num_states == 2:
        draws = posterior_draws(idata, "p")
        lo, hi = np.quantile(draws, [0.05, 0.95])
        checks.append(Check("90% interval of p covers truth", bool(lo <= truth["p"] <= hi), float(truth["p"]),
                            f"[{lo:.4f}, {hi:.4f}] ∋ {truth['p']}"))
        checks.append(_close(idata, "p", truth["p"], 0.01))
        if config.learn_emissions:
            checks.append(_close(idata, "emission_probs", np.asarray(truth["emission_probs"])[0, 0], 0.02, (0, 0)))
        return checks
    checks.append(_covers_interior(idata, "transition_matrix", truth["transition_matrix"], 0.9))
    checks.append(_close(idata, "transition_matrix", truth["transition_matrix"], 0.05))
    if config.learn_emissions:
        checks.append(_covers_interior(idata, "emission_probs", truth["emission_probs"], 0.9))
        checks.append(_close(idata, "emission_probs", truth["emission_probs"], 0.05))
    return checks


class CategoricalMissing(dist.CategoricalProbs):
    """Categorical over ``0..K-1`` whose ``log_prob`` is 0 at the entry's missing code ``-1``.

    ``log_prob(y) = log probs[y]`` for ``y >= 0`` and ``0`` for ``y = -1``: a missing symbol
    contributes ``log Σ_y p(y | z) = 0``, as in the forward algorithm
    (``zoo.hmm.categorical_log_likelihoods``). Sampling is the plain categorical's.
    """

    def log_prob(self, value):
        value = jnp.asarray(value)
        missing = value < 0
        lp = super().log_prob(jnp.where(missing, 0, value))
        return jnp.where(missing, 0.0, lp)


def hmm_rnn_ssm(config: HMMRNNConfig) -> StateSpaceModel:
    """The HMM as a :class:`StateSpaceModel` (discrete state, categorical emission; particle backends).

    Observations are the entry's symbols: ints ``0..K-1`` with ``-1`` = missing (the emission is a
    :class:`CategoricalMissing`, which scores ``-1`` as 0), or floats with NaN = missing (masked by
    ``zoo.core.masked_log_prob``); both skip the missing step as :func:`exact_loglik` does.
    """
    m = config.num_states

    def prior():
        return _sample_parameters(config)

    def initial(params):
        return dist.Categorical(probs=jnp.full((m,), 1.0 / m))

    # params may hold the matrices (what prior() returns) or only the sampled sites (what a
    # backend's parameter space holds): hmm_matrices accepts both
    def transition(params, t, z_prev):
        return dist.Categorical(probs=hmm_matrices(params, config)[1][z_prev])

    def emission(params, t, z):
        return CategoricalMissing(probs=hmm_matrices(params, config)[2][z])

    return StateSpaceModel(prior=prior, initial=initial, transition=transition, emission=emission,
                           state_shape=(), obs_shape=(), name="hmm_rnn")


def load_columns(columns: dict, config: HMMRNNConfig):
    """CSV columns ``series``, ``time``, ``symbol`` (-1 = missing) -> int (series, time)."""
    from zoo._tabular import long_to_array

    ys = long_to_array(columns, ["symbol"], fill=-1)[..., 0]
    return validate_symbols(ys, config.num_outputs, "columns['symbol']")


def dump_columns(data, config: HMMRNNConfig) -> dict:
    """Inverse of :func:`load_columns`."""
    from zoo._tabular import array_to_long

    data = np.asarray(data)
    data = data[None] if data.ndim == 1 else data
    return array_to_long(data[..., None], ["symbol"])


# --------------------------------------------------------------------------------------------
# Emission statistics (the emulation checks)
# --------------------------------------------------------------------------------------------


class EmissionStatistics(NamedTuple):
    """frequencies (K,): marginal output frequencies (averaged over t); transition (K, K):
    P(y_{t+1} = b | y_t = a) pooled over t; mean_run_length: mean length of runs of identical
    symbols (= symbols / runs, runs cut at the sequence ends); pair_frequencies (K, K):
    P(y_t = a, y_{t+1} = b) averaged over t."""

    frequencies: jax.Array
    transition: jax.Array
    mean_run_length: jax.Array
    pair_frequencies: jax.Array


def emission_statistics(ys, num_outputs: int) -> EmissionStatistics:
    """Empirical statistics of sequences ``ys`` (N, T) int."""
    ys = validate_symbols(ys, num_outputs)
    if ys.ndim != 2 or ys.shape[1] < 2:
        raise ValueError(f"ys: expected (N, T) symbols with T >= 2, got {ys.shape}")
    onehot = jax.nn.one_hot(ys, num_outputs)
    freq = onehot.mean((0, 1))
    pairs = jnp.einsum("nta,ntb->ab", onehot[:, :-1], onehot[:, 1:])
    trans = pairs / jnp.maximum(pairs.sum(1, keepdims=True), 1.0)
    changes = (ys[:, 1:] != ys[:, :-1]).sum()
    runs = ys.shape[0] + changes
    return EmissionStatistics(freq, trans, ys.size / runs, pairs / pairs.sum())


def hmm_emission_statistics(transition_matrix, emission_probs, num_steps: int,
                            initial_probs=None) -> EmissionStatistics:
    """Exact expectations of :func:`emission_statistics` for length-``num_steps`` sequences.

    With π_t = π₀ Aᵗ: frequencies = mean_t π_t E; P(y_t=a, y_{t+1}=b) = Σ_ij π_t(i) E_ia A_ij E_jb
    (pooled over t, then row-normalised); mean run length = T / (1 + Σ_t P(y_{t+1} ≠ y_t)) (the
    ratio of expectations that the empirical statistic estimates).
    """
    init, trans, emis = validate_hmm(transition_matrix, emission_probs, initial_probs)

    def step(pi, _):
        return pi @ trans, pi

    _, pis = jax.lax.scan(step, init, None, length=int(num_steps))  # (T, M)
    freq = (pis @ emis).mean(0)
    joint = jnp.einsum("ti,ia,ij,jb->ab", pis[:-1], emis, trans, emis)
    cond = joint / joint.sum(1, keepdims=True)
    p_change = joint.sum() - jnp.trace(joint)
    return EmissionStatistics(freq, cond, num_steps / (1.0 + p_change), joint / joint.sum())


# --------------------------------------------------------------------------------------------
# Emulation: noise-driven RNN trained by Sinkhorn divergence
# --------------------------------------------------------------------------------------------


class EmulationProblem(NamedTuple):
    """Inputs of ``inference.train.train(loss_fn, init_params, make_batch, optimizer, num_steps)``.

    loss_fn(params, batch, key) -> Sinkhorn divergence of one batch; make_batch(key, step) ->
    (hmm one-hot (B, T·K), noise (B, T, d)); net: the flax module; hmm_sequences (N, T): the HMM
    training set; hmm_config, rnn_config: what built it.
    """

    loss_fn: Callable
    init_params: Any
    make_batch: Callable
    optimizer: optax.GradientTransformation
    num_steps: int
    net: rnn_net.NoiseDrivenRNN
    hmm_sequences: jax.Array
    hmm_config: HMMRNNConfig
    rnn_config: RNNConfig


def rnn_outputs_onehot(params, net, noise, key, tau: float = 1.0) -> jax.Array:
    """Hard straight-through Gumbel-softmax outputs of the RNN for noise (B, T, d): (B, T, K)."""
    _, logits = jax.vmap(lambda x: net.apply(params, x))(noise)
    return rnn_net.gumbel_softmax(key, logits, tau=tau, hard=True)


def pooled_output_statistics(onehots) -> tuple[jax.Array, jax.Array]:
    """``(F (K, K), f (K,))`` of one-hots ``o`` (B, T, K): ``F = mean_{b,t} o_{b,t} ⊗ o_{b,t+1}``
    (t < T−1) and ``f = mean_{b,t} o_{b,t}``: the ``pair_frequencies`` and ``frequencies`` of
    :func:`emission_statistics`, differentiable through straight-through one-hots."""
    num_pairs = onehots.shape[0] * (onehots.shape[1] - 1)
    pairs = jnp.einsum("nti,ntj->ij", onehots[:, :-1], onehots[:, 1:]) / num_pairs
    return pairs, onehots.mean((0, 1))


def transition_statistics_penalty(onehots, target_pairs, target_frequencies) -> jax.Array:
    """Squared distance of a batch's pooled output statistics from target ones (the auxiliary term)::

        penalty = ‖F − F*‖² + ‖f − f*‖²

    with ``F``, ``f`` the pair and symbol frequencies of the batch ``onehots`` (B, T, K)
    (:func:`pooled_output_statistics`), ``target_pairs`` F* (K, K) and ``target_frequencies``
    f* (K,). ``F`` fixes ``P(y_{t+1} | y_t) = F / f``, the statistic the batch Sinkhorn divergence
    of whole sequences leaves loosest. (Measured alternative, not kept: the split-batch product
    ``⟨F_A − F*, F_B − F*⟩ + ⟨f_A − f*, f_B − f*⟩``, unbiased for ``‖E F − F*‖² + …`` without the
    batch-variance term, trained worse emulators on chain3: L1 0.041–0.055, max |ΔP| 0.021–0.032.)
    """
    pairs, freq = pooled_output_statistics(onehots)
    return jnp.sum((pairs - target_pairs) ** 2) + jnp.sum((freq - target_frequencies) ** 2)


def emulation_problem(key, hmm_config: HMMRNNConfig, rnn_config: RNNConfig) -> EmulationProblem:
    """Build the training problem: HMM training set, RNN init, batch sampler, loss, optimizer.

    Loss: ``S_ε(RNN batch, HMM batch)`` on one-hot sequences flattened to T·K vectors, ε = blur²,
    cost ½‖·‖² (two sequences differing in m symbols are at cost m), straight-through gradients.
    Optimizer: global-norm clip then Adam (the paper's settings).

    With ``rnn_config.transition_weight`` λ > 0 the loss is ``S_ε + λ ·
    transition_statistics_penalty`` against the training set's pooled pair and symbol frequencies
    (zoo extension; the RNN still sees only HMM samples, never the HMM's matrices).
    """
    if rnn_config.batch_size > rnn_config.num_sequences:
        raise ValueError(f"batch_size: {rnn_config.batch_size} exceeds the training set "
                         f"num_sequences={rnn_config.num_sequences}")
    k_data, k_init = jax.random.split(key)
    arch = architecture(hmm_config)
    t_len, k_out = hmm_config.num_steps, hmm_config.num_outputs
    _, hmm_ys = simulate_sequences(k_data, arch.transition, arch.emissions, rnn_config.num_sequences, t_len)
    hmm_flat = jax.nn.one_hot(hmm_ys, k_out).reshape(rnn_config.num_sequences, t_len * k_out)
    net = rnn_net.NoiseDrivenRNN(hidden_size=rnn_config.hidden_size, num_outputs=k_out)
    init_params = net.init(k_init, jnp.zeros((t_len, rnn_config.noise_dim)))
    diameter = math.sqrt(2.0 * t_len)
    batch = rnn_config.batch_size
    weight = float(rnn_config.transition_weight)
    train_stats = emission_statistics(hmm_ys, k_out)

    @jax.jit
    def _batch(key):
        k_idx, k_noise = jax.random.split(key)
        idx = jax.random.choice(k_idx, rnn_config.num_sequences, (batch,), replace=False)
        noise = jax.random.normal(k_noise, (batch, t_len, rnn_config.noise_dim))
        return hmm_flat[idx], noise

    def make_batch(key, step):
        return _batch(key)

    def loss_fn(params, batch_data, key):
        target, noise = batch_data
        onehots = rnn_outputs_onehot(params, net, noise, key, rnn_config.tau)  # (B, T, K)
        loss = sinkhorn_divergence(onehots.reshape(batch, t_len * k_out), target, blur=rnn_config.blur,
                                   diameter=diameter, scaling=rnn_config.sinkhorn_scaling)
        if weight > 0:
            loss = loss + weight * transition_statistics_penalty(
                onehots, train_stats.pair_frequencies, train_stats.frequencies)
        return loss

    lr = rnn_config.learning_rate
    if rnn_config.lr_schedule == "cosine":
        lr = optax.cosine_decay_schedule(lr, rnn_config.num_train_steps, alpha=0.1)
    optimizer = optax.chain(optax.clip_by_global_norm(rnn_config.grad_clip), optax.adam(lr))
    return EmulationProblem(loss_fn, init_params, make_batch, optimizer, rnn_config.num_train_steps, net,
                            hmm_ys, hmm_config, rnn_config)


def generate(key, params, net: rnn_net.NoiseDrivenRNN, num_sequences: int, num_steps: int,
             noise_dim: int, noise_scale: float = 1.0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Run the trained RNN on fresh noise: ``(ys (N, T) int, hs (N, T, H), logits (N, T, K))``."""
    k_noise, k_out = jax.random.split(key)
    noise = jax.random.normal(k_noise, (num_sequences, num_steps, noise_dim))
    weights = rnn_net.weights_from_params(params)
    hs, logits = jax.vmap(lambda x: rnn_net.run_rnn(weights, x, noise_scale=noise_scale))(noise)
    return rnn_net.sample_outputs(k_out, logits).astype(jnp.int32), hs, logits


def emulation_checks(rnn_ys, hmm_config: HMMRNNConfig) -> list[Check]:
    """The spec's emulation checks of RNN output sequences ``rnn_ys`` (N, T) against the exact HMM
    statistics: L1(frequencies) < 0.05; max |ΔP(y_{t+1}|y_t)| < 0.05; run length within 20%."""
    arch = architecture(hmm_config)
    rnn = emission_statistics(rnn_ys, hmm_config.num_outputs)
    ref = hmm_emission_statistics(arch.transition, arch.emissions, np.asarray(rnn_ys).shape[1])
    l1 = float(jnp.abs(rnn.frequencies - ref.frequencies).sum())
    dp = float(jnp.abs(rnn.transition - ref.transition).max())
    rl = float(abs(rnn.mean_run_length / ref.mean_run_length - 1.0))
    return [
        Check("L1 distance of marginal output frequencies", l1 < 0.05, l1, "< 0.05",
              f"RNN {np.round(rnn.frequencies, 3).tolist()}, HMM {np.round(ref.frequencies, 3).tolist()}"),
        Check("max |ΔP(y_{t+1} | y_t)|", dp < 0.05, dp, "< 0.05"),
        Check("relative error of the mean run length", rl < 0.2, rl, "< 0.2",
              f"RNN {float(rnn.mean_run_length):.3f}, HMM {float(ref.mean_run_length):.3f}"),
    ]


class EmulatorAnalysis(NamedTuple):
    """fixed_points: of the noise-free RNN (from states on the noisy orbit);
    noise_scales (n,), orbit_radii (n,): radius of the orbit in the top-2 PC plane per noise scale;
    pcs: principal components of the unit-noise orbit; kicks: switch-triggered unit scores."""

    fixed_points: rnn_net.FixedPoints
    noise_scales: np.ndarray
    orbit_radii: np.ndarray
    pcs: rnn_net.PrincipalComponents
    kicks: rnn_net.KickAnalysis


def analyse_emulator(key, params, net: rnn_net.NoiseDrivenRNN, noise_dim: int, *,
                     num_sequences: int = 200, num_steps: int = 100,
                     noise_scales=(0.25, 0.5, 0.75, 1.0), num_starts: int = 32) -> EmulatorAnalysis:
    """Fixed points, orbits under noise and kick units of a trained emulator (paper Figs. 2–4 analogues)."""
    k_run, k_fp, k_scale = jax.random.split(key, 3)
    ys, hs, _ = generate(k_run, params, net, num_sequences, num_steps, noise_dim)
    flat = hs.reshape(-1, hs.shape[-1])
    pcs = rnn_net.principal_components(flat, 2)
    weights = rnn_net.weights_from_params(params)
    starts = flat[jax.random.choice(k_fp, flat.shape[0], (num_starts,), replace=False)]
    fps = rnn_net.find_fixed_points(weights, starts)
    radii = []
    for i, s in enumerate(noise_scales):
        _, hs_s, _ = generate(jax.random.fold_in(k_scale, i), params, net, num_sequences, num_steps, noise_dim, s)
        radii.append(float(rnn_net.orbit_radius(hs_s[:, num_steps // 4:].reshape(-1, hs.shape[-1]), pcs)))
    return EmulatorAnalysis(fps, np.asarray(noise_scales, float), np.asarray(radii), pcs, rnn_net.kick_scores(hs, ys))


# --------------------------------------------------------------------------------------------
# Configurations and the entry
# --------------------------------------------------------------------------------------------

_SEQ_LEN = {2: 100, 3: 30, 4: 30, 5: 40}

CONFIGS = {
    "small": HMMRNNConfig(),
    "paper": HMMRNNConfig(num_sequences=10_000),
    **{f"chain{m}": HMMRNNConfig(num_states=m, num_steps=_SEQ_LEN[m]) for m in (2, 3, 4, 5)},
    "fully3": HMMRNNConfig(architecture="fully_connected", num_states=3, num_steps=35, transition_prior="rows"),
    "cyclic4": HMMRNNConfig(architecture="cyclic", num_states=4, num_steps=30, transition_prior="rows"),
}

#: ``small``: the spec's network (50 units, 10 noise inputs) with batches of 512 and 2000 steps
#: (learning rate 3e-3, cosine decay) and the transition-statistics term at λ = 10⁴: about 3.5 min
#: on one CPU core. Measured on chain3 (emulation_checks of 5000 generated sequences; L1 of
#: frequencies / max |ΔP(y_{t+1}|y_t)| / run-length error): λ = 0: 0.036 / 0.097 / 0.20 (the
#: Sinkhorn term alone stays short of the HMM's stay probability 0.75; batches of 1024 for 1500
#: steps, 9 min, reached 0.018–0.024 / 0.07 / 0.15); λ = 100, 300, 1000, 3000, 10⁴ (seed 0):
#: 0.045 / 0.028, 0.047 / 0.028, 0.045 / 0.020, 0.035 / 0.024, 0.029 / 0.013 (run length within 4%);
#: λ = 10⁴, seed 1: 0.001 / 0.034 (0.015 on 20 000 sequences) / 0.009. ``paper``: λ = 0.
RNN_CONFIGS = {
    "small": RNNConfig(batch_size=512, num_train_steps=2000, learning_rate=3e-3, lr_schedule="cosine"),
    "paper": RNNConfig(hidden_size=150, noise_dim=100, num_sequences=10_000, batch_size=4096,
                       num_train_steps=500 * 3, learning_rate=1e-3, grad_clip=0.9, transition_weight=0.0),
}

ENTRY = ZooEntry(
    name="hmm_rnn",
    title="Mechanistic interpretability of RNNs emulating hidden Markov models",
    reference="arXiv:2510.25674",
    summary=(
        "The paper's discrete HMMs (linear chains of 2-5 states, a fully connected and a cyclic "
        "architecture, three output symbols) as NumPyro programs with the latent path summed out "
        "by the forward algorithm, so NUTS samples transition and emission parameters exactly; "
        "emission probabilities are ordered to remove label switching. FFBS and Viterbi decode "
        "the states. A noise-driven ReLU RNN is trained with a Sinkhorn divergence to reproduce "
        "the HMM's output statistics and dissected (fixed points, noisy orbits, kick units)."
    ),
    model=model,
    simulate=simulate,
    configs=CONFIGS,
    recipe=Recipe("nuts", {"num_warmup": 500, "num_samples": 500, "num_chains": 2},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}),
    check=check,
    ssm=hmm_rnn_ssm,
    exact_loglik=exact_loglik,
    dims={"y": ("sequence", "time"), "states": ("sequence", "time"),
          "transition_matrix": ("state_from", "state_to"), "emission_probs": ("state", "symbol"),
          "emission_logit_last": ("state",), "emission_rest": ("state", "symbol_rest")},
    data_doc=("int array (sequence, time) of symbols 0..K-1, -1 = missing; CSV columns series, time, "
              "symbol."),
    load_columns=load_columns,
    dump_columns=dump_columns,
)
