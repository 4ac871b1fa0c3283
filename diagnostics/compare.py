r"""Model comparison: PSIS-LOO and WAIC, leave-future-out CV, evidence and Bayes factors, one table.

Everything reads ``arviz.InferenceData`` (this package imports neither ``zoo`` nor ``inference``).

**LOO / WAIC** (Vehtari, Gelman, Gabry 2017) through ArviZ (``az.loo``, ``az.waic``,
``az.compare``) on the ``log_likelihood`` group, with Pareto-k diagnostics: ``k > 0.7`` makes a
point's PSIS estimate unreliable, ``k > 1`` invalid. For state-space programs the pointwise terms
are the per-step predictive increments ``log p(y_t | y_{<t}, θ)`` (``(series, time)``).

**Leave-future-out** (Bürkner, Gabry, Vehtari 2020, PSIS-LFO). With per-step terms
``ℓ_s(t) = log p(y_t | y_{<t}, θ_s)`` summed over series, the ``M``-step-ahead predictive of the
block starting at ``i`` given ``y_{<i}`` is

.. math::  \mathrm{elpd}_i = \log \int \prod_{t=i}^{i+M-1} p(y_t \mid y_{<t}, θ)\, p(θ \mid y_{<i})\,dθ,
           \qquad i = L, \dots, T - M.

Draws of ``p(θ | y_{<i*})`` from the last fit (at ``i* ≤ i``) are importance-weighted to
``p(θ | y_{<i})`` with ratios ``log r_s = Σ_{t=i*}^{i-1} ℓ_s(t)``, Pareto-smoothed
(``az.psislw``); when the Pareto ``k`` exceeds ``k_threshold`` (0.7) the caller's ``refit(i)`` is
called and ``i* = i``. The first fit is ``refit(L)``. Without a ``refit`` callable, the full-data
posterior is the only fit (``i* = T`` and ``log r_s = -Σ_{t=i}^{T-1} ℓ_s(t)``): an approximation
whose unreliable steps (``k > k_threshold``) are reported, not fixed.

**Evidence.** :func:`log_evidence` reads ``log p̂(y)`` and its Monte Carlo error from a run:

1. ``attrs["log_evidence"]`` and ``attrs["log_evidence_se"]`` when present (tempered SMC);
2. else ``sample_stats["log_evidence"]`` (chain, draw): when it is constant along ``draw`` in
   every chain, each chain is one independent estimate (one SMC/SMC² run per chain), otherwise
   every element is one (particle-filter replicates); estimates ``ℓ_r`` are combined as
   ``log mean_r exp(ℓ_r)`` with standard error ``sd(exp ℓ_r) / (√R mean(exp ℓ_r))``.

A run at fixed parameters (``attrs["draws"] == "point"``, see :func:`diagnostics.checks.draws_kind`;
e.g. a particle filter) estimates ``p(y | θ)``, not ``p(y)``: its kind is ``"likelihood at fixed
θ"`` and Bayes factors are only formed between runs of the same kind. ``log BF_{ab} = log Z_a - log Z_b``, ``se = sqrt(se_a² + se_b²)``.

**Choosing a model** among nested ones listed simplest first (``order``): by LOO or LFO the
simplest model whose ELPD is within ``num_se`` standard errors of the best (two nested models tie
on data from the simpler one, so the top row alone would favour the larger model by noise); the
standard error of a difference is that of the paired pointwise differences, ``sqrt(n var(Δ_i))``
(``az.compare``'s ``dse`` for LOO). By evidence the largest ``log p(y)`` wins.

Public API: :func:`pointwise_loglik`, :func:`loo`, :func:`waic`, :func:`pareto_k_summary`,
:func:`draw_constant_observations`,
:class:`LFOResult`, :func:`psis_lfo`, :func:`exact_lfo`, :class:`Evidence`, :func:`log_evidence`,
:func:`bayes_factors`, :func:`compare_table`, :func:`format_table`, :func:`simplest`,
:func:`choose_by_loo`, :func:`choose_by_lfo`, :class:`ModelChoice`, :func:`choose_model`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from diagnostics._arviz import az
import numpy as np

from .checks import draws_kind, overall, run_attrs, run_checks, screen_elements, stats_quietly

__all__ = [
    "pointwise_loglik",
    "loo",
    "waic",
    "pareto_k_summary",
    "draw_constant_observations",
    "LFOResult",
    "psis_lfo",
    "exact_lfo",
    "Evidence",
    "log_evidence",
    "combine_log_evidence",
    "bayes_factors",
    "compare_table",
    "format_table",
    "simplest",
    "choose_by_loo",
    "choose_by_lfo",
    "ModelChoice",
    "choose_model",
    "K_GOOD",
    "K_BAD",
]

#: Pareto k above which a PSIS estimate is unreliable (and an LFO refit is triggered).
K_GOOD = 0.7
#: Pareto k above which the importance ratios have no finite mean.
K_BAD = 1.0

# --------------------------------------------------------------------------------------------
# pointwise log-likelihood


def _loglik_var(idata, var_name: str | None) -> str:
    if not isinstance(idata, az.InferenceData):
        raise TypeError(f"idata: expected arviz.InferenceData, got {type(idata).__name__}")
    if "log_likelihood" not in idata.groups():
        raise KeyError(f"idata: has no log_likelihood group (groups {idata.groups()}); fit with a "
                       "backend that stores the pointwise log-likelihood")
    names = list(idata.log_likelihood.data_vars)
    if var_name is None:
        if len(names) != 1:
            raise ValueError(f"var_name: the log_likelihood group has {names}; say which one")
        return names[0]
    if var_name not in names:
        raise KeyError(f"var_name: {var_name!r} not in the log_likelihood group; have {names}")
    return var_name


def pointwise_loglik(idata, var_name: str | None = None, *, time_dim: str = "time") -> np.ndarray:
    """``(S, T)`` per-step log-likelihood: draws flattened over (chain, draw), every dimension
    other than ``time_dim`` (e.g. ``series``) summed out. Missing (NaN) terms count as 0."""
    var = _loglik_var(idata, var_name)
    da = idata.log_likelihood[var]
    if time_dim not in da.dims:
        raise KeyError(f"time_dim: log_likelihood[{var!r}] has dims {da.dims}, no {time_dim!r}; "
                       "leave-future-out needs a time axis")
    others = [d for d in da.dims if d not in ("chain", "draw", time_dim)]
    da = da.transpose("chain", "draw", time_dim, *others)
    values = np.asarray(da.values, dtype=float)
    values = np.where(np.isnan(values), 0.0, values)
    values = values.reshape(values.shape[:3] + (-1,)).sum(axis=-1)
    return values.reshape(-1, values.shape[2])


# --------------------------------------------------------------------------------------------
# LOO / WAIC


def loo(idata, var_name: str | None = None):
    """``az.loo(idata, pointwise=True)``: ELPD, its SE, ``p_loo`` and the pointwise Pareto k.

    One judgement with ``diagnostics.checks.check_pareto_k``: an observation whose log-likelihood
    is the same in every draw (:func:`draw_constant_observations`, e.g. the first step of a
    state-space model whose initial law and noise are fixed) has equal importance ratios, so its
    LOO term is exact; ArviZ's tail fit reports ``k = inf`` for it and warns. Here its ``k`` is
    NaN (no tail to fit) and ``warning`` is recomputed from the other observations, so this
    result, the check and the report plots say the same. The ELPD is ArviZ's (already exact there).
    """
    var = _loglik_var(idata, var_name)
    result = stats_quietly(az.loo, idata, pointwise=True, var_name=var)
    exact = draw_constant_observations(idata, var)
    k = np.asarray(result.pareto_k.values, dtype=float)
    if exact.any() and exact.size == k.size:
        k = np.where(exact.reshape(k.shape), np.nan, k)
        result["pareto_k"] = result.pareto_k.copy(data=k)
        good_k = float(getattr(result, "good_k", K_GOOD))
        result["warning"] = bool(np.any(k[~np.isnan(k)] > good_k))
    return result


def waic(idata, var_name: str | None = None):
    """``az.waic(idata, pointwise=True)``."""
    var = _loglik_var(idata, var_name)
    return stats_quietly(az.waic, idata, pointwise=True, var_name=var)


def draw_constant_observations(idata, var_name: str | None = None) -> np.ndarray:
    """Boolean mask, in the order of ``az.loo``'s pointwise values: observations whose
    log-likelihood is the same finite value in every draw. Their importance ratios are all equal,
    so LOO is exact there, yet ArviZ's tail fit reports ``k = inf`` for them."""
    _, constant = screen_elements(idata.log_likelihood[_loglik_var(idata, var_name)])
    return constant.reshape(-1)


