"""povm_dissipative_ising, the 2-D benchmark: the dissipative XYZ lattice from the same two-site
POVM blocks as the chain, against a density-matrix Lindblad integration written here; string
orders; the forward-backward trapezoid objective of the Transformer dynamics."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from tests.helpers import mc_tolerance
from zoo import povm_lindblad as pl
from zoo.processes import povm as pv

SX = np.array([[0, 1], [1, 0]], dtype=complex)
SY = np.array([[0, -1j], [1j, 0]], dtype=complex)
SZ = np.array([[1, 0], [0, -1]], dtype=complex)
XYZ = (0.9, 1.6, 1.0, 0.0, 1.0)  # Jx, Jy, Jz, B, gamma: Luo et al.'s 2-D benchmark


def _site_op(op, site, n):
    out = np.ones((1, 1), dtype=complex)
    for k in range(n):
        out = np.kron(out, op if k == site else np.eye(2))
    return out


def _density_matrix_sigma_z(rows, cols, times, Jx, Jy, Jz, B, gamma):
    """⟨σ^z⟩ per site from the density matrix: ρ̇ = −i[H, ρ] + Σ_i (L_i ρ L_i† − ½{L_i†L_i, ρ}) as a
    sparse superoperator on column-stacked vec(ρ) (vec(AXB) = (Bᵀ ⊗ A) vec(X)), propagated by
    ``expm_multiply`` from all |0⟩ (no POVM anywhere). Bonds: every site to its right and lower
    neighbour with wrap-around (the paper's code: a periodic direction of length 2 couples each
    pair twice)."""
    n = rows * cols
    bonds = [(r * cols + c, r * cols + (c + 1) % cols) for r in range(rows) for c in range(cols)]
    bonds += [(r * cols + c, ((r + 1) % rows) * cols + c) for r in range(rows) for c in range(cols)]
    h = sum(J * _site_op(s, i, n) @ _site_op(s, j, n) for i, j in bonds for J, s in ((Jx, SX), (Jy, SY), (Jz, SZ)))
    h = scipy.sparse.csr_matrix(h + B * sum(_site_op(SZ, i, n) for i in range(n)))
    lower = np.array([[0, 0], [1, 0]], dtype=complex)  # |0⟩ -> |1⟩
    jumps = [scipy.sparse.csr_matrix(np.sqrt(gamma) * _site_op(lower, i, n)) for i in range(n)]
    eye = scipy.sparse.identity(2**n, dtype=complex, format="csr")
    kron = scipy.sparse.kron
    sup = -1j * (kron(eye, h) - kron(h.T, eye))
    for L in jumps:
        LdL = (L.conj().T @ L).tocsr()
        sup = sup + kron(L.conj(), L) - 0.5 * kron(eye, LdL) - 0.5 * kron(LdL.T, eye)
    rho = np.zeros((2**n, 2**n), dtype=complex)
    rho[0, 0] = 1.0
    vec = rho.ravel(order="F")
    out = []
    for gap in np.diff(np.concatenate([[0.0], times])):
        vec = scipy.sparse.linalg.expm_multiply(sup.tocsr() * gap, vec)
        rho = vec.reshape(2**n, 2**n, order="F")
        out.append([np.real(np.trace(_site_op(SZ, i, n) @ rho)) for i in range(n)])
    return np.asarray(out)


@pytest.mark.parametrize("rows, cols", [(2, 2), (2, 3)])
def test_xyz_lattice_povm_path_matches_density_matrix_evolution(rows, cols):
    """⟨σ^z_i⟩(t) from expm(𝓛̃t)P(0) on the POVM vector (the generator embedded from the two-site
    blocks, 256 / 4096 outcomes) equals the density-matrix evolution to 1e-8; P stays a
    probability vector along the path."""
    times = np.array([0.1, 0.25, 0.5, 1.0, 2.0])
    exact = _density_matrix_sigma_z(rows, cols, times, *XYZ)
    path = pl.xyz_exact_path(rows, cols, times, *XYZ)
    assert path.shape == (len(times), 4 ** (rows * cols))
    np.testing.assert_allclose(path.sum(axis=1), 1.0, atol=1e-10)
    assert path.min() >= -1e-10
    sigma = np.stack([np.asarray(pv.pauli_expectations(p, pv.povm("tetrahedral"), rows * cols))[:, 2] for p in path])
    np.testing.assert_allclose(sigma, exact, rtol=0, atol=1e-8)
    assert np.ptp(exact[-1]) < 1e-8 and abs(exact[-1, 0] - exact[0, 0]) > 0.1  # translation-invariant, moving


def test_lattice_bonds_and_the_chain_blocks_share_one_construction():
    """The paper code's bond list (2N bonds, pairs of a length-2 periodic direction twice), the
    merged XYZ blocks, and the chain's blocks embedded equal its dense generator (N = 4 ring)."""
    assert pv.lattice_bonds(2, 2).tolist() == [[0, 1], [0, 2], [1, 0], [1, 3], [2, 3], [2, 0], [3, 2], [3, 1]]
    assert pv.lattice_bonds(2, 3, periodic=False).tolist() == [[0, 1], [0, 3], [1, 2], [1, 4], [2, 5], [3, 4], [4, 5]]
    assert pv.dissipative_xyz_local_terms(2, 2).bonds.tolist() == [[0, 1], [0, 2], [1, 3], [2, 3]]
    local = pv.dissipative_ising_local_terms(4)
    dense = np.asarray(pv.dissipative_ising_terms(4).generator(1.3, 2.0, 0.7))
    embedded = pv.embed_blocks(np.asarray(local.blocks(1.3, 2.0, 0.7)), local.bonds, 4).toarray()
    np.testing.assert_allclose(embedded, dense, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="^rows: expected an integer >= 2"):
        pv.lattice_bonds(1, 4)
    with pytest.raises(ValueError, match="^bonds: expected pairs of distinct sites"):
        pv.embed_blocks(np.zeros((1, 16, 16)), [[1, 1]], 2)
    with pytest.raises(ValueError, match=r"^coefficients: expected 5 values"):
        pv.dissipative_xyz_local_terms(2, 2).blocks(1.0, 2.0)


