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

**Program** (written once as a discrete HMM, ``zoo.processes.discrete_hmm``: the latent path is summed
out by the forward algorithm, and the state-space form and simulator derive from the same chain):

=======================  ===========================================================  ====================
site                     prior                                                        chain2 truth
=======================  ===========================================================  ====================
``p`` (chain, M=2)       Beta(20, 2): stay probability                                0.95
``q`` (chain, M≥3)       Uniform(0, 0.5): move probability                            0.05^{1/(M−1)}
``transition_rows*``     (``transition_prior="rows"``) Dirichlet(1) over the allowed  —
                         entries of each row; structural zeros stay exactly 0
``emission_logit_last``  logit E_i[K−1], ordered increasing in i: the order           logit(0), logit(.99)
                         statistics of K iid logit-Beta(1, K−1) draws
``emission_rest``        E_i[:K−1] / (1 − E_i[K−1]) ~ Dirichlet(1)                    —
=======================  ===========================================================  ====================

The two emission sites together are exactly E_i ~ Dirichlet(1, …, 1) iid, restricted to
E_0[K−1] < E_1[K−1] < … (the ordering removes label switching). Deterministic sites:
``transition_matrix`` (M, M), ``emission_probs`` (M, K); the likelihood is
``numpyro.factor("y", increments)`` with per-step increments (sequence, time).

The RNN emulation study on these HMMs is :mod:`zoo.hmm_rnn.emulation`.

Several basins, and the recipe's start. Besides the truth's basin the likelihood has one where
both states emit alike (equal last-symbol probabilities, the chain's states merged), a few hundred
nats lower. Chains started at the prior median can settle there together, so R-hat does not see
it: in the stored sweep's replicates 18, 25 and 52 both chains agreed (R-hat 1.00) at 220, 6 and 37
nats below the basin that four chains started by ``init="optimize"`` found, each at the truth.
The recipe therefore starts its chains at an optimised start (``inference.runner.OptimizedInit``,
the best of several prior draws after Adam steps down the potential, per chain): on ``small`` the
best of 16 after 300 steps, which on those three replicates reached the basin of the default search
(64 after 1000: lp equal to 0.1 nat) at a sixth of its cost (23-35 CPU-s a fit against 150-168);
on ``paper`` the default search.

Calibration: the sweep stored in ``calibration/hmm_rnn/small`` (n = 100, L = 99, ``zoo sbc
hmm_rnn --config small --n 100 --draws 99 --seed 0``, the recipe with its optimised start of 16
draws after 300 steps) is calibrated: no element flagged (χ² p ≥ 0.25, no ECDF point outside its
band, 0 to 5 ranks at 0 or 99 per element where 2 are expected, the 5 of ``emission_rest[0,·]``
at p = 0.05 within the family-wise threshold); 3 fits had R-hat above 1.05 (up to 1.18) and 12
a divergent transition. The same sweep with chains started at the prior median was
miscalibrated: ``emission_logit_last[1]``, ``emission_rest[0,0]`` and ``emission_rest[0,1]``
flagged by 7 to 9 ranks at 0 or 99, and 25 fits with R-hat above 1.05 (up to 1.85).

Example::

    import jax, zoo, inference
    entry = zoo.get("hmm_rnn")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method="nuts", num_warmup=500, num_samples=500, num_chains=1)
    entry.check(idata, truth, entry.configs["small"])
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions.transforms import SigmoidTransform

from inference import exact
from inference.validate import is_traced, positive_int
from zoo.core import Check, Columns, FixedParameter, Recipe, StateSpaceModel, ZooEntry, check_ranges, posterior_draws
from zoo.processes.discrete_hmm import CategoricalMissing, DiscreteHMM, HMMParams, SortedIID, discrete_hmm
from zoo.processes.series import validate_symbols as _validate_symbols


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

    COUNTS: ClassVar[tuple[str, ...]] = ("num_states", "num_outputs", "num_sequences", "num_steps")
    POSITIVE: ClassVar[tuple[str, ...]] = ()

    architecture: str = "chain"
    num_states: int = 2
    num_outputs: int = 3
    num_sequences: int = 100
    num_steps: int = 100
    transition_prior: str = "tied"
    learn_emissions: bool = True

    def __post_init__(self) -> None:
        check_ranges(self)
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

    def fixed_parameters(self) -> dict[str, FixedParameter]:
        """The emission matrix, at the truth, unless ``learn_emissions``."""
        if self.learn_emissions:
            return {}
        return {"emission_probs": FixedParameter(architecture(self).emissions.tolist(), "learn_emissions=True")}

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
# Ordered emission prior (the order statistics: zoo.processes.discrete_hmm.SortedIID)
# --------------------------------------------------------------------------------------------