def pareto_k_summary(loo_result, *, good: float = K_GOOD, bad: float = K_BAD,
                     exact: np.ndarray | None = None) -> dict[str, Any]:
    """``{"max_k", "n_above_good", "n_above_bad", "n_nonfinite", "n"}`` from a pointwise ``az.loo``.

    A non-finite k (ArviZ's tail fit failed) counts as above both thresholds, unless ``exact``
    (a boolean mask, e.g. :func:`draw_constant_observations`) says LOO is exact there; those are
    left out. ``max_k`` is ``inf`` when some counted k is.
    """
    k = np.asarray(loo_result.pareto_k.values, dtype=float).reshape(-1)
    if exact is not None:
        exact = np.asarray(exact, dtype=bool).reshape(-1)
        if exact.shape != k.shape:
            raise ValueError(f"exact: expected a mask of {k.size} observations, got shape {exact.shape}")
        k = k[~exact]
    counted = k[~np.isnan(k)]
    return {"max_k": float(counted.max()) if counted.size else math.nan,
            "n_above_good": int(np.sum(counted > good)), "n_above_bad": int(np.sum(counted > bad)),
            "n_nonfinite": int(np.sum(np.isinf(counted))), "n": int(k.size)}


# --------------------------------------------------------------------------------------------
# leave-future-out


