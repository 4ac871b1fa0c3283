r"""Amortised zero-shot estimator of Markov jump processes (FIM-style, at our scale).

A flax network trained on MJPs simulated from a broad prior over rate matrices (C = 2..6 padded to 6, random irreducible adjacency, log-normal rates, Dirichlet
``pi0``, regular and irregular grids, label noise) maps observed paths to a Gaussian over each
log-rate and to ``pi0``; trained ``small`` weights ship in ``zoo/data/mjp_estimator_small.npz``
(:func:`load_estimator`, :func:`estimate_rates`). This module holds the network, the training
prior's simulator and the loss (:func:`estimator_training_problem`); the training driver, which
runs ``inference.train`` and writes the weights, is ``scripts/train_mjp_estimator.py``.

Reference: D. Berghaus, K. Cvejoski, P. Seifner, C. Ojeda, R. J. Sánchez, "Foundation Inference
Models for Markov Jump Processes", NeurIPS 2024, arXiv:2406.06419.

Example::

    import jax, zoo
    from zoo.markov_jump import load_estimator, estimate_rates
    entry = zoo.get("mjp_dfr")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    est = estimate_rates(load_estimator("small"), data, num_states=6, horizon=config.t_end)
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
import optax

from zoo.nets.mlp import MLP
from zoo.nets.sequence import AttentionPool, BiGRUEncoder, masked_mean
from zoo.processes import ctmc
from zoo.processes.ctmc import MJPObservations
from zoo.markov_jump.dfr import DFRConfig, dfr_mask, dfr_parameters_from_rates
from zoo.markov_jump.observations import as_observations


# Time is normalised per dataset: the estimator sees times divided by the observation horizon
# (so every window is [0, 1]) and predicts log-rates in units of 1/horizon; estimate_rates
# converts back (log q = log q_normalised - log horizon). The training prior is stated in those
# normalised units.

_WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")


@dataclasses.dataclass(frozen=True)
class EstimatorConfig:
    """Training prior, architecture and optimiser of the amortised MJP estimator.

    Prior over datasets (normalised time, window [0, 1]): ``C ~ U{2..max_states}``, links with
    probability ``link_prob`` (irreducible), ``log mu ~ U(log mu_low, log mu_high)``,
    ``log q_ij ~ N(log mu, log_rate_scale^2)``, ``pi0 ~ Dirichlet(1)``; between ``min_paths`` and
    ``num_paths`` paths with ``num_obs`` observations each, on a regular grid, a random subset of
    the lattice of spacing ``lattice_resolution``, or sorted uniform times (equally likely);
    label noise ``rho ~ U(0, max_noise)`` (uniform over the other states).
    Network (:class:`MJPEstimatorNet`): a per-path encoder (``encoder="window"``: each
    observation's local window; ``"gru"``: a bidirectional GRU of width ``gru_hidden``), step
    features of width ``embed`` pooled per path and across paths (attention pooling with
    ``num_queries`` learned queries), and per-link / per-state decoders (``decoder_hidden``) that
    refine the naive count-based rate estimate into a Gaussian over each log-rate, a link logit
    and the pi0 logits. Loss: Gaussian NLL of the log-rates on the true links + link BCE + pi0
    cross-entropy, padding masked. ``small`` uses the window encoder (trains in minutes on CPU).
    """

    max_states: int = 6
    num_paths: int = 300
    min_paths: int = 16
    num_obs: int = 50
    lattice_resolution: float = 0.01
    max_noise: float = 0.05
    link_prob: float = 0.8
    mu_low: float = 0.2
    mu_high: float = 3.0
    log_rate_scale: float = 0.75
    max_jumps: int = 160
    encoder: str = "window"
    gru_hidden: int = 32
    embed: int = 32
    num_queries: int = 4
    num_heads: int = 2
    decoder_hidden: tuple = (64, 64)
    batch_size: int = 8
    num_steps: int = 2000
    learning_rate: float = 2e-3
    seed: int = 0

    @property
    def prior_mean_log_rate(self) -> float:
        """E[log q_ij] under the training prior: the constant-prediction baseline."""
        return 0.5 * (np.log(self.mu_low) + np.log(self.mu_high))

    @property
    def prior_sd_log_rate(self) -> float:
        span = np.log(self.mu_high) - np.log(self.mu_low)
        return float(np.sqrt(span ** 2 / 12.0 + self.log_rate_scale ** 2))


ESTIMATOR_CONFIGS = {
    "small": EstimatorConfig(),
    # the FIM layout (300 paths, LSTM-size encoder, 16 queries); for an accelerator
    "paper": EstimatorConfig(num_paths=300, min_paths=16, num_obs=100, encoder="gru", gru_hidden=256, embed=256,
                             num_queries=16, num_heads=4, decoder_hidden=(128, 128), batch_size=64,
                             num_steps=200_000, learning_rate=1e-4, max_noise=0.02),
}


class MJPDataset(NamedTuple):
    """One simulated dataset for the estimator (normalised time), inputs and targets.

    times (P, L), states (P, L) int (-1 missing), path_mask (P,) bool, num_states () int;
    targets: log_rates (C, C), link_mask (C, C) bool, initial_probs (C,), valid () bool (False when
    a path ran out of its jump budget: the dataset is dropped from the loss).
    """

    times: jax.Array
    states: jax.Array
    path_mask: jax.Array
    num_states: jax.Array
    log_rates: jax.Array
    link_mask: jax.Array
    initial_probs: jax.Array
    valid: jax.Array


def sample_dataset(key: jax.Array, config: EstimatorConfig) -> MJPDataset:
    """One dataset from the estimator's training prior (jit/vmap-able; see :class:`EstimatorConfig`)."""
    k_gen, k_grid, k_kind, k_paths, k_noise, k_rho, k_num = jax.random.split(key, 7)
    g = ctmc.sample_random_generator(
        k_gen, max_states=config.max_states, link_prob=config.link_prob,
        log_mu_low=float(np.log(config.mu_low)), log_mu_high=float(np.log(config.mu_high)),
        log_rate_scale=config.log_rate_scale)
    P, L = config.num_paths, config.num_obs
    kind = jax.random.randint(k_kind, (), 0, 3)
    grid_keys = jax.random.split(k_grid, P)
    regular = jnp.broadcast_to(ctmc.regular_grid(0.0, 1.0, L), (P, L))
    lattice = jax.vmap(lambda k: ctmc.lattice_subset_grid(k, 1.0, L, config.lattice_resolution))(grid_keys)
    uniform = jax.vmap(lambda k: ctmc.uniform_grid(k, 0.0, 1.0, L))(grid_keys)
    times = jnp.select([kind == 0, kind == 1], [regular, lattice], uniform)

    def one(k, tau):
        k_sim, k_obs = jax.random.split(k)
        path = ctmc.simulate_path(k_sim, g.rate_matrix, g.initial_probs, 1.0, max_jumps=config.max_jumps)
        return ctmc.state_at(path, tau), path.exceeded

    labels, exceeded = jax.vmap(one)(jax.random.split(k_paths, P), times)
    rho = jax.random.uniform(k_rho, (), maxval=config.max_noise)
    labels = ctmc.add_label_noise(k_noise, labels, rho, g.num_states)
    num = jax.random.randint(k_num, (), config.min_paths, P + 1)
    path_mask = jnp.arange(P) < num
    return MJPDataset(times=times, states=labels, path_mask=path_mask, num_states=g.num_states,
                      log_rates=g.log_rates, link_mask=g.mask, initial_probs=g.initial_probs,
                      valid=~jnp.any(exceeded & path_mask))


def _step_features(times: jax.Array, states: jax.Array, max_states: int) -> jax.Array:
    """(P, L, 3C + 5) per-observation inputs: previous, current and next label (one-hot; zeros for
    missing or beyond the ends), gap before and after, log gap before, time, first-step flag."""
    onehot = jax.nn.one_hot(states, max_states)  # -1 -> zeros
    zeros = jnp.zeros_like(onehot[:, :1])
    prev = jnp.concatenate([zeros, onehot[:, :-1]], axis=1)
    nxt = jnp.concatenate([onehot[:, 1:], zeros], axis=1)
    gaps = jnp.diff(times, axis=1, prepend=0.0)
    gaps_after = jnp.concatenate([gaps[:, 1:], jnp.zeros_like(gaps[:, :1])], axis=1)
    first = jnp.zeros_like(times).at[:, 0].set(1.0)
    return jnp.concatenate(
        [onehot, prev, nxt, gaps[..., None], gaps_after[..., None], jnp.log(gaps + 1e-3)[..., None],
         times[..., None], first[..., None]], axis=-1)


class EstimatorOutput(NamedTuple):
    """Network outputs in normalised time: Gaussian over each log-rate, link logits, pi0 logits."""

    log_rate_mean: jax.Array  # (C, C)
    log_rate_log_var: jax.Array  # (C, C)
    link_logits: jax.Array  # (C, C)
    initial_logits: jax.Array  # (C,)


def transition_statistics(times: jax.Array, states: jax.Array, path_mask: jax.Array, max_states: int):
    """Pooled empirical statistics of P observed paths (the inputs of the rate decoder).

    Over consecutive observed pairs ``(x_{l-1}, x_l)`` of the paths in ``path_mask``:
    ``counts[i, j]`` (C, C) number of i -> j pairs (i = j: stays), ``exposure[i]`` (C,) summed gaps
    after an observation of i, ``first[i]`` (C,) how many paths are first seen in i and
    ``blips[i, j]`` (C, C) the excursions i -> j -> i over one observation (what label noise
    produces, besides short real visits). The naive
    rate estimate ``(counts_ij + 1/2) / (exposure_i + 1/20)`` is the maximum-likelihood estimate for
    gaps short against 1/rate and no label noise, regularised; the network learns the correction.
    """
    onehot = jax.nn.one_hot(states, max_states, dtype=jnp.float32) * path_mask[:, None, None]
    counts = jnp.einsum("pli,plj->ij", onehot[:, :-1], onehot[:, 1:])
    gaps = jnp.diff(times, axis=1).astype(jnp.float32)
    exposure = jnp.einsum("pli,pl->i", onehot[:, :-1] * (onehot[:, 1:].sum(-1, keepdims=True) > 0), gaps)
    first = onehot[:, 0].sum(0)
    blips = jnp.einsum("pli,plj,pli->ij", onehot[:, :-2], onehot[:, 1:-1], onehot[:, 2:])
    return counts, exposure, first, blips


class MJPEstimatorNet(nn.Module):
    """Recognition network: P observed paths -> :class:`EstimatorOutput` (one dataset).

    1. Per path: a learned encoder of each observation's local window (``"window"``: previous,
       current and next label with gaps; ``"gru"``: a bidirectional GRU over the path) gives step
       features, mean-pooled (softplus, then log) into a path embedding.
    2. Across paths: attention pooling with learned queries -> a dataset context vector.
    3. Per link (i, j): a shared MLP maps [naive log-rate, log counts, log exposure, context,
       one-hot i and j] to the log-rate mean (a residual on the naive estimate), its log-variance
       and the link logit; per state, a shared MLP gives the pi0 logit (residual on the first-label
       counts). Sharing across links makes the decoder independent of the state labelling.
    """

    max_states: int = 6
    encoder: str = "window"
    gru_hidden: int = 32
    embed: int = 32
    num_queries: int = 4
    num_heads: int = 2
    decoder_hidden: tuple = (64, 64)

    @nn.compact
    def __call__(self, times, states, path_mask, num_states) -> EstimatorOutput:
        C = self.max_states
        f32 = jnp.float32  # float32 network (fast on CPU) even though the zoo runs JAX in float64
        times = times.astype(f32)
        x = _step_features(times, states, C).astype(f32)
        if self.encoder == "gru":
            h = BiGRUEncoder(hidden=self.gru_hidden)(x, jnp.ones(states.shape, dtype=bool))
            step_in, ends = jnp.concatenate([h, x], -1), [h[:, 0], h[:, -1]]
        elif self.encoder == "window":
            step_in, ends = x, [x[:, 0]]
        else:
            raise ValueError(f"encoder: expected 'gru' or 'window', got {self.encoder!r}")
        feats = MLP(hidden=(self.embed,), out_features=self.embed, activation="gelu")(step_in)
        per_path = jax.nn.softplus(feats).mean(axis=1)
        path_emb = nn.gelu(nn.Dense(self.embed)(jnp.concatenate([jnp.log(per_path + 1e-4)] + ends, axis=-1)))
        pooled = AttentionPool(num_queries=self.num_queries, num_heads=self.num_heads)(path_emb, path_mask)
        num_paths = path_mask.sum().astype(f32)
        live = (jnp.arange(C) < num_states).astype(f32)
        context = jnp.concatenate([pooled, jnp.log(masked_mean(per_path, path_mask, axis=0) + 1e-4),
                                   jax.nn.one_hot(num_states - 2, C - 1, dtype=f32), jnp.log(num_paths)[None]])
        context = nn.gelu(nn.Dense(self.embed)(context))

        counts, exposure, first, blips = transition_statistics(times, states, path_mask, C)
        naive = jnp.log(counts + 0.5) - jnp.log(exposure + 0.05)[:, None]
        log_counts = jnp.log1p(counts)
        eye = jnp.eye(C, dtype=f32)
        off_total = (counts * (1 - eye)).sum()
        blip_rate = jnp.log((blips.sum() + 0.5) / (off_total + 1.0))
        context = jnp.concatenate([context, blip_rate[None]])
        link_in = jnp.concatenate([
            naive[..., None], log_counts[..., None], jnp.log1p(blips)[..., None], jnp.log1p(blips.T)[..., None],
            jnp.broadcast_to(jnp.log1p(exposure)[:, None, None], (C, C, 1)),
            jnp.broadcast_to(jnp.diag(log_counts)[:, None, None], (C, C, 1)),
            jnp.broadcast_to(eye[:, None, :], (C, C, C)), jnp.broadcast_to(eye[None, :, :], (C, C, C)),
            jnp.broadcast_to(context, (C, C, context.shape[0]))], axis=-1)
        link_out = MLP(hidden=tuple(self.decoder_hidden), out_features=3, activation="gelu", zero_last=True)(link_in)
        mean = naive + link_out[..., 0]
        # start from the Poisson variance of a log-count, 1/(n + 1), plus a floor
        log_var = jnp.log(1.0 / (counts + 1.0) + 0.02) + link_out[..., 1]
        link_logits = 2.0 * (log_counts - 0.5) + link_out[..., 2]

        state_in = jnp.concatenate([jnp.log(first + 0.5)[:, None], jnp.log1p(counts.sum(1))[:, None], eye,
                                    jnp.broadcast_to(context, (C, context.shape[0]))], axis=-1)
        state_out = MLP(hidden=tuple(self.decoder_hidden), out_features=1, activation="gelu", zero_last=True)(state_in)
        initial_logits = jnp.log(first + 0.5) + state_out[:, 0] + jnp.log(live + 1e-12)
        return EstimatorOutput(
            log_rate_mean=mean,
            log_rate_log_var=jnp.clip(log_var, -9.0, 4.0),
            link_logits=link_logits,
            initial_logits=initial_logits,
        )


def _network(config: EstimatorConfig) -> MJPEstimatorNet:
    return MJPEstimatorNet(max_states=config.max_states, encoder=config.encoder, gru_hidden=config.gru_hidden,
                           embed=config.embed,
                           num_queries=config.num_queries, num_heads=config.num_heads,
                           decoder_hidden=tuple(config.decoder_hidden))


def init_estimator_params(key: jax.Array, config: EstimatorConfig):
    """Freshly initialised network parameters for ``config``."""
    d = jax.eval_shape(lambda k: sample_dataset(k, config), key)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), d)
    return _network(config).init(key, zeros.times, zeros.states, zeros.path_mask | True,
                                 jnp.asarray(config.max_states))


