"""The wave-function formalism of zoo.processes.transfer_matrix against brute-force enumeration and
the Ising chain's closed forms."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from zoo.processes import transfer_matrix as tm


def _ising(beta, h, eta_in, eta_final):
    s = jnp.asarray(tm.SPINS)
    return tm.TransferChain(tm.ising_log_kernel(beta, h), eta_in * s, eta_final * s)


def _enumerate(chain, num_steps):
    """Every configuration (K^T, T) and its unnormalised log weight."""
    k = chain.log_initial.shape[0]
    configs = np.array(list(itertools.product(range(k), repeat=num_steps)))
    lk = np.asarray(chain.log_kernel)
    logw = (np.asarray(chain.log_initial)[configs[:, 0]] + np.asarray(chain.log_final)[configs[:, -1]]
            + lk[configs[:, 1:], configs[:, :-1]].sum(axis=1))
    return configs, logw


CHAINS = {
    "ising": _ising(0.7, -0.3, 0.4, -1.1),
    "ising_strong": _ising(3.0, 0.5, -2.0, 0.8),
    # three states with a forbidden jump (log 0)
    "three_state": tm.TransferChain(jnp.array([[0.2, -np.inf, 1.0], [0.5, 0.1, -0.4], [-0.3, 0.9, 0.0]]),
                                    jnp.array([0.0, -1.0, 0.5]), jnp.array([0.3, 0.0, -0.2])),
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_formalism_against_enumeration(name):
    chain = CHAINS[name]
    T = 8 if name.startswith("ising") else 6
    configs, logw = _enumerate(chain, T)
    log_z = logsumexp(logw)
    np.testing.assert_allclose(tm.log_partition(chain, T), log_z, rtol=1e-12, atol=1e-10)
    p = np.exp(logw - log_z)
    k = chain.log_initial.shape[0]
    # local probabilities and the density matrix (diagonal = local probabilities, trace one)
    local = np.stack([np.bincount(configs[:, t], weights=p, minlength=k) for t in range(T)])
    np.testing.assert_allclose(tm.local_probabilities(chain, T), local, atol=1e-12)
    rho = tm.density_matrices(chain, T)
    np.testing.assert_allclose(jnp.diagonal(rho, axis1=1, axis2=2), local, atol=1e-12)
    np.testing.assert_allclose(jnp.trace(rho, axis1=1, axis2=2), 1.0, atol=1e-12)
    # Z = f(t)·f̄(t) at every slice
    f, g = tm.forward_waves(chain, T), tm.backward_waves(chain, T)
    np.testing.assert_allclose(f.log_scale + g.log_scale + jnp.log(jnp.sum(f.values * g.values, axis=1)),
                               log_z, rtol=1e-12)
    # the configuration probability and the Markov form
    for i in (0, 17, len(configs) - 1):
        if np.isfinite(logw[i]):
            np.testing.assert_allclose(tm.log_probability(chain, configs[i]), logw[i] - log_z, atol=1e-10)
    initial, trans = tm.markov_form(chain, T)
    np.testing.assert_allclose(trans.sum(axis=2), 1.0, atol=1e-12)
    path_p = np.asarray(initial)[configs[:, 0]] * np.prod(
        np.asarray(trans)[np.arange(T - 1)[None, :], configs[:, :-1], configs[:, 1:]], axis=1)
    np.testing.assert_allclose(path_p, p, atol=1e-12)
    # two-point functions of an observable with values per state
    values = np.linspace(-1.0, 2.0, k)
    for lag in (0, 1, 3):
        exact = np.array([np.sum(p * values[configs[:, t]] * values[configs[:, t + lag]]) for t in range(T - lag)])
        np.testing.assert_allclose(tm.two_point(chain, T, values, lag), exact, atol=1e-12)
    # a noisy readout: f̄ᵀ D_T T̂ ⋯ D_1 f_in / Z
    table = jnp.asarray(np.random.default_rng(1).normal(size=(T, k)))
    readout = logsumexp(logw + np.asarray(table)[np.arange(T)[None, :], configs].sum(axis=1))
    np.testing.assert_allclose(tm.log_marginal(chain, table), readout - log_z, atol=1e-10)


def test_forbidden_jumps_stay_exact_zeros():
    _, trans = tm.markov_form(CHAINS["three_state"], 6)
    # log_kernel[0, 1] = -inf: from state 1 to state 0 is forbidden; [2, 0] is allowed
    assert np.all(np.asarray(trans)[:, 1, 0] == 0.0)
    assert np.all(np.asarray(trans)[:, 0, 2] > 0)


@pytest.mark.parametrize("beta,eta,T", [(0.6, 1.0, 64), (25.0, -0.7, 400)])
def test_closed_forms_at_zero_field(beta, eta, T):
    """h = 0, free final boundary: ⟨s_t⟩ = tanh(η) tanh(β)^{t−1}, ⟨s_t s_{t+k}⟩ = tanh(β)^k (to 1e-10,
    including large β T where T̂^T overflows without rescaling)."""
    chain = _ising(beta, 0.0, eta, 0.0)
    t = np.arange(T)
    mean = tm.expectations(tm.density_matrices(chain, T), np.diag(tm.SPINS))
    np.testing.assert_allclose(mean, np.tanh(eta) * np.tanh(beta) ** t, atol=1e-10)
    for lag in (1, 5):
        np.testing.assert_allclose(tm.two_point(chain, T, tm.SPINS, lag), np.tanh(beta) ** lag, atol=1e-10)
    assert np.isfinite(float(tm.log_partition(chain, T)))


def test_transfer_matrix_eigenvalues_and_free_energy():
    """Eigenvalues e^β cosh h ± √(e^{2β} sinh² h + e^{−2β}); log Z / T → log λ₊."""
    beta, h = 0.8, 0.35
    lam = np.linalg.eigvalsh(np.exp(np.asarray(tm.ising_log_kernel(beta, h))))
    root = np.sqrt(np.exp(2 * beta) * np.sinh(h) ** 2 + np.exp(-2 * beta))
    np.testing.assert_allclose(np.sort(lam), [np.exp(beta) * np.cosh(h) - root, np.exp(beta) * np.cosh(h) + root],
                               rtol=1e-12)
    chain = _ising(beta, h, 0.0, 0.0)
    per_slice = tm.log_partition(chain, 2001) - tm.log_partition(chain, 2000)
    np.testing.assert_allclose(per_slice, np.log(lam.max()), rtol=1e-12)


def _shift_operator(num_sites):
    """Ŝ of right-moving bits on a ring: x'_i = x_{i-1}; column = old configuration."""
    k = 2**num_sites
    s = np.zeros((k, k))
    for x in range(k):
        bits = [(x >> i) & 1 for i in range(num_sites)]
        new = bits[-1:] + bits[:-1]
        s[sum(b << i for i, b in enumerate(new)), x] = 1.0
    return s