class LFOResult(NamedTuple):
    """PSIS-LFO of one model.

    elpd: ``Σ_i elpd_i`` over the predicted blocks; se: ``sqrt(n · var_i(elpd_i))``.
    pointwise: ``(T,)``, ``elpd_i`` at each block start ``i`` (NaN where none is predicted).
    pareto_k: ``(T,)``, the k of the ratios used at ``i`` (0 where the fit was exact, NaN where
        nothing was predicted).
    refits: block starts where a fit was made (``refit(i)``), the first being ``min_observed``.
    min_observed, horizon, k_threshold: ``L``, ``M`` and the refit threshold.
    exact_refits: False when no ``refit`` was given (full-data posterior only: approximate).
    """

    elpd: float
    se: float
    pointwise: np.ndarray
    pareto_k: np.ndarray
    refits: tuple[int, ...]
    min_observed: int
    horizon: int
    k_threshold: float
    exact_refits: bool

    @property
    def num_unreliable(self) -> int:
        """Predicted blocks whose Pareto k exceeds the threshold (only without refits)."""
        return int(np.sum(np.nan_to_num(self.pareto_k, nan=0.0) > self.k_threshold))


def _logmeanexp(values: np.ndarray, axis: int = 0) -> np.ndarray:
    top = np.max(values, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.squeeze(top, axis) + np.log(np.mean(np.exp(values - top), axis=axis))


def _logsumexp(values: np.ndarray) -> float:
    top = float(np.max(values))
    if not np.isfinite(top):
        return top
    return top + float(np.log(np.sum(np.exp(values - top))))


def _as_matrix(value, var_name, time_dim, num_steps: int | None, what: str) -> np.ndarray:
    if isinstance(value, az.InferenceData):
        value = pointwise_loglik(value, var_name, time_dim=time_dim)
    matrix = np.asarray(value, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"{what}: expected per-step log-likelihood of shape (draws, time), got {matrix.shape}")
    if num_steps is not None and matrix.shape[1] != num_steps:
        raise ValueError(f"{what}: has {matrix.shape[1]} time steps, expected {num_steps} (the "
                         "log-likelihood must be evaluated at every step of the full series)")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{what}: non-finite per-step log-likelihood values")
    return matrix


def _check_lfo_args(num_steps: int, min_observed: int, horizon: int, k_threshold: float) -> None:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon: expected a positive integer, got {horizon!r}")
    if isinstance(min_observed, bool) or not isinstance(min_observed, (int, np.integer)) or not (
            1 <= min_observed <= num_steps - horizon):
        raise ValueError(f"min_observed: expected an integer in [1, T - horizon] = [1, {num_steps - horizon}], "
                         f"got {min_observed!r}")
    if (isinstance(k_threshold, bool) or not isinstance(k_threshold, (int, float, np.floating))
            or math.isnan(k_threshold)):
        raise ValueError(f"k_threshold: expected a number (-inf: refit at every step), got {k_threshold!r}")


def psis_lfo(loglik, *, min_observed: int | None = None, horizon: int = 1, k_threshold: float = K_GOOD,
             refit: Callable[[int], Any] | None = None, var_name: str | None = None,
             time_dim: str = "time", reff: float = 1.0) -> LFOResult:
    """Approximate leave-future-out cross-validation (PSIS-LFO; see the module docstring).

    Args:
        loglik: the full-data fit (InferenceData) or its ``(S, T)`` per-step log-likelihood.
            Used for ``T`` and, without ``refit``, as the only fit.
        min_observed: ``L``, observations before the first prediction (default ``T // 2``).
        horizon: ``M``, steps predicted jointly per block.
        k_threshold: refit when the Pareto k of the ratios exceeds it (``-inf``: at every step,
            which is exact LFO by brute force).
        refit: ``refit(i) -> InferenceData | (S', T) array``: a fit conditioned on ``y_{<i}``
            (the first ``i`` steps) whose per-step log-likelihood is evaluated at **all** ``T``
            steps of the full series. Called for ``i = L`` and wherever k exceeds the threshold.
        var_name, time_dim: which log-likelihood variable, and its time dimension.
        reff: relative efficiency of the draws for PSIS (1 for independent draws).
    """
    full = _as_matrix(loglik, var_name, time_dim, None, "loglik")
    num_steps = full.shape[1]
    min_observed = num_steps // 2 if min_observed is None else min_observed
    _check_lfo_args(num_steps, min_observed, horizon, k_threshold)
    pointwise = np.full(num_steps, np.nan)
    kvals = np.full(num_steps, np.nan)
    refits: list[int] = []
    if refit is not None:
        anchor = min_observed
        reference = _as_matrix(refit(anchor), var_name, time_dim, num_steps, f"refit({anchor})")
        refits.append(anchor)
    else:
        anchor, reference = num_steps, full
    for i in range(min_observed, num_steps - horizon + 1):
        block = reference[:, i:i + horizon].sum(axis=1)
        if i == anchor:
            pointwise[i], kvals[i] = float(_logmeanexp(block)), 0.0
            continue
        log_ratios = (reference[:, anchor:i].sum(axis=1) if i > anchor
                      else -reference[:, i:anchor].sum(axis=1))
        log_weights, k = stats_quietly(az.psislw, log_ratios, reff=reff)
        k = float(k)
        if k > k_threshold and refit is not None:
            anchor = i
            reference = _as_matrix(refit(i), var_name, time_dim, num_steps, f"refit({i})")
            refits.append(i)
            pointwise[i], kvals[i] = float(_logmeanexp(reference[:, i:i + horizon].sum(axis=1))), 0.0
            continue
        pointwise[i] = _logsumexp(np.asarray(log_weights) + block)
        kvals[i] = k
    predicted = pointwise[np.isfinite(pointwise)]
    se = float(np.sqrt(predicted.size * np.var(predicted))) if predicted.size > 1 else math.nan
    return LFOResult(float(predicted.sum()), se, pointwise, kvals, tuple(refits), int(min_observed),
                     int(horizon), float(k_threshold), refit is not None)


def exact_lfo(refit: Callable[[int], Any], num_steps: int, *, min_observed: int | None = None,
              horizon: int = 1, var_name: str | None = None, time_dim: str = "time") -> LFOResult:
    """Exact LFO by brute force: a fit at every block start ``i`` (``refit(i)``)."""
    min_observed = num_steps // 2 if min_observed is None else min_observed
    _check_lfo_args(num_steps, min_observed, horizon, K_GOOD)
    pointwise = np.full(num_steps, np.nan)
    starts = list(range(min_observed, num_steps - horizon + 1))
    for i in starts:
        reference = _as_matrix(refit(i), var_name, time_dim, num_steps, f"refit({i})")
        pointwise[i] = float(_logmeanexp(reference[:, i:i + horizon].sum(axis=1)))
    kvals = np.where(np.isfinite(pointwise), 0.0, np.nan)
    predicted = pointwise[np.isfinite(pointwise)]
    se = float(np.sqrt(predicted.size * np.var(predicted))) if predicted.size > 1 else math.nan
    return LFOResult(float(predicted.sum()), se, pointwise, kvals, tuple(starts), int(min_observed),
                     int(horizon), K_GOOD, True)


# --------------------------------------------------------------------------------------------
# evidence


class Evidence(NamedTuple):
    """``log p̂(y)`` with its Monte Carlo standard error.

    kind: ``"marginal"`` (p(y), e.g. tempered SMC, SMC²) or ``"likelihood at fixed θ"`` (a
    particle filter at given parameters). source: where it was read. num_estimates: independent
    estimates combined (1 when read from attrs: the run's own count is in its attrs).
    """

    log_evidence: float
    se: float
    kind: str
    source: str
    num_estimates: int


def combine_log_evidence(log_evidences) -> tuple[float, float]:
    """``(log mean_r exp ℓ_r, sd(exp ℓ_r) / (√R mean(exp ℓ_r)))`` of independent estimates ``ℓ_r``
    (NaN standard error with one estimate). The same estimator ``inference.smc`` stores."""
    values = np.asarray(log_evidences, dtype=float).reshape(-1)
    if values.size == 0:
        raise ValueError("log_evidences: expected at least one value")
    if not np.all(np.isfinite(values)):
        return math.nan, math.nan
    top = values.max()
    scaled = np.exp(values - top)
    estimate = float(top + np.log(scaled.mean()))
    if values.size < 2:
        return estimate, math.nan
    return estimate, float(scaled.std(ddof=1) / (math.sqrt(values.size) * scaled.mean()))


def log_evidence(idata) -> Evidence | None:
    """The run's log-evidence and its error (rules in the module docstring); None if it has none."""
    if not isinstance(idata, az.InferenceData):
        raise TypeError(f"idata: expected arviz.InferenceData, got {type(idata).__name__}")
    attrs = run_attrs(idata)
    kind = "likelihood at fixed θ" if draws_kind(idata) == "point" else "marginal"
    if "log_evidence" in attrs and "log_evidence_se" in attrs:
        return Evidence(float(attrs["log_evidence"]), float(attrs["log_evidence_se"]), kind,
                        "attrs", int(attrs.get("num_runs", 1)))
    if "sample_stats" not in idata.groups() or "log_evidence" not in idata.sample_stats:
        return None
    values = np.asarray(idata.sample_stats["log_evidence"].transpose("chain", "draw", ...).values,
                        dtype=float)
    if values.ndim != 2:
        raise ValueError(f"sample_stats['log_evidence']: expected (chain, draw), got shape {values.shape}")
    if np.all(values == values[:, :1]):
        estimates, source = values[:, 0], "sample_stats (one estimate per chain)"
    else:
        estimates, source = values.reshape(-1), "sample_stats (one estimate per draw)"
    estimate, se = combine_log_evidence(estimates)
    return Evidence(estimate, se, kind, source, int(estimates.size))


def bayes_factors(evidences: Mapping[str, Evidence | None], *, reference: str | None = None):
    """``log BF`` of each model against ``reference`` (default: the highest evidence of the most
    common kind, a tie of kinds going to ``"marginal"``) with standard errors; a DataFrame
    indexed by model."""
    import pandas as pd

    rows = {label: ev for label, ev in evidences.items() if ev is not None and math.isfinite(ev.log_evidence)}
    if not rows:
        return pd.DataFrame(columns=["log_evidence", "se", "kind", "log_bf", "log_bf_se"])
    if reference is None:
        kinds = [ev.kind for ev in rows.values()]
        # the most common kind; a tie goes to a marginal evidence, then to the first listed
        common = max(dict.fromkeys(kinds), key=lambda kind: (kinds.count(kind), kind == "marginal"))
        reference = max((label for label, ev in rows.items() if ev.kind == common),
                        key=lambda label: rows[label].log_evidence)
    if reference not in rows:
        raise KeyError(f"reference: no evidence for {reference!r}; have {sorted(rows)}")
    ref = rows[reference]
    table = []
    for label, ev in rows.items():
        same = ev.kind == ref.kind
        table.append({"model": label, "log_evidence": ev.log_evidence, "se": ev.se, "kind": ev.kind,
                      "log_bf": ev.log_evidence - ref.log_evidence if same else math.nan,
                      "log_bf_se": math.sqrt(_nan0(ev.se) ** 2 + _nan0(ref.se) ** 2) if same and label != reference
                      else (0.0 if label == reference else math.nan)})
    return pd.DataFrame(table).set_index("model")


def _nan0(value: float) -> float:
    return 0.0 if value is None or not math.isfinite(value) else float(value)


# --------------------------------------------------------------------------------------------
# the table


def compare_table(runs: Mapping[str, az.InferenceData], *, lfo: Mapping[str, LFOResult] | None = None,
                  var_name: str | None = None, verdicts: Mapping[str, Sequence] | None = None,
                  ic: str = "loo"):
    """One comparison table, a ``pandas.DataFrame`` indexed by model, best ELPD first.

    Columns: ``method``; ``elpd_loo``, ``se``, ``p_loo``, ``elpd_diff``, ``dse``, ``weight``
    (``az.compare``, stacking; not for runs at fixed parameters, ``attrs["draws"] == "point"``); ``max_k``,
    ``k>0.7`` (count); ``elpd_waic``; ``elpd_lfo``,
    ``lfo_se``, ``lfo_refits``, ``lfo_max_k`` (when ``lfo`` is given); ``log_evidence``,
    ``log_evidence_se``, ``log_bf``, ``log_bf_se``; ``convergence`` (the worst verdict of
    :func:`diagnostics.checks.run_checks`). A cell that cannot be computed is NaN (e.g. runs
    with different observations cannot share a LOO comparison).
    """
    import pandas as pd

    if not isinstance(runs, Mapping) or not runs:
        raise TypeError("runs: expected a non-empty {label: InferenceData} mapping")
    if ic not in ("loo", "waic"):
        raise ValueError(f"ic: expected 'loo' or 'waic', got {ic!r}")
    labels = list(runs)
    frame = pd.DataFrame(index=pd.Index(labels, name="model"))
    frame["method"] = [str(run_attrs(runs[k]).get("method", "-")) for k in labels]
    # draws at fixed parameters (a particle filter's replicates) are not posterior draws: no LOO
    with_ll = {k: v for k, v in runs.items() if "log_likelihood" in v.groups() and draws_kind(v) != "point"}
    compared = None
    if len(with_ll) >= 2:
        try:
            compared = stats_quietly(az.compare, with_ll, ic=ic, var_name=var_name)
        except (ValueError, TypeError, KeyError, IndexError) as error:
            warnings.warn(f"compare_table: az.compare failed ({error}); LOO columns per model only",
                          stacklevel=2)
    for label in labels:
        idata = runs[label]
        if label in with_ll:
            try:
                loo_result = loo(idata, var_name)
                summary = pareto_k_summary(loo_result, exact=draw_constant_observations(idata, var_name))
                frame.loc[label, "elpd_loo"] = float(loo_result.elpd_loo)
                frame.loc[label, "se"] = float(loo_result.se)
                frame.loc[label, "p_loo"] = float(loo_result.p_loo)
                frame.loc[label, "max_k"] = summary["max_k"]
                frame.loc[label, "k>0.7"] = summary["n_above_good"]
                frame.loc[label, "elpd_waic"] = float(waic(idata, var_name).elpd_waic)
            except (ValueError, KeyError, TypeError) as error:
                warnings.warn(f"compare_table: LOO of {label!r} failed ({error})", stacklevel=2)
    if compared is not None:
        for label in compared.index:
            frame.loc[label, "elpd_diff"] = float(compared.loc[label, "elpd_diff"])
            frame.loc[label, "dse"] = float(compared.loc[label, "dse"])
            frame.loc[label, "weight"] = float(compared.loc[label, "weight"])
    if lfo:
        for label, result in lfo.items():
            if label not in frame.index:
                raise KeyError(f"lfo: {label!r} is not one of the runs {labels}")
            frame.loc[label, "elpd_lfo"] = result.elpd
            frame.loc[label, "lfo_se"] = result.se
            frame.loc[label, "lfo_refits"] = len(result.refits)
            frame.loc[label, "lfo_max_k"] = float(np.nanmax(result.pareto_k))
    evidences = {label: log_evidence(runs[label]) for label in labels}
    factors = bayes_factors(evidences)
    for label in factors.index:
        for column in ("log_evidence", "log_bf", "log_bf_se"):
            frame.loc[label, column] = factors.loc[label, column]
        frame.loc[label, "log_evidence_se"] = factors.loc[label, "se"]
    for label in labels:
        if verdicts is not None and label in verdicts:
            verdict_list = verdicts[label]
        else:
            verdict_list = stats_quietly(run_checks, runs[label])
        frame.loc[label, "convergence"] = overall(verdict_list)
    order = ["method", "elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight", "max_k", "k>0.7", "elpd_waic",
             "elpd_lfo", "lfo_se", "lfo_refits", "lfo_max_k", "log_evidence", "log_evidence_se", "log_bf",
             "log_bf_se", "convergence"]
    frame = frame[[c for c in order if c in frame.columns]]
    if "elpd_loo" in frame:
        frame = frame.sort_values("elpd_loo", ascending=False, na_position="last")
    return frame


def format_table(frame, *, digits: int = 2) -> str:
    """The comparison table as aligned text (numbers rounded to ``digits`` decimals)."""
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 50):
        return frame.round(digits).to_string(na_rep="-")