def _live_pairs(num_states, C):
    live = jnp.arange(C) < num_states
    return live, live[:, None] & live[None, :] & ~jnp.eye(C, dtype=bool)


def estimator_loss_terms(out: EstimatorOutput, d: MJPDataset) -> dict:
    """Per-dataset loss terms: Gaussian NLL of the log-rates on true links, link BCE on live pairs,
    cross-entropy of pi0 on live states (padding masked out everywhere)."""
    C = out.initial_logits.shape[-1]
    live, pairs = _live_pairs(d.num_states, C)
    links = d.link_mask
    resid2 = (d.log_rates - out.log_rate_mean) ** 2
    nll = 0.5 * (resid2 * jnp.exp(-out.log_rate_log_var) + out.log_rate_log_var + np.log(2 * np.pi))
    nll = jnp.where(links, nll, 0.0).sum() / jnp.maximum(links.sum(), 1)
    bce = optax.sigmoid_binary_cross_entropy(out.link_logits, links.astype(out.link_logits.dtype))
    bce = jnp.where(pairs, bce, 0.0).sum() / jnp.maximum(pairs.sum(), 1)
    logp0 = jax.nn.log_softmax(jnp.where(live, out.initial_logits, -1e9))
    ce = -jnp.where(live, d.initial_probs * logp0, 0.0).sum()
    sq = jnp.where(links, resid2, 0.0).sum() / jnp.maximum(links.sum(), 1)
    return {"nll": nll, "bce": bce, "ce": ce, "mse": sq}