@pytest.mark.parametrize("kind", ["snake", "rows"])
def test_string_order_leaves_the_exact_law_invariant(kind):
    """A string order is a relabelling of sites: the generator on the bonds in sequence positions,
    evolved from P(0), gives the lattice's exact P(t) with its digits permuted, P_seq(x) =
    P(a) at x = a[order] (2 × 3 lattice, every one of the 4096 strings, 1e-12). The snake walks
    the lattice through neighbours."""
    rows, cols, n = 2, 3, 6
    order = pv.string_order(rows, cols, kind)
    assert sorted(order) == list(range(n))
    if kind == "snake":
        assert order.tolist() == [0, 1, 2, 5, 4, 3]
    terms = pv.dissipative_xyz_local_terms(rows, cols)
    blocks = np.asarray(terms.blocks(*XYZ))
    p0 = pv.product_state([1.0, 0.0], pv.povm("tetrahedral"), n)
    lattice = scipy.sparse.linalg.expm_multiply(pv.embed_blocks(blocks, terms.bonds, n) * 0.7, p0)
    sequence = scipy.sparse.linalg.expm_multiply(
        pv.embed_blocks(blocks, pv.relabel_bonds(terms.bonds, order), n) * 0.7, p0)
    # P_seq(x) with x_s = a_{order[s]}: the lattice tensor's axes taken in the sequence order
    np.testing.assert_allclose(sequence, lattice.reshape((4,) * n).transpose(order).ravel(), rtol=0, atol=1e-12)
    # the snake is a path through the lattice: consecutive positions are neighbours (row order breaks at row ends)
    pairs = {tuple(sorted(b)) for b in terms.bonds.tolist()}
    steps = [tuple(sorted(p)) in pairs for p in zip(order[:-1].tolist(), order[1:].tolist())]
    assert all(steps) if kind == "snake" else not all(steps)
    with pytest.raises(ValueError, match="^kind: expected 'snake' or 'rows'"):
        pv.string_order(2, 2, "spiral")
    with pytest.raises(ValueError, match="^order: expected a permutation"):
        pv.relabel_bonds(terms.bonds, [0, 0, 1, 2, 3, 4])


