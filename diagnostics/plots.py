"""Figures of one run, drawn from an ``arviz.InferenceData`` with matplotlib's Agg renderer.

Every function returns a ``matplotlib.figure.Figure`` built without ``pyplot``: no global figure
state, no window, nothing leaks between calls (a notebook shows the returned figure). The number
of variables drawn is capped, and a latent path (a variable with many elements) is drawn as a
posterior band over its time axis rather than element by element, so reports stay small.
:func:`figure_to_base64_png` turns a figure into an inline PNG for the HTML report.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from diagnostics._arviz import az
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from .checks import element_label, relative_ess, run_attrs, screen_elements

__all__ = [
    "Element",
    "scalar_elements",
    "path_variables",
    "plot_trace",
    "plot_rank",
    "plot_posterior",
    "plot_paths",
    "plot_smoothed_paths",
    "one_step_coverage",
    "plot_ppc",
    "plot_pareto_k",
    "plot_particle_ess",
    "figure_to_base64_png",
    "PATH_MIN_ELEMENTS",
]

#: A posterior variable with at least this many elements is a path: drawn as a band.
PATH_MIN_ELEMENTS = 10

_CHAIN_COLOURS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9")


class Element(NamedTuple):
    """One scalar element of a posterior variable: ``var``, its index and a printable label."""

    var: str
    index: tuple[int, ...]
    label: str


def _posterior(idata):
    if not isinstance(idata, az.InferenceData):
        raise TypeError(f"idata: expected arviz.InferenceData, got {type(idata).__name__}")
    if "posterior" not in idata.groups():
        raise KeyError(f"idata: has no 'posterior' group; groups present: {idata.groups()}")
    return idata.posterior


def _draws(da) -> np.ndarray:
    """``(chain, draw, *shape)`` float values of a DataArray."""
    return np.asarray(da.transpose("chain", "draw", ...).values, dtype=float)


def _event_dims(da) -> list[str]:
    return [d for d in da.dims if d not in ("chain", "draw")]


def _check_cap(value: int, name: str) -> None:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def _select(dataset, var_names, group="posterior") -> list[str]:
    if var_names is None:
        return list(dataset.data_vars)
    if isinstance(var_names, str):
        var_names = [var_names]
    unknown = [v for v in var_names if v not in dataset.data_vars]
    if unknown:
        raise KeyError(f"var_names: {unknown} not in the {group} group; have {list(dataset.data_vars)}")
    return list(var_names)


def scalar_elements(idata: az.InferenceData, var_names: Sequence[str] | None = None, *,
                    max_elements: int = 8) -> list[Element]:
    """The elements of the non-path posterior variables (fewer than ``PATH_MIN_ELEMENTS``
    elements each), in variable order, at most ``max_elements`` of them."""
    _check_cap(max_elements, "max_elements")
    posterior = _posterior(idata)
    out: list[Element] = []
    for var in _select(posterior, var_names):
        da = posterior[var]
        dims = _event_dims(da)
        shape = tuple(da.sizes[d] for d in dims)
        if math.prod(shape) >= PATH_MIN_ELEMENTS:
            continue
        for index in np.ndindex(*shape):
            coords = [da.coords[d].values[i] if d in da.coords else i for d, i in zip(dims, index)]
            out.append(Element(var, tuple(int(i) for i in index), element_label(var, dims, coords)))
            if len(out) == max_elements:
                return out
    return out


def path_variables(idata: az.InferenceData, var_names: Sequence[str] | None = None) -> list[str]:
    """Posterior variables with at least ``PATH_MIN_ELEMENTS`` elements (latent paths)."""
    posterior = _posterior(idata)
    return [v for v in _select(posterior, var_names)
            if math.prod(posterior[v].sizes[d] for d in _event_dims(posterior[v])) >= PATH_MIN_ELEMENTS]


def _element_draws(idata, element: Element) -> np.ndarray:
    values = _draws(idata.posterior[element.var])
    return values[(slice(None), slice(None)) + element.index]


def _empty_figure(message: str) -> Figure:
    fig = Figure(figsize=(6, 1.2))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center")
    return fig


def plot_trace(idata: az.InferenceData, var_names: Sequence[str] | None = None, *,
               max_elements: int = 6, max_trace_points: int = 250) -> Figure:
    """Per chain, a histogram (left) and the trace over draws (right) of each scalar element.

    At most ``max_elements`` rows; latent paths are left to :func:`plot_paths`. Traces longer
    than ``max_trace_points`` are drawn every k-th draw (the histograms use every draw), which
    keeps the PNG small.
    """
    _check_cap(max_trace_points, "max_trace_points")
    elements = scalar_elements(idata, var_names, max_elements=max_elements)
    if not elements:
        return _empty_figure("no scalar posterior variables to trace")
    num_draws = idata.posterior.sizes["draw"]
    stride = max(1, math.ceil(num_draws / max_trace_points))
    fig = Figure(figsize=(9, 1.5 * len(elements)), layout="constrained")
    axes = fig.subplots(len(elements), 2, squeeze=False, width_ratios=(1, 2.2))
    for row, element in enumerate(elements):
        values = _element_draws(idata, element)
        finite = values[np.isfinite(values)]
        bins = _hist_edges(finite) if finite.size else 10
        shown = np.arange(0, values.shape[1], stride)
        for chain in range(values.shape[0]):
            colour = _CHAIN_COLOURS[chain % len(_CHAIN_COLOURS)]
            chain_values = values[chain][np.isfinite(values[chain])]
            if chain_values.size:
                axes[row, 0].hist(chain_values, bins=bins, histtype="step", density=True,
                                  color=colour)
            axes[row, 1].plot(shown, values[chain, shown], color=colour, lw=0.7, antialiased=False)
        axes[row, 0].set_ylabel(element.label, fontsize=8)
        axes[row, 0].set_yticks([])
        axes[row, 1].set_xlim(0, values.shape[1] - 1)
    axes[0, 0].set_title("posterior per chain", fontsize=9)
    axes[0, 1].set_title("trace" + (f" (every {stride}th draw)" if stride > 1 else ""), fontsize=9)
    axes[-1, 1].set_xlabel("draw")
    return fig


def plot_rank(idata: az.InferenceData, var_names: Sequence[str] | None = None, *,
              max_elements: int = 6, bins: int = 20) -> Figure:
    """Rank plots (Vehtari et al. 2021): histogram per chain of the pooled ranks of each element.

    Ranks of all draws over all chains are binned; for well-mixed chains every chain's histogram
    is uniform. The grey band is the central 99 % binomial interval of a bin count under
    uniformity (``Binomial(draws, 1/bins)``).
    """
    from scipy import stats

    _check_cap(bins, "bins")
    elements = scalar_elements(idata, var_names, max_elements=max_elements)
    if not elements:
        return _empty_figure("no scalar posterior variables to rank")
    ncols = 2 if len(elements) > 1 else 1
    nrows = math.ceil(len(elements) / ncols)
    fig = Figure(figsize=(4.5 * ncols, 1.9 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)
    for ax, element in zip(axes, elements):
        values = _element_draws(idata, element)
        chains, draws = values.shape
        ranks = stats.rankdata(np.where(np.isfinite(values), values, np.inf), method="average")
        ranks = ranks.reshape(chains, draws)
        edges = np.linspace(0.5, chains * draws + 0.5, bins + 1)
        lo, hi = stats.binom.ppf([0.005, 0.995], draws, 1 / bins)
        ax.axhspan(lo, hi, color="0.85", lw=0)
        ax.axhline(draws / bins, color="0.5", lw=0.8, ls="--")
        for chain in range(chains):
            counts, _ = np.histogram(ranks[chain], bins=edges)
            ax.stairs(counts, edges, color=_CHAIN_COLOURS[chain % len(_CHAIN_COLOURS)], lw=1.2,
                      baseline=None)
        ax.set_title(element.label, fontsize=9)
        ax.set_yticks([])
        ax.set_xticks([])
    for ax in axes[len(elements):]:
        ax.axis("off")
    fig.suptitle("rank plots (one line per chain; grey: 99 % band under uniformity)", fontsize=9)
    return fig


def _truth_value(truth: Mapping[str, Any] | None, element: Element) -> float | None:
    """The true value of ``element`` from ``truth``, or None when absent or of another shape."""
    if not truth or element.var not in truth:
        return None
    value = np.asarray(truth[element.var], dtype=float)
    if not element.index:
        return float(value.reshape(-1)[0]) if value.size == 1 else None
    if value.ndim != len(element.index) or any(i >= n for i, n in zip(element.index, value.shape)):
        return None
    return float(value[element.index])


def plot_posterior(idata: az.InferenceData, var_names: Sequence[str] | None = None, *,
                   truth: Mapping[str, Any] | None = None, max_elements: int = 8) -> Figure:
    """Pooled posterior histogram of each scalar element, its 90 % central interval shaded and,
    where ``truth`` (a ``{var: value}`` mapping) has it, the true value as a red line."""
    elements = scalar_elements(idata, var_names, max_elements=max_elements)
    if not elements:
        return _empty_figure("no scalar posterior variables")
    ncols = min(len(elements), 3)
    nrows = math.ceil(len(elements) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.2 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)
    for ax, element in zip(axes, elements):
        values = _element_draws(idata, element).reshape(-1)
        values = values[np.isfinite(values)]
        if values.size:
            lo, hi = np.quantile(values, [0.05, 0.95])
            ax.axvspan(lo, hi, color="C0", alpha=0.12, lw=0)
            ax.hist(values, bins=40, density=True, color="C0", alpha=0.7)
            ax.axvline(np.median(values), color="C0", lw=1)
        true = _truth_value(truth, element)
        if true is not None:
            ax.axvline(true, color="C3", lw=1.5, label="truth")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_title(element.label, fontsize=9)
        ax.set_yticks([])
    for ax in axes[len(elements):]:
        ax.axis("off")
    return fig


def _time_axis(dims: Sequence[str]) -> int:
    """The axis named ``time`` (or containing it), else the first one."""
    for axis, dim in enumerate(dims):
        if dim == "time":
            return axis
    for axis, dim in enumerate(dims):
        if "time" in dim:
            return axis
    return 0


def _panels(values: np.ndarray, time_axis: int, max_panels: int):
    """Move ``time_axis`` (of the event shape, after the sample axis) last and enumerate at most
    ``max_panels`` index combinations of the other event axes: yields (index, (S, T) array)."""
    moved = np.moveaxis(values, 1 + time_axis, -1)
    other = moved.shape[1:-1]
    for count, index in enumerate(np.ndindex(*other)):
        if count == max_panels:
            return
        yield index, moved[(slice(None),) + index]


def _numeric_axis(coords, size: int) -> np.ndarray:
    """The coordinate values of a time axis when numeric, else ``0..size-1``."""
    if coords is None or not np.issubdtype(np.asarray(coords).dtype, np.number):
        return np.arange(size)
    return np.asarray(coords)


def _band(ax, x, samples, colour, label):
    """Median and 50 % / 90 % bands of ``samples`` (S, T) over ``x``, NaNs ignored."""
    with np.errstate(all="ignore"):
        q = np.nanquantile(samples, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    def named(what):
        return f"{label} {what}" if label else None

    ax.fill_between(x, q[0], q[4], color=colour, alpha=0.18, lw=0, label=named("90 %"))
    ax.fill_between(x, q[1], q[3], color=colour, alpha=0.3, lw=0, label=named("50 %"))
    ax.plot(x, q[2], color=colour, lw=1, label=named("median"))


def _thin(samples: np.ndarray, max_samples: int = 2000) -> np.ndarray:
    if samples.shape[0] <= max_samples:
        return samples
    keep = np.linspace(0, samples.shape[0] - 1, max_samples).astype(int)
    return samples[keep]


def plot_paths(idata: az.InferenceData, var_names: Sequence[str] | None = None, *,
               truth: Mapping[str, Any] | None = None, max_vars: int = 2,
               max_panels: int = 3) -> Figure:
    """Posterior bands (median, 50 %, 90 %) of latent paths over their time axis, with the true
    path where ``truth`` has it. At most ``max_vars`` variables and ``max_panels`` panels each
    (other axes: the first series/state components)."""
    _check_cap(max_vars, "max_vars")
    _check_cap(max_panels, "max_panels")
    names = path_variables(idata, var_names)[:max_vars]
    if not names:
        return _empty_figure("no latent paths in the posterior")
    posterior = idata.posterior
    jobs = []
    for var in names:
        da = posterior[var]
        dims = _event_dims(da)
        values = _draws(da).reshape((-1,) + tuple(da.sizes[d] for d in dims))
        axis = _time_axis(dims)
        true = None
        if truth and var in truth:
            true = np.asarray(truth[var], dtype=float)
            if true.shape != values.shape[1:]:
                true = None
        for index, panel in _panels(_thin(values), axis, max_panels):
            true_panel = None
            if true is not None:
                true_panel = np.moveaxis(true, axis, -1)[index]
            others = [d for i, d in enumerate(dims) if i != axis]
            jobs.append((var, dims[axis], element_label(var, others, index), panel, true_panel,
                         da.coords[dims[axis]].values if dims[axis] in da.coords else None))
    fig = Figure(figsize=(9, 2.2 * len(jobs)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(jobs), 1, squeeze=False)).reshape(-1)
    for ax, (var, time_dim, label, panel, true_panel, x) in zip(axes, jobs):
        x = _numeric_axis(x, panel.shape[-1])
        _band(ax, x, panel, "C0", "posterior")
        if true_panel is not None:
            ax.plot(x, true_panel, color="C3", lw=1, label="truth")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(time_dim, fontsize=8)
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    return fig


def _sample_major(da, dims_last: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``da`` as ``(sample, *other, time)``-ordered values and the names of the other dims."""
    other = [d for d in da.dims if d not in ("sample", *dims_last)]
    order = ["sample", *other, *[d for d in dims_last if d in da.dims]]
    return np.asarray(da.transpose(*order).values), other


