r"""Open quantum systems on POVM measurement probabilities (Carrasquilla et al.; Luo et al. 2022).

N qubits measured with a product of one informationally complete single-qubit POVM
``{M_a}_{a=1..4}`` (``M_a ≥ 0``, ``Σ_a M_a = I``). The state is the probability vector over the
``4^N`` outcomes::

    P(a_1..a_N) = Tr(ρ ⊗_i M_{a_i}),      ρ = Σ_a P(a) N_a,    N_a = Σ_b (T⁻¹)_{ab} M_b,
    T_{ab} = Tr(M_a M_b)                  (overlap; N_a the dual frame, Tr N_a = 1)

and the Lindblad equation ``ρ̇ = 𝓛ρ = −i[H, ρ] + Σ_k (L_k ρ L_k† − ½{L_k† L_k, ρ})`` becomes a
real linear ODE on the probabilities::

    Ṗ(b) = Σ_a 𝓛̃_{ba} P(a),     𝓛̃_{ba} = Tr(M_b 𝓛(N_a)),     P(t) = expm(𝓛̃ t) P(0).

``𝓛̃`` is not a rate matrix (negative off-diagonal entries occur; positivity holds only for
physical states), so CTMC code must never be used on it. POVMs (:func:`povm`): ``"tetrahedral"``
(SIC, ``M_a = ¼(I + s_a·σ)``, ``T⁻¹ = 6I − J``, ``N_a = ½I + (3/2)s_a·σ``) and ``"pauli4"``
(``M_1 = ⅓|0⟩⟨0|``, ``M_2 = ⅓|+⟩⟨+|``, ``M_3 = ⅓|+i⟩⟨+i|``, ``M_4 = I − M_1 − M_2 − M_3``).

The generator is assembled densely from the Liouvillian superoperator on ``vec(ρ)`` (row-major:
``vec(AXB) = (A ⊗ Bᵀ) vec(X)``), exact and cheap for N ≤ 5 (``4^N = 1024``). For the dissipative
transverse-field Ising chain (:func:`dissipative_ising_terms`)::

    H = (V/4) Σ_i σ^z_i σ^z_{i+1} + (g/2) Σ_i σ^x_i,     L_i = √γ σ^-_i,   σ^- = (X − iY)/2

(``σ^-`` maps ``|0⟩`` (σ^z = +1) to ``|1⟩``; periodic or open chain) the generator is linear in the
parameters, ``𝓛̃ = g A_g + V A_V + γ A_γ``, so the three real matrices are built once (complex
algebra in float64, imaginary parts checked to vanish) and a likelihood only forms the sum and
its matrix exponential (``jax.scipy.linalg.expm``, float64, or a fixed scaling-and-squaring
Taylor polynomial for cheap gradients; measurement times on a common grid share one exponential,
:func:`evolve`).

Reference: D. Luo, Z. Chen, J. Carrasquilla, B. K. Clark (2022), "Autoregressive neural network
for simulating open quantum systems via a probabilistic formulation", Phys. Rev. Lett. 128,
090501, arXiv:2009.05580.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = [
    "PAULI",
    "POVMS",
    "povm",
    "check_povm",
    "overlap",
    "dual_frame",
    "product_operators",
    "local_operator",
    "probabilities",
    "density_matrix",
    "liouvillian",
    "povm_generator",
    "IsingTerms",
    "dissipative_ising_terms",
    "LocalIsingTerms",
    "dissipative_ising_local_terms",
    "SIGMA_MINUS",
    "bond_blocks",
    "lattice_bonds",
    "merge_bonds",
    "LocalTerms",
    "XYZ_NAMES",
    "dissipative_xyz_local_terms",
    "embed_blocks",
    "string_order",
    "relabel_bonds",
    "local_generator_ratio",
    "trapezoid_ratio",
    "evolve",
    "expm_taylor",
    "squarings_for",
    "steady_state",
    "pauli_weights",
    "pauli_expectations",
    "product_state",
]

PAULI = {
    "I": np.eye(2, dtype=complex),
    "X": np.array([[0, 1], [1, 0]], dtype=complex),
    "Y": np.array([[0, -1j], [1j, 0]], dtype=complex),
    "Z": np.array([[1, 0], [0, -1]], dtype=complex),
}
SIGMA_MINUS = 0.5 * (PAULI["X"] - 1j * PAULI["Y"])  # σ^-: |0⟩ (σ^z = +1) -> |1⟩
POVMS = ("tetrahedral", "pauli4")


def _projector(v) -> np.ndarray:
    v = np.asarray(v, dtype=complex)
    v = v / np.linalg.norm(v)
    return np.outer(v, v.conj())


@functools.cache
def _povm(name: str) -> np.ndarray:
    if name == "tetrahedral":
        s = np.array([[0, 0, 1], [2 * np.sqrt(2) / 3, 0, -1 / 3], [-np.sqrt(2) / 3, np.sqrt(2 / 3), -1 / 3],
                      [-np.sqrt(2) / 3, -np.sqrt(2 / 3), -1 / 3]])
        return np.stack([0.25 * (PAULI["I"] + v[0] * PAULI["X"] + v[1] * PAULI["Y"] + v[2] * PAULI["Z"]) for v in s])
    m = [_projector([1, 0]) / 3, _projector([1, 1]) / 3, _projector([1, 1j]) / 3]
    return np.stack(m + [PAULI["I"] - sum(m)])


def povm(name: str) -> np.ndarray:
    """The single-qubit POVM ``(4, 2, 2)`` complex: ``"tetrahedral"`` or ``"pauli4"``."""
    if name not in POVMS:
        raise ValueError(f"povm: expected one of {POVMS}, got {name!r}")
    return _povm(name).copy()


def check_povm(elements) -> np.ndarray:
    """``elements`` as a ``(4, 2, 2)`` complex array after checking it is an informationally
    complete single-qubit POVM (Hermitian, positive semi-definite, summing to I, invertible
    overlap); a ``ValueError`` naming ``povm`` otherwise."""
    m = np.asarray(elements, dtype=complex)
    if m.shape != (4, 2, 2):
        raise ValueError(f"povm: expected 4 single-qubit elements, shape (4, 2, 2), got {m.shape}")
    if not np.allclose(m, np.conj(np.swapaxes(m, 1, 2)), atol=1e-12):
        raise ValueError("povm: expected Hermitian elements")
    if np.min(np.linalg.eigvalsh(m)) < -1e-12:
        raise ValueError("povm: expected positive semi-definite elements")
    if not np.allclose(m.sum(axis=0), np.eye(2), atol=1e-12):
        raise ValueError("povm: expected elements summing to the identity")
    if abs(np.linalg.det(overlap(m))) < 1e-12:
        raise ValueError("povm: expected an informationally complete POVM (invertible overlap T)")
    return m


def overlap(elements) -> np.ndarray:
    """``T_{ab} = Tr(M_a M_b)`` (real ``(4, 4)``)."""
    m = np.asarray(elements, dtype=complex)
    return np.real(np.einsum("aij,bji->ab", m, m))


def dual_frame(elements) -> np.ndarray:
    """``N_a = Σ_b (T⁻¹)_{ab} M_b`` ``(4, 2, 2)``, so that ``ρ = Σ_a P(a) N_a``."""
    m = np.asarray(elements, dtype=complex)
    return np.einsum("ab,bij->aij", np.linalg.inv(overlap(m)), m)


def _kron_all(ops) -> np.ndarray:
    out = np.ones((1, 1), dtype=complex)
    for op in ops:
        out = np.kron(out, op)
    return out


def product_operators(single, num_qubits: int) -> np.ndarray:
    """``⊗_i single[a_i]`` for every outcome string, ``(4^N, 2^N, 2^N)``; qubit 0 is the most
    significant digit of the outcome index (``a = Σ_i a_i 4^{N-1-i}``)."""
    single = np.asarray(single, dtype=complex)
    out = single
    for _ in range(int(num_qubits) - 1):
        out = np.einsum("aij,bkl->abikjl", out, single).reshape(
            out.shape[0] * 4, out.shape[1] * 2, out.shape[2] * 2)
    return out


def local_operator(op, site: int, num_qubits: int) -> np.ndarray:
    """``I ⊗ … ⊗ op (at site) ⊗ … ⊗ I`` (``2^N × 2^N``)."""
    return _kron_all([op if i == site else PAULI["I"] for i in range(int(num_qubits))])


def probabilities(rho, elements, num_qubits: int) -> np.ndarray:
    """``P(a) = Tr(ρ ⊗_i M_{a_i})`` ``(4^N,)`` (real part; the imaginary part vanishes for a
    Hermitian ρ)."""
    ops = product_operators(elements, num_qubits)
    return np.real(np.einsum("aij,ji->a", ops, np.asarray(rho, dtype=complex)))


def density_matrix(probs, elements, num_qubits: int) -> np.ndarray:
    """``ρ = Σ_a P(a) N_a`` from the POVM probabilities."""
    duals = product_operators(dual_frame(elements), num_qubits)
    return np.einsum("a,aij->ij", np.asarray(probs, dtype=complex), duals)


def liouvillian(hamiltonian, jumps) -> np.ndarray:
    """The Lindblad superoperator on row-major ``vec(ρ)`` (``d² × d²``):
    ``−i(H ⊗ I − I ⊗ Hᵀ) + Σ_k [L ⊗ L* − ½ (L†L ⊗ I) − ½ (I ⊗ (L†L)ᵀ)]``."""
    h = np.asarray(hamiltonian, dtype=complex)
    eye = np.eye(h.shape[0], dtype=complex)
    out = -1j * (np.kron(h, eye) - np.kron(eye, h.T))
    for jump in jumps:
        jump = np.asarray(jump, dtype=complex)
        n = jump.conj().T @ jump
        out += np.kron(jump, jump.conj()) - 0.5 * np.kron(n, eye) - 0.5 * np.kron(eye, n.T)
    return out


def povm_generator(superoperator, elements, num_qubits: int) -> np.ndarray:
    """``𝓛̃_{ba} = Tr(M_b 𝓛(N_a))`` (real ``(4^N, 4^N)``; the imaginary part is checked to be
    below 1e-10 of the largest entry)."""
    ops = product_operators(elements, num_qubits)
    duals = product_operators(dual_frame(elements), num_qubits)
    d = ops.shape[1]
    # Tr(M_b X) = Σ_ij (M_b)_ji X_ij = vec(M_bᵀ) · vec(X)
    rows = np.swapaxes(ops, 1, 2).reshape(ops.shape[0], d * d)
    cols = duals.reshape(duals.shape[0], d * d).T
    full = rows @ np.asarray(superoperator) @ cols
    scale = max(np.abs(full).max(), 1.0)
    if np.abs(full.imag).max() > 1e-10 * scale:
        raise ValueError(f"superoperator: the POVM generator has an imaginary part "
                         f"{np.abs(full.imag).max():.2e}; expected a Hermiticity-preserving Lindbladian")
    return np.ascontiguousarray(full.real)


class IsingTerms(NamedTuple):
    """``𝓛̃ = g * field + V * coupling + γ * dissipation`` (real ``(4^N, 4^N)`` each)."""

    field: np.ndarray
    coupling: np.ndarray
    dissipation: np.ndarray

    def generator(self, g, V, gamma):
        """The generator at ``(g, V, γ)`` (JAX arrays: traced parameters are fine)."""
        return _combine(self, g, V, gamma)


def _combine(terms, g, V, gamma):
    """``g * field + V * coupling + γ * dissipation`` of an :class:`IsingTerms` or
    :class:`LocalIsingTerms`."""
    return g * jnp.asarray(terms.field) + V * jnp.asarray(terms.coupling) + gamma * jnp.asarray(terms.dissipation)


@functools.cache
def dissipative_ising_terms(num_qubits: int, povm_name: str = "tetrahedral", periodic: bool = True) -> IsingTerms:
    """The three parts of the dissipative Ising chain's POVM generator (see the module docstring):
    ``field`` from ``½ Σ σ^x_i``, ``coupling`` from ``¼ Σ σ^z_i σ^z_{i+1}``, ``dissipation`` from
    ``L_i = σ^-_i``. Periodic chains need N >= 3 (a bond is not counted twice)."""
    n = int(num_qubits)
    if n < 1 or n > 5:
        raise ValueError(f"num_qubits: expected 1..5 (a dense 4^N generator), got {num_qubits!r}")
    m = povm(povm_name)
    field = 0.5 * sum(local_operator(PAULI["X"], i, n) for i in range(n))
    bonds = [(i, i + 1) for i in range(n - 1)]
    if periodic and n >= 3:
        bonds.append((n - 1, 0))
    coupling = 0.25 * sum((local_operator(PAULI["Z"], i, n) @ local_operator(PAULI["Z"], j, n) for i, j in bonds),
                          np.zeros((2**n, 2**n), dtype=complex))
    jumps = [local_operator(SIGMA_MINUS, i, n) for i in range(n)]
    return IsingTerms(povm_generator(liouvillian(field, []), m, n),
                      povm_generator(liouvillian(coupling, []), m, n),
                      povm_generator(liouvillian(np.zeros_like(field), jumps), m, n))


class LocalIsingTerms(NamedTuple):
    """The dissipative Ising generator as a sum of two-site blocks: ``𝓛̃ = Σ_k B_k`` with ``B_k``
    acting on the sites ``bonds[k] = (i, j)`` (identity elsewhere: ``Tr(M_b N_a) = δ_ab``) and
    ``B_k = g * field[k] + V * coupling[k] + γ * dissipation[k]`` (real ``(K, 16, 16)`` each; row
    and column ``4 a_i + a_j``). The single-site terms sit on one bond each (see
    :func:`dissipative_ising_local_terms`)."""

    bonds: np.ndarray
    field: np.ndarray
    coupling: np.ndarray
    dissipation: np.ndarray

    def blocks(self, g, V, gamma):
        """``(K, 16, 16)`` at ``(g, V, γ)`` (traced parameters are fine)."""
        return _combine(self, g, V, gamma)


@functools.cache
def dissipative_ising_local_terms(num_qubits: int, povm_name: str = "tetrahedral",
                                  periodic: bool = True) -> LocalIsingTerms:
    """The two-site blocks of :func:`dissipative_ising_terms`'s generator, for any chain length
    ``N >= 2`` (no ``4^N`` object is formed): bonds ``(i, i+1)`` (and ``(N-1, 0)`` on a ring,
    ``N >= 3``); the field ``½σ^x_i`` and the decay ``σ^-_i`` of site ``i`` go into the bond whose
    first site is ``i`` (on an open chain the last site's into the last bond, as its second
    site): :func:`bond_blocks`."""
    n = int(num_qubits)
    if n < 2:
        raise ValueError(f"num_qubits: expected a chain of at least 2 qubits, got {num_qubits!r}")
    m = povm(povm_name)
    bonds = np.asarray([(i, i + 1) for i in range(n - 1)] + ([(n - 1, 0)] if periodic and n >= 3 else []))
    zz = 0.25 * np.kron(PAULI["Z"], PAULI["Z"])
    return LocalIsingTerms(bonds, bond_blocks(bonds, n, m, site=0.5 * PAULI["X"]), bond_blocks(bonds, n, m, pair=zz),
                           bond_blocks(bonds, n, m, jumps=(SIGMA_MINUS,)))



def _check_bonds(bonds, num_qubits: int) -> np.ndarray:
    bonds = np.asarray(bonds)
    n = int(num_qubits)
    if bonds.ndim != 2 or bonds.shape[1] != 2 or bonds.shape[0] < 1 or not np.issubdtype(bonds.dtype, np.integer):
        raise ValueError(f"bonds: expected integer site pairs of shape (K, 2), got shape {bonds.shape}")
    if bonds.min() < 0 or bonds.max() >= n or np.any(bonds[:, 0] == bonds[:, 1]):
        raise ValueError(f"bonds: expected pairs of distinct sites in 0..{n - 1}, got {bonds.tolist()}")
    return bonds


def bond_blocks(bonds, num_qubits: int, elements, *, pair=None, site=None, jumps=()) -> np.ndarray:
    """The two-site POVM generator blocks ``(K, 16, 16)`` (row and column ``4 a_i + a_j`` on bond
    ``(i, j)``) of the Lindbladian with the two-site Hamiltonian ``pair`` (``4 × 4``, qubit ``i``
    first) on every bond, the one-site Hamiltonian ``site`` (``2 × 2``) and the jump operators
    ``jumps`` (``2 × 2`` each) on every site. Each site's one-site terms are counted once: in the
    first bond whose first site it is, else the first bond that holds it (every site must be on
    a bond). Each block is :func:`povm_generator` of that two-qubit Lindbladian; the ``4^N``
    generator is their sum embedded with the identity elsewhere (:func:`embed_blocks`), since
    ``Tr(M_b N_a) = δ_ab``."""
    n = int(num_qubits)
    bonds = _check_bonds(bonds, n)
    eye = PAULI["I"]
    owner = {}
    for k, (i, _) in enumerate(bonds):
        owner.setdefault(int(i), (k, 0))
    for k, (i, j) in enumerate(bonds):
        for s, slot in ((int(i), 0), (int(j), 1)):
            owner.setdefault(s, (k, slot))
    missing = sorted(set(range(n)) - set(owner))
    if missing and (site is not None or jumps):
        raise ValueError(f"bonds: every site needs a bond to carry its one-site terms; site {missing[0]} has none")
    out = []
    for k in range(len(bonds)):
        slots = [slot for s, (kk, slot) in sorted(owner.items()) if kk == k]
        h = np.zeros((4, 4), dtype=complex) if pair is None else np.asarray(pair, dtype=complex).copy()
        ops = []
        for slot in slots:
            embed = (lambda op, slot=slot: np.kron(op, eye) if slot == 0 else np.kron(eye, op))
            if site is not None:
                h = h + embed(np.asarray(site, dtype=complex))
            ops += [embed(np.asarray(jump, dtype=complex)) for jump in jumps]
        out.append(povm_generator(liouvillian(h, ops), elements, 2))
    return np.stack(out)


def lattice_bonds(rows: int, cols: int, periodic: bool = True) -> np.ndarray:
    """Nearest-neighbour bonds ``(K, 2)`` of a ``rows × cols`` square lattice, site ``r·cols + c``,
    in the convention of Luo et al.'s code (``lindblad_2d_dynamics.py``,
    ``reverse_samples_lindblad_2d_pbc``): for every site ``i`` (in order) the bond to its right
    neighbour and the bond to its lower neighbour, ``(i, right(i)), (i, down(i))``, wrapping around
    on a torus (``K = 2N``). A periodic direction of length 2 thus lists each of its pairs twice,
    ``(i, j)`` and ``(j, i)``: the Hamiltonian counts those couplings twice (on the periodic 2 × 2
    lattice every coupling is ``2J``), as the paper's code does. Open lattice: the bonds that do
    not wrap. ``rows, cols >= 2``."""
    for name, value in (("rows", rows), ("cols", cols)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
            raise ValueError(f"{name}: expected an integer >= 2, got {value!r}")
    out = []
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        for r2, c2 in ((r, c + 1), (r + 1, c)):
            if periodic or (r2 < rows and c2 < cols):
                out.append((i, (r2 % rows) * cols + c2 % cols))
    return np.asarray(out)


def merge_bonds(blocks, bonds) -> tuple[np.ndarray, np.ndarray]:
    """Blocks on the same pair of sites summed into one: ``(blocks (K', 16, 16), bonds (K', 2))``
    over the distinct unordered pairs in first-seen order (a block on ``(j, i)`` is re-indexed to
    ``(i, j)``: swap the two digits of row and column). The generator is unchanged; the local
    evaluations (:func:`local_generator_ratio`) drop to one per distinct pair."""
    blocks = np.asarray(blocks)
    index, merged, pairs = {}, [], []
    for block, (i, j) in zip(blocks, np.asarray(bonds)):
        key = (min(i, j), max(i, j))
        if i > j:
            block = block.reshape(4, 4, 4, 4).transpose(1, 0, 3, 2).reshape(16, 16)
        if key in index:
            merged[index[key]] = merged[index[key]] + block
        else:
            index[key] = len(merged)
            merged.append(block)
            pairs.append(key)
    return np.stack(merged), np.asarray(pairs)


class LocalTerms(NamedTuple):
    """A POVM generator linear in named coefficients, as two-site blocks: ``𝓛̃ = Σ_p c_p Σ_k
    parts[p, k]`` with ``parts[p, k]`` ``(16, 16)`` acting on the sites ``bonds[k]`` (identity
    elsewhere). ``names``: the coefficients, in order."""

    bonds: np.ndarray
    num_qubits: int
    names: tuple
    parts: np.ndarray

    def blocks(self, *coefficients):
        """``(K, 16, 16)`` at the coefficients (in the order of ``names``; traced values fine)."""
        if len(coefficients) != len(self.names):
            raise ValueError(f"coefficients: expected {len(self.names)} values {self.names}, got {len(coefficients)}")
        return jnp.tensordot(jnp.stack([jnp.asarray(c, dtype=float) for c in coefficients]),
                             jnp.asarray(self.parts), axes=1)

    def sparse(self, *coefficients):
        """The ``4^N × 4^N`` generator at the coefficients (``scipy.sparse`` CSR, :func:`embed_blocks`)."""
        return embed_blocks(np.asarray(self.blocks(*coefficients)), self.bonds, self.num_qubits)


XYZ_NAMES = ("Jx", "Jy", "Jz", "B", "gamma")


@functools.cache
def dissipative_xyz_local_terms(rows: int, cols: int, povm_name: str = "tetrahedral",
                                periodic: bool = True) -> LocalTerms:
    """The dissipative XYZ model on a ``rows × cols`` lattice (Luo et al.'s 2-D benchmark)::

        H = Σ_⟨ij⟩ (J_x σ^x_iσ^x_j + J_y σ^y_iσ^y_j + J_z σ^z_iσ^z_j) + B Σ_i σ^z_i,   L_i = √γ σ^-_i

    over the bonds of :func:`lattice_bonds` (the paper code's convention: on a periodic direction
    of length 2 each pair is counted twice), as :class:`LocalTerms` with ``names`` ``(Jx, Jy, Jz,
    B, gamma)``: one :func:`bond_blocks` call per term, the repeated pairs merged
    (:func:`merge_bonds`). Site ``i`` is ``r·cols + c``."""
    bonds = lattice_bonds(rows, cols, periodic)
    n = rows * cols
    m = povm(povm_name)
    parts = [bond_blocks(bonds, n, m, pair=np.kron(PAULI[p], PAULI[p])) for p in "XYZ"]
    parts += [bond_blocks(bonds, n, m, site=PAULI["Z"]), bond_blocks(bonds, n, m, jumps=(SIGMA_MINUS,))]
    merged = [merge_bonds(part, bonds) for part in parts]
    return LocalTerms(merged[0][1], n, XYZ_NAMES, np.stack([blocks for blocks, _ in merged]))


def embed_blocks(blocks, bonds, num_qubits: int):
    """``Σ_k B_k ⊗ I_rest``: the ``4^N × 4^N`` generator of two-site blocks ``(K, 16, 16)`` on
    ``bonds (K, 2)`` (``scipy.sparse`` CSR, ``16 K`` entries a row at most; ``.toarray()`` for the
    dense matrix). Row ``a`` (qubit 0 the most significant digit), column ``a`` with the bond's two
    digits replaced."""
    import scipy.sparse

    n = int(num_qubits)
    blocks = np.asarray(blocks, dtype=float)
    bonds = _check_bonds(bonds, n)
    size = 4**n
    index = np.arange(size)
    digits = (index[:, None] // 4 ** np.arange(n - 1, -1, -1)) % 4  # (4^N, N)
    rows, cols, vals = [], [], []
    b = np.arange(16)
    for block, (i, j) in zip(blocks, bonds):
        wi, wj = 4 ** (n - 1 - i), 4 ** (n - 1 - j)
        base = index - digits[:, i] * wi - digits[:, j] * wj
        rows.append(np.repeat(index, 16))
        cols.append((base[:, None] + (b // 4)[None, :] * wi + (b % 4)[None, :] * wj).ravel())
        vals.append(block[4 * digits[:, i] + digits[:, j]].ravel())
    return scipy.sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                   shape=(size, size)).tocsr()


def string_order(rows: int, cols: int, kind: str = "snake") -> np.ndarray:
    """The autoregressive order of a ``rows × cols`` lattice's sites (Luo et al.'s "string
    states"): ``order[s]`` is the lattice site (``r·cols + c``) at sequence position ``s``.
    ``"snake"``: boustrophedon, row 0 left to right, row 1 right to left, ... (lattice neighbours
    along a row stay adjacent in the sequence and each turn joins vertical neighbours);
    ``"rows"``: row-major, the identity. A sequence model of ``x = a[order]`` gives the lattice law
    ``P(a) = P_seq(a[order])``; the generator in sequence positions is the one on the bonds
    ``position[bonds]`` with ``position = argsort(order)`` (:func:`relabel_bonds`)."""
    if kind not in ("snake", "rows"):
        raise ValueError(f"kind: expected 'snake' or 'rows', got {kind!r}")
    grid = np.arange(int(rows) * int(cols)).reshape(int(rows), int(cols))
    if kind == "snake":
        grid[1::2] = grid[1::2, ::-1]
    return grid.ravel()


def relabel_bonds(bonds, order) -> np.ndarray:
    """The bonds in sequence positions: ``position[bonds]``, ``position = argsort(order)``
    (``order`` a permutation of the sites, :func:`string_order`)."""
    order = np.asarray(order)
    if order.ndim != 1 or not np.array_equal(np.sort(order), np.arange(order.size)):
        raise ValueError(f"order: expected a permutation of 0..N-1, got {order.tolist()}")
    return np.argsort(order)[np.asarray(bonds)]


def local_generator_ratio(blocks, bonds, log_prob, a):
    """``(𝓛̃P)(a) / P(a) = Σ_k Σ_{b ∈ 16} B_k[a_{ij}, b] P(a[ij ← b]) / P(a)`` for strings ``a``
    ``(S, N)`` (integers 0..3) from the two-site ``blocks (K, 16, 16)`` on ``bonds (K, 2)`` and a
    batched ``log_prob((M, N) strings) -> (M,)``: ``16 K`` evaluations of ``P`` per string, never a
    ``4^N`` vector. Ratios ``exp(log P(a') − log P(a))``; one bond at a time (``lax.scan`` with
    rematerialisation, so reverse-mode memory is that of one bond). Returns ``(ratio (S,),
    log P(a) (S,))``."""
    a = jnp.asarray(a)
    blocks = jnp.asarray(blocks)
    bonds = jnp.asarray(bonds)
    num, n = a.shape
    log_p = log_prob(a)
    pairs = jnp.stack(jnp.divmod(jnp.arange(16, dtype=a.dtype), 4), axis=-1)  # (16, 2): b -> (b_i, b_j)

    @jax.checkpoint
    def bond(total, inputs):
        block, (i, j) = inputs
        row = 4 * a[:, i] + a[:, j]
        primed = jnp.broadcast_to(a[:, None, :], (num, 16, n))
        primed = primed.at[:, :, i].set(pairs[None, :, 0]).at[:, :, j].set(pairs[None, :, 1])
        log_primed = log_prob(primed.reshape(num * 16, n)).reshape(num, 16)
        return total + jnp.sum(block[row] * jnp.exp(log_primed - log_p[:, None]), axis=-1), None

    zero = jnp.zeros(num, dtype=jnp.result_type(blocks, log_p))
    ratio, _ = jax.lax.scan(bond, zero, (blocks, (bonds[:, 0], bonds[:, 1])))
    return ratio, log_p


def trapezoid_ratio(blocks, bonds, log_prob, old_log_prob, a, tau: float):
    """The forward-backward trapezoid residual of Luo et al. over ``P(a)``::

        r(a) = [((1 − τ𝓛̃/2) P)(a) − ((1 + τ𝓛̃/2) P_old)(a)] / P(a)
             = 1 − (τ/2) R(a) − (P_old(a)/P(a)) (1 + (τ/2) R_old(a))

    with ``R = (𝓛̃P)/P`` and ``R_old = (𝓛̃P_old)/P_old`` from the two-site blocks
    (:func:`local_generator_ratio`), ``log_prob`` and ``old_log_prob`` batched log-laws of the new
    and the previous state. ``Σ_a P(a)|r(a)| = ‖(1 − τ𝓛̃/2)P − (1 + τ𝓛̃/2)P_old‖₁``, zero when
    ``P`` is the trapezoid (Crank–Nicolson) step of ``P_old``. Returns ``(r (S,), log P(a) (S,))``."""
    ratio, log_p = local_generator_ratio(blocks, bonds, log_prob, a)
    ratio_old, log_old = local_generator_ratio(blocks, bonds, old_log_prob, a)
    half = 0.5 * tau
    return 1.0 - half * ratio - jnp.exp(log_old - log_p) * (1.0 + half * ratio_old), log_p


def expm_taylor(matrix, *, squarings: int, terms: int = 12):
    """``expm(A)`` by scaling and squaring with a fixed Taylor polynomial: ``(Σ_{k<=m}
    (A/2^s)^k/k!)^{2^s}``. With ``‖A‖₁/2^s <= θ`` the truncation error is at most
    ``θ^{m+1} e^θ/(m+1)!`` relative (3e-14 for θ = 0.5, m = 12). Fixed ``s`` and ``m`` make it
    matrix products only: under reverse-mode differentiation about 25× cheaper than
    ``jax.scipy.linalg.expm`` (Padé with data-dependent scaling) on a 64 × 64 generator, measured;
    the caller picks ``s`` from a bound on the norm (:func:`squarings_for`)."""
    a = jnp.asarray(matrix) / 2.0 ** int(squarings)
    out = term = jnp.eye(a.shape[0], dtype=a.dtype)
    for k in range(1, int(terms) + 1):
        term = term @ a / k
        out = out + term
    for _ in range(int(squarings)):
        out = out @ out
    return out


def squarings_for(norm_bound: float, duration: float, theta: float = 0.5) -> int:
    """The number of squarings that brings ``norm_bound * duration / 2^s`` to ``theta`` or below."""
    scaled = float(norm_bound) * float(duration)
    return max(0, int(np.ceil(np.log2(scaled / theta)))) if scaled > theta else 0


def evolve(generator: Float[Array, "A A"], initial: Float[Array, " A"], times, *,
           max_powers: int = 64, norm_bound: float | None = None) -> Float[Array, "L A"]:
    """``P(t_k) = expm(𝓛̃ t_k) P(0)`` for increasing concrete times ``t_k > 0`` (float64).

    When every time is a whole multiple ``n_k δ`` of the smallest gap ``δ`` (and ``n_L <=
    max_powers``), ONE exponential ``E = expm(𝓛̃ δ)`` is formed and applied ``n_L`` times (a
    matrix-vector product each); otherwise one exponential per gap, applied in turn. The
    exponential is ``jax.scipy.linalg.expm``, or, given ``norm_bound`` (a bound on ``‖𝓛̃‖₁`` over
    the parameters of interest), :func:`expm_taylor` with the squarings that bound needs (cheap
    gradients; beyond the bound the error grows smoothly: ≤ 4e-10 at twice it)."""
    grid = np.asarray(times, dtype=float)
    if grid.ndim != 1 or grid.size < 1 or np.any(grid <= 0) or np.any(np.diff(grid) <= 0):
        raise ValueError(f"times: expected increasing positive times, got {grid.tolist()}")
    gen = jnp.asarray(generator)
    p0 = jnp.asarray(initial)
    gaps = np.diff(np.concatenate([[0.0], grid]))

    def exponential(duration):
        if norm_bound is None:
            return jax.scipy.linalg.expm(gen * duration)
        return expm_taylor(gen * duration, squarings=squarings_for(norm_bound, float(duration)))

    delta = gaps.min()
    steps = np.round(grid / delta)
    if np.allclose(steps * delta, grid, rtol=0, atol=1e-12 * grid.max()) and steps[-1] <= max_powers:
        power = exponential(delta)

        def apply(p, _):
            nxt = power @ p
            return nxt, nxt

        _, path = jax.lax.scan(apply, p0, None, length=int(steps[-1]))
        return path[steps.astype(int) - 1]
    out, p = [], p0
    for gap in gaps:  # the gaps are concrete: one exponential each
        p = exponential(gap) @ p
        out.append(p)
    return jnp.stack(out)


def steady_state(generator) -> np.ndarray:
    """The normalised null vector of ``𝓛̃`` (right singular vector of the smallest singular value,
    scaled to sum one)."""
    _, _, vh = np.linalg.svd(np.asarray(generator))
    v = vh[-1]
    return v / v.sum()


def product_state(vector, elements, num_qubits: int) -> np.ndarray:
    """``P(0)`` of the product state ``⊗|ψ⟩`` (``vector`` one qubit's amplitudes)."""
    single = np.real(np.einsum("aij,ji->a", np.asarray(elements, dtype=complex), _projector(vector)))
    out = single
    for _ in range(int(num_qubits) - 1):
        out = np.kron(out, single)
    return out


def pauli_weights(elements) -> np.ndarray:
    """``Tr(σ N_a)`` ``(4, 3)`` for the outcomes ``a`` of one qubit and ``σ = X, Y, Z``: the
    one-shot estimator of ``⟨σ⟩`` from an outcome (``N_a`` the dual frame)."""
    duals = dual_frame(elements)
    return np.real(np.stack([np.einsum("aij,ji->a", duals, PAULI[p]) for p in "XYZ"], axis=1))


def pauli_expectations(probs, elements, num_qubits: int, *, power: int = 1):
    """``⟨σ^x_i⟩, ⟨σ^y_i⟩, ⟨σ^z_i⟩`` per site, ``(N, 3)``, from the one-site marginals of ``P``
    (``Tr N_a = 1``, so the other sites drop out): ``Σ_a P_i(a) Tr(σ N_a)``. ``power=2`` gives
    ``Σ_a P_i(a) Tr(σ N_a)²``, the second moment of the one-shot estimator (its Monte Carlo spread)."""
    n = int(num_qubits)
    probs = jnp.asarray(probs).reshape((4,) * n)
    weights = pauli_weights(elements)
    marginals = jnp.stack([probs.sum(axis=tuple(j for j in range(n) if j != i)) for i in range(n)])  # (N, 4)
    return marginals @ jnp.asarray(weights**power)