def _batch_loss(params, batch: MJPDataset, config: EstimatorConfig):
    net = _network(config)
    outs = jax.vmap(lambda d: net.apply(params, d.times, d.states, d.path_mask, d.num_states))(batch)
    terms = jax.vmap(estimator_loss_terms)(outs, batch)
    w = batch.valid.astype(terms["nll"].dtype)
    total = terms["nll"] + terms["bce"] + terms["ce"]
    return (w * total).sum() / jnp.maximum(w.sum(), 1.0)


def sample_batch(key: jax.Array, config: EstimatorConfig, batch_size: int | None = None) -> MJPDataset:
    """``batch_size`` independent datasets (leading axis)."""
    n = config.batch_size if batch_size is None else batch_size
    return jax.vmap(lambda k: sample_dataset(k, config))(jax.random.split(key, n))


_sample_batch_jit = jax.jit(sample_batch, static_argnums=(1, 2))


class EstimatorTrainingProblem(NamedTuple):
    """Inputs of ``inference.train.train(loss_fn, init_params, make_batch, optimizer, num_steps,
    seed=seed)`` for the amortised estimator (the training driver is
    ``scripts/train_mjp_estimator.py``: ``zoo`` itself never imports ``inference.train``).

    loss_fn(params, batch, key) -> scalar: the masked loss of :func:`estimator_loss_terms`
        averaged over the batch's valid datasets; make_batch(key, step) -> :class:`MJPDataset`
        with a leading axis of ``config.batch_size`` fresh prior draws (jitted);
    optimizer: gradient-norm clipping at 1, then AdamW (weight decay 1e-4) with a cosine decay of
        the learning rate from ``config.learning_rate`` to 5% over ``config.num_steps``;
    init_params: a fresh network initialisation (key ``PRNGKey(config.seed + 1)``);
    num_steps, seed: ``config.num_steps`` and ``config.seed``.
    """

    loss_fn: Any
    init_params: Any
    make_batch: Any
    optimizer: optax.GradientTransformation
    num_steps: int
    seed: int
    config: EstimatorConfig