# --- the Transformer dynamics: the forward-backward trapezoid objective ---------------------------

DYN = pl.DynamicsConfig(num_samples=2000)  # the 2 × 2 XYZ lattice, snake order, τ = 0.016


def _sequence_law(config, times):
    """The exact P(t) of the lattice with its digits in the config's sequence order, (L, 4^N)."""
    path = pl.xyz_exact_path(config.rows, config.cols, times, config.Jx, config.Jy, config.Jz, config.B, config.gamma)
    order = config.string_order()
    return np.stack([p.reshape((4,) * config.num_qubits).transpose(order).ravel() for p in path])


def test_trapezoid_objective_is_the_residual_of_the_exact_step():
    """With exact laws for P_θ and P_old (tables over the 256 strings, sequence order), Σ_a
    P(a)|r(a)| is ‖(1 − τ𝓛̃/2)P − (1 + τ𝓛̃/2)P_old‖₁ of the dense generator (1e-10): for P the exact
    step expm(τ𝓛̃)P_old it is the trapezoid's local error (> 0), for P the trapezoid step itself 0."""
    blocks, bonds = DYN.sequence_terms()
    dense = pv.embed_blocks(np.asarray(blocks), bonds, 4).toarray()
    tau, eye = DYN.tau, np.eye(256)
    old = _sequence_law(DYN, [0.2])[0]
    exact_step = scipy.linalg.expm(tau * dense) @ old
    trapezoid_step = np.linalg.solve(eye - 0.5 * tau * dense, (eye + 0.5 * tau * dense) @ old)
    strings = jnp.asarray(list(itertools.product(range(4), repeat=4)))
    index = strings @ (4 ** jnp.arange(3, -1, -1))
    old_table = jnp.log(jnp.asarray(old))
    for new, residual in ((exact_step, None), (trapezoid_step, 0.0)):
        table = jnp.log(jnp.asarray(new))
        r, log_p = pv.trapezoid_ratio(blocks, bonds, lambda a, t=table: t[a @ (4 ** jnp.arange(3, -1, -1))],
                                      lambda a: old_table[a @ (4 ** jnp.arange(3, -1, -1))], strings, tau)
        np.testing.assert_allclose(np.exp(np.asarray(log_p)), new[np.asarray(index)], rtol=1e-12)
        value = float(np.sum(new * np.abs(np.asarray(r))))
        dense_value = np.abs((eye - 0.5 * tau * dense) @ new - (eye + 0.5 * tau * dense) @ old).sum()
        np.testing.assert_allclose(value, dense_value, rtol=1e-10, atol=1e-14)
        if residual is None:
            assert value > 1e-7  # the exact step is not the trapezoid step
        else:
            assert value < 1e-12