# --------------------------------------------------------------------------------------------
# choosing among nested models


def simplest(candidates: Sequence[str], order: Sequence[str], what: str = "candidates") -> str:
    """The first model of ``order`` (simplest first) that is among ``candidates``."""
    order = list(order)
    unknown = [name for name in candidates if name not in order]
    if unknown:
        raise KeyError(f"{what}: rows must be named by the models of order {tuple(order)}; got {unknown}")
    if not candidates:
        raise ValueError(f"{what}: no candidate model to choose from")
    return min(candidates, key=order.index)


def choose_by_loo(table, order: Sequence[str], num_se: float = 2.0) -> str:
    """The simplest model (first in ``order``) whose elpd is within ``num_se`` standard errors of
    the best one; ``table`` is ``arviz.compare`` output indexed by model names."""
    diffs = table["elpd_diff"].astype(float)
    dse = table["dse"].astype(float).fillna(0.0)
    return simplest([name for name in table.index if diffs[name] <= num_se * dse[name]], order, "table")


def choose_by_lfo(lfo: Mapping[str, Any], order: Sequence[str], num_se: float = 2.0) -> str:
    """The same rule on leave-future-out: ``lfo`` maps model -> a result with ``pointwise`` (T,)
    elpd values (NaN where nothing is predicted; e.g. :class:`LFOResult`). The SE of a difference
    is that of the paired pointwise differences, ``sqrt(n var(Δ_i))``, as for LOO."""
    points = {k: np.asarray(v.pointwise, dtype=float) for k, v in lfo.items()}
    best = max(points, key=lambda k: np.nansum(points[k]))
    close = []
    for name, values in points.items():
        diff = points[best] - values
        diff = diff[np.isfinite(diff)]
        se = float(np.sqrt(diff.size * np.var(diff))) if diff.size > 1 else 0.0
        if diff.sum() <= num_se * se:
            close.append(name)
    return simplest(close, order, "lfo")