def one_step_coverage(paths, level: float = 0.9) -> float:
    """Fraction of the observed values inside the central ``level`` band of their one-step-ahead
    predictive (``paths`` from :func:`zoo.posterior_paths`); NaN observations are left out. A
    calibrated model covers about ``level`` of them."""
    if not 0 < level < 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    for name in ("y_one_step", "y"):
        if name not in getattr(paths, "data_vars", {}):
            raise KeyError(f"paths: expected a dataset with {name!r} (zoo.posterior_paths)")
    y_one = np.asarray(paths["y_one_step"].transpose("sample", *paths["y"].dims).values, dtype=float)
    obs = np.asarray(paths["y"].values, dtype=float)
    lo, hi = np.quantile(y_one, [(1 - level) / 2, (1 + level) / 2], axis=0)
    seen = np.isfinite(obs)
    if not seen.any():
        return float("nan")
    return float(np.mean((obs[seen] >= lo[seen]) & (obs[seen] <= hi[seen])))


def plot_smoothed_paths(paths, *, truth: Mapping[str, Any] | None = None, max_series: int = 2,
                        max_panels: int = 3) -> Figure:
    """What a state-space fit is judged by, per series: the latent path given all the data
    (posterior draws of ``x | y``: median with 50 % / 90 % bands; a discrete state as the
    posterior probability of each state) and each observation against its one-step-ahead
    predictive band (``y_t | y_{0:t-1}``), with the share of observations inside the 90 % band
    in the title. ``paths`` is :func:`zoo.posterior_paths`'s dataset; ``truth`` may hold the true
    latent path ``x`` (drawn in red). At most ``max_series`` series and ``max_panels`` state or
    observation components each."""
    _check_cap(max_series, "max_series")
    _check_cap(max_panels, "max_panels")
    for name in ("x", "y_one_step", "y"):
        if name not in getattr(paths, "data_vars", {}):
            raise KeyError(f"paths: expected a dataset with {name!r} (zoo.posterior_paths)")
    x_vals, x_other = _sample_major(paths["x"], ["time"])
    y_vals, y_other = _sample_major(paths["y_one_step"], ["time"])
    obs = np.asarray(paths["y"].transpose(*y_other, "time").values, dtype=float)
    time = _numeric_axis(paths["time"].values if "time" in paths.coords else None, x_vals.shape[-1])
    true_x = None
    if truth is not None and "x" in truth:
        given = np.asarray(truth["x"], dtype=float)
        if given.shape == tuple(paths["x"].shape[1:]):
            true_x = xr.DataArray(given, dims=paths["x"].dims[1:]).transpose(*x_other, "time").values
    series = range(min(max_series, paths.sizes.get("series", 1)))
    has_series = "series" in paths["x"].dims
    discrete = np.issubdtype(x_vals.dtype, np.integer)
    coverage = one_step_coverage(paths)
    rows = []
    for s in series:
        pick_x = (s,) if has_series else ()
        x_s = x_vals[(slice(None),) + pick_x]
        y_s = y_vals[(slice(None),) + ((s,) if "series" in y_other else ())]
        o_s = obs[(s,) if "series" in y_other else ()]
        t_s = true_x[pick_x] if true_x is not None else None
        rows.append(("latent", s, x_s, t_s))
        rows.append(("one-step", s, y_s, o_s))
    fig = Figure(figsize=(9, 2.3 * len(rows)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(rows), 1, squeeze=False)).reshape(-1)
    for ax, (kind, s, values, other) in zip(axes, rows):
        where = f"series {s}" if has_series else "the series"
        if kind == "latent" and discrete:
            states = np.arange(int(values.max()) + 1)
            probs = np.stack([(values == k).mean(axis=0) for k in states])
            ax.stackplot(time, probs, labels=[f"state {k}" for k in states], alpha=0.7)
            if other is not None:
                ax.plot(time, (other + 0.5) / len(states), "k.", ms=2, label="true state (scaled)")
            ax.set_ylim(0, 1)
            ax.set_title(f"{where}: posterior probability of each latent state", fontsize=9)
        elif kind == "latent":
            flat = values.reshape(values.shape[0], -1, values.shape[-1])
            for c in range(min(max_panels, flat.shape[1])):
                _band(ax, time, flat[:, c], f"C{c}", f"x[{c}]" if flat.shape[1] > 1 else "x")
                if other is not None:
                    ax.plot(time, other.reshape(-1, other.shape[-1])[c], color="C3", lw=0.8,
                            label="truth" if c == 0 else None)
            ax.set_title(f"{where}: latent path given all the data", fontsize=9)
        else:
            flat = values.reshape(values.shape[0], -1, values.shape[-1])
            seen_obs = other.reshape(-1, other.shape[-1])
            for c in range(min(max_panels, flat.shape[1])):
                _band(ax, time, flat[:, c], f"C{c}", "one-step" if c == 0 else None)
                seen = np.isfinite(seen_obs[c])
                ax.plot(np.asarray(time)[seen], seen_obs[c][seen], ".", color="k", ms=3,
                        label="observed" if c == 0 else None)
            ax.set_title(f"{where}: each observation against its one-step-ahead predictive "
                         f"(90 % band covers {coverage:.0%} of all observations)", fontsize=9)
        ax.set_xlabel("time", fontsize=8)
        ax.legend(fontsize=7, loc="upper right", ncol=3)
    return fig