@functools.lru_cache(maxsize=8)
def _training_objects(config: EstimatorConfig):
    """(loss_fn, make_batch, optimizer) of a config; the same objects per config, so the jitted
    update of ``inference.train`` is reused when a run resumes in the same process."""
    schedule = optax.cosine_decay_schedule(config.learning_rate, max(config.num_steps, 1), alpha=0.05)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))

    def loss_fn(p, batch, key):
        return _batch_loss(p, batch, config)

    def make_batch(key, step):
        return _sample_batch_jit(key, config, config.batch_size)

    return loss_fn, make_batch, optimizer


def estimator_training_problem(config: EstimatorConfig | str = "small") -> EstimatorTrainingProblem:
    """Everything the training loop needs for the estimator of ``config`` (a name of
    :data:`ESTIMATOR_CONFIGS` or an :class:`EstimatorConfig`); see :class:`EstimatorTrainingProblem`."""
    if isinstance(config, str):
        if config not in ESTIMATOR_CONFIGS:
            raise ValueError(f"config: expected one of {sorted(ESTIMATOR_CONFIGS)} or an EstimatorConfig, "
                             f"got {config!r}")
        config = ESTIMATOR_CONFIGS[config]
    if not isinstance(config, EstimatorConfig):
        raise TypeError(f"config: expected an EstimatorConfig or a name, got {type(config).__name__}")
    loss_fn, make_batch, optimizer = _training_objects(config)
    params = init_estimator_params(jax.random.PRNGKey(config.seed + 1), config)
    return EstimatorTrainingProblem(loss_fn, params, make_batch, optimizer, int(config.num_steps),
                                    int(config.seed), config)


