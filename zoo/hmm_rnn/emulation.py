r"""Noise-driven RNNs trained to emulate the ``hmm_rnn`` HMMs, and their analysis (Torre et al. 2025).

**Emulation study.** A noise-driven, bias-free ReLU RNN (``zoo.nets.rnn.NoiseDrivenRNN``:
h_t = ReLU(W_hh h_{t−1} + W_ih x_t), x_t ~ N(0, I_d), logits = A h_t, y_t = hard straight-through
Gumbel-softmax) is trained with optax to make its one-hot output sequences indistinguishable
from the HMM's: loss = debiased Sinkhorn divergence (``inference.losses``, cost ½‖·‖²,
blur 0.2, ε = 0.04) between a batch of RNN sequences and a batch of HMM sequences, each flattened
to a T·K vector. Zoo extension (``RNNConfig.transition_weight`` λ; λ = 0 is the paper's loss):
``+ λ (‖F − F*‖² + ‖f − f*‖²)`` with F = mean_{b,t} o_t ⊗ o_{t+1} and f = mean_{b,t} o_t the pooled
pair and symbol frequencies of the batch's straight-through one-hots and F*, f* those of the HMM
training set (:func:`transition_statistics_penalty`); at CPU batch sizes the Sinkhorn term alone
left max ``|ΔP(y_{t+1} | y_t)|`` at 0.07–0.10 (spec: < 0.05). :func:`emulation_problem` builds
``(loss_fn, init_params, make_batch, optimizer)`` for ``inference.train.train``;
:func:`emulation_checks` compares emission statistics; :func:`analyse_emulator` gives fixed
points, orbit radii under noise and kick units.

Torre, Viscione, Pompe, Grewe & Mante, "Mechanistic interpretability of RNNs emulating hidden
Markov models", NeurIPS 2025, arXiv:2510.25674 (code: EliaTorre/hmmrnn).

Example::

    import jax
    from inference.train import train
    from zoo.hmm_rnn import CONFIGS, RNN_CONFIGS, emulation_problem, generate, emulation_checks
    problem = emulation_problem(jax.random.PRNGKey(0), CONFIGS["chain3"], RNN_CONFIGS["small"])
    # train(problem.loss_fn, problem.init_params, problem.make_batch, problem.optimizer, problem.num_steps)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from inference.losses import sinkhorn_divergence
from inference.validate import positive_int
from zoo.core import Check
from zoo.hmm_rnn.hmms import HMMRNNConfig, architecture, simulate_sequences, validate_hmm, validate_symbols
from zoo.nets import rnn as rnn_net


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
            positive_int(name, getattr(self, name))

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
    statistics: L1(frequencies) < 0.05; max ``|ΔP(y_{t+1} | y_t)|`` < 0.05; run length within 20%."""
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


#: ``small``: the spec's network (50 units, 10 noise inputs) with batches of 512 and 2000 steps
#: (learning rate 3e-3, cosine decay) and the transition-statistics term at λ = 10⁴: about 3.5 min
#: on one CPU core. Measured on chain3 (emulation_checks of 5000 generated sequences; L1 of
#: frequencies / max ``|ΔP(y_{t+1} | y_t)|`` / run-length error): λ = 0: 0.036 / 0.097 / 0.20 (the
#: Sinkhorn term alone stays short of the HMM's stay probability 0.75; batches of 1024 for 1500
#: steps, 9 min, reached 0.018–0.024 / 0.07 / 0.15); λ = 100, 300, 1000, 3000, 10⁴ (seed 0):
#: 0.045 / 0.028, 0.047 / 0.028, 0.045 / 0.020, 0.035 / 0.024, 0.029 / 0.013 (run length within 4%);
#: λ = 10⁴, seed 1: 0.001 / 0.034 (0.015 on 20 000 sequences) / 0.009. ``paper``: λ = 0.
RNN_CONFIGS = {
    "small": RNNConfig(batch_size=512, num_train_steps=2000, learning_rate=3e-3, lr_schedule="cosine"),
    "paper": RNNConfig(hidden_size=150, noise_dim=100, num_sequences=10_000, batch_size=4096,
                       num_train_steps=500 * 3, learning_rate=1e-3, grad_clip=0.9, transition_weight=0.0),
}