def _hist_edges(values: np.ndarray, bins: int = 30) -> np.ndarray:
    """Histogram edges; integer data with a small range gets one bin per integer."""
    if values.size and np.all(values == np.round(values)) and np.ptp(values) <= 60:
        return np.arange(values.min() - 0.5, values.max() + 1.5)
    return np.histogram_bin_edges(values, bins=bins)


def plot_ppc(idata: az.InferenceData, var_names: Sequence[str] | None = None, *,
             max_vars: int = 2, max_panels: int = 3, num_replicates: int = 20) -> Figure:
    """Posterior predictive against the observed data, for variables in both groups.

    With a time axis (a dim named ``time``, or any variable with at least two dims or ten
    elements): posterior-predictive median and 50 %/90 % bands over time, observed points on top
    (missing observations, NaN, are not drawn). Otherwise: histograms of ``num_replicates``
    replicated data sets against the observed one.
    """
    _check_cap(max_vars, "max_vars")
    _check_cap(max_panels, "max_panels")
    _check_cap(num_replicates, "num_replicates")
    if not isinstance(idata, az.InferenceData):
        raise TypeError(f"idata: expected arviz.InferenceData, got {type(idata).__name__}")
    groups = idata.groups()
    if "posterior_predictive" not in groups or "observed_data" not in groups:
        raise KeyError(f"idata: plot_ppc needs 'posterior_predictive' and 'observed_data' groups; "
                       f"groups present: {groups}")
    predictive, observed = idata.posterior_predictive, idata.observed_data
    candidates = _select(predictive, var_names, "posterior_predictive")
    shared = [v for v in candidates if v in observed.data_vars][:max_vars]
    if not shared:
        return _empty_figure("no variable is both predicted and observed")
    jobs = []
    for var in shared:
        da = predictive[var]
        dims = _event_dims(da)
        obs = np.asarray(observed[var].values, dtype=float)
        values = _draws(da).reshape((-1,) + tuple(da.sizes[d] for d in dims))
        if obs.shape != values.shape[1:]:
            raise ValueError(f"observed_data[{var!r}] has shape {obs.shape} but the posterior "
                             f"predictive has event shape {values.shape[1:]}")
        is_series = bool(dims) and ("time" in dims or len(dims) >= 2 or obs.size >= PATH_MIN_ELEMENTS)
        if is_series:
            axis = _time_axis(dims)
            others = [d for i, d in enumerate(dims) if i != axis]
            x = da.coords[dims[axis]].values if dims[axis] in da.coords else None
            for index, panel in _panels(_thin(values), axis, max_panels):
                obs_panel = np.moveaxis(obs, axis, -1)[index]
                jobs.append(("series", element_label(var, others, index), dims[axis], panel,
                             obs_panel, x))
        else:
            jobs.append(("hist", var, None, values.reshape(values.shape[0], -1), obs.reshape(-1),
                         None))
    fig = Figure(figsize=(9, 2.3 * len(jobs)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(jobs), 1, squeeze=False)).reshape(-1)
    for ax, (kind, label, time_dim, samples, obs, x) in zip(axes, jobs):
        if kind == "series":
            x = _numeric_axis(x, samples.shape[-1])
            _band(ax, x, samples, "C0", "predictive")
            seen = np.isfinite(obs)
            ax.plot(np.asarray(x)[seen], obs[seen], "k.", ms=3, label="observed")
            ax.set_xlabel(time_dim, fontsize=8)
        else:
            finite_obs = obs[np.isfinite(obs)]
            pooled = samples[np.isfinite(samples)]
            bins = _hist_edges(np.concatenate([pooled, finite_obs]))
            picks = np.linspace(0, samples.shape[0] - 1, min(num_replicates, samples.shape[0]))
            for i, pick in enumerate(picks.astype(int)):
                rep = samples[pick][np.isfinite(samples[pick])]
                ax.hist(rep, bins=bins, density=True, histtype="step", color="C0", alpha=0.3,
                        lw=0.8, label="replicated" if i == 0 else None)
            ax.hist(finite_obs, bins=bins, density=True, histtype="step", color="k", lw=1.6,
                    label="observed")
        ax.set_title(f"posterior predictive: {label}", fontsize=9)
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    return fig