class Estimator(NamedTuple):
    """A trained amortised estimator: its config and network parameters."""

    config: EstimatorConfig
    params: Any


def estimator_arrays(params, config: EstimatorConfig, losses=None) -> dict[str, np.ndarray]:
    """The weights file's content (``np.savez_compressed(stream, **arrays)``, read back by
    :func:`load_estimator`): ``"param:a/b/kernel"`` float32 arrays of the flattened flax params,
    ``"config:<field>"`` for every :class:`EstimatorConfig` field and optionally ``"losses"``."""
    from flax.traverse_util import flatten_dict

    flat = {"param:" + "/".join(k): np.asarray(v, dtype=np.float32) for k, v in flatten_dict(params).items()}
    fields = {f"config:{f.name}": np.asarray(getattr(config, f.name)) for f in dataclasses.fields(config)}
    extra = {} if losses is None else {"losses": np.asarray(losses, dtype=np.float32)}
    return {**flat, **fields, **extra}


def load_estimator(name_or_path: str = "small") -> Estimator:
    """Load shipped weights by name (``zoo/data/mjp_estimator_<name>.npz``) or from a path.

    No network access; raises ``FileNotFoundError`` naming the file if absent.
    """
    from flax.traverse_util import unflatten_dict

    path = name_or_path
    if not os.path.exists(path):
        path = os.path.join(_WEIGHTS_DIR, f"mjp_estimator_{name_or_path}.npz")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"name_or_path: no estimator weights {name_or_path!r} (looked for {path}); train them with "
            "`python scripts/train_mjp_estimator.py --config small --weights PATH`")
    with np.load(path, allow_pickle=False) as archive:
        params = unflatten_dict({tuple(k[len("param:"):].split("/")): jnp.asarray(archive[k], dtype=jnp.float64)
                                 for k in archive.files if k.startswith("param:")})
        kwargs = {}
        for f in dataclasses.fields(EstimatorConfig):
            key = f"config:{f.name}"
            if key in archive.files:
                value = archive[key]
                kwargs[f.name] = tuple(value.tolist()) if value.ndim else value.item()
    return Estimator(config=EstimatorConfig(**kwargs), params=params)


