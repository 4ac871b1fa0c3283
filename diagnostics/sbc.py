r"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari, Gelman 2018).

For replicate ``i``: draw ``θ_i ~ p(θ)`` and ``y_i ~ p(y | θ_i)`` (``prior_simulate``), fit
``p(θ | y_i)`` (``fit``), thin the posterior to ``L`` draws and record, per scalar parameter
element, the rank

.. math::  r_i = \#\{\ell : \theta^{(\ell)} < \theta_i\} \in \{0, \dots, L\}.

If the fit samples the exact posterior, every ``r_i`` is uniform on ``{0..L}`` (ties, possible
for discrete parameters, are broken at random). Three tests per element, each at level
``alpha / (3 · num_elements)`` so that the whole verdict's false-alarm rate is at most ``alpha``
(Bonferroni over elements and the three tests):

* χ² on binned ranks: ``B`` bins over the ``L + 1`` rank values (``B = min(max_bins,
  ⌊n / 5⌋)``, at least 2, so that each bin expects ≥ 5 counts), expected probabilities from the
  exact number of rank values per bin, ``B - 1`` degrees of freedom;
* ECDF simultaneous band (Säilynoja, Bürkner, Vehtari 2022): the ECDF of ``r / (L + 1)`` at
  ``z_j = j / (L + 1)`` (where the discrete uniform CDF equals ``z_j`` exactly) must stay inside
  ArviZ's optimised simultaneous band (``arviz.stats.ecdf_utils.ecdf_confidence_band``);
* extreme ranks (:func:`extreme_ranks`): the number of ranks at 0 or L against its
  Binomial(n, 2 / (L + 1)) law, one-sided (a posterior too narrow, or one that misses the truth
  outright, piles ranks at the ends, which the binned tests dilute).

The driver takes plain callables (this package imports neither ``zoo`` nor ``inference``):
``prior_simulate(key) -> (params, data)`` with ``params`` a ``{name: array}`` dict and
``fit(data) -> InferenceData`` whose posterior holds the same names. ``fit_batch(list_of_data) ->
list_of_InferenceData`` may be given where the backend can fit several data sets at once (a
vectorised sampler, exact conjugate posteriors); replicates then go ``batch_size`` at a time.

Resumable: with ``out_dir`` every finished replicate is written atomically as
``out_dir/replicate_<i>.npz`` (ranks and true values) next to a ``manifest.json`` of the
settings (the folder format of :mod:`diagnostics.sweep`); a rerun loads the finished ones and fits
only the rest, so an interrupted sweep keeps what it finished. A rerun with different settings
(``num_draws``, ``seed``) refuses the folder. With ``client`` (a ``distributed.Client``) the
replicates run as Dask tasks, each writing its own file on its worker.