def test_dynamics_objective_of_the_transformer_at_the_initial_state():
    """The network starts at P(0) = ⊗(1/2, 1/6, 1/6, 1/6) exactly (⟨σ^z_i⟩ = 1); the loss with new =
    old parameters is mean|r| over its own 2000 draws, r = −τ(𝓛̃P_0)/P_0, whose expectation
    τ‖𝓛̃P_0‖₁ (dense) it matches within Monte Carlo error (exact spread; false alarm 1e-3); the
    gradient is finite and reaches the readout; named errors."""
    from zoo.nets.transformer import autoregressive_sample
    problem = pl.dynamics_problem(DYN)
    params = problem.init_params
    module = DYN.module()
    strings = jnp.asarray(list(itertools.product(range(4), repeat=4)))
    p0 = pv.product_state([1.0, 0.0], pv.povm("tetrahedral"), 4)
    log_prob = pl.transformer_log_prob(module, params, tabulate=True)
    np.testing.assert_allclose(np.exp(np.asarray(log_prob(strings))), p0, rtol=1e-5)
    np.testing.assert_allclose(pl.sequence_sigma_z(DYN, params), 1.0, atol=1e-5)
    blocks, bonds = DYN.sequence_terms()

    @jax.jit
    def value_grad_ratio(params, key):  # the loss and, recomputed on the same draws, r
        loss, grad = jax.value_and_grad(problem.loss_fn)(params, params, key)
        draws = autoregressive_sample(module, params, key, DYN.num_samples)
        own = pl.transformer_log_prob(module, params, tabulate=True)
        return loss, grad, pv.trapezoid_ratio(blocks, bonds, own, own, draws, DYN.tau)[0]

    loss, grad, r = value_grad_ratio(params, jax.random.PRNGKey(3))
    np.testing.assert_allclose(float(loss), np.abs(np.asarray(r)).mean(), rtol=1e-4)  # float32 net
    dense = pv.embed_blocks(np.asarray(blocks), bonds, 4).toarray()
    r_exact = -DYN.tau * (dense @ p0) / p0
    mean, spread = np.sum(p0 * np.abs(r_exact)), np.sqrt(np.sum(p0 * r_exact**2) - np.sum(p0 * np.abs(r_exact)) ** 2)
    assert abs(float(loss) - mean) <= mc_tolerance(spread, DYN.num_samples, false_failure=1e-3)
    leaves = jax.tree_util.tree_leaves(grad)
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
    assert np.abs(grad["params"]["decoder"]["readout"]["kernel"]).max() > 0
    with pytest.raises(ValueError, match="^rows: expected an integer >= 2"):
        pl.DynamicsConfig(rows=1)
    with pytest.raises(ValueError, match="^order: expected 'snake' or 'rows'"):
        pl.DynamicsConfig(order="spiral")
    with pytest.raises(ValueError, match="^tau: expected a positive number"):
        pl.DynamicsConfig(tau=0.0)
    with pytest.raises(ValueError, match="^tabulate: a table of all 4\\^N strings needs N <= 8"):
        pl.DynamicsConfig(rows=3, cols=3)
    with pytest.raises(TypeError, match="^config: expected a DynamicsConfig"):
        pl.dynamics_problem(pl.SMALL)
    with pytest.raises(ValueError, match="^times: expected positive multiples of tau"):
        pl.xyz_exact_sigma_z(DYN, [0.01], trapezoid=True)


@pytest.mark.slow
def test_transformer_dynamics_tracks_the_exact_sigma_z():
    """The paper's Transformer dynamics on the periodic 2 × 2 XYZ lattice from all |0⟩: 10 trapezoid
    steps of τ = 0.016 (the paper's code's dt = 0.008 is τ/2), 120 Adam steps each (1e-2, halved
    after 80; 1000 draws a step), seed 0, through ``scripts/train_povm_dynamics.py`` (about 22 s
    CPU). Exact ⟨σ^z⟩ falls from 1 to 0.58 by t = 0.16. Measured over seeds 0-7, the worst error of
    the site mean over the 10 steps was 0.004-0.016 (mean 0.010) and of a single site 0.013-0.041;
    the tolerances are 0.03 (site mean) and 0.06 (site), about twice the worst seed. The exact
    trapezoid recursion differs from the exact path by < 3e-4 here, so the error is the network's."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("train_povm_dynamics", "scripts/train_povm_dynamics.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    config = pl.DynamicsConfig(num_time_steps=10, seed=0)
    run = script.run_dynamics(config)
    assert run.sigma_z.shape == (11, 4) and run.losses.shape == (10, 120)
    np.testing.assert_allclose(run.sigma_z[0], 1.0, atol=1e-5)
    exact = pl.xyz_exact_sigma_z(config, run.times[1:])
    assert np.abs(pl.xyz_exact_sigma_z(config, run.times[1:], trapezoid=True) - exact).max() < 3e-4
    assert np.abs(run.sigma_z[1:].mean(axis=1) - exact.mean(axis=1)).max() < 0.03
    assert np.abs(run.sigma_z[1:] - exact).max() < 0.06
