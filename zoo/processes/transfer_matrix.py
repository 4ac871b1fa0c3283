r"""Classical wave functions of a transfer-matrix chain (Wetterich's "probabilistic world").

A probability distribution over configurations ``s_1..s_T`` of a chain of time slices, each slice
in one of ``K`` local states, of the generalised-Ising form::

    p[s] = Z⁻¹ f_in(s_1) Π_{t=1}^{T-1} K(s_{t+1}, s_t) f̄_f(s_T),     K = exp(−L) ≥ 0

is carried from slice to slice by the transfer matrix ``T̂_{τρ} = K(τ, ρ)`` (``K × K``, not
stochastic). The time-local information is held by two classical wave functions::

    f(1) = f_in,      f(t+1) = T̂ f(t)          (from the past)
    f̄(T) = f̄_f,      f̄(t)   = T̂ᵀ f̄(t+1)       (from the future)

and ``Z = f(t) · f̄(t)`` is the same at every ``t``. The local probabilities are
``p_t(τ) = f_τ(t) f̄_τ(t) / Z``, the classical density matrix ``ρ'_{τρ}(t) = f_τ(t) f̄_ρ(t) / Z``
(``tr ρ' = 1``, ``ρ'(t+1) = Ŝ ρ'(t) Ŝ⁻¹``) and a local observable ``A`` with values on the
diagonal has ``⟨A(t)⟩ = tr(Â ρ'(t))``. Everything is computed in log space with the wave
functions rescaled at every step (``T̂`` grows like ``e^{βT}``); ``f̄`` is propagated by its own
backward recursion, never by ``(T̂ᵀ)⁻¹``.

The same law is a time-inhomogeneous Markov chain (:func:`markov_form`)::

    p(s_1) = f_in(s_1) f̄_{s_1}(1) / Z,     p(s_{t+1} = τ | s_t = ρ) = T̂_{τρ} f̄_τ(t+1) / f̄_ρ(t),

the arrays the discrete-HMM family (:mod:`zoo.processes.discrete_hmm`) reads, so an entry built
on a transfer matrix gets its marginal program, simulator (exact sampling: backward wave
functions, then forward draws) and state-space form from that family. With a noisy readout
``D_t = diag p(y_t | s_t)`` the likelihood ``f̄_fᵀ D_T T̂ ⋯ T̂ D_1 f_in / Z`` is the forward
algorithm (:func:`log_marginal` computes it with the wave-function recursion; the family's forward
algorithm on the Markov form gives the same number).

For a unique-jump evolution (``Ŝ`` a permutation matrix: a deterministic cellular automaton with
a probabilistic start) ``Ŝ`` is orthogonal and the real wave function ``q(t) = √p(t)`` evolves
linearly, ``q(t+1) = Ŝ q(t)``, ``‖q(t)‖ = 1`` (:func:`real_wave_function`).

We write this small module rather than use a library: no maintained JAX package offers the
two-sided wave-function formalism; the pieces are a few ``lax.scan`` recursions.

Reference: C. Wetterich (2020), "The probabilistic world", arXiv:2011.02867.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float, Int

from inference.validate import is_traced

__all__ = [
    "TransferChain",
    "Waves",
    "ising_log_kernel",
    "check_inverse_temperature",
    "forward_waves",
    "backward_waves",
    "log_partition",
    "local_probabilities",
    "density_matrices",
    "expectations",
    "markov_form",
    "two_point",
    "log_probability",
    "log_marginal",
    "is_unique_jump",
    "real_wave_function",
    "SPINS",
]

SPINS = np.array([1.0, -1.0])
"""The Ising basis order: state 0 is spin +1, state 1 is spin −1 (the order of ``T̂``)."""


class TransferChain(NamedTuple):
    """A transfer-matrix chain in log space.

    log_kernel: ``(K, K)``, entry ``[τ, ρ] = log K(s_{t+1} = τ, s_t = ρ) = log T̂_{τρ}`` (``-inf``
        allowed: a forbidden jump).
    log_initial: ``(K,)``, ``log f_in``.
    log_final: ``(K,)``, ``log f̄_f`` (zeros: a free final boundary).
    """

    log_kernel: Float[Array, "K K"]
    log_initial: Float[Array, " K"]
    log_final: Float[Array, " K"]


class Waves(NamedTuple):
    """Wave functions ``(T, K)`` normalised to sum one at every slice, and ``log_scale (T,)`` with
    ``wave(t) = exp(log_scale[t]) * values[t]``."""

    values: Float[Array, "T K"]
    log_scale: Float[Array, " T"]


def check_inverse_temperature(beta, name: str = "beta") -> None:
    """A one-line ``ValueError`` naming ``name`` when a concrete ``beta`` is negative or not finite
    (β = J/T: a non-positive temperature has no Gibbs state). Traced values pass."""
    if is_traced(beta):
        return
    value = np.asarray(beta, dtype=float)
    if not np.all(np.isfinite(value)) or np.any(value < 0):
        raise ValueError(f"{name}: expected an inverse temperature >= 0 (coupling over a positive "
                         f"temperature), got {value.tolist()}")


def ising_log_kernel(beta, h) -> Float[Array, "2 2"]:
    """``log T̂`` of the Ising chain with ``L = −β s_{t+1} s_t − (h/2)(s_{t+1} + s_t)`` in the basis
    (+1, −1): ``T̂ = [[e^{β+h}, e^{−β}], [e^{−β}, e^{β−h}]]``. ``beta`` must be >= 0."""
    check_inverse_temperature(beta)
    s = jnp.asarray(SPINS)
    return beta * s[:, None] * s[None, :] + 0.5 * h * (s[:, None] + s[None, :])


def _normalise(log_v):
    c = logsumexp(log_v)
    return log_v - c, c


def _log_matvec(log_m, log_v):
    """``log (M v)`` for ``M = exp(log_m)``, ``v = exp(log_v)``."""
    return logsumexp(log_m + log_v[None, :], axis=1)


def forward_waves(chain: TransferChain, num_steps: int) -> Waves:
    """``f(t)``, ``t = 1..T``: ``f(1) = f_in``, ``f(t+1) = T̂ f(t)``; rescaled each step."""
    log_f1, c1 = _normalise(jnp.asarray(chain.log_initial))

    def step(carry, _):
        log_f, scale = carry
        nxt, c = _normalise(_log_matvec(chain.log_kernel, log_f))
        return (nxt, scale + c), (nxt, scale + c)

    _, (rest, scales) = jax.lax.scan(step, (log_f1, c1), None, length=int(num_steps) - 1)
    log_values = jnp.concatenate([log_f1[None], rest])
    return Waves(jnp.exp(log_values), jnp.concatenate([c1[None], scales]))


def _backward_log(chain: TransferChain, num_steps: int):
    """Normalised ``log f̄(t)`` ``(T, K)`` and the log scales ``(T,)``."""
    log_last, c_last = _normalise(jnp.asarray(chain.log_final))

    def step(carry, _):
        log_g, scale = carry
        prev, c = _normalise(_log_matvec(chain.log_kernel.T, log_g))
        return (prev, scale + c), (prev, scale + c)

    _, (rest, scales) = jax.lax.scan(step, (log_last, c_last), None, length=int(num_steps) - 1)
    log_values = jnp.concatenate([rest[::-1], log_last[None]])
    return log_values, jnp.concatenate([scales[::-1], c_last[None]])


def backward_waves(chain: TransferChain, num_steps: int) -> Waves:
    """``f̄(t)``, ``t = 1..T``: ``f̄(T) = f̄_f``, ``f̄(t) = T̂ᵀ f̄(t+1)``; rescaled each step."""
    log_values, scales = _backward_log(chain, num_steps)
    return Waves(jnp.exp(log_values), scales)


def log_partition(chain: TransferChain, num_steps: int) -> jax.Array:
    """``log Z = log f̄_fᵀ T̂^{T−1} f_in``."""
    log_g, scales = _backward_log(chain, num_steps)
    return scales[0] + logsumexp(log_g[0] + jnp.asarray(chain.log_initial))


def _log_local(chain: TransferChain, num_steps: int):
    fwd = forward_waves(chain, num_steps)
    log_g, _ = _backward_log(chain, num_steps)
    return jnp.log(fwd.values), log_g


def local_probabilities(chain: TransferChain, num_steps: int) -> Float[Array, "T K"]:
    """``p_t(τ) = f_τ(t) f̄_τ(t) / Z`` for every slice."""
    log_f, log_g = _log_local(chain, num_steps)
    joint = log_f + log_g
    return jnp.exp(joint - logsumexp(joint, axis=1, keepdims=True))


def density_matrices(chain: TransferChain, num_steps: int) -> Float[Array, "T K K"]:
    """The classical density matrices ``ρ'_{τρ}(t) = f_τ(t) f̄_ρ(t) / Z`` (``tr ρ'(t) = 1``)."""
    log_f, log_g = _log_local(chain, num_steps)
    log_norm = logsumexp(log_f + log_g, axis=1)
    return jnp.exp(log_f[:, :, None] + log_g[:, None, :] - log_norm[:, None, None])


def expectations(rho: Float[Array, "T K K"], operator: Float[Array, "K K"]) -> Float[Array, " T"]:
    """``⟨A(t)⟩ = tr(Â ρ'(t))`` for every slice."""
    return jnp.einsum("ij,tji->t", jnp.asarray(operator), rho)


def markov_form(chain: TransferChain, num_steps: int):
    """The same law as a Markov chain: ``(initial_probs (K,), transitions (T-1, K, K))`` with row
    ``ρ`` of ``transitions[t-1]`` the law of ``s_{t+1}`` given ``s_t = ρ`` (see the module
    docstring); each row is normalised in log space, so forbidden jumps stay exact zeros."""
    log_g, _ = _backward_log(chain, num_steps)
    init = jnp.asarray(chain.log_initial) + log_g[0]
    initial = jnp.exp(init - logsumexp(init))
    # log A[t, ρ, τ] = log T̂_{τρ} + log f̄_τ(t+1) - log Σ_τ' (...)
    log_a = chain.log_kernel.T[None, :, :] + log_g[1:, None, :]
    transitions = jnp.exp(log_a - logsumexp(log_a, axis=2, keepdims=True))
    return initial, transitions


def two_point(chain: TransferChain, num_steps: int, values: Float[Array, " K"], lag: int) -> Float[Array, " N"]:
    """``⟨a(s_t) a(s_{t+lag})⟩`` for ``t = 1..T-lag`` (``values`` = ``a`` per state), from the local
    probabilities and the ``lag``-step products of the Markov form's transitions."""
    lag = int(lag)
    if lag < 0 or lag >= int(num_steps):
        raise ValueError(f"lag: expected 0 <= lag < num_steps = {num_steps}, got {lag}")
    values = jnp.asarray(values)
    p = local_probabilities(chain, num_steps)
    if lag == 0:
        return p @ (values**2)
    _, trans = markov_form(chain, num_steps)
    num = int(num_steps) - lag

    def cond_mean(t):  # E[a(s_{t+lag}) | s_t] as a (K,) vector
        def body(i, v):
            return jax.lax.dynamic_index_in_dim(trans, t + lag - 1 - i, keepdims=False) @ v
        return jax.lax.fori_loop(0, lag, body, values)

    cond = jax.vmap(cond_mean)(jnp.arange(num))
    return jnp.sum(p[:num] * values[None, :] * cond, axis=1)


def log_probability(chain: TransferChain, states: Int[Array, " T"]) -> jax.Array:
    """``log p[s] = log f_in(s_1) + Σ_t log K(s_{t+1}, s_t) + log f̄_f(s_T) − log Z`` of one
    configuration (integer states ``0..K-1``)."""
    states = jnp.asarray(states)
    kernel_terms = chain.log_kernel[states[1:], states[:-1]].sum()
    return (jnp.asarray(chain.log_initial)[states[0]] + kernel_terms + jnp.asarray(chain.log_final)[states[-1]]
            - log_partition(chain, states.shape[0]))


def log_marginal(chain: TransferChain, log_emission: Float[Array, "T K"]) -> jax.Array:
    """``log (f̄_fᵀ D_T T̂ ⋯ T̂ D_1 f_in / Z)`` with ``D_t = diag exp(log_emission[t])``: the
    likelihood of a noisy readout by the wave-function recursion (the forward algorithm)."""
    log_emission = jnp.asarray(log_emission)
    num_steps = log_emission.shape[0]
    log_f, c1 = _normalise(jnp.asarray(chain.log_initial) + log_emission[0])

    def step(carry, log_d):
        log_v, scale = carry
        nxt, c = _normalise(_log_matvec(chain.log_kernel, log_v) + log_d)
        return (nxt, scale + c), None

    (log_v, scale), _ = jax.lax.scan(step, (log_f, c1), log_emission[1:])
    numerator = scale + logsumexp(log_v + jnp.asarray(chain.log_final))
    return numerator - log_partition(chain, num_steps)


def is_unique_jump(step_operator) -> bool:
    """Whether ``Ŝ`` (concrete) is a unique-jump operator: a permutation matrix of 0s and 1s."""
    s = np.asarray(step_operator)
    return (s.ndim == 2 and s.shape[0] == s.shape[1] and bool(np.all((s == 0) | (s == 1)))
            and bool(np.all(s.sum(axis=0) == 1)) and bool(np.all(s.sum(axis=1) == 1)))


def real_wave_function(step_operator: Float[Array, "K K"], initial_probs: Float[Array, " K"],
                       num_steps: int) -> Float[Array, "T K"]:
    """``q(t)``, ``t = 1..T``, ``q(1) = √p(1)``, ``q(t+1) = Ŝ q(t)`` for a unique-jump ``Ŝ``
    (checked on concrete values; ``ValueError`` naming ``step_operator`` otherwise). The local
    probabilities are ``q(t)²``."""
    if not is_traced(step_operator) and not is_unique_jump(step_operator):
        raise ValueError("step_operator: expected a unique-jump operator (a permutation matrix); "
                         "a real wave function with p = q² evolves linearly only then")
    q1 = jnp.sqrt(jnp.asarray(initial_probs))
    s = jnp.asarray(step_operator, dtype=q1.dtype)

    def step(q, _):
        nxt = s @ q
        return nxt, nxt

    _, rest = jax.lax.scan(step, q1, None, length=int(num_steps) - 1)
    return jnp.concatenate([q1[None], rest])