def plot_pareto_k(idata: az.InferenceData, var_name: str | None = None) -> Figure:
    """PSIS-LOO Pareto k per observation (flattened in storage order, NaN-only ones dropped),
    with lines at ArviZ's sample-size dependent threshold, 0.7 and 1. Observations whose
    log-likelihood is the same in every draw (LOO exact there; ArviZ's k = inf) are left out, as
    ``checks.check_pareto_k`` leaves them out, and counted in the title."""
    import warnings

    if not isinstance(idata, az.InferenceData):
        raise TypeError(f"idata: expected arviz.InferenceData, got {type(idata).__name__}")
    if "log_likelihood" not in idata.groups():
        raise KeyError(f"idata: has no 'log_likelihood' group; groups present: {idata.groups()}")
    loglik = idata.log_likelihood
    names = _select(loglik, [var_name] if var_name else None, "log_likelihood")
    fig = Figure(figsize=(9, 2.2 * len(names)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(names), 1, squeeze=False)).reshape(-1)
    for ax, var in zip(axes, names):
        da = loglik[var].transpose("chain", "draw", ...)
        values = _draws(da).reshape(da.sizes["chain"] * da.sizes["draw"], -1)
        keep = ~np.all(np.isnan(values), axis=0)
        exact = keep & screen_elements(da)[1].reshape(-1)
        if not np.all(np.isfinite(values[:, keep])):
            ax.axis("off")
            ax.text(0.5, 0.5, f"{var}: non-finite pointwise log-likelihood", ha="center")
            continue
        keep &= ~exact
        if not keep.any():
            ax.axis("off")
            ax.text(0.5, 0.5, f"{var}: the log-likelihood is the same in every draw (PSIS-LOO does not apply)",
                    ha="center")
            continue
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            _, kvals = az.psislw(-values[:, keep].T, reff=relative_ess(idata))
        kvals = np.asarray(kvals, dtype=float)
        position = np.flatnonzero(keep)
        good_k = min(1 - 1 / np.log10(values.shape[0]), 0.7)
        colours = np.where(kvals > 1, "C3", np.where(kvals > good_k, "C1", "C0"))
        top = 1.6
        clipped = kvals > top
        ax.scatter(position[~clipped], kvals[~clipped], c=colours[~clipped], s=10)
        ax.scatter(position[clipped], np.full(clipped.sum(), top), c="C3", s=30, marker="^",
                   label=f"k > {top} (drawn at {top})" if clipped.any() else None)
        for level, style in ((good_k, ":"), (0.7, "--"), (1.0, "-")):
            ax.axhline(level, color="0.4", lw=0.8, ls=style)
        ax.set_ylim(min(-0.2, float(np.min(kvals)) - 0.05), top + 0.1)
        if clipped.any():
            ax.legend(fontsize=7, loc="upper right")
        left_out = (f"; {int(exact.sum())} with the same log-likelihood in every draw left out (LOO exact)"
                    if exact.any() else "")
        ax.set_title(f"Pareto k of PSIS-LOO: {var} (lines: {good_k:.2f}, 0.7, 1){left_out}", fontsize=9)
        ax.set_xlabel("observation (storage order)" if da.ndim != 3 else da.dims[2], fontsize=8)
    return fig