class RateEstimate(NamedTuple):
    """Amortised estimate in the data's time units.

    log_rate_mean, log_rate_sd: (C, C) Gaussian over each log-rate (diagonal meaningless);
    link_prob: (C, C) probability that the link exists; initial_probs: (C,);
    rate_matrix: (C, C) generator from ``exp(log_rate_mean)`` on ``mask`` (the given mask, or
    links with ``link_prob > 0.5``).
    """

    log_rate_mean: np.ndarray
    log_rate_sd: np.ndarray
    link_prob: np.ndarray
    initial_probs: np.ndarray
    rate_matrix: np.ndarray


@functools.partial(jax.jit, static_argnums=(0,))
def _apply_subsets(config, params, times, states, path_mask, num_states):
    net = _network(config)
    return jax.vmap(lambda t, s, m: net.apply(params, t, s, m, num_states))(times, states, path_mask)


def estimate_rates(estimator: Estimator, data, num_states: int, *, horizon: float | None = None,
                   mask=None, num_subsets: int = 16, seed: int = 0) -> RateEstimate:
    """Zero-shot estimate of the rate matrix and pi0 from observed paths (no MCMC, no training).

    Times are divided by ``horizon`` (default: the largest observation time) before the network
    and the log-rates shifted back by ``-log(horizon)``. Any number of observations per path is
    accepted (the encoders pool over time), but the network was trained with ``config.num_obs``;
    far from it the estimate is an extrapolation. With more paths than the network was trained on
    (``config.num_paths``), the paths are split into ``num_subsets`` random subsets of that size
    and the outputs averaged (means and pi0 averaged; the sd is that of one subset scaled by
    ``sqrt(subset size / P)``, the usual 1/sqrt(n) approximation). ``mask``: the known links
    (default: links with ``link_prob > 0.5``) used to build ``rate_matrix``.
    """
    config = estimator.config
    obs = data if isinstance(data, MJPObservations) else ctmc.make_observations(*data)
    times, states = np.asarray(obs.times, dtype=float), np.asarray(obs.states)
    if not isinstance(num_states, (int, np.integer)) or not 2 <= num_states <= config.max_states:
        raise ValueError(f"num_states: expected an integer in 2..{config.max_states}, got {num_states!r}")
    if states.max() >= num_states:
        raise ValueError(f"data: labels up to {states.max()} but num_states={num_states}")
    if times.shape[1] < 2:
        raise ValueError(f"data: expected at least 2 observations per path, got {times.shape[1]}")
    horizon = float(times.max()) if horizon is None else float(horizon)
    if not horizon > 0:
        raise ValueError(f"horizon: expected a positive time, got {horizon}")
    P = times.shape[0]
    size = min(P, config.num_paths)
    rng = np.random.default_rng(seed)
    subsets = [np.arange(P)] if P <= config.num_paths else [rng.permutation(P)[:size] for _ in range(num_subsets)]
    pad = config.num_paths - size
    t_sub = np.stack([np.pad(times[idx] / horizon, ((0, pad), (0, 0))) for idx in subsets])
    s_sub = np.stack([np.pad(states[idx], ((0, pad), (0, 0)), constant_values=-1) for idx in subsets])
    m_sub = np.stack([np.arange(config.num_paths) < size for _ in subsets])
    out = _apply_subsets(config, estimator.params, jnp.asarray(t_sub), jnp.asarray(s_sub), jnp.asarray(m_sub),
                         jnp.asarray(num_states))
    C = num_states
    mean = np.asarray(out.log_rate_mean).mean(0)[:C, :C] - np.log(horizon)
    sd = np.sqrt(np.exp(np.asarray(out.log_rate_log_var)).mean(0))[:C, :C] * np.sqrt(size / P)
    link_prob = np.asarray(jax.nn.sigmoid(out.link_logits)).mean(0)[:C, :C]
    pi0 = np.asarray(jax.nn.softmax(out.initial_logits[:, :C], axis=-1)).mean(0)
    off = ~np.eye(C, dtype=bool)
    use = (link_prob > 0.5) & off if mask is None else np.asarray(mask, dtype=bool) & off
    rates = np.where(use, np.exp(mean), 0.0)
    Q = rates - np.diag(rates.sum(1))
    return RateEstimate(log_rate_mean=np.where(off, mean, 0.0), log_rate_sd=np.where(off, sd, 0.0),
                        link_prob=np.where(off, link_prob, 0.0), initial_probs=pi0, rate_matrix=Q)