class ModelChoice(NamedTuple):
    """loo: ``arviz.compare`` table (or None); lfo: model -> (elpd_lfo, se) (empty if not given);
    log_evidence: model -> log p(data); chosen_by_loo / chosen_by_lfo / chosen_by_evidence: the
    selected model (None when not computed)."""

    loo: Any
    lfo: dict
    log_evidence: dict
    chosen_by_loo: str | None
    chosen_by_lfo: str | None
    chosen_by_evidence: str | None


def choose_model(idatas: Mapping[str, az.InferenceData] | None = None,
                 log_evidences: Mapping[str, float] | None = None, *, order: Sequence[str] | None = None,
                 lfo: Mapping[str, Any] | None = None, num_se: float = 2.0) -> ModelChoice:
    """Choose among models fitted to one data set by PSIS-LOO (``idatas``: model -> InferenceData
    with a ``log_likelihood`` group), leave-future-out (``lfo``: model -> result with ``elpd``,
    ``se``, ``pointwise``) and/or log-evidence (model -> log p(y); the largest wins).

    ``order`` lists the models simplest first; LOO and LFO need it (see the module docstring).
    """
    if order is None and (idatas or lfo):
        raise ValueError("order: choosing by LOO or LFO needs the models listed simplest first")
    table, by_loo, by_lfo, by_ev = None, None, None, None
    if idatas:
        table = az.compare(dict(idatas), ic="loo")
        by_loo = choose_by_loo(table, order, num_se)
    lfo_values = {k: (float(v.elpd), float(v.se)) for k, v in (lfo or {}).items()}
    if lfo:
        by_lfo = choose_by_lfo(lfo, order, num_se)
    evidences = {k: float(v) for k, v in (log_evidences or {}).items()}
    if evidences:
        by_ev = max(evidences, key=evidences.get)
    return ModelChoice(table, lfo_values, evidences, by_loo, by_lfo, by_ev)