Public API: :class:`SBCResult`, :func:`run_sbc`, :func:`load_sbc`, :func:`save_replicate` (one
replicate's file, for a folder continued from stored ranks), :func:`ranks_from_idata`,
:func:`rank_statistics`, :func:`chi2_uniformity`, :func:`ecdf_band`, :func:`sbc_verdicts`,
:func:`format_sbc`, :func:`plot_rank_histograms`, :func:`plot_ecdf_difference`.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import sweep
from .checks import Verdict, check_rhat, element_labels, run_attrs
from .convert import atomic_savez
from .estimates import is_point_estimate

__all__ = [
    "SBCResult",
    "ElementTest",
    "run_sbc",
    "load_sbc",
    "save_replicate",
    "thin_indices",
    "rank_statistics",
    "ranks_from_idata",
    "chi2_uniformity",
    "extreme_ranks",
    "ecdf_band",
    "element_tests",
    "sbc_verdicts",
    "format_sbc",
    "fit_quality",
    "unconverged_fits_note",
    "plot_rank_histograms",
    "plot_ecdf_difference",
    "DEFAULT_ALPHA",
]

#: Family-wise false-alarm rate of the SBC verdict (all elements, all three tests).
DEFAULT_ALPHA = 0.01
_MANIFEST = sweep.MANIFEST


class SBCResult(NamedTuple):
    """Ranks of ``n`` replicates.

    ranks: ``{element label: (n,) int}`` in ``0..num_draws`` (labels ``"A[0,1]"``, ``"sigma"``).
    truths: ``{element label: (n,) float}`` the true values drawn from the prior.
    num_draws: ``L``, posterior draws per replicate the ranks were computed against.
    replicates: ``(n,)`` replicate indices (sorted).
    max_rhat: ``(n,)`` largest split R-hat of the ranked parameters in each replicate's fit
        (NaN where not recorded: one chain, a sweep written before it was recorded).
    divergences: ``(n,)`` divergent transitions of each fit (-1 where not recorded).
    """

    ranks: dict[str, np.ndarray]
    truths: dict[str, np.ndarray]
    num_draws: int
    replicates: np.ndarray
    max_rhat: np.ndarray | None = None
    divergences: np.ndarray | None = None

    @property
    def num_replicates(self) -> int:
        return int(len(self.replicates))


class ElementTest(NamedTuple):
    """Uniformity tests of one element's ranks.

    chi2, chi2_pvalue, bins: the χ² statistic, its p-value and the number of bins.
    ecdf_outside: number of evaluation points where the ECDF left the simultaneous band.
    level: per-test level used (``alpha / (3 · num_elements)``).
    flagged: ``chi2_pvalue < level``, ``ecdf_outside > 0`` or ``extreme_pvalue < level``.
    extreme, extreme_pvalue: ranks at 0 or L, and the one-sided binomial p-value of at least that
        many (:func:`extreme_ranks`).
    """

    label: str
    chi2: float
    chi2_pvalue: float
    bins: int
    ecdf_outside: int
    level: float
    flagged: bool
    extreme: int = 0
    extreme_pvalue: float = 1.0


# --------------------------------------------------------------------------------------------
# ranks


def thin_indices(total: int, num_draws: int) -> np.ndarray:
    """``num_draws`` evenly spaced indices into ``total`` draws (thinning against autocorrelation)."""
    if num_draws < 1:
        raise ValueError(f"num_draws: expected a positive integer, got {num_draws}")
    if total < num_draws:
        raise ValueError(f"num_draws: the posterior has {total} draws, fewer than num_draws={num_draws}; "
                         "draw more samples or lower num_draws")
    return np.round(np.linspace(0, total - 1, num_draws)).astype(int)


def rank_statistics(truth: Mapping[str, Any], draws: Mapping[str, np.ndarray], *,
                    rng: np.random.Generator | None = None) -> dict[str, tuple[int, float]]:
    """Rank of each true scalar element among its posterior draws.

    Args:
        truth: ``{name: value}`` with ``value`` of shape ``var_shape``.
        draws: ``{name: (L, *var_shape)}`` posterior draws.
        rng: breaks ties at random (``#{draws < θ} + U{0..#{draws == θ}}``); default seeded 0.
    Returns:
        ``{element label: (rank in 0..L, true value)}``.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    out: dict[str, tuple[int, float]] = {}
    for name, value in truth.items():
        if name not in draws:
            raise KeyError(f"draws: no posterior draws of {name!r}; have {sorted(draws)}")
        value = np.asarray(value, dtype=float)
        sample = np.asarray(draws[name], dtype=float)
        if sample.shape[1:] != value.shape:
            raise ValueError(f"draws[{name!r}]: shape {sample.shape} does not match (L, *{value.shape}) "
                             f"of the true value")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"truth[{name!r}]: non-finite true value")
        for label, idx in element_labels(name, value.shape):
            theta = value[idx]
            column = sample[(slice(None),) + idx]
            below = int(np.sum(column < theta))
            ties = int(np.sum(column == theta))
            out[label] = (below + int(rng.integers(0, ties + 1)), float(theta))
    return out


def _posterior_draws(idata, names: Sequence[str]) -> dict[str, np.ndarray]:
    if "posterior" not in idata.groups():
        raise KeyError(f"fit: the returned InferenceData has no posterior group; groups {idata.groups()}")
    out = {}
    for name in names:
        if name not in idata.posterior:
            raise KeyError(f"fit: posterior has no variable {name!r} (a parameter of prior_simulate); "
                           f"have {sorted(idata.posterior.data_vars)}")
        values = np.asarray(idata.posterior[name].transpose("chain", "draw", ...).values)
        out[name] = values.reshape((-1,) + values.shape[2:])
    return out


#: A fit whose ranked parameters have a split R-hat above this did not converge (its rank is noise):
#: the fail threshold of :func:`diagnostics.checks.check_rhat`.
RHAT_UNCONVERGED = 1.05


def fit_quality(idata, names: Sequence[str]) -> tuple[float, int]:
    """``(max split R-hat over the elements of names, number of divergent transitions)`` of a fit.

    R-hat as :func:`~diagnostics.checks.check_rhat` judges it (constant elements skipped); NaN
    with fewer than two chains or draws. Divergences -1 when the fit records none.
    """
    values = np.array([v.value for v in check_rhat(idata, var_names=list(names), fail=RHAT_UNCONVERGED)])
    values = values[np.isfinite(values)]
    max_rhat = float(values.max()) if values.size else math.nan
    divergences = -1
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        divergences = int(np.asarray(idata.sample_stats["diverging"].values).sum())
    return max_rhat, divergences


def ranks_from_idata(idata, truth: Mapping[str, Any], num_draws: int, *,
                     rng: np.random.Generator | None = None) -> dict[str, tuple[int, float]]:
    """Thin ``idata``'s posterior to ``num_draws`` draws and rank ``truth`` among them.

    A fit that returned a point estimate (:func:`diagnostics.estimates.is_point_estimate`) has no
    posterior to rank: ``ValueError`` naming the study that applies (``zoo estimates``)."""
    if is_point_estimate(idata):
        method = run_attrs(idata).get("method", "?")
        raise ValueError(f"--method: method {method!r} returned a point estimate, not posterior draws: SBC does "
                         "not apply; zoo estimates NAME checks the estimate's sampling distribution over replicates")
    draws = _posterior_draws(idata, list(truth))
    total = next(iter(draws.values())).shape[0]
    index = thin_indices(total, num_draws)
    return rank_statistics(truth, {k: v[index] for k, v in draws.items()}, rng=rng)


# --------------------------------------------------------------------------------------------
# resumable storage


def _replicate_path(out_dir: str, i: int) -> str:
    return sweep.task_path(out_dir, "replicate", i, "npz")


def save_replicate(out_dir: str, i: int, ranked: Mapping[str, tuple[int, float]],
                   quality: tuple[float, int] = (math.nan, -1)) -> None:
    """Write replicate ``i``'s ranks and true values (``{label: (rank, truth)}``) and fit quality
    (max R-hat, divergences; -1: unknown) atomically (:func:`diagnostics.convert.atomic_savez`)."""
    labels = list(ranked)
    arrays = {"labels": np.array(labels), "ranks": np.array([ranked[k][0] for k in labels], dtype=np.int64),
              "truths": np.array([ranked[k][1] for k in labels], dtype=float),
              "max_rhat": np.array(float(quality[0])), "divergences": np.array(int(quality[1]))}

    atomic_savez(_replicate_path(out_dir, i), **arrays)


def _load_replicate(path: str) -> tuple[dict[str, tuple[int, float]], tuple[float, int]]:
    with np.load(path, allow_pickle=False) as stored:
        labels = [str(s) for s in stored["labels"]]
        ranked = {k: (int(r), float(t)) for k, r, t in zip(labels, stored["ranks"], stored["truths"])}
        quality = (float(stored["max_rhat"]) if "max_rhat" in stored else math.nan,
                   int(stored["divergences"]) if "divergences" in stored else -1)
    return ranked, quality


# --------------------------------------------------------------------------------------------
# the driver


def run_sbc(prior_simulate: Callable[[Any], tuple[Mapping[str, Any], Any]],
            fit: Callable[[Any], Any] | None, *, num_replicates: int, num_draws: int = 99,
            seed: int = 0, out_dir: str | os.PathLike | None = None,
            fit_batch: Callable[[list], list] | None = None, batch_size: int = 1,
            settings: Mapping[str, Any] | None = None, progress: bool = False,
            client: Any = None, on_result: Callable[[int], None] | None = None) -> SBCResult:
    """Simulation-based calibration over ``num_replicates`` replicates.

    Args:
        prior_simulate: ``prior_simulate(key) -> (params, data)``, ``key`` a JAX PRNG key
            (``jax.random.fold_in(PRNGKey(seed), i)`` for replicate ``i``); ``params`` maps
            parameter names to true values.
        fit: ``fit(data) -> InferenceData`` whose posterior holds every name of ``params``.
        num_replicates: ``n``.
        num_draws: ``L``: posterior draws (evenly thinned) each rank is computed against.
        seed: seeds the replicates' keys and the tie-breaking.
        out_dir: folder for resumable per-replicate results (None: keep in memory only).
        fit_batch, batch_size: fit ``batch_size`` data sets per call where the backend allows.
        settings: extra settings recorded in (and checked against) the manifest, e.g. the
            entry, config and method, so a folder is never resumed with another recipe.
        progress: print one line per finished replicate.
        client: a ``distributed.Client``: each batch of replicates (one replicate without
            ``fit_batch``) is one Dask task that simulates, fits, ranks and writes its files on
            the worker (:func:`diagnostics.sweep.map_tasks`); needs ``out_dir`` (the workers must
            be able to write it). The ranks are the same as without a client: every replicate's
            key, fit and tie-breaking depend on its index only.
        on_result: called with a replicate's index after it has been written (here, in this
            process), e.g. to keep the sweep's progress in a stored folder as it grows.
    """
    if isinstance(num_replicates, bool) or not isinstance(num_replicates, (int, np.integer)) or num_replicates < 1:
        raise ValueError(f"num_replicates: expected a positive integer, got {num_replicates!r}")
    if isinstance(num_draws, bool) or not isinstance(num_draws, (int, np.integer)) or num_draws < 1:
        raise ValueError(f"num_draws: expected a positive integer, got {num_draws!r}")
    if fit is None and fit_batch is None:
        raise TypeError("fit: give fit(data) -> InferenceData or fit_batch(list_of_data)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if client is not None and out_dir is None:
        raise ValueError("out_dir: a sweep on a Dask client writes its replicates on the workers; give a folder")
    if fit_batch is None:
        batch_size = 1
    done: dict[int, dict[str, tuple[int, float]]] = {}
    quality: dict[int, tuple[float, int]] = {}
    if out_dir is not None:
        manifest = {"num_draws": int(num_draws), "seed": int(seed)}
        manifest.update(sweep.manifest_values(settings or {}))
        out_dir = sweep.open_folder(out_dir, manifest, kind="an SBC sweep")
        for i in sweep.finished(out_dir, "replicate", "npz", num_replicates):
            done[i], quality[i] = _load_replicate(_replicate_path(out_dir, i))
    todo = [i for i in range(num_replicates) if i not in done]
    chunks = [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]
    work = _ReplicateTask(prior_simulate, fit, fit_batch, num_draws, seed, out_dir)
    for _, results in sweep.map_tasks(work, chunks, client=client):
        for i, ranked, fitted in results:
            done[i], quality[i] = ranked, fitted
            if progress:
                rhat, divergences = fitted
                print(f"sbc: replicate {i + 1}/{num_replicates} done (max R-hat {rhat:.3f}, "
                      f"{divergences} divergent)" if divergences >= 0 else
                      f"sbc: replicate {i + 1}/{num_replicates} done (max R-hat {rhat:.3f})", flush=True)
            if on_result is not None:
                on_result(i)
    return _collect(done, num_draws, quality)


class _ReplicateTask:
    """Simulate, fit, rank and (with a folder) write a batch of replicates: one sweep task."""

    def __init__(self, prior_simulate, fit, fit_batch, num_draws, seed, out_dir):
        self.prior_simulate, self.fit, self.fit_batch = prior_simulate, fit, fit_batch
        self.num_draws, self.seed, self.out_dir = num_draws, seed, out_dir

    def __call__(self, chunk: Sequence[int]) -> list[tuple[int, dict[str, tuple[int, float]], tuple[float, int]]]:
        import jax

        base = jax.random.PRNGKey(self.seed)
        simulated = [self.prior_simulate(jax.random.fold_in(base, i)) for i in chunk]
        if self.fit_batch is not None:
            fits = list(self.fit_batch([data for _, data in simulated]))
            if len(fits) != len(chunk):
                raise ValueError(f"fit_batch: returned {len(fits)} results for {len(chunk)} data sets")
        else:
            fits = [self.fit(data) for _, data in simulated]
        out = []
        for i, (params, _), idata in zip(chunk, simulated, fits):
            truth = {k: np.asarray(v) for k, v in dict(params).items()}
            ranked = ranks_from_idata(idata, truth, self.num_draws, rng=np.random.default_rng([self.seed, i]))
            fitted = fit_quality(idata, list(truth))
            if self.out_dir is not None:
                save_replicate(self.out_dir, i, ranked, fitted)
            out.append((i, ranked, fitted))
        return out


def load_sbc(out_dir: str | os.PathLike) -> SBCResult:
    """The finished replicates of a sweep folder written by :func:`run_sbc` (``zoo sbc --out``)."""
    out_dir = os.fspath(out_dir)
    manifest = os.path.join(out_dir, _MANIFEST)
    if not os.path.exists(manifest):
        raise FileNotFoundError(f"out_dir: {out_dir!r} holds no SBC sweep (no {_MANIFEST})")
    with open(manifest) as stream:
        num_draws = int(json.load(stream)["num_draws"])
    done, quality = {}, {}
    for i in sweep.finished(out_dir, "replicate", "npz"):
        done[i], quality[i] = _load_replicate(_replicate_path(out_dir, i))
    if not done:
        raise ValueError(f"out_dir: {out_dir!r} has no finished replicate yet")
    return _collect(done, num_draws, quality)


def _collect(done: Mapping[int, Mapping[str, tuple[int, float]]], num_draws: int,
             quality: Mapping[int, tuple[float, int]] | None = None) -> SBCResult:
    replicates, (ranks, truths) = sweep.element_columns(done)
    ranks = {k: v.astype(int) for k, v in ranks.items()}
    truths = {k: v.astype(float) for k, v in truths.items()}
    quality = quality or {}
    max_rhat = np.array([quality.get(int(i), (math.nan, -1))[0] for i in replicates], dtype=float)
    divergences = np.array([quality.get(int(i), (math.nan, -1))[1] for i in replicates], dtype=int)
    return SBCResult(ranks, truths, int(num_draws), replicates, max_rhat, divergences)


def unconverged_fits_note(result: SBCResult) -> str | None:
    """A line naming the replicates whose fit did not converge (R-hat > 1.05) or diverged, or None.

    Their ranks stay in the tests (dropping them would bias the check towards easy prior draws);
    the note says that a flagged element may come from the sampler failing on them.
    """
    if result.max_rhat is None:
        return None
    rhat_bad = result.replicates[np.nan_to_num(result.max_rhat, nan=0.0) > RHAT_UNCONVERGED]
    diverged = result.replicates[result.divergences > 0]
    unknown = int(np.sum(np.isnan(result.max_rhat)))
    parts = []
    if rhat_bad.size:
        parts.append(f"{rhat_bad.size} fit(s) with R-hat > {RHAT_UNCONVERGED} (replicates {rhat_bad.tolist()})")
    if diverged.size:
        parts.append(f"{diverged.size} fit(s) with divergent transitions (replicates {diverged.tolist()})")
    if not parts:
        return None if not unknown else f"fit convergence not recorded for {unknown} replicate(s)"
    note = ("fits that did not converge: " + "; ".join(parts)
            + "; their ranks are included, so a flagged element may reflect the sampler failing on those prior draws")
    if unknown:
        note += f" (convergence not recorded for {unknown} replicate(s))"
    return note


# --------------------------------------------------------------------------------------------
# uniformity tests


def _num_bins(num_ranks: int, num_draws: int, max_bins: int) -> int:
    return int(max(2, min(max_bins, num_ranks // 5, num_draws + 1)))


def chi2_uniformity(ranks: np.ndarray, num_draws: int, *, max_bins: int = 20) -> tuple[float, float, int]:
    """χ² test of ranks in ``0..L`` against the discrete uniform: ``(statistic, p-value, bins)``.

    Bin ``b`` holds the rank values ``r`` with ``⌊r B / (L + 1)⌋ = b``; its expected probability
    is its number of values over ``L + 1``; ``B - 1`` degrees of freedom.
    """
    from scipy import stats

    ranks = np.asarray(ranks, dtype=int)
    if ranks.ndim != 1 or ranks.size < 2:
        raise ValueError(f"ranks: expected a 1-D array of at least 2 ranks, got shape {ranks.shape}")
    if ranks.min() < 0 or ranks.max() > num_draws:
        raise ValueError(f"ranks: expected values in 0..{num_draws}, got [{ranks.min()}, {ranks.max()}]")
    bins = _num_bins(ranks.size, num_draws, max_bins)
    values = np.arange(num_draws + 1)
    bin_of_value = (values * bins) // (num_draws + 1)
    expected = np.bincount(bin_of_value, minlength=bins) / (num_draws + 1) * ranks.size
    observed = np.bincount(bin_of_value[ranks], minlength=bins)
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return statistic, float(stats.chi2.sf(statistic, bins - 1)), bins


def extreme_ranks(ranks: np.ndarray, num_draws: int) -> tuple[int, float]:
    """Ranks at the ends, ``0`` or ``L``, and the exact one-sided p-value of at least that many:
    ``(count, P(Binomial(n, 2 / (L + 1)) >= count))``.

    A fit that settles in the wrong basin of a multimodal posterior puts the truth outside all
    its draws, so its rank is 0 or L; a few such fits among many good ones barely move a χ² over
    20 bins or the ECDF, but they pile up at the two end values (snapshot_sde_lv's sweep with
    chains started at the prior median: 8 to 12 per element of 100, 2 expected, while χ² flagged
    two of eight elements)."""
    from scipy import stats

    ranks = np.asarray(ranks, dtype=int)
    count = int(np.sum((ranks == 0) | (ranks == num_draws)))
    return count, float(stats.binom.sf(count - 1, ranks.size, 2 / (num_draws + 1)))


def ecdf_band(num_ranks: int, num_draws: int, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluation points ``z_j = j/(L+1)`` (j = 1..L) and ArviZ's simultaneous ``prob`` band
    ``(lower, upper)`` for the ECDF of ``num_ranks`` uniform fractional ranks.

    The band depends on ``(num_ranks, num_draws, prob)`` only and ArviZ's optimisation costs about
    0.1 s, so it is computed once per triple and kept (read-only arrays): a report asks for the same
    band for its table, its verdicts and its figure."""
    return _ecdf_band(int(num_ranks), int(num_draws), float(prob))