class HeldOutErrors(NamedTuple):
    """Per-dataset errors on held-out simulated MJPs (normalised time units).

    mse_net, mse_baseline: (N,) mean squared error of the log-rates over each dataset's true links,
    for the network's mean and for the constant prediction ``config.prior_mean_log_rate``;
    nll_net, nll_baseline: (N,) Gaussian NLL per link (baseline: the prior's mean and sd);
    valid: (N,) datasets without a jump-budget overflow.
    """

    mse_net: np.ndarray
    mse_baseline: np.ndarray
    nll_net: np.ndarray
    nll_baseline: np.ndarray
    valid: np.ndarray


@functools.partial(jax.jit, static_argnums=(0, 3))
def _heldout_terms(config: EstimatorConfig, params, key, num_datasets: int):
    """Loss terms of the network and of the prior baseline on ``num_datasets`` fresh prior draws
    (one compiled function: simulation, network and scoring)."""
    batch = sample_batch(key, config, num_datasets)
    net = _network(config)
    outs = jax.vmap(lambda d: net.apply(params, d.times, d.states, d.path_mask, d.num_states))(batch)
    base = EstimatorOutput(
        log_rate_mean=jnp.full_like(outs.log_rate_mean, config.prior_mean_log_rate),
        log_rate_log_var=jnp.full_like(outs.log_rate_log_var, 2 * np.log(config.prior_sd_log_rate)),
        link_logits=outs.link_logits, initial_logits=outs.initial_logits)
    return (jax.vmap(estimator_loss_terms)(outs, batch), jax.vmap(estimator_loss_terms)(base, batch),
            batch.valid)


