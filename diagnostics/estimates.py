r"""The sampling distribution of a point estimate over replicates (issue 23, item 2).

A recipe that returns a point estimate (PaRIS particle Gibbs's stochastic-approximation MLE, a MAP,
a trained network) has no posterior whose ranks simulation-based calibration could test. What can
be checked is how the estimate ``θ̂`` is distributed around the truth ``θ`` it was simulated from:
for replicate ``i`` simulate data at the config's true parameters with seed ``seed + i``, fit,
and keep, per scalar parameter element, the pair ``(θ̂_i, θ)``. Over ``n`` replicates

.. math::  \text{bias} = \overline{θ̂ - θ} \pm \operatorname{sd}(θ̂ - θ) / \sqrt{n},
           \qquad \text{spread} = \operatorname{sd}(θ̂ - θ)

(:func:`summarise`; :func:`diagnostics.calibration.estimate_rows` reads the stored pairs with the
same function). There is no verdict: an MLE is biased at finite sample size and a MAP towards its
prior, so the figures are compared with what the entry's card says the estimator should give
(for ``ppg_lgssm``: the exact Kalman MLE's own sampling distribution).

Which elements: every variable of the fit's point estimate (:func:`point_estimate`) that the
simulation's ``truth`` also names with the same shape; labels as SBC writes them (``"A[0,1]"``,
:func:`diagnostics.checks.element_labels`).

Resumable, as an SBC sweep (:mod:`diagnostics.sweep`): with ``out_dir`` each finished replicate
is written atomically as ``out_dir/replicate_<i>.npz`` (labels, estimates, truths, the fit's
seconds) next to ``manifest.json`` (``kind: "estimate"``, the seed and the caller's settings; a
rerun with other settings refuses the folder); a rerun fits only the missing replicates. With
``client`` (a ``distributed.Client``) each replicate is one Dask task that writes its own file.

This module imports neither ``zoo`` nor ``inference``: the driver takes plain callables.

Public API: :class:`EstimateResult`, :class:`Summary`, :func:`is_point_estimate`, :func:`point_estimate`,
:func:`estimate_pairs`, :func:`run_estimates`, :func:`load_estimates`, :func:`summarise`,
:func:`format_estimates`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import sweep
from .checks import draws_kind, element_labels, run_attrs
from .convert import atomic_savez

__all__ = ["EstimateResult", "Summary", "is_point_estimate", "point_estimate", "estimate_pairs", "run_estimates",
           "load_estimates", "summarise", "format_estimates", "KIND"]

#: ``manifest.json``'s ``kind`` of an estimate study's folder (an SBC sweep's folder has none).
KIND = "estimate"

#: A run that learned θ and then drew at it keeps θ̂ as ``constant_data["param_<name>"]``
#: (``attrs["learning"]`` one of these: method ``"ppg"``).
_LEARNED = ("mle", "map")


class EstimateResult(NamedTuple):
    """Point estimates of ``n`` replicates.

    estimates, truths: ``{element label: (n,) float}``.
    replicates: ``(n,)`` replicate indices (sorted); replicate ``i`` used seed ``seed + i``.
    seconds: ``(n,)`` wall-clock seconds of each replicate's simulation and fit.
    """

    estimates: dict[str, np.ndarray]
    truths: dict[str, np.ndarray]
    replicates: np.ndarray
    seconds: np.ndarray

    @property
    def num_replicates(self) -> int:
        return int(len(self.replicates))


class Summary(NamedTuple):
    """The sampling distribution of one element's error ``θ̂ - θ`` over ``n`` finite replicates:
    ``bias`` (mean) with its standard error ``se``, ``spread`` (SD, ddof 1), ``rmse``, and the
    mean of the truths (``truth``)."""

    n: int
    bias: float
    se: float
    spread: float
    rmse: float
    truth: float


def _learned(idata) -> dict[str, np.ndarray]:
    if str(run_attrs(idata).get("learning", "")) not in _LEARNED or "constant_data" not in idata.groups():
        return {}
    return {name[len("param_"):]: np.asarray(idata.constant_data[name].values)
            for name in idata.constant_data.data_vars if name.startswith("param_")}


def _one_point(idata) -> bool:
    if "posterior" not in idata.groups() or draws_kind(idata) != "point":
        return False
    return idata.posterior.sizes.get("chain") == 1 and idata.posterior.sizes.get("draw") == 1


def is_point_estimate(idata) -> bool:
    """Whether a fit returned a point estimate (:func:`point_estimate` reads it), not posterior draws."""
    return bool(_learned(idata)) or _one_point(idata)


def point_estimate(idata) -> dict[str, np.ndarray]:
    """The point estimate a fit returned, ``{name: value}``.

    * A run that learned θ and then drew at the estimate (``attrs["learning"]`` ``"mle"`` or
      ``"map"``: PaRIS particle Gibbs) keeps θ̂ in ``constant_data`` as ``param_<name>``.
    * A run whose draws are a point (``attrs["draws"] == "point"``: MAP, teacher forcing, flows)
      of one chain of one draw: its posterior variables.

    Anything else (posterior draws, replicates at given parameters) is a ``ValueError``: its
    calibration is SBC's (``zoo sbc``).
    """
    learned = _learned(idata)
    if learned:
        return learned
    if _one_point(idata):
        return {name: np.asarray(idata.posterior[name].transpose("chain", "draw", ...).values)[0, 0]
                for name in idata.posterior.data_vars}
    raise ValueError(f"fit: method {run_attrs(idata).get('method', '?')!r} returned {draws_kind(idata)!r} draws, "
                     "not a point estimate (one chain of one draw, or a learned θ̂ in constant_data "
                     "param_<name>); a posterior is calibrated by SBC (zoo sbc)")


def estimate_pairs(estimate: Mapping[str, Any], truth: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """``{element label: (estimate, truth)}`` for every scalar element of each variable that both
    ``estimate`` and ``truth`` name with the same shape; a ``ValueError`` naming both sides' names
    when there is none."""
    pairs: dict[str, tuple[float, float]] = {}
    for name in estimate:
        if name not in truth:
            continue
        value = np.asarray(estimate[name], dtype=float)
        true = np.asarray(truth[name], dtype=float)
        if value.shape != true.shape:
            continue
        for label, idx in element_labels(name, value.shape):
            pairs[label] = (float(value[idx]), float(true[idx]))
    if not pairs:
        raise ValueError(f"truth: no parameter of the fit's point estimate {sorted(estimate)} has a true value "
                         f"of the same shape (the simulation's truth names {sorted(truth)}); this config "
                         "learns no parameter whose truth is known")
    return pairs


def summarise(estimates: Mapping[str, Sequence[float]],
              truths: Mapping[str, Sequence[float]]) -> dict[str, Summary]:
    """A :class:`Summary` per element of ``estimates[label][i]`` against ``truths[label][i]``
    (non-finite errors left out; with fewer than two finite, NaN spread)."""
    out = {}
    for label in estimates:
        values, true = np.asarray(estimates[label], dtype=float), np.asarray(truths[label], dtype=float)
        errors = values - true
        finite = np.isfinite(errors)
        errors = errors[finite]
        n = int(errors.size)
        spread = float(np.std(errors, ddof=1)) if n > 1 else math.nan
        out[label] = Summary(n, float(np.mean(errors)) if n else math.nan, spread / math.sqrt(n) if n else math.nan,
                             spread, float(np.sqrt(np.mean(errors ** 2))) if n else math.nan,
                             float(np.mean(true[finite])) if n else math.nan)
    return out


# --------------------------------------------------------------------------------------------
# resumable storage


def _path(out_dir: str, i: int) -> str:
    return sweep.task_path(out_dir, "replicate", i, "npz")


def _save(out_dir: str, i: int, pairs: Mapping[str, tuple[float, float]], seconds: float) -> None:
    labels = list(pairs)
    atomic_savez(_path(out_dir, i), labels=np.array(labels), estimates=np.array([pairs[k][0] for k in labels]),
                 truths=np.array([pairs[k][1] for k in labels]), seconds=np.array(float(seconds)))


def _load(path: str) -> tuple[dict[str, tuple[float, float]], float]:
    with np.load(path, allow_pickle=False) as stored:
        labels = [str(s) for s in stored["labels"]]
        pairs = {k: (float(e), float(t)) for k, e, t in zip(labels, stored["estimates"], stored["truths"])}
        return pairs, float(stored["seconds"])


def _fitted_parameters(idata, data) -> dict[str, np.ndarray]:
    """``run_estimates``'s default ``estimate``: the fit's :func:`point_estimate` (``data`` unused)."""
    return point_estimate(idata)


class _Replicate:
    """Simulate, fit, read the estimate and (with a folder) write one replicate: one sweep task."""

    def __init__(self, simulate, fit, seed, out_dir, estimate=None):
        self.simulate, self.fit, self.seed, self.out_dir = simulate, fit, seed, out_dir
        self.estimate = _fitted_parameters if estimate is None else estimate

    def __call__(self, i: int) -> tuple[int, dict[str, tuple[float, float]], float]:
        started = time.perf_counter()
        data, truth = self.simulate(self.seed + i)
        idata = self.fit(data, self.seed + i)
        pairs = estimate_pairs(self.estimate(idata, data), truth)
        seconds = time.perf_counter() - started
        if self.out_dir is not None:
            _save(self.out_dir, i, pairs, seconds)
        return i, pairs, seconds


def run_estimates(simulate: Callable[[int], tuple[Any, Mapping[str, Any]]], fit: Callable[[Any, int], Any], *,
                  num_replicates: int, seed: int = 0, out_dir: str | os.PathLike | None = None,
                  settings: Mapping[str, Any] | None = None, progress: bool = False,
                  client: Any = None, estimate: Callable[[Any, Any], Mapping[str, Any]] | None = None) -> EstimateResult:
    """The point estimate's sampling distribution over ``num_replicates`` replicates.

    Args:
        simulate: ``simulate(seed) -> (data, truth)``: data at the true parameters, simulated with
            the integer seed ``seed + i`` for replicate ``i``; ``truth`` maps names to true values.
        fit: ``fit(data, seed) -> InferenceData`` holding a point estimate (:func:`point_estimate`),
            called with the replicate's seed.
        num_replicates: ``n``.
        seed: the first replicate's seed.
        out_dir: folder for resumable per-replicate results (None: keep in memory only).
        settings: recorded in (and checked against) the folder's manifest with the seed, e.g. the
            entry, config, method and options, so a folder is never resumed with another recipe.
        progress: print one line per finished replicate.
        client: a ``distributed.Client``: one Dask task per replicate, each writing its own file on
            its worker (:func:`diagnostics.sweep.map_tasks`); needs ``out_dir``. The estimates are the
            same as without a client: each replicate depends on its seed only.
        estimate: ``estimate(idata, data) -> {name: value}`` (the fit and the data it was given),
            what is paired with the truth (:func:`estimate_pairs`); None: the fit's
            :func:`point_estimate`. ``zoo estimates`` adds an entry's ``estimands`` (quantities a
            trained network implies whose truth is known; a forecaster's read from the data's
            test part).
    """
    if isinstance(num_replicates, bool) or not isinstance(num_replicates, (int, np.integer)) or num_replicates < 1:
        raise ValueError(f"num_replicates: expected a positive integer, got {num_replicates!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    if client is not None and out_dir is None:
        raise ValueError("out_dir: a study on a Dask client writes its replicates on the workers; give a folder")
    done: dict[int, dict[str, tuple[float, float]]] = {}
    seconds: dict[int, float] = {}
    if out_dir is not None:
        manifest = {"kind": KIND, "seed": int(seed), **sweep.manifest_values(settings or {})}
        out_dir = sweep.open_folder(out_dir, manifest, kind="an estimate study")
        for i in sweep.finished(out_dir, "replicate", "npz", num_replicates):
            done[i], seconds[i] = _load(_path(out_dir, i))
    todo = [i for i in range(num_replicates) if i not in done]
    for _, (i, pairs, took) in sweep.map_tasks(_Replicate(simulate, fit, int(seed), out_dir, estimate), todo, client=client):
        done[i], seconds[i] = pairs, took
        if progress:
            print(f"estimates: replicate {i + 1}/{num_replicates} done ({took:.1f} s): "
                  + ", ".join(f"{k} {e:.4g}" for k, (e, _) in pairs.items()), flush=True)
    return _collect(done, seconds)


def load_estimates(out_dir: str | os.PathLike) -> EstimateResult:
    """The finished replicates of a folder written by :func:`run_estimates` (``zoo estimates --out``)."""
    out_dir = os.fspath(out_dir)
    if not os.path.exists(os.path.join(out_dir, sweep.MANIFEST)):
        raise FileNotFoundError(f"out_dir: {out_dir!r} holds no estimate study (no {sweep.MANIFEST})")
    done, seconds = {}, {}
    for i in sweep.finished(out_dir, "replicate", "npz"):
        done[i], seconds[i] = _load(_path(out_dir, i))
    if not done:
        raise ValueError(f"out_dir: {out_dir!r} has no finished replicate yet")
    return _collect(done, seconds)


def _collect(done: Mapping[int, Mapping[str, tuple[float, float]]], seconds: Mapping[int, float]) -> EstimateResult:
    replicates, (estimates, truths) = sweep.element_columns(done)
    return EstimateResult(estimates, truths, replicates, np.array([seconds[int(i)] for i in replicates]))


def format_estimates(result: EstimateResult) -> str:
    """A text table, one row per element: truth, mean estimate, bias ± s.e., spread, RMSE."""
    summaries = summarise(result.estimates, result.truths)
    width = max([len(k) for k in summaries] + [9])
    lines = [f"{'parameter':<{width}}  {'truth':>9}  {'mean θ̂':>9}  {'bias':>9}  {'± s.e.':>8}  {'spread':>8}  "
             f"{'RMSE':>8}  finite", "-" * (width + 78)]
    for label, s in summaries.items():
        lines.append(f"{label:<{width}}  {s.truth:9.4g}  {s.truth + s.bias:9.4g}  {s.bias:+9.3g}  {s.se:8.2g}  "
                     f"{s.spread:8.3g}  {s.rmse:8.3g}  {s.n}/{result.num_replicates}")
    lines.append(f"point estimate over n={result.num_replicates} replicates simulated at the truth "
                 f"(median {np.median(result.seconds):.1f} s per replicate); bias = mean(θ̂ - θ), "
                 "spread = SD(θ̂ - θ)")
    return "\n".join(lines)