def test_real_wave_function_of_a_unique_jump_automaton():
    s = _shift_operator(6)
    assert tm.is_unique_jump(s) and not tm.is_unique_jump(0.5 * s)
    p0 = np.random.default_rng(2).dirichlet(np.ones(64))
    q = tm.real_wave_function(s, p0, 13)
    np.testing.assert_allclose(jnp.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose((q**2).sum(axis=1), 1.0, atol=1e-12)
    p = p0.copy()
    for t in range(13):
        np.testing.assert_allclose(q[t] ** 2, p, atol=1e-14)
        p = s @ p
    # ring of six: six steps return every configuration
    np.testing.assert_allclose(q[6], q[0], atol=1e-14)
    # the same automaton as a transfer chain (log 0 off the permutation) has these local probabilities
    chain = tm.TransferChain(jnp.log(jnp.asarray(s)), jnp.log(jnp.asarray(p0)), jnp.zeros(64))
    np.testing.assert_allclose(tm.local_probabilities(chain, 13), q**2, atol=1e-12)


def test_named_errors():
    with pytest.raises(ValueError, match="^beta: expected an inverse temperature"):
        tm.ising_log_kernel(-0.1, 0.0)
    with pytest.raises(ValueError, match="^step_operator: expected a unique-jump"):
        tm.real_wave_function(np.full((2, 2), 0.5), np.array([0.5, 0.5]), 3)
    with pytest.raises(ValueError, match="^lag: expected"):
        tm.two_point(CHAINS["ising"], 5, tm.SPINS, 5)
    # traced β passes (NUTS differentiates through it)
    assert np.isfinite(jax.grad(lambda b: tm.log_partition(_ising(b, 0.1, 0.0, 0.0), 10))(0.5))
