r"""Hidden Markov model with Gaussian or categorical emissions (the generic ``hmm`` family).

Model card
----------
A K-state Markov chain observed through state-dependent emissions, S independent sequences::

    z_0 ~ Categorical(π0)                     π0 uniform (fixed) or Dirichlet(1)
    z_t | z_{t-1} ~ Categorical(A[z_{t-1}])   A_k ~ Dirichlet(α_off + κ·e_k)  (sticky prior)
    y_t | z_t ~ Normal(μ[z_t], σ[z_t])        Gaussian, D-dimensional (independent components)
    y_t | z_t ~ Categorical(E[z_t])           categorical over O symbols

The latent path is summed out exactly with the forward algorithm (``inference.exact.hmm_filter``);
the program adds ``numpyro.factor("y", increments)`` with per-step log-likelihood increments of
shape ``(S, T)`` so that LOO / leave-future-out work per time step.

Label switching: the Gaussian means are ordered in their first component
(``OrderedTransform``); categorical emissions use logits with symbol 1 as reference (logit 0) and
the symbol-0 logit ordered across states. Both make the states identifiable.

=====================  =============================================  ==================
parameter              prior                                          small-config truth
=====================  =============================================  ==================
``transition_matrix``  rows Dirichlet(1 + 8·e_k)                      [[.9,.1],[.1,.9]]
``means`` (K, D)       first column ordered N(0, 3²); others N(0,3²)  (−1.5, 1.5)
``scales`` (K, D)      HalfNormal(1)                                  0.5
``emission_probs``     logits: ordered N(0,3²) col 0; N(0,3²) others  —
=====================  =============================================  ==================

Example::

    import jax, zoo, inference
    entry = zoo.get("hmm")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method="nuts", num_warmup=300, num_samples=300)

The reusable pieces (``categorical_log_likelihoods``, ``gaussian_log_likelihoods``,
``hmm_marginal_factor``, ``hmm_ssm``) serve other HMM entries (e.g. ``hmm_rnn``).
Reference: L. R. Rabiner (1989), "A tutorial on hidden Markov models", Proc. IEEE 77(2).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions.transforms import OrderedTransform

from inference import exact
from zoo.core import Check, Columns, Recipe, StateSpaceModel, ZooEntry, check_close, check_covers

__all__ = [
    "HMMConfig",
    "categorical_log_likelihoods",
    "gaussian_log_likelihoods",
    "hmm_marginal_factor",
    "hmm_increments",
    "hmm_ssm",
    "ENTRY",
]


@dataclasses.dataclass(frozen=True)
class HMMConfig:
    """Configuration of the generic HMM.

    emission: ``"gaussian"`` (``obs_dim`` components) or ``"categorical"`` (``num_symbols``).
    true_*: parameters used by ``simulate`` (tuples so the config stays hashable).
    """

    num_states: int = 2
    emission: str = "gaussian"
    obs_dim: int = 1
    num_symbols: int = 3
    num_series: int = 5
    num_steps: int = 100
    stickiness: float = 8.0
    prior_scale: float = 3.0
    true_transition: tuple = ((0.9, 0.1), (0.1, 0.9))
    true_means: tuple = ((-1.5,), (1.5,))
    true_scales: tuple = ((0.5,), (0.5,))
    true_emission_probs: tuple = ((0.7, 0.2, 0.1), (0.1, 0.2, 0.7))

    def __post_init__(self) -> None:
        if self.emission not in ("gaussian", "categorical"):
            raise ValueError(f"emission: expected 'gaussian' or 'categorical', got {self.emission!r}")
        if self.num_states < 2:
            raise ValueError(f"num_states: expected at least 2, got {self.num_states}")
        if self.emission == "categorical" and self.num_symbols < 2:
            raise ValueError(f"num_symbols: expected at least 2, got {self.num_symbols}")


# --------------------------------------------------------------------------------------------
# Reusable pieces
# --------------------------------------------------------------------------------------------


def categorical_log_likelihoods(emission_probs: jax.Array, ys: jax.Array) -> jax.Array:
    """``log E[k, y_t]`` for every state: ``(K, O)``, ``(T,)`` ints -> ``(T, K)``.

    ``y_t = -1`` marks a missing observation (row of zeros).
    """
    ys = jnp.asarray(ys)
    missing = ys < 0
    safe = jnp.where(missing, 0, ys).astype(jnp.int32)
    log_e = jnp.log(emission_probs)  # (K, O)
    out = log_e[:, safe].T  # (T, K)
    return jnp.where(missing[:, None], 0.0, out)


def gaussian_log_likelihoods(means: jax.Array, scales: jax.Array, ys: jax.Array) -> jax.Array:
    """``Σ_d log N(y_td; μ_kd, σ_kd)`` per state: ``(K,D)``, ``(K,D)``, ``(T,D)`` -> ``(T,K)``.

    NaN components of ``y_t`` are missing and contribute 0.
    """
    ys = jnp.asarray(ys)
    missing = jnp.isnan(ys)[:, None, :]  # (T, 1, D)
    filled = jnp.where(jnp.isnan(ys), 0.0, ys)[:, None, :]
    lp = dist.Normal(means[None], scales[None]).log_prob(filled)  # (T, K, D)
    return jnp.where(missing, 0.0, lp).sum(-1)


def hmm_increments(initial_probs: jax.Array, transition_matrix: jax.Array,
                   log_likelihoods: jax.Array) -> jax.Array:
    """Per-step log-likelihood increments ``(S, T)`` of S sequences by the forward algorithm."""
    def one(ll):
        return exact.hmm_filter(initial_probs, transition_matrix, ll).log_likelihood_increments

    return jax.vmap(one)(log_likelihoods)


def hmm_marginal_factor(initial_probs: jax.Array, transition_matrix: jax.Array,
                        log_likelihoods: jax.Array, name: str = "y") -> jax.Array:
    """Add ``numpyro.factor(name, increments)`` with the exact marginal of S sequences.

    Args:
        initial_probs: ``(K,)``; transition_matrix: ``(K, K)``; log_likelihoods: ``(S, T, K)``.
    Returns:
        increments ``(S, T)`` (``log p(y_t | y_{<t})``).
    """
    increments = hmm_increments(initial_probs, transition_matrix, log_likelihoods)
    numpyro.factor(name, increments)
    return increments


def _sticky_concentration(config: HMMConfig) -> jax.Array:
    k = config.num_states
    return jnp.ones((k, k)) + config.stickiness * jnp.eye(k)


def _sample_parameters(config: HMMConfig) -> dict:
    k = config.num_states
    transition = numpyro.sample("transition_matrix", dist.Dirichlet(_sticky_concentration(config)))
    params = {"transition_matrix": transition}
    if config.emission == "gaussian":
        base = dist.Normal(0.0, config.prior_scale).expand([k]).to_event(1)
        first = numpyro.sample("means_first", dist.TransformedDistribution(base, OrderedTransform()))
        if config.obs_dim > 1:
            rest = numpyro.sample(
                "means_rest", dist.Normal(0.0, config.prior_scale).expand([k, config.obs_dim - 1]).to_event(2)
            )
            means = jnp.concatenate([first[:, None], rest], axis=1)
        else:
            means = first[:, None]
        params["means"] = numpyro.deterministic("means", means)
        params["scales"] = numpyro.sample("scales", dist.HalfNormal(1.0).expand([k, config.obs_dim]).to_event(2))
    else:
        base = dist.Normal(0.0, config.prior_scale).expand([k]).to_event(1)
        first = numpyro.sample("logit_first", dist.TransformedDistribution(base, OrderedTransform()))
        logits = [first[:, None], jnp.zeros((k, 1))]
        if config.num_symbols > 2:
            rest = numpyro.sample(
                "logit_rest", dist.Normal(0.0, config.prior_scale).expand([k, config.num_symbols - 2]).to_event(2)
            )
            logits.append(rest)
        probs = jax.nn.softmax(jnp.concatenate(logits, axis=1), axis=-1)
        params["emission_probs"] = numpyro.deterministic("emission_probs", probs)
    return params


def _initial_probs(config: HMMConfig) -> jax.Array:
    return jnp.full((config.num_states,), 1.0 / config.num_states)


def _log_likelihoods(params: dict, data: jax.Array, config: HMMConfig) -> jax.Array:
    if config.emission == "gaussian":
        return jax.vmap(lambda ys: gaussian_log_likelihoods(params["means"], params["scales"], ys))(data)
    return jax.vmap(lambda ys: categorical_log_likelihoods(params["emission_probs"], ys))(data)


def validate_data(data, config: HMMConfig) -> jax.Array:
    """Check ``data`` against the config: ``(S, T, D)`` floats or ``(S, T)`` symbols in 0..O-1 / -1."""
    array = np.asarray(data)
    if config.emission == "gaussian":
        if array.ndim != 3 or array.shape[2] != config.obs_dim:
            raise ValueError(f"data: expected shape (series, time, {config.obs_dim}), got {array.shape}")
        if np.isinf(array).any():
            raise ValueError("data: infinite values are not allowed (use NaN for missing)")
        return jnp.asarray(array, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"data: expected symbols of shape (series, time), got {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError("data: categorical symbols must be integers (-1 for missing)")
        array = array.astype(np.int32)
    if array.min() < -1 or array.max() >= config.num_symbols:
        raise ValueError(
            f"data: symbols must lie in 0..{config.num_symbols - 1} (or -1 for missing); "
            f"got values in [{array.min()}, {array.max()}]"
        )
    return jnp.asarray(array, dtype=jnp.int32)


# --------------------------------------------------------------------------------------------
# Entry functions
# --------------------------------------------------------------------------------------------


def model(data=None, *, config: HMMConfig) -> None:
    """NumPyro program: parameters, then the exact marginal of the data (or a prior-predictive draw)."""
    params = _sample_parameters(config)
    initial = _initial_probs(config)
    if data is None:
        ssm = hmm_ssm(config)
        key = numpyro.prng_key()
        if key is None:  # inside an unseeded trace (e.g. shape inference)
            return
        keys = jax.random.split(key, config.num_series)
        _, ys = jax.vmap(lambda k: ssm.simulate(k, params, config.num_steps))(keys)
        numpyro.deterministic("y", ys)
        return
    data = validate_data(data, config)
    hmm_marginal_factor(initial, params["transition_matrix"], _log_likelihoods(params, data, config))


def exact_loglik(params: dict, data, config: HMMConfig) -> jax.Array:
    """``log p(y | params)`` summed over sequences, by the forward algorithm."""
    data = validate_data(data, config)
    increments = hmm_increments(_initial_probs(config), params["transition_matrix"],
                                _log_likelihoods(params, data, config))
    return increments.sum()


def hmm_ssm(config: HMMConfig) -> StateSpaceModel:
    """The HMM as a :class:`StateSpaceModel` (discrete state; for particle backends).

    Categorical observations are given as floats with NaN for missing in this form.
    """
    initial = _initial_probs(config)

    def prior():
        return _sample_parameters(config)

    def initial_dist(params):
        return dist.Categorical(probs=initial)

    def transition(params, t, z_prev):
        return dist.Categorical(probs=params["transition_matrix"][z_prev])

    def emission(params, t, z):
        if config.emission == "gaussian":
            return dist.Normal(params["means"][z], params["scales"][z]).to_event(1)
        return dist.Categorical(probs=params["emission_probs"][z])

    obs_shape = (config.obs_dim,) if config.emission == "gaussian" else ()
    return StateSpaceModel(prior=prior, initial=initial_dist, transition=transition, emission=emission,
                           state_shape=(), obs_shape=obs_shape, name="hmm")


def canonical_order(params: dict, config: HMMConfig) -> dict:
    """Relabel states into the model's identifiable order (the ordered emission quantity ascending).

    Gaussian: first mean component ascending; categorical: ``log(E[k,0] / E[k,1])`` ascending.
    The transition matrix is permuted on both axes.
    """
    if config.emission == "gaussian":
        key = params["means"][:, 0]
    else:
        key = jnp.log(params["emission_probs"][:, 0]) - jnp.log(params["emission_probs"][:, 1])
    order = jnp.argsort(key)
    out = dict(params)
    out["transition_matrix"] = params["transition_matrix"][order][:, order]
    for name in ("means", "scales", "emission_probs"):
        if name in params:
            out[name] = params[name][order]
    return out


def true_params(config: HMMConfig) -> dict:
    """The configured true parameters as arrays, states in canonical order."""
    params = {"transition_matrix": jnp.asarray(config.true_transition)}
    if config.emission == "gaussian":
        params["means"] = jnp.asarray(config.true_means)
        params["scales"] = jnp.asarray(config.true_scales)
    else:
        params["emission_probs"] = jnp.asarray(config.true_emission_probs)
    return canonical_order(params, config)


def simulate(key: jax.Array, config: HMMConfig):
    """Simulate ``num_series`` sequences from the true parameters; returns ``(data, truth)``."""
    params = true_params(config)
    ssm = hmm_ssm(config)
    keys = jax.random.split(key, config.num_series)
    zs, ys = jax.vmap(lambda k: ssm.simulate(k, params, config.num_steps))(keys)
    if config.emission == "categorical":
        ys = ys.astype(jnp.int32)
    truth = dict(params)
    truth["z"] = zs
    return ys, truth


def check(idata, truth: dict, config: HMMConfig) -> list[Check]:
    """Recovery: 90% intervals cover the truth; posterior means close to it."""
    checks = [
        check_covers(idata, "transition_matrix", truth["transition_matrix"]),
        check_close(idata, "transition_matrix", truth["transition_matrix"], tol=0.06),
    ]
    if config.emission == "gaussian":
        checks += [
            check_covers(idata, "means", truth["means"]),
            check_close(idata, "means", truth["means"], tol=0.15),
            check_covers(idata, "scales", truth["scales"]),
        ]
    else:
        checks += [
            check_covers(idata, "emission_probs", truth["emission_probs"]),
            check_close(idata, "emission_probs", truth["emission_probs"], tol=0.08),
        ]
    return checks


def channels(config: HMMConfig) -> tuple[str, ...] | str:
    """CSV names of the observation channels: ``y``/``y0..y{D-1}`` (Gaussian) or ``symbol``."""
    if config.emission == "categorical":
        return "symbol"
    return ("y",) if config.obs_dim == 1 else tuple(f"y{d}" for d in range(config.obs_dim))


SMALL = HMMConfig()
PAPER = HMMConfig(num_states=3, obs_dim=2, num_series=50, num_steps=1000,
                  true_transition=((0.95, 0.03, 0.02), (0.03, 0.94, 0.03), (0.02, 0.03, 0.95)),
                  true_means=((-2.0, 0.5), (0.0, -1.0), (2.0, 0.5)),
                  true_scales=((0.6, 0.6), (0.6, 0.6), (0.6, 0.6)))

ENTRY = ZooEntry(
    name="hmm",
    title="Hidden Markov model with Gaussian or categorical emissions",
    reference="doi:10.1109/5.18626",
    summary=(
        "A finite-state Markov chain seen through noisy, state-dependent emissions. The latent path "
        "is summed out exactly by the forward algorithm, so NUTS samples the transition matrix and "
        "emission parameters directly; states are made identifiable by ordering the emission means. "
        "The same model is available as a state-space model for the particle backends."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER,
             "categorical": HMMConfig(emission="categorical", num_series=10, num_steps=100)},
    # four chains so that stuck-chain screening has a majority: categorical emissions have
    # secondary modes that a chain started at the prior median can fall into
    recipe=Recipe("nuts", {"num_warmup": 300, "num_samples": 300, "num_chains": 4},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}),
    check=check,
    ssm=hmm_ssm,
    exact_loglik=exact_loglik,
    dims={"y": ("series", "time"), "transition_matrix": ("state_from", "state_to"),
          "means": ("state", "obs_dim"), "scales": ("state", "obs_dim"),
          "emission_probs": ("state", "symbol")},
    columns=Columns(channels, integer=lambda config: config.emission == "categorical", aliases=(("y0", "y"),),
                    validate=validate_data,
                    describe="Gaussian: floats (series, time, obs_dim); categorical: int symbols (series, time)",
                    names_doc="y0..y{D-1} (y when D = 1), or symbol (categorical)"),
)