def _logit_beta(a: float, b: float) -> dist.Distribution:
    """Law of ``logit(u)`` for ``u ~ Beta(a, b)``."""
    return dist.TransformedDistribution(dist.Beta(a, b), SigmoidTransform().inv)


# --------------------------------------------------------------------------------------------
# Validation and matrices
# --------------------------------------------------------------------------------------------


def validate_symbols(ys, num_outputs: int, name: str = "ys") -> jax.Array:
    """Integer symbols in ``0..num_outputs-1`` (``-1`` = missing) of shape ``(T,)`` or ``(S, T)``;
    returns an int32 array (``zoo.processes.series.validate_symbols``: a tracer is checked by shape).

    Raises ``ValueError`` naming ``name`` for symbols outside the alphabet or non-integers.
    """
    return _validate_symbols(ys, num_outputs, name=name)


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
    if mask is not None and not is_traced(trans):
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


def _emission(emission_probs, z) -> dist.Distribution:
    return CategoricalMissing(emission_probs[z], "gumbel")


def _hmm_family(num_states: int, num_outputs: int, prior, matrices) -> DiscreteHMM:
    """The model written once: ``matrices(params) -> (initial, transition, emission)`` read by the
    chain and the categorical emission law (``zoo.processes.discrete_hmm``)."""
    return discrete_hmm(
        prior, lambda params: HMMParams(*matrices(params)[:2]),
        lambda params, t, z: _emission(matrices(params)[2], z), num_states=num_states, sampler="gumbel",
        predictive=lambda zs, ys: {"states": zs.astype(jnp.int32), "y": ys.astype(jnp.int32)},
        validate=lambda data: validate_symbols(data, num_outputs, "data"), name="hmm_rnn")


@functools.cache
def _matrix_family(num_states: int, num_outputs: int) -> DiscreteHMM:
    """The same HMM for given matrices ``{"initial_probs", "transition_matrix", "emission_probs"}``."""
    def matrices(params):
        return params["initial_probs"], params["transition_matrix"], params["emission_probs"]

    def no_prior():
        raise ValueError("prior: the HMM of given matrices has no prior (use family(config) for the entry)")

    return _hmm_family(num_states, num_outputs, no_prior, matrices)


def _matrix_params(transition_matrix, emission_probs, initial_probs=None) -> tuple[DiscreteHMM, dict]:
    init, trans, emis = validate_hmm(transition_matrix, emission_probs, initial_probs)
    family = _matrix_family(int(trans.shape[0]), int(emis.shape[1]))
    return family, {"initial_probs": init, "transition_matrix": trans, "emission_probs": emis}


def simulate_sequences(key, transition_matrix, emission_probs, num_sequences: int, num_steps: int,
                       initial_probs=None) -> tuple[jax.Array, jax.Array]:
    """Sample ``(states, ys)``, both ``(num_sequences, num_steps)`` int32, from an HMM."""
    family, params = _matrix_params(transition_matrix, emission_probs, initial_probs)
    zs, ys = family.simulate(key, params, positive_int("num_steps", num_steps),
                             num_series=positive_int("num_sequences", num_sequences))
    return zs.astype(jnp.int32), ys.astype(jnp.int32)


def log_likelihood(ys, transition_matrix, emission_probs, initial_probs=None) -> jax.Array:
    """``log p(y)`` by the forward algorithm; ``ys`` (T,) or (S, T) (summed over sequences)."""
    family, params = _matrix_params(transition_matrix, emission_probs, initial_probs)
    return family.log_likelihood(params, ys)


