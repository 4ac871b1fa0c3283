r"""Stochastic-volatility benchmark of PaRIS particle Gibbs (entry ``ppg_stochastic_volatility``).

Model card
----------
One of the two models the PaRIS particle Gibbs paper (Cardoso, Janati El Idrissi, Le Corff, Moulines
& Olsson, ICML 2023, arXiv:2301.00900) exercises its algorithm on; the algorithm lives in
``inference.particle.paris`` (method ``"ppg"`` of ``inference.fit``).

``ppg_stochastic_volatility``: the stochastic-volatility sibling, no exact likelihood::

    x_0 ~ N(μ, σ² / (1 - φ²)),   x_t = μ + φ (x_{t-1} - μ) + σ η_t,   y_t ~ N(0, exp(x_t))

=============  ======================  =============
parameter      prior                   truth (small)
=============  ======================  =============
``mu``         Normal(0, 2)            -1.0
``phi``        Uniform(-0.99, 0.99)    0.9
``sigma``      HalfNormal(1)           0.5
=============  ======================  =============

Recovery check. ``ppg_stochastic_volatility`` (recipe: particle Gibbs):
90% intervals cover the truth and the posterior mean of φ is within 0.15 of it. Its pointwise
log-likelihood (for LOO) is a bootstrap filter's increments at every draw, with 500 particles: with
100, the filter's noise at the small config's largest return (t = 62, where the cloud collapses)
inflates that observation's PSIS Pareto k above 1 (1.35; 0.50 with 500 particles).

Recipe: particle Gibbs (conditional SMC with ancestor sampling, 64 particles) whose θ-step
interweaves (``interweave=True``, ``inference.particle.gibbs``): after NUTS on θ given the path, a
second NUTS move on θ with the path's standardised innovations held, the path following θ. Given
the path, σ is pinned by the path's innovations, and given σ the conditional SMC keeps a path of
that roughness, so the centred step alone creeps when the state noise is small; the non-centred
step moves σ with the data. Measured on ``small`` data (T = 500, seed 3, the same fit seed, one
run each): at σ = 0.1, φ = 0.9 without interweaving R-hat of σ is 1.42 and its bulk ESS 5 over
2000 draws, with it 1.02 and 121 (φ: 1.40 and 4, then 1.01 and 135); at the truth of ``small``
σ's bulk ESS goes from 36 to 213 and φ's from 87 to 294, in the same time (71 and 74 s). At
small σ the posterior of φ is wide (σ ≈ 0 leaves φ unidentified) and both NUTS moves diverge
at times (381 of 2000 draws at σ = 0.1, 230 of them in the centred move; none at σ = 0.5): one
adapted step size serves conditionals whose width changes with σ. A divergent trajectory ends
early and leaves the target invariant; a fit's ``diverging`` counts it.

Calibration: particle Gibbs samples the log-volatility path as one block and records it as ``x``
(``(chain, draw, time)``), the name and shape under which the prior predictive records its path;
``model(data)``'s own latent sites are ``x_init`` and ``x_rest``, which the prior predictive does
not draw. So simulation-based calibration ranks ``ENTRY.rank_sites``: ``mu``, ``phi``, ``sigma`` and
the path ``x`` (T elements; the sweep's tests are family-wise over all of them). The sweep stored in
``calibration/ppg_stochastic_volatility/small`` (n = 100 replicates, L = 99 draws; ``zoo sbc
ppg_stochastic_volatility --config small --n 100 --draws 99 --seed 0 --workers 2 --store``; about
75 CPU-s a replicate, 1.5 replicates a minute on 2 idle Dask workers) ran the interweaving recipe:
calibrated, no element flagged at the family-wise level 0.01. ``mu``: χ² p = 0.55 (20 bins);
``phi`` and ``sigma``: χ² p = 0.005 and 0.002, each from one bin of 13 ranks where 5 are expected
(ranks 15-19, different replicates for the two; the 10-bin χ² gives 0.11 and 0.06), ECDFs inside
their bands, 1-2 ranks at 0 or L. The path's 500 elements: none flagged (smallest χ² p 0.0012).
Over the 17 replicates whose true σ is below 0.2 the mean rank of σ is 37 (50 expected): the
posterior there leans above a small truth, mildly. Four fits have R-hat above 1.05 (one above
1.2); 48 have divergent transitions in the NUTS θ-moves (5638 in all; every one of the 17 fits
at true σ below 0.2 has some, 3530 of them, as above); their ranks are included. Centred
particle Gibbs alone (no interweaving) mixed too slowly at small σ to be calibrated: σ's ranks
piled at 0 where its truth was below 0.2. The docs' calibration page is generated from the
stored ranks.

Example::

    import jax, zoo, inference
    entry = zoo.get("ppg_stochastic_volatility")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, **{"method": entry.recipe.method, **entry.recipe.options})
    print([c for c in entry.check(idata, truth, entry.configs["small"])])
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from zoo.core import Check, Recipe, StateSpaceModel, ZooEntry, check_close, check_covers, check_ranges
from zoo.paris_particle_gibbs.series import COLUMNS, prior_predictive, validate_series


_PARAMS_SV = ("mu", "phi", "sigma")


@dataclasses.dataclass(frozen=True)
class SVConfig:
    """``ppg_stochastic_volatility`` configuration: T and the true parameters."""

    COUNTS: ClassVar[tuple[str, ...]] = ("num_steps",)
    POSITIVE: ClassVar[tuple[str, ...]] = ("true_sigma",)

    num_steps: int = 500
    true_mu: float = -1.0
    true_phi: float = 0.9
    true_sigma: float = 0.5

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.num_steps < 2:
            raise ValueError(f"num_steps: expected at least 2, got {self.num_steps}")
        if not -0.99 < self.true_phi < 0.99:
            raise ValueError(f"true_phi: expected a value in (-0.99, 0.99), got {self.true_phi}")
# --------------------------------------------------------------------------------------------
# ppg_stochastic_volatility
# --------------------------------------------------------------------------------------------


def _sv_prior() -> dict:
    return {
        "mu": numpyro.sample("mu", dist.Normal(0.0, 2.0)),
        "phi": numpyro.sample("phi", dist.Uniform(-0.99, 0.99)),
        "sigma": numpyro.sample("sigma", dist.HalfNormal(1.0)),
    }


def sv_ssm(config: SVConfig | None = None) -> StateSpaceModel:
    """The stochastic-volatility model as a :class:`StateSpaceModel`."""

    def initial(params):
        return dist.Normal(params["mu"], params["sigma"] / jnp.sqrt(1.0 - params["phi"] ** 2))

    def transition(params, t, x_prev):
        return dist.Normal(params["mu"] + params["phi"] * (x_prev - params["mu"]), params["sigma"])

    def emission(params, t, x):
        return dist.Normal(0.0, jnp.exp(0.5 * x))

    return StateSpaceModel(prior=_sv_prior, initial=initial, transition=transition, emission=emission,
                           state_shape=(), obs_shape=(), name="ppg_stochastic_volatility")


def sv_model(data=None, *, config: SVConfig) -> None:
    """NumPyro program with the latent log-volatility path (sites of :meth:`StateSpaceModel.model`)."""
    ssm = sv_ssm(config)
    if data is None:
        prior_predictive(ssm, ssm.prior(), config.num_steps)
        return
    ssm.model(validate_series(data))


def sv_simulate(key: jax.Array, config: SVConfig):
    """Simulate ``(y (T,), truth)``; ``truth`` also holds the log-volatility path ``x``."""
    params = {"mu": jnp.asarray(config.true_mu), "phi": jnp.asarray(config.true_phi),
              "sigma": jnp.asarray(config.true_sigma)}
    xs, ys = sv_ssm(config).simulate(key, params, config.num_steps)
    return ys, {**params, "x": xs}


def sv_check(idata, truth: dict, config: SVConfig) -> list[Check]:
    """90% intervals of μ, φ, σ cover the truth; posterior mean of φ within 0.15 of it."""
    return [check_covers(idata, name, truth[name]) for name in _PARAMS_SV] + [
        check_close(idata, "phi", truth["phi"], tol=0.15)]


ENTRY = ZooEntry(
    name="ppg_stochastic_volatility",
    title="State and parameter learning with PaRIS particle Gibbs: stochastic volatility",
    reference="arXiv:2301.00900",
    summary=(
        "The classic stochastic-volatility model: a mean-reverting AR(1) log-variance drives zero-mean "
        "Gaussian returns. No exact likelihood exists, so the particle backends (particle Gibbs, PMMH, "
        "PPG smoothing, SMC²) do the work; it is the nonlinear sibling of ppg_lgssm."
    ),
    model=sv_model,
    simulate=sv_simulate,
    configs={"small": SVConfig(), "paper": SVConfig(num_steps=1000, true_mu=-1.02, true_phi=0.97, true_sigma=0.18)},
    recipe=Recipe(
        "pgibbs",
        {"num_particles": 64, "num_samples": 1000, "num_warmup": 300, "num_chains": 2, "theta_kernel": "nuts",
         "interweave": True, "loglik_particles": 500},
        {"num_particles": 256, "num_samples": 5000, "num_warmup": 1000, "num_chains": 4, "theta_kernel": "nuts",
         "interweave": True, "loglik_particles": 1000},
    ),
    check=sv_check,
    ssm=sv_ssm,
    exact_loglik=None,
    dims={"y": ("time",), "x": ("time",)},
    columns=COLUMNS,
    rank_sites=(*_PARAMS_SV, "x"),
)
