"""What every runner shares, written once: a runner reads validate → set up → loop → pack.

A runner is ``run_xxx(target, *, seed, progress, <named options>) -> arviz.InferenceData``
(docs/contracts.md). The steps that are not the algorithm itself live here:

* loop: :func:`progress_bar` (tqdm, silent when ``progress=False``);
* pack: :func:`pack`, the one place where a run becomes ``InferenceData``: it writes the common
  ``attrs`` (``method``, ``target``, ``draws``, ``seed``) and the ``observed_data`` group.

``attrs["draws"]`` says what the draws are (:data:`DRAWS`), for ``diagnostics.checks``:
``"markov"`` (Markov chains: NUTS, PMMH, particle Gibbs, PaRIS particle Gibbs), ``"iid"``
(independent draws: SVI guide samples, resampled SMC / SMC² particles, exact samplers) or
``"point"`` (the parameters are a point, given or estimated: the draw axis holds one draw or
independent replicates at that point, as a particle filter's runs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from inference.types import Target

__all__ = ["DRAWS", "progress_bar", "pack", "target_dims"]

#: The kinds of draws a run can hold (``attrs["draws"]``); ``diagnostics.checks.DRAWS`` reads them.
DRAWS = ("markov", "iid", "point")

_SAMPLED = ("posterior", "sample_stats", "log_likelihood", "posterior_predictive")


def progress_bar(total: int, *, desc: str, progress: bool, initial: int = 0, unit: str = "it"):
    """A ``tqdm`` bar over ``total`` steps, disabled (and silent) when ``progress`` is False.

    Use it as a context manager (``with progress_bar(...) as bar: bar.update(n)``) so that it is
    closed when the loop raises.
    """
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not progress)


def target_dims(arrays: Mapping[str, Any], dims: Mapping[str, Sequence[str]], *, lead: int) -> dict:
    """The target's declared dims for the variables of ``arrays`` whose rank they fit.

    ``lead`` is the number of sample axes (2 for ``(chain, draw)``, 0 for observed data). A
    variable with more axes than declared names (e.g. a predictive ``y`` of shape ``(series,
    time, obs_dim)`` where the per-step log-likelihood ``y`` is ``(series, time)``) keeps the
    declared names for its leading axes and gets ``<var>_dim_<k>`` for the trailing ones; a
    variable with fewer axes gets ArviZ's default names.
    """
    chosen = {}
    for name, names in (dims or {}).items():
        if name not in arrays:
            continue
        rank = np.ndim(arrays[name]) - lead
        names = list(names)
        if rank == len(names):
            chosen[name] = names
        elif rank > len(names):
            chosen[name] = names + [f"{name}_dim_{k}" for k in range(len(names), rank)]
    return chosen


def pack(target: Target, *, method: str, draws: str, posterior: Mapping[str, Any], seed: int | None = None,
         sample_stats: Mapping[str, Any] | None = None, log_likelihood: Mapping[str, Any] | None = None,
         posterior_predictive: Mapping[str, Any] | None = None, constant_data: Mapping[str, Any] | None = None,
         dims: Mapping[str, Sequence[str]] | None = None,
         group_dims: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
         attrs: Mapping[str, Any] | None = None):
    """A run's arrays as ``arviz.InferenceData`` (through ``diagnostics.convert``).

    Args:
        target: the run's target; its ``observed`` arrays become ``observed_data`` (dims from
            ``target.dims`` by :func:`target_dims`) and its ``name`` ``attrs["target"]``.
        method: the facade's method name (``attrs["method"]``).
        draws: what the draws are, one of :data:`DRAWS` (``attrs["draws"]``).
        posterior, sample_stats, log_likelihood, posterior_predictive: ``(chain, draw, ...)``.
        seed: the run's seed (``attrs["seed"]``), where it has one.
        constant_data: arrays without sample axes (e.g. the fixed parameters of a filter run).
        dims: dims per variable shared by the sampled groups; ``group_dims``: per-group ones.
        attrs: the runner's own attributes, added after the common ones.
    """
    from diagnostics.convert import to_inference_data

    if draws not in DRAWS:
        raise ValueError(f"draws: expected one of {list(DRAWS)}, got {draws!r}")
    groups = {"posterior": posterior, "sample_stats": sample_stats, "log_likelihood": log_likelihood,
              "posterior_predictive": posterior_predictive}
    groups = {g: arrays for g, arrays in groups.items() if arrays}
    per_group = {g: {**dict(dims or {}), **dict((group_dims or {}).get(g, {}))} for g in groups}
    if constant_data:
        groups["constant_data"] = constant_data
        per_group["constant_data"] = {k: d for k, d in {**dict(dims or {}),
                                                        **dict((group_dims or {}).get("constant_data", {}))}.items()
                                      if k in constant_data}
    observed = {k: np.asarray(v) for k, v in dict(target.observed or {}).items()}
    if observed:
        groups["observed_data"] = observed
        per_group["observed_data"] = target_dims(observed, target.dims or {}, lead=0)
    all_attrs: dict[str, Any] = {"method": method, "target": target.name, "draws": draws}
    if seed is not None:
        all_attrs["seed"] = int(seed)
    all_attrs.update(attrs or {})
    return to_inference_data(**groups, group_dims=per_group, attrs=all_attrs)
