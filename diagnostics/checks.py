"""Convergence and reliability verdicts for an ``arviz.InferenceData``: ok, warn or fail.

Each ``check_*`` function reads one part of an ``InferenceData`` and returns a list of
:class:`Verdict` (one per posterior variable where the check is per variable). A variable with
many elements (a latent path) is reduced to its worst element, named with its index in the
message, so a 500-step path gives one line, not 500. :func:`run_checks` applies every check whose
inputs are present; :func:`overall` folds verdicts into one status and :func:`format_verdicts`
prints them as an aligned table in which a failure is impossible to miss.

Default thresholds (all overridable through :func:`run_checks`' keywords, see :class:`Thresholds`):

=================  =====================================  ======================================
check              warn                                   fail
=================  =====================================  ======================================
R-hat (rank)       > 1.01 (Vehtari et al. 2021)           > 1.05 (ours; older practice used 1.1)
ESS bulk / tail    < 100 per chain (Vehtari et al. 2021)  < 10 per chain (ours)
divergences        any (Stan: cannot be safely ignored)   > 0.1 % of post-warmup draws (ours)
E-BFMI             < 0.3 (Betancourt 2016; Stan)          < 0.2 (this library's choice)
particle ESS       worst step < N/10                      worst step < max(N/100, 2): collapse
Pareto k (LOO)     > min(1 - 1/log10 S, 0.7)              > 1 (importance ratios lack a mean;
                   (Vehtari et al. 2024, PSIS)            PSIS-LOO invalid for that point)
MH acceptance      < 0.05 or > 0.95 (ours; see below)     a chain below 0.01 (it barely moves)
=================  =====================================  ======================================

References: Vehtari, Gelman, Simpson, Carpenter, Bürkner (2021), "Rank-normalization, folding,
and localization: an improved R-hat", Bayesian Analysis; Betancourt (2016), "Diagnosing
suboptimal cotangent disintegrations in Hamiltonian Monte Carlo", arXiv:1604.00695; Vehtari,
Simpson, Gelman, Yao, Gabry (2024), "Pareto smoothed importance sampling", JMLR; Roberts,
Gelman, Gilks (1997) and Sherlock, Thiery, Roberts, Rosenthal (2015) for random-walk and
pseudo-marginal acceptance rates.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple

from diagnostics._arviz import az
import numpy as np

__all__ = [
    "Verdict",
    "Thresholds",
    "STATUSES",
    "DRAWS",
    "run_attrs",
    "draws_kind",
    "element_labels",
    "check_rhat",
    "check_ess_bulk",
    "check_ess_tail",
    "check_divergences",
    "check_log_density",
    "check_stuck_chains",
    "check_ebfmi",
    "check_particle_ess",
    "check_pareto_k",
    "check_acceptance",
    "run_checks",
    "overall",
    "format_verdicts",
    "element_label",
    "label_at",
    "screen_elements",
    "relative_ess",
    "stats_quietly",
]

Status = Literal["ok", "warn", "fail"]
STATUSES: tuple[str, ...] = ("ok", "warn", "fail")
_RANK = {"ok": 0, "warn": 1, "fail": 2}

#: What a run's ``draw`` axis holds, as its runner records it in ``attrs["draws"]``:
#: ``"markov"``: Markov chains (NUTS, PMMH, particle Gibbs); every check applies.
#: ``"iid"``: independent draws from an approximation (SVI guide samples, resampled SMC
#: particles, exact samplers): R-hat and ESS say nothing about them and are not applied.
#: ``"point"``: the parameters are a point (given or estimated), not posterior draws; the draw
#: axis holds one draw or independent replicates at that point (particle-filter runs). Neither
#: the Markov-chain checks nor PSIS-LOO (which needs posterior draws of the parameters) apply,
#: and a log-evidence read from such a run is a likelihood at fixed parameters.
DRAWS: tuple[str, ...] = ("markov", "iid", "point")

# Files written before the runners recorded attrs["draws"] say only attrs["method"]; these two
# methods wrote non-Markov draws then. Read-only compatibility: nothing new is keyed on it.
_DRAWS_BEFORE_ATTR = {"svi": "iid", "pf": "point"}


class Verdict(NamedTuple):
    """One diagnostic verdict.

    Attributes:
        name: what was checked, e.g. ``"R-hat sigma"``.
        status: ``"ok"``, ``"warn"`` or ``"fail"``.
        value: the measured figure (worst element / worst chain / worst step); NaN when the
            check could not be computed (the message says why).
        threshold: the threshold the value was held against: the fail threshold when the status
            is ``"fail"``, otherwise the warn threshold.
        message: one line a reader can act on (worst index, counts, what to do).
    """

    name: str
    status: Status
    value: float
    threshold: float
    message: str


class Thresholds(NamedTuple):
    """Every threshold :func:`run_checks` uses; see the module docstring for their sources."""

    rhat_warn: float = 1.01
    rhat_fail: float = 1.05
    ess_warn_per_chain: float = 100.0
    ess_fail_per_chain: float = 10.0
    divergence_fail_fraction: float = 0.001
    ebfmi_warn: float = 0.3
    ebfmi_fail: float = 0.2
    particle_ess_warn: float = 0.1
    particle_ess_fail: float = 0.01
    particle_ess_min: float = 2.0
    pareto_k_warn: float | None = None  # None: ArviZ's sample-size dependent min(1-1/log10 S, .7)
    pareto_k_fail: float = 1.0
    acceptance_low: float = 0.05
    acceptance_high: float = 0.95
    acceptance_fail: float = 0.01


# --------------------------------------------------------------------------------------------
# helpers


def element_label(var: str, dims: Sequence[str], coords: Sequence[Any]) -> str:
    """``"x[time=17, state=0]"`` for element ``coords`` of ``var`` over ``dims`` (``var`` if scalar)."""
    if not dims:
        return var
    # ArviZ's default dim names (``beta_dim_0``) add nothing to the index: print ``beta[0]``.
    parts = ", ".join(_fmt_coord(c) if str(d).startswith(f"{var}_dim_") else f"{d}={_fmt_coord(c)}"
                      for d, c in zip(dims, coords))
    return f"{var}[{parts}]"


def element_labels(name: str, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """``[(label, index)]`` of every scalar element of a variable ``name`` of ``shape``: ``"mu"``
    for a scalar, ``"A[0,1]"`` for element ``(0, 1)`` (the labels of ranks and stored results)."""
    if not shape:
        return [(name, ())]
    return [(f"{name}[{','.join(map(str, idx))}]", idx) for idx in np.ndindex(*shape)]


def _fmt_coord(value: Any) -> str:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def run_attrs(idata: az.InferenceData) -> dict[str, Any]:
    """The run's attributes: the posterior's (or sample_stats') group attrs, updated with the
    ``InferenceData``-level ``attrs`` (where ``zoo`` records entry and config)."""
    merged: dict[str, Any] = {}
    for group in ("sample_stats", "posterior"):
        if group in idata.groups():
            merged.update(idata[group].attrs)
    merged.update(getattr(idata, "attrs", None) or {})
    return merged


def draws_kind(idata: az.InferenceData) -> str:
    """What the run's draws are (:data:`DRAWS`): ``attrs["draws"]`` (see :func:`run_attrs`).

    Without the attribute (files written before runners recorded it) ``"markov"``, except the
    two methods that wrote other draws then (``method="svi"``: ``"iid"``; ``"pf"``: ``"point"``).
    """
    attrs = run_attrs(idata)
    value = attrs.get("draws")
    if value is None:
        return _DRAWS_BEFORE_ATTR.get(str(attrs.get("method", "")), "markov")
    value = str(value)
    if value not in DRAWS:
        raise ValueError(f"attrs['draws']: expected one of {list(DRAWS)}, got {value!r}")
    return value


def _group(idata: az.InferenceData, group: str):
    if not isinstance(idata, az.InferenceData):
        raise TypeError(f"idata: expected arviz.InferenceData, got {type(idata).__name__}")
    if group not in idata.groups():
        raise KeyError(f"idata: has no {group!r} group; groups present: {idata.groups()}")
    return idata[group]


def _select_vars(dataset, var_names: Sequence[str] | None, group: str) -> list[str]:
    available = list(dataset.data_vars)
    if var_names is None:
        return available
    if isinstance(var_names, str):
        var_names = [var_names]
    unknown = [v for v in var_names if v not in dataset.data_vars]
    if unknown:
        raise KeyError(f"var_names: {unknown} not in the {group} group; have {available}")
    return list(var_names)


def _chains_draws(dataset) -> tuple[int, int]:
    return int(dataset.sizes.get("chain", 1)), int(dataset.sizes.get("draw", 1))


def _worst_index(values: np.ndarray, worst: str) -> tuple[int, ...]:
    """Index of the nan-ignoring maximum (``worst="max"``) or minimum of ``values``."""
    flat = np.nanargmax(values) if worst == "max" else np.nanargmin(values)
    return tuple(int(i) for i in np.unravel_index(flat, values.shape))


def label_at(da, var: str, index: tuple[int, ...]) -> str:
    """:func:`element_label` of element ``index`` (over the non-(chain, draw) dims) of ``da``."""
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    coords = [da.coords[d].values[i] if d in da.coords else i for d, i in zip(dims, index)]
    return element_label(var, dims, coords)


def stats_quietly(func, *args, **kwargs):
    """Call an ArviZ statistic with its RuntimeWarnings (constant elements) silenced."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


def screen_elements(da) -> tuple[np.ndarray, np.ndarray]:
    """Masks over a variable's elements: (non-finite draws present, constant over all draws).

    A constant element (all draws equal and finite) has no R-hat or ESS, and a pointwise
    log-likelihood constant over draws has equal importance ratios (LOO is exact there).
    """
    values = np.asarray(da.transpose("chain", "draw", ...).values, dtype=float)
    nonfinite = ~np.all(np.isfinite(values), axis=(0, 1))
    with np.errstate(all="ignore"):
        constant = np.all(values == values[:1, :1], axis=(0, 1)) & ~nonfinite
    return nonfinite, constant


def _screen_verdict(name: str, var: str, da, nonfinite, constant, threshold) -> Verdict | None:
    """A verdict for variables that cannot be judged element-wise, else None."""
    if nonfinite.any():
        index = tuple(int(i) for i in np.argwhere(nonfinite)[0]) if nonfinite.ndim else ()
        return Verdict(name, "fail", math.nan, threshold,
                       f"non-finite draws (NaN/inf) in {int(nonfinite.sum())} of {nonfinite.size} "
                       f"element(s), first at {label_at(da, var, index)}: the sampler produced "
                       f"invalid values")
    if constant.all():
        return Verdict(name, "warn", math.nan, threshold,
                       "constant across every chain and draw: a stuck sampler, or a deterministic "
                       "constant that needs no check")
    return None


def _constant_note(constant: np.ndarray) -> str:
    count = int(np.sum(constant))
    return f"; {count} constant element(s) skipped" if count else ""


def _status_above(value: float, warn: float, fail: float) -> tuple[Status, float]:
    if value > fail:
        return "fail", fail
    if value > warn:
        return "warn", warn
    return "ok", warn


def _status_below(value: float, warn: float, fail: float) -> tuple[Status, float]:
    if value < fail:
        return "fail", fail
    if value < warn:
        return "warn", warn
    return "ok", warn


def _validate_thresholds(warn: float, fail: float, name: str, higher_is_worse: bool) -> None:
    for label, value in (("warn", warn), ("fail", fail)):
        if not np.isfinite(value):
            raise ValueError(f"{name}: {label} threshold must be finite, got {value}")
    if higher_is_worse and fail < warn:
        raise ValueError(f"{name}: fail threshold {fail} must be >= warn threshold {warn}")
    if not higher_is_worse and fail > warn:
        raise ValueError(f"{name}: fail threshold {fail} must be <= warn threshold {warn}")


# --------------------------------------------------------------------------------------------
# per-variable MCMC checks


def check_rhat(idata: az.InferenceData, *, var_names: Sequence[str] | None = None,
               warn: float = 1.01, fail: float = 1.05) -> list[Verdict]:
    """Rank-normalised split R-hat (Vehtari et al. 2021) of each posterior variable.

    Each variable's verdict is its worst (largest) element: warn above ``warn`` (1.01, the
    paper's recommendation), fail above ``fail`` (1.05). With a single chain R-hat cannot compare
    chains: one ``warn`` verdict says so (nothing is computed, nothing crashes).

    Returns:
        one :class:`Verdict` per variable (or a single one for a single-chain run).
    """
    _validate_thresholds(warn, fail, "check_rhat", higher_is_worse=True)
    posterior = _group(idata, "posterior")
    names = _select_vars(posterior, var_names, "posterior")
    chains, draws = _chains_draws(posterior)
    if chains < 2:
        return [Verdict("R-hat", "warn", math.nan, warn,
                        f"only {chains} chain: R-hat needs at least 2 chains to compare; run "
                        f"several chains to check convergence")]
    if draws < 4:
        return [Verdict("R-hat", "warn", math.nan, warn,
                        f"only {draws} draws per chain: R-hat needs at least 4")]
    rhat = stats_quietly(az.rhat, posterior[names])
    return _per_variable(
        posterior, names, rhat, "R-hat", warn, fail, worst="max",
        describe=lambda value, where, size, note: (f"max R-hat {value:.3f}{where} over {size} element(s); "
                                                   f"warn > {warn:g}, fail > {fail:g}{note}"))


def _per_variable(posterior, names, statistic, label: str, warn: float, fail: float, *, worst: str,
                  describe) -> list[Verdict]:
    """One verdict per variable from ``statistic`` (an ArviZ dataset of per-element values): its
    worst element (``worst``: ``"max"`` or ``"min"``) against the thresholds; non-finite or
    constant elements are screened first. ``describe(value, where, size, note)`` words the verdict."""
    status_of = _status_above if worst == "max" else _status_below
    verdicts = []
    for var in names:
        da = posterior[var]
        name = f"{label} {var}"
        if da.size == 0:
            continue
        nonfinite, constant = screen_elements(da)
        screened = _screen_verdict(name, var, da, nonfinite, constant, warn)
        if screened is not None:
            verdicts.append(screened)
            continue
        values = np.where(constant, np.nan, np.asarray(statistic[var].values, dtype=float))
        if not np.any(np.isfinite(values)):
            verdicts.append(Verdict(name, "fail", math.nan, fail, f"{label} is undefined (NaN)"))
            continue
        index = _worst_index(values, worst)
        value = float(values[index])
        status, threshold = status_of(value, warn, fail)
        where = f" at {label_at(da, var, index)}" if da.ndim > 2 else ""
        verdicts.append(Verdict(name, status, value, threshold,
                                describe(value, where, values.size, _constant_note(constant))))
    return verdicts


def _check_ess(idata, method: str, label: str, var_names, warn_per_chain, fail_per_chain):
    if fail_per_chain > warn_per_chain:
        raise ValueError(f"check_{method}: fail_per_chain {fail_per_chain} must be <= "
                         f"warn_per_chain {warn_per_chain}")
    posterior = _group(idata, "posterior")
    names = _select_vars(posterior, var_names, "posterior")
    chains, draws = _chains_draws(posterior)
    warn, fail = warn_per_chain * chains, fail_per_chain * chains
    if draws < 4:
        return [Verdict(label, "warn", math.nan, warn,
                        f"only {draws} draws per chain: ESS needs at least 4")]
    ess = stats_quietly(az.ess, posterior[names], method=method)
    return _per_variable(
        posterior, names, ess, label, warn, fail, worst="min",
        describe=lambda value, where, size, note: (f"min {label} {value:.0f}{where} of {chains * draws} draws "
                                                   f"({chains} chain(s)); warn < {warn:g}, fail < {fail:g}{note}"))


def check_ess_bulk(idata: az.InferenceData, *, var_names: Sequence[str] | None = None,
                   warn_per_chain: float = 100.0, fail_per_chain: float = 10.0) -> list[Verdict]:
    """Bulk effective sample size (rank-normalised, Vehtari et al. 2021) per posterior variable.

    Worst (smallest) element per variable. Warn below ``100 * chains`` (the paper's
    recommendation, below which R-hat and ESS estimates themselves are unreliable), fail below
    ``10 * chains``.
    """
    return _check_ess(idata, "bulk", "ESS bulk", var_names, warn_per_chain, fail_per_chain)


def check_ess_tail(idata: az.InferenceData, *, var_names: Sequence[str] | None = None,
                   warn_per_chain: float = 100.0, fail_per_chain: float = 10.0) -> list[Verdict]:
    """Tail effective sample size (min over the 5 % and 95 % quantiles) per posterior variable.

    Same thresholds as :func:`check_ess_bulk`: warn below ``100 * chains``, fail below
    ``10 * chains``.
    """
    return _check_ess(idata, "tail", "ESS tail", var_names, warn_per_chain, fail_per_chain)


# --------------------------------------------------------------------------------------------
# sampler statistics


def check_divergences(idata: az.InferenceData, *, fail_fraction: float = 0.001) -> list[Verdict]:
    """Divergent transitions of a Hamiltonian sampler (``sample_stats["diverging"]``).

    Ok with none. Any divergence warns (Stan: divergences signal a region the integrator cannot
    explore, so estimates may be biased); more than ``fail_fraction`` of all post-warmup draws
    (0.1 %) fails.
    """
    if not 0 <= fail_fraction < 1:
        raise ValueError(f"fail_fraction: expected a fraction in [0, 1), got {fail_fraction}")
    stats = _group(idata, "sample_stats")
    if "diverging" not in stats:
        raise KeyError("idata.sample_stats: has no 'diverging' variable")
    diverging = np.asarray(stats["diverging"].transpose("chain", "draw", ...).values).astype(bool)
    per_chain = diverging.reshape(diverging.shape[0], -1).sum(axis=1)
    count, total = int(diverging.sum()), diverging.size
    fraction = count / total
    if count == 0:
        status, threshold = "ok", 0.0
    elif fraction > fail_fraction:
        status, threshold = "fail", fail_fraction
    else:
        status, threshold = "warn", 0.0
    message = (f"{count} of {total} draws diverged ({100 * fraction:.2f} %); per chain "
               f"{per_chain.tolist()}; warn > 0, fail > {100 * fail_fraction:g} %")
    if count:
        message += ": reparameterise (non-centre) or raise target_accept"
    return [Verdict("divergences", status, float(fraction), float(threshold), message)]


def check_log_density(idata: az.InferenceData) -> list[Verdict]:
    """Whether the sampler ran into a region where the model's log density is NaN/inf.

    Reads ``attrs["nonfinite_sites"]`` (the sites a NUTS runner found non-finite next to its
    divergent transitions, ``inference.runner.probe_nonfinite``) and ``attrs["nonfinite_message"]``.
    A named site fails: the sampler rejects every step into that region, so the posterior is cut
    off at its edge whatever the other checks say. No verdict when the run did not look (the
    attribute is absent) or found nothing.
    """
    sites = str(run_attrs(idata).get("nonfinite_sites", "") or "")
    if not sites:
        return []
    message = str(run_attrs(idata).get("nonfinite_message", "") or "")
    return [Verdict("log density", "fail", math.nan, math.nan,
                    message or f"not finite at site(s) {sites.split(',')}: the posterior is cut off there")]


def check_ebfmi(idata: az.InferenceData, *, warn: float = 0.3, fail: float = 0.2) -> list[Verdict]:
    """Energy Bayesian fraction of missing information (Betancourt 2016), worst chain.

    ``E-BFMI = sum_n (E_n - E_{n-1})^2 / sum_n (E_n - mean E)^2`` per chain from
    ``sample_stats["energy"]``. Warn below 0.3 (Stan's threshold), fail below 0.2.
    """
    _validate_thresholds(warn, fail, "check_ebfmi", higher_is_worse=False)
    stats = _group(idata, "sample_stats")
    if "energy" not in stats:
        raise KeyError("idata.sample_stats: has no 'energy' variable")
    energy = np.asarray(stats["energy"].transpose("chain", "draw").values, dtype=float)
    if not np.all(np.isfinite(energy)):
        return [Verdict("E-BFMI", "fail", math.nan, fail, "non-finite energy values")]
    if energy.shape[1] < 3:
        return [Verdict("E-BFMI", "warn", math.nan, warn,
                        f"only {energy.shape[1]} draws per chain: E-BFMI needs at least 3")]
    with np.errstate(all="ignore"):
        bfmi = np.asarray(az.bfmi(energy), dtype=float)
    if not np.any(np.isfinite(bfmi)):
        return [Verdict("E-BFMI", "warn", math.nan, warn, "energy is constant within every chain")]
    chain = int(np.nanargmin(bfmi))
    value = float(bfmi[chain])
    status, threshold = _status_below(value, warn, fail)
    message = (f"min E-BFMI {value:.3f} (chain {chain}); per chain "
               f"{np.round(bfmi, 3).tolist()}; warn < {warn:g}, fail < {fail:g}")
    if status != "ok":
        message += ": momentum resampling explores the energy poorly (heavy tails, funnels)"
    return [Verdict("E-BFMI", status, value, threshold, message)]


def check_particle_ess(idata: az.InferenceData, *, warn: float = 0.1, fail: float = 0.01,
                       min_particles: float = 2.0) -> list[Verdict]:
    """Weight degeneracy of a particle filter: ESS per step relative to the particle number.

    Reads ``sample_stats["ess"]`` shaped ``(chain, draw, *step_dims)`` and the number of
    particles ``N`` from ``attrs["num_particles"]`` (see :func:`run_attrs`).
    Per step, the median over (chain, draw) of ``ESS / N`` (for PMMH/particle Gibbs each draw ran
    its own filter); the verdict is the worst step. Warn below ``warn * N`` (N/10); fail
    (collapse: one or two particles carry the filter) below ``max(fail * N, min_particles)``.
    """
    if not 0 < fail <= warn <= 1:
        raise ValueError(f"check_particle_ess: need 0 < fail <= warn <= 1, got fail={fail}, "
                         f"warn={warn}")
    stats = _group(idata, "sample_stats")
    if "ess" not in stats:
        raise KeyError("idata.sample_stats: has no 'ess' variable")
    num_particles = _num_particles(idata)
    ess = stats["ess"].transpose("chain", "draw", ...)
    values = np.asarray(ess.values, dtype=float)
    name = "particle ESS"
    if num_particles is None:
        return [Verdict(name, "warn", math.nan, warn, "attrs['num_particles'] is missing: "
                        "cannot judge the ESS relative to the number of particles")]
    fail_ess = max(fail * num_particles, min_particles)
    warn_ess = max(warn * num_particles, fail_ess)
    if not np.all(np.isfinite(values)):
        bad = int(np.sum(~np.isfinite(values)))
        return [Verdict(name, "fail", math.nan, fail_ess / num_particles,
                        f"{bad} non-finite ESS value(s): the filter's weights became NaN/inf")]
    per_step = np.median(values.reshape((-1,) + values.shape[2:]), axis=0)
    index = _worst_index(per_step, "min")
    worst = float(per_step[index])
    status, threshold = _status_below(worst, warn_ess, fail_ess)
    where = f" at {label_at(ess, 'ess', index)}" if per_step.ndim else ""
    message = (f"worst step ESS {worst:.1f} of N={num_particles}{where} (median over "
               f"{values.shape[0] * values.shape[1]} filter run(s)); warn < {warn_ess:g}, "
               f"fail < {fail_ess:g}")
    if status == "fail":
        message += ": weight collapse, use more particles or a better proposal"
    return [Verdict(name, status, worst / num_particles, threshold / num_particles, message)]


def _num_particles(idata) -> int | None:
    value = run_attrs(idata).get("num_particles")
    if value is None:
        return None
    value = int(np.asarray(value))
    if value < 1:
        raise ValueError(f"attrs['num_particles']: expected a positive integer, got {value}")
    return value


def check_acceptance(idata: az.InferenceData, *, low: float = 0.05, high: float = 0.95,
                     fail: float = 0.01) -> list[Verdict]:
    """Mean acceptance rate of a Metropolis–Hastings-type sampler, worst chain.

    For random-walk and pseudo-marginal samplers (``sample_stats["acceptance_rate"]``; not for
    HMC/NUTS, whose acceptance statistic means something else). Random-walk MH is most efficient
    near 0.234 (Roberts, Gelman, Gilks 1997) and PMMH near 0.07 (Sherlock et al. 2015), so the
    warn band is wide: below ``low`` (0.05) or above ``high`` (0.95, steps too small). A chain
    below ``fail`` (0.01) barely moves: fail.
    """
    if not 0 <= fail <= low < high <= 1:
        raise ValueError(f"check_acceptance: need 0 <= fail <= low < high <= 1, got fail={fail}, "
                         f"low={low}, high={high}")
    stats = _group(idata, "sample_stats")
    if "acceptance_rate" not in stats:
        raise KeyError("idata.sample_stats: has no 'acceptance_rate' variable")
    rate = np.asarray(stats["acceptance_rate"].transpose("chain", "draw", ...).values, dtype=float)
    if not np.all(np.isfinite(rate)):
        return [Verdict("acceptance rate", "fail", math.nan, fail, "non-finite acceptance rates")]
    per_chain = rate.reshape(rate.shape[0], -1).mean(axis=1)
    lowest, highest = float(per_chain.min()), float(per_chain.max())
    detail = f"per chain {np.round(per_chain, 3).tolist()}; warn < {low:g} or > {high:g}, fail < {fail:g}"
    if lowest < fail:
        return [Verdict("acceptance rate", "fail", lowest, fail,
                        f"chain {int(per_chain.argmin())} accepts {lowest:.3f}: it barely moves; "
                        f"{detail}")]
    if lowest < low:
        return [Verdict("acceptance rate", "warn", lowest, low,
                        f"lowest chain accepts {lowest:.3f}: proposals too bold; {detail}")]
    if highest > high:
        return [Verdict("acceptance rate", "warn", highest, high,
                        f"highest chain accepts {highest:.3f}: proposals too timid; {detail}")]
    mean = float(per_chain.mean())
    return [Verdict("acceptance rate", "ok", mean, low, f"mean {mean:.3f}; {detail}")]


# --------------------------------------------------------------------------------------------
# pointwise log-likelihood


#: Fewer posterior draws than this leave PSIS too few tail draws (``min(S/5, 3 sqrt(S))``) to
#: fit a generalised Pareto; ArviZ's own threshold ``1 - 1/log10(S)`` is negative below 10.
_PSIS_MIN_DRAWS = 100


def relative_ess(idata) -> float:
    """Mean relative ESS of the posterior's finite, non-constant elements (1 for one chain).

    The ``reff`` of PSIS-LOO; ArviZ's own default averages NaNs from constant elements in.
    """
    if "posterior" not in idata.groups():
        return 1.0
    posterior = idata.posterior
    chains, draws = _chains_draws(posterior)
    if chains < 2 or draws < 4:
        return 1.0
    ess = stats_quietly(az.ess, posterior, method="mean", relative=True)
    values = np.concatenate([np.asarray(ess[v].values, dtype=float).reshape(-1)
                             for v in ess.data_vars] or [np.array([np.nan])])
    values = values[np.isfinite(values) & (values > 0)]
    return float(values.mean()) if values.size else 1.0


def check_pareto_k(idata: az.InferenceData, *, var_names: Sequence[str] | None = None,
                   warn: float | None = None, fail: float = 1.0) -> list[Verdict]:
    """Pareto k of PSIS-LOO (Vehtari et al. 2024) for each ``log_likelihood`` variable.

    This judges whether the leave-one-out estimate can be trusted, not the posterior itself.
    Uses ``arviz.loo(pointwise=True)``; observations whose log-likelihood is NaN in every draw
    (missing data) are left out, and so are observations whose log-likelihood is identical in
    every draw (equal importance ratios: LOO is exact there; ArviZ would report k = inf); when
    every observation is so (a plug-in at a point estimate) the line is an ``ok`` "not applicable". Warn when some ``k`` exceeds ``warn`` (default ArviZ's
    sample-size dependent ``min(1 - 1/log10(S), 0.7)``), fail when some ``k > fail`` (1: the
    importance ratios have no finite mean). The message names the worst observation and the count.
    """
    loglik = _group(idata, "log_likelihood")
    names = _select_vars(loglik, var_names, "log_likelihood")
    verdicts = []
    for var in names:
        name = f"Pareto k {var}"
        da = loglik[var].transpose("chain", "draw", ...)
        obs_dims = [d for d in da.dims if d not in ("chain", "draw")]
        values = np.asarray(da.values, dtype=float)
        missing = np.all(np.isnan(values), axis=(0, 1))
        partial = ~np.all(np.isfinite(values), axis=(0, 1)) & ~missing
        threshold = 0.7 if warn is None else warn
        if partial.any():
            index = tuple(int(i) for i in np.argwhere(partial)[0]) if partial.ndim else ()
            verdicts.append(Verdict(name, "fail", math.nan, threshold,
                                    f"non-finite pointwise log-likelihood in {int(partial.sum())} "
                                    f"observation(s), first at {label_at(da, var, index)}"))
            continue
        if missing.all():
            verdicts.append(Verdict(name, "warn", math.nan, threshold,
                                    "every observation is missing (NaN)"))
            continue
        # a log-likelihood the same in every draw has equal importance ratios: LOO is exact
        # there (ArviZ would report k = inf for it), so such observations are left out of PSIS
        _, constant = screen_elements(da)
        if np.all(constant | missing):
            verdicts.append(Verdict(name, "ok", math.nan, threshold,
                                    "not applicable: the pointwise log-likelihood is the same in "
                                    "every draw (evaluated at a point estimate, e.g. method=ppg); "
                                    "PSIS-LOO needs posterior draws of the parameters"))
            continue
        num_samples = values.shape[0] * values.shape[1]
        if num_samples < _PSIS_MIN_DRAWS:
            verdicts.append(Verdict(name, "warn", math.nan, threshold,
                                    f"only {num_samples} draws: PSIS needs at least "
                                    f"{_PSIS_MIN_DRAWS} to fit the Pareto tail"))
            continue
        if obs_dims:
            stacked = da.stack(__obs__=obs_dims)
            keep = ~(missing | constant).reshape(-1)
            stacked = stacked.isel(__obs__=np.flatnonzero(keep))
            sub = az.InferenceData(log_likelihood=stacked.drop_vars(
                [c for c in stacked.coords if c not in ("chain", "draw")]).to_dataset(name=var))
        else:
            sub = az.InferenceData(log_likelihood=da.to_dataset(name=var))
        loo = stats_quietly(az.loo, sub, pointwise=True, var_name=var,
                             reff=relative_ess(idata))
        kvals = np.asarray(loo.pareto_k.values, dtype=float).reshape(-1)
        good_k = float(getattr(loo, "good_k", 0.7)) if warn is None else warn
        if fail < good_k:
            raise ValueError(f"check_pareto_k: fail threshold {fail} must be >= warn {good_k}")
        position = int(np.nanargmax(kvals))
        worst = float(kvals[position])
        if obs_dims:
            full_index = tuple(int(i) for i in np.unravel_index(
                np.flatnonzero(keep)[position], missing.shape))
            where = f" at {label_at(da, var, full_index)}"
        else:
            where = ""
        n_warn = int(np.sum(kvals > good_k))
        n_fail = int(np.sum(kvals > fail))
        status, used = _status_above(worst, good_k, fail)
        message = (f"max k {worst:.2f}{where}; {n_warn} of {kvals.size} observation(s) above "
                   f"{good_k:.2f}, {n_fail} above {fail:g}")
        if constant.any():
            first = tuple(int(i) for i in np.argwhere(constant)[0]) if constant.ndim else ()
            message += (f"; {int(constant.sum())} observation(s) with the same log-likelihood in "
                        f"every draw left out, first at {label_at(da, var, first)} (LOO is exact there; "
                        "az.loo reports k = inf for them and warns, an artefact of its tail fit)")
        if status != "ok":
            message += (": PSIS-LOO unreliable there (influential observations); use exact "
                        "refits (K-fold/LFO) or a more robust model")
        verdicts.append(Verdict(name, status, worst, used, message))
    return verdicts


# --------------------------------------------------------------------------------------------
# all together


def _is_hamiltonian(stats) -> bool:
    """A run of HMC/NUTS proper (its acceptance statistic is not a Metropolis rate). Particle
    Gibbs with a NUTS θ-step stores ``diverging`` but not these, and its θ acceptance is judged."""
    return any(k in stats for k in ("energy", "tree_depth", "n_steps"))


def check_stuck_chains(idata: az.InferenceData) -> list[Verdict]:
    """Chains a sampler screened as stuck (``attrs["dropped_chains"]``, ``attrs["stuck_chain_reasons"]``).

    A NUTS runner (``inference.nuts``) screens its chains after sampling and, by default, drops
    the stuck ones when others remain; the posterior then holds fewer chains than were run
    (``attrs["num_chains_run"]``). That is a ``warn``: the kept chains may be fine, but a mode or a
    region was found that some chains could not leave, so the run says less than it looks.
    Chains flagged but kept (``drop_stuck_chains=False``) warn too. No verdict when the run did
    not screen (the attributes are absent) or flagged nothing.
    """
    attrs = run_attrs(idata)
    reasons = str(attrs.get("stuck_chain_reasons", "") or "")
    dropped = str(attrs.get("dropped_chains", "") or "").strip()
    dropped_list = [c.strip() for c in dropped.strip("[]()").split(",") if c.strip()]
    if not reasons and not dropped_list:
        return []
    run = attrs.get("num_chains_run")
    if dropped_list:
        kept = f"; {int(run) - len(dropped_list)} of {int(run)} chains kept" if run is not None else ""
        message = (f"dropped stuck chain(s) [{', '.join(dropped_list)}]{kept}: {reasons or 'screened as stuck'}; "
                   "rerun with more warmup or another initialisation to check the kept chains tell the whole story")
        value = float(len(dropped_list))
    else:
        message = f"chains screened as stuck but kept (drop_stuck_chains=False): {reasons}"
        value = math.nan
    return [Verdict("stuck chains", "warn", value, 0.0, message)]


def run_checks(idata: az.InferenceData, *, var_names: Sequence[str] | None = None,
               **thresholds: float) -> list[Verdict]:
    """Apply every check whose inputs ``idata`` has, with the thresholds of :class:`Thresholds`.

    - posterior: R-hat, bulk and tail ESS per variable (``var_names`` limits them) when the draws
      are Markov chains (:func:`draws_kind` ``"markov"``); for independent draws (``"iid"``) and
      for draws at fixed parameters (``"point"``) one ``ok`` line says R-hat/ESS do not apply
      (the accuracy of an approximation is not judged here);
    - sample_stats ``diverging`` / ``energy``: divergences (and a non-finite log density the run
      found next to them, :func:`check_log_density`) / E-BFMI; chains screened as stuck and
      dropped (:func:`check_stuck_chains`, a ``warn``);
    - sample_stats ``acceptance_rate`` without ``energy``/``tree_depth``/``n_steps`` (i.e. not
      HMC/NUTS itself: PMMH, particle Gibbs θ-steps, random-walk MH): acceptance;
    - sample_stats ``ess``: particle ESS;
    - a log_likelihood group: Pareto k, unless the draws are at fixed parameters (``"point"``).

    Args:
        idata: the run.
        var_names: posterior variables to check (default all).
        **thresholds: overrides of :class:`Thresholds` fields, e.g. ``rhat_warn=1.02``.

    Returns:
        the verdicts, in the order above.
    """
    if not isinstance(idata, az.InferenceData):
        raise TypeError(f"idata: expected arviz.InferenceData, got {type(idata).__name__}")
    unknown = sorted(set(thresholds) - set(Thresholds._fields))
    if unknown:
        raise TypeError(f"run_checks: unknown threshold(s) {unknown}; known: "
                        f"{list(Thresholds._fields)}")
    t = Thresholds(**thresholds)
    groups = idata.groups()
    verdicts: list[Verdict] = []
    draws = draws_kind(idata)
    if "posterior" in groups:
        if draws == "iid":
            verdicts.append(Verdict(
                "R-hat/ESS", "ok", math.nan, math.nan,
                "not applicable: independent draws from an approximation (draws=iid); the "
                "approximation's accuracy is not judged by these checks"))
        elif draws == "point":
            verdicts.append(Verdict(
                "R-hat/ESS", "ok", math.nan, math.nan,
                "not applicable: draws at fixed parameters, not posterior draws (draws=point)"))
        else:
            verdicts += check_rhat(idata, var_names=var_names, warn=t.rhat_warn, fail=t.rhat_fail)
            verdicts += check_ess_bulk(idata, var_names=var_names,
                                       warn_per_chain=t.ess_warn_per_chain,
                                       fail_per_chain=t.ess_fail_per_chain)
            verdicts += check_ess_tail(idata, var_names=var_names,
                                       warn_per_chain=t.ess_warn_per_chain,
                                       fail_per_chain=t.ess_fail_per_chain)
    if "sample_stats" in groups:
        stats = idata.sample_stats
        if "diverging" in stats:
            verdicts += check_divergences(idata, fail_fraction=t.divergence_fail_fraction)
            verdicts += check_log_density(idata)
        verdicts += check_stuck_chains(idata)
        if "energy" in stats:
            verdicts += check_ebfmi(idata, warn=t.ebfmi_warn, fail=t.ebfmi_fail)
        if "acceptance_rate" in stats and not _is_hamiltonian(stats):
            verdicts += check_acceptance(idata, low=t.acceptance_low, high=t.acceptance_high,
                                         fail=t.acceptance_fail)
        if "ess" in stats:
            verdicts += check_particle_ess(idata, warn=t.particle_ess_warn,
                                           fail=t.particle_ess_fail,
                                           min_particles=t.particle_ess_min)
    if "log_likelihood" in groups and draws != "point":
        verdicts += check_pareto_k(idata, warn=t.pareto_k_warn, fail=t.pareto_k_fail)
    return verdicts


def overall(verdicts: Iterable[Verdict]) -> Status:
    """The worst status among ``verdicts``; ``"warn"`` when there are none (nothing was checked)."""
    verdicts = list(verdicts)
    if not verdicts:
        return "warn"
    for v in verdicts:
        if v.status not in _RANK:
            raise ValueError(f"verdicts: status {v.status!r} of {v.name!r} is not one of {STATUSES}")
    return max((v.status for v in verdicts), key=_RANK.__getitem__)


def _fmt_number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    value = float(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


_STATUS_TEXT = {"ok": "ok", "warn": "WARN", "fail": "FAIL !!"}


def format_verdicts(verdicts: Iterable[Verdict]) -> str:
    """An aligned text table (status, check, value, threshold, message) and an overall line.

    Failures print as ``FAIL !!`` and the overall line counts them, so a failed run cannot be
    mistaken for a good one in a terminal or a log.
    """
    verdicts = list(verdicts)
    rows = [("status", "check", "value", "threshold", "message")]
    rows += [(_STATUS_TEXT.get(v.status, v.status), v.name, _fmt_number(v.value),
              _fmt_number(v.threshold), v.message) for v in verdicts]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[c].ljust(widths[c]) if c < 2 else row[c].rjust(widths[c]) for c in range(4)]
        lines.append("  ".join(cells + [row[4]]).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 7)
    counts = {s: sum(v.status == s for v in verdicts) for s in STATUSES}
    status = overall(verdicts)
    banner = {"ok": "OK", "warn": "WARN", "fail": "FAIL !!"}[status]
    lines.append(f"overall: {banner} ({counts['fail']} fail, {counts['warn']} warn, "
                 f"{counts['ok']} ok)" + ("" if verdicts else " - nothing was checked"))
    return "\n".join(lines)