def smoothed_marginals(ys, transition_matrix, emission_probs, initial_probs=None) -> jax.Array:
    """``p(z_t = k | y)`` (T, K) for one sequence ``ys`` (T,), by forward–backward."""
    family, params = _matrix_params(transition_matrix, emission_probs, initial_probs)
    return family.smoothed_marginals(params, ys)


def viterbi_paths(ys, transition_matrix, emission_probs, initial_probs=None) -> jax.Array:
    """Most probable state paths: ``ys`` (T,) -> (T,), or (S, T) -> (S, T)."""
    family, params = _matrix_params(transition_matrix, emission_probs, initial_probs)
    return family.viterbi(params, ys)


def posterior_paths(key, ys, transition_matrix, emission_probs, num_samples: int,
                    initial_probs=None) -> jax.Array:
    """``num_samples`` draws of ``z | y`` by forward filtering, backward sampling: (num_samples, T)."""
    family, params = _matrix_params(transition_matrix, emission_probs, initial_probs)
    return family.posterior_paths(key, params, ys, int(num_samples))


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


@functools.cache
def family(config: HMMRNNConfig) -> DiscreteHMM:
    """The entry's HMM (``zoo.processes.discrete_hmm``): the prior's sites through
    :func:`hmm_matrices` (which also takes the matrices themselves) into the chain and the
    categorical emission; the marginal program, the state-space form and the simulator derive."""
    return _hmm_family(config.num_states, config.num_outputs, lambda: _sample_parameters(config),
                       lambda params: hmm_matrices(params, config))


def model(data=None, *, config: HMMRNNConfig) -> None:
    """NumPyro program. ``data``: int symbols (S, T) or (T,), -1 = missing; None = prior predictive
    (deterministic sites ``states`` and ``y`` of shape (num_sequences, num_steps))."""
    family(config).model(data, num_steps=config.num_steps, num_series=config.num_sequences)


def exact_loglik(params: dict, data, config: HMMRNNConfig) -> jax.Array:
    """``log p(data | params)`` by the forward algorithm (params: site values or matrices)."""
    return family(config).log_likelihood(params, data)


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


def hmm_rnn_ssm(config: HMMRNNConfig) -> StateSpaceModel:
    """The HMM as a :class:`StateSpaceModel` (discrete state, categorical emission; particle backends),
    from :func:`family`.

    Observations are the entry's symbols: ints ``0..K-1`` with ``-1`` = missing (the emission is a
    :class:`~zoo.processes.discrete_hmm.CategoricalMissing`, which scores ``-1`` as 0), or floats
    with NaN = missing (masked by ``zoo.core.masked_log_prob``); both skip the missing step as
    :func:`exact_loglik` does. ``params`` may hold the matrices (what ``prior()`` returns) or only
    the sampled sites (what a backend's parameter space holds): :func:`hmm_matrices` takes both.
    """
    return family(config).ssm()


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
    recipe=Recipe("nuts", {"num_warmup": 500, "num_samples": 500, "num_chains": 2,
                           "init": {"optimize": {"starts_per_chain": 16, "num_steps": 300}}},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4, "init": "optimize"}),
    check=check,
    ssm=hmm_rnn_ssm,
    exact_loglik=exact_loglik,
    dims={"y": ("sequence", "time"), "states": ("sequence", "time"),
          "transition_matrix": ("state_from", "state_to"), "emission_probs": ("state", "symbol"),
          "emission_logit_last": ("state",), "emission_rest": ("state", "symbol_rest"),
          # Dirichlet rows grouped by their number n of allowed targets (transition_rows_<n>; one
          # dim name per size, as xarray requires)
          "transition_rows": ("row", "allowed"),
          **{f"transition_rows_{n}": (f"row_{n}", f"allowed_{n}") for n in range(1, 33)}},
    columns=Columns("symbol", integer=True, validate=lambda ys, config: validate_symbols(ys, config.num_outputs, "data"),
                    describe="symbols 0..K-1 per sequence and time"),
)