@functools.lru_cache(maxsize=64)
def _ecdf_band(num_ranks: int, num_draws: int, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from arviz.stats.ecdf_utils import ecdf_confidence_band

    points = np.arange(1, num_draws + 1) / (num_draws + 1)
    if num_draws > 200:  # the band at 200 points is simultaneous enough and far cheaper
        points = np.unique(np.round(np.linspace(1, num_draws, 200))) / (num_draws + 1)
    lower, upper = ecdf_confidence_band(num_ranks, points, points, prob=prob, method="optimized")
    band = (points, np.array(lower, dtype=float), np.array(upper, dtype=float))
    for array in band:
        array.flags.writeable = False
    return band


def _ecdf(ranks: np.ndarray, num_draws: int, points: np.ndarray) -> np.ndarray:
    fractions = np.asarray(ranks) / (num_draws + 1)
    return np.mean(fractions[None, :] < points[:, None] - 1e-12, axis=1)


def element_tests(result: SBCResult, *, alpha: float = DEFAULT_ALPHA, max_bins: int = 20) -> list[ElementTest]:
    """The three uniformity tests (χ², ECDF band, extreme ranks) for every element, each at
    ``alpha / (3 · num_elements)``: the family-wise false-alarm rate is at most ``alpha``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a probability in (0, 1), got {alpha}")
    if result.num_replicates < 2:
        raise ValueError(f"result: {result.num_replicates} replicate(s); the tests need at least 2")
    level = alpha / (3 * max(len(result.ranks), 1))
    points, lower, upper = ecdf_band(result.num_replicates, result.num_draws, 1 - level)
    tests = []
    for label, ranks in result.ranks.items():
        statistic, pvalue, bins = chi2_uniformity(ranks, result.num_draws, max_bins=max_bins)
        ecdf = _ecdf(ranks, result.num_draws, points)
        outside = int(np.sum((ecdf < lower - 1e-12) | (ecdf > upper + 1e-12)))
        extreme, extreme_pvalue = extreme_ranks(ranks, result.num_draws)
        tests.append(ElementTest(label, statistic, pvalue, bins, outside, level,
                                 bool(pvalue < level or outside > 0 or extreme_pvalue < level), extreme,
                                 extreme_pvalue))
    return tests


def sbc_verdicts(result: SBCResult, *, alpha: float = DEFAULT_ALPHA) -> list[Verdict]:
    """One :class:`~diagnostics.checks.Verdict` per element: ``fail`` when flagged, else ``ok``."""
    verdicts = []
    for t in element_tests(result, alpha=alpha):
        message = (f"χ²={t.chi2:.1f} on {t.bins} bins, p={t.chi2_pvalue:.2g}; ECDF outside the "
                   f"simultaneous band at {t.ecdf_outside} point(s); {t.extreme} rank(s) at 0 or L, "
                   f"p={t.extreme_pvalue:.2g}; per-test level {t.level:.2g} "
                   f"(family-wise {alpha:g}); n={result.num_replicates}, L={result.num_draws}")
        if t.flagged:
            message += ": ranks not uniform, the fit is miscalibrated for this parameter"
        verdicts.append(Verdict(f"SBC {t.label}", "fail" if t.flagged else "ok", t.chi2_pvalue, t.level,
                                message))
    return verdicts


def format_sbc(result: SBCResult, *, alpha: float = DEFAULT_ALPHA) -> str:
    """A text table of the per-element tests and the overall verdict line."""
    tests = element_tests(result, alpha=alpha)
    width = max([len(t.label) for t in tests] + [9])
    lines = [f"{'parameter':<{width}}  {'chi2':>8}  {'bins':>4}  {'p-value':>9}  {'ECDF out':>8}  "
             f"{'at 0 or L':>9}  {'p-value':>9}  verdict",
             "-" * (width + 70)]
    for t in tests:
        lines.append(f"{t.label:<{width}}  {t.chi2:8.2f}  {t.bins:4d}  {t.chi2_pvalue:9.3g}  "
                     f"{t.ecdf_outside:8d}  {t.extreme:9d}  {t.extreme_pvalue:9.3g}  "
                     f"{'FLAGGED !!' if t.flagged else 'ok'}")
    flagged = [t.label for t in tests if t.flagged]
    lines.append(f"SBC over n={result.num_replicates} replicates, L={result.num_draws} draws, family-wise "
                 f"false-alarm rate {alpha:g}: " + ("CALIBRATED (no element flagged)" if not flagged
                                                      else f"MISCALIBRATED: {flagged}"))
    if result.num_replicates < LOW_POWER_REPLICATES:
        lines.append(low_power_note(result.num_replicates))
    note = unconverged_fits_note(result)
    if note:
        lines.append("note: " + note)
    return "\n".join(lines)


#: Below this many replicates the uniformity tests can miss even gross miscalibration.
LOW_POWER_REPLICATES = 20


def low_power_note(num_replicates: int) -> str:
    return (f"note: only {num_replicates} replicates; the tests have little power below "
            f"{LOW_POWER_REPLICATES}: 'calibrated' means 'not shown miscalibrated'")


# --------------------------------------------------------------------------------------------
# plots


def _grid(count: int, columns: int = 4):
    from matplotlib.figure import Figure

    columns = min(columns, count)
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(3.2 * columns, 2.4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).reshape(-1)
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes


def _limited(result: SBCResult, max_elements: int) -> list[str]:
    if max_elements < 1:
        raise ValueError(f"max_elements: expected a positive integer, got {max_elements}")
    return list(result.ranks)[:max_elements]


def plot_rank_histograms(result: SBCResult, *, max_elements: int = 12, max_bins: int = 20,
                         alpha: float = DEFAULT_ALPHA):
    """Rank histogram per element, with the 99 % pointwise binomial band of a uniform count."""
    from scipy import stats

    labels = _limited(result, max_elements)
    fig, axes = _grid(len(labels))
    n, L = result.num_replicates, result.num_draws
    bins = _num_bins(n, L, max_bins)
    bin_of_value = (np.arange(L + 1) * bins) // (L + 1)
    probs = np.bincount(bin_of_value, minlength=bins) / (L + 1)
    lo, hi = stats.binom.ppf(0.005, n, probs), stats.binom.ppf(0.995, n, probs)
    flagged = {t.label for t in element_tests(result, alpha=alpha, max_bins=max_bins) if t.flagged}
    for ax, label in zip(axes, labels):
        counts = np.bincount(bin_of_value[result.ranks[label]], minlength=bins)
        x = np.arange(bins)
        ax.fill_between(np.repeat(np.arange(bins + 1), 2)[1:-1] - 0.5, np.repeat(lo, 2), np.repeat(hi, 2),
                        color="0.85", label="99% band")
        ax.bar(x, counts, width=0.9, color="C3" if label in flagged else "C0")
        ax.axhline(n * probs.mean(), color="0.4", lw=0.8)
        ax.set_title(label + (" (flagged)" if label in flagged else ""), fontsize=9)
        ax.set_xlabel(f"rank bin (L={L})", fontsize=8)
    return fig


def plot_ecdf_difference(result: SBCResult, *, max_elements: int = 12, alpha: float = DEFAULT_ALPHA):
    """ECDF of the fractional ranks minus the uniform CDF, with the simultaneous band used by
    the test (level ``1 - alpha / (3 · num_elements)``)."""
    labels = _limited(result, max_elements)
    fig, axes = _grid(len(labels))
    level = alpha / (3 * max(len(result.ranks), 1))
    points, lower, upper = ecdf_band(result.num_replicates, result.num_draws, 1 - level)
    flagged = {t.label for t in element_tests(result, alpha=alpha) if t.flagged}
    for ax, label in zip(axes, labels):
        ecdf = _ecdf(result.ranks[label], result.num_draws, points)
        ax.fill_between(points, lower - points, upper - points, color="0.85")
        ax.step(points, ecdf - points, where="mid", color="C3" if label in flagged else "C0")
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_title(label + (" (flagged)" if label in flagged else ""), fontsize=9)
        ax.set_xlabel("fractional rank", fontsize=8)
    return fig
