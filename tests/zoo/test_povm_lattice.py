"""povm_dissipative_ising, the 2-D benchmark: the dissipative XYZ lattice from the same two-site
POVM blocks as the chain, against a density-matrix Lindblad integration written here; string
orders; the forward-backward trapezoid objective of the Transformer dynamics."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

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