def heldout_errors(estimator: Estimator, key: jax.Array, num_datasets: int = 64) -> HeldOutErrors:
    """Score the estimator against the constant-prediction baseline on fresh prior draws."""
    if isinstance(num_datasets, bool) or not isinstance(num_datasets, (int, np.integer)) or num_datasets < 1:
        raise ValueError(f"num_datasets: expected a positive integer, got {num_datasets!r}")
    net_terms, base_terms, valid = _heldout_terms(estimator.config, estimator.params, key, int(num_datasets))
    return HeldOutErrors(mse_net=np.asarray(net_terms["mse"], dtype=float),
                         mse_baseline=np.asarray(base_terms["mse"], dtype=float),
                         nll_net=np.asarray(net_terms["nll"], dtype=float),
                         nll_baseline=np.asarray(base_terms["nll"], dtype=float),
                         valid=np.asarray(valid))


def dfr_amortised_estimate(estimator: Estimator, data, config: DFRConfig, *, num_subsets: int = 16,
                           seed: int = 0) -> dict:
    """The estimator's zero-shot (V, r, b), entropy production and per-link log-rates on DFR data.

    The rate matrix is read on the DFR's known links; (V, r, b) by
    :func:`dfr_parameters_from_rates`. Returns ``{"V", "r", "b", "entropy_production",
    "estimate": RateEstimate}``.
    """
    obs = as_observations(data, config)
    est = estimate_rates(estimator, obs, 6, horizon=config.t_end, mask=dfr_mask(), num_subsets=num_subsets,
                         seed=seed)
    params = {k: float(v) for k, v in dfr_parameters_from_rates(est.rate_matrix).items()}
    params["entropy_production"] = float(ctmc.entropy_production_rate(jnp.asarray(est.rate_matrix)))
    params["estimate"] = est
    return params