def plot_particle_ess(idata: az.InferenceData) -> Figure:
    """ESS / N per filter step (``sample_stats["ess"]``; ``N = attrs["num_particles"]``):
    median and 90 % band over draws; without ``num_particles`` the raw ESS."""
    if not isinstance(idata, az.InferenceData):
        raise TypeError(f"idata: expected arviz.InferenceData, got {type(idata).__name__}")
    if "sample_stats" not in idata.groups() or "ess" not in idata.sample_stats:
        raise KeyError("idata: plot_particle_ess needs sample_stats['ess']")
    da = idata.sample_stats["ess"].transpose("chain", "draw", ...)
    dims = _event_dims(da)
    values = _draws(da)
    num_particles = run_attrs(idata).get("num_particles")
    num_particles = float(np.asarray(num_particles)) if num_particles is not None else None
    scale = num_particles or 1.0
    fig = Figure(figsize=(9, 2.4), layout="constrained")
    ax = fig.add_subplot()
    if dims:
        samples = values.reshape((-1,) + values.shape[2:]) / scale
        axis = _time_axis(dims)
        index, panel = next(_panels(_thin(samples), axis, 1))
        x = da.coords[dims[axis]].values if dims[axis] in da.coords else np.arange(panel.shape[-1])
        _band(ax, x, panel, "C0", "ESS/N" if num_particles else "ESS")
        ax.set_xlabel(dims[axis], fontsize=8)
    else:
        for chain in range(values.shape[0]):
            ax.plot(values[chain] / scale, lw=0.7, color=_CHAIN_COLOURS[chain % 10])
        ax.set_xlabel("draw", fontsize=8)
        ax.set_ylabel("ESS/N" if num_particles else "ESS", fontsize=8)
    if num_particles:
        ax.axhline(0.1, color="C1", lw=0.8, ls="--")
        ax.axhline(max(0.01, 2 / num_particles), color="C3", lw=0.8, ls="--")
        ax.set_ylim(0, 1.05)
    title = f"particle ESS per step (N = {int(num_particles)})" if num_particles else "particle ESS"
    ax.set_title(title, fontsize=9)
    if dims:
        ax.legend(fontsize=7, loc="lower right")
    return fig


def figure_to_base64_png(fig: Figure, *, dpi: int = 80) -> str:
    """The figure as a base64-encoded PNG (ASCII) for ``<img src="data:image/png;base64,...">``.

    Figures from this module are not registered with ``pyplot``; they are freed once dropped.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig: expected a matplotlib Figure, got {type(fig).__name__}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
