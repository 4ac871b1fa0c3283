"""zoo.processes.povm: POVM algebra against closed forms and the POVM-space Lindblad evolution
against a density-matrix integration written here independently (matrix ODE, scipy)."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

from zoo.processes import povm as pv

X, Y, Z, I2 = (pv.PAULI[k] for k in "XYZI")


def test_tetrahedral_closed_forms():
    m = pv.povm("tetrahedral")
    np.testing.assert_allclose(np.linalg.inv(pv.overlap(m)), 6 * np.eye(4) - np.ones((4, 4)), atol=1e-12)
    np.testing.assert_allclose(pv.dual_frame(m), 6 * m - I2[None], atol=1e-12)
    np.testing.assert_allclose(pv.product_state([1, 0], m, 1), [1 / 2, 1 / 6, 1 / 6, 1 / 6], atol=1e-14)
    for name in pv.POVMS:
        pv.check_povm(pv.povm(name))


@pytest.mark.parametrize("name", pv.POVMS)
def test_density_matrix_round_trip(name):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4))
    rho = a @ a.conj().T
    rho /= np.trace(rho)
    m = pv.povm(name)
    p = pv.probabilities(rho, m, 2)
    assert p.min() >= 0 and abs(p.sum() - 1) < 1e-12
    np.testing.assert_allclose(pv.density_matrix(p, m, 2), rho, atol=1e-12)


def _lindblad_rhs(h, jumps):
    def rhs(_, flat):
        rho = flat.reshape(h.shape)
        out = -1j * (h @ rho - rho @ h)
        for jump in jumps:
            n = jump.conj().T @ jump
            out += jump @ rho @ jump.conj().T - 0.5 * (n @ rho + rho @ n)
        return out.ravel()
    return rhs


def _kron(*ops):
    out = np.ones((1, 1), dtype=complex)
    for op in ops:
        out = np.kron(out, op)
    return out


@pytest.mark.parametrize("name", pv.POVMS)
def test_povm_evolution_matches_density_matrix_integration(name):
    """N = 3 ring, g = 1.3, V = 2, γ = 0.7: P(t) and ⟨σ^{x,y,z}_i⟩ agree to 1e-8 with ρ(t) from
    the Lindblad equation integrated in matrix form (Hamiltonian and jumps built here)."""
    n, g, V, gamma = 3, 1.3, 2.0, 0.7
    site = lambda op, i: _kron(*[op if j == i else I2 for j in range(n)])  # noqa: E731
    h = sum(V / 4 * site(Z, i) @ site(Z, (i + 1) % n) + g / 2 * site(X, i) for i in range(n))
    jumps = [np.sqrt(gamma) * site(np.array([[0, 0], [1, 0]], dtype=complex), i) for i in range(n)]
    rho0 = np.zeros((8, 8), dtype=complex)
    rho0[0, 0] = 1.0
    times = np.array([0.3, 1.0, 2.5])
    sol = scipy.integrate.solve_ivp(_lindblad_rhs(h, jumps), (0, times[-1]), rho0.ravel(), t_eval=times,
                                    rtol=1e-12, atol=1e-13, method="DOP853")
    m = pv.povm(name)
    terms = pv.dissipative_ising_terms(n, name, True)
    p0 = pv.product_state([1, 0], m, n)
    path = np.asarray(pv.evolve(terms.generator(g, V, gamma), p0, times))
    for k in range(len(times)):
        rho = sol.y[:, k].reshape(8, 8)
        np.testing.assert_allclose(path[k], pv.probabilities(rho, m, n), atol=1e-8)
        exact = [[np.real(np.trace(rho @ site(op, i))) for op in (X, Y, Z)] for i in range(n)]
        np.testing.assert_allclose(pv.pauli_expectations(path[k], m, n), exact, atol=1e-8)


def test_probabilities_stay_a_probability_vector_and_relax_to_the_null_vector():
    m = pv.povm("tetrahedral")
    terms = pv.dissipative_ising_terms(4)
    gen = terms.generator(1.0, 2.0, 1.0)
    p0 = pv.product_state([1, 0], m, 4)
    # times on a grid (one exponential, powers) = one exponential per time
    grid = np.asarray(pv.evolve(gen, p0, [0.5, 1.0, 2.0, 4.0]))
    for k, t in enumerate([0.5, 1.0, 2.0, 4.0]):
        np.testing.assert_allclose(grid[k], np.asarray(pv.evolve(gen, p0, [t], max_powers=0))[0], atol=1e-12)
    # the fixed scaling-and-squaring Taylor exponential = expm (inside its norm bound and at 2x)
    bound = float(np.abs(np.asarray(gen)).sum(axis=0).max())
    for b in (bound, bound / 2):
        np.testing.assert_allclose(pv.evolve(gen, p0, [0.5, 1.0, 2.0, 4.0], norm_bound=b), grid, atol=1e-10)
    path = np.asarray(pv.evolve(gen, p0, jnp.linspace(0.05, 6.0, 40)))
    np.testing.assert_allclose(path.sum(axis=1), 1.0, atol=1e-10)
    assert path.min() >= -1e-10
    late = np.asarray(pv.evolve(gen, p0, jnp.array([60.0])))[0]
    np.testing.assert_allclose(late, pv.steady_state(np.asarray(gen)), atol=1e-9)
    # probability is conserved by the generator itself; without drive every spin decays to σ^z = −1
    np.testing.assert_allclose(np.asarray(gen).sum(axis=0), 0.0, atol=1e-12)
    still = pv.steady_state(np.asarray(terms.generator(0.0, 2.0, 1.0)))
    np.testing.assert_allclose(pv.pauli_expectations(still, m, 4), np.tile([0.0, 0.0, -1.0], (4, 1)), atol=1e-10)


def test_named_errors():
    with pytest.raises(ValueError, match="^povm: expected 4 single-qubit elements"):
        pv.check_povm(np.stack([np.eye(2) / 3] * 3))
    with pytest.raises(ValueError, match="^povm: expected elements summing to the identity"):
        pv.check_povm(np.stack([np.eye(2) / 3] * 4))
    with pytest.raises(ValueError, match="^povm: expected one of"):
        pv.povm("sic6")
    with pytest.raises(ValueError, match="^times: expected increasing positive times"):
        pv.evolve(np.zeros((4, 4)), np.ones(4) / 4, [1.0, 0.5])
    with pytest.raises(ValueError, match="^num_qubits: expected 1..5"):
        pv.dissipative_ising_terms(7)
