"""Build ArviZ ``InferenceData`` from plain named arrays, one group at a time.

Every backend hands this module arrays shaped ``(chain, draw, ...)`` with explicit dims; nothing
here knows any backend's types, and shapes are never guessed: a dims entry that does not match
the array's rank is an error naming the variable. ``observed_data`` and ``constant_data`` have no
chain/draw axes.

Also: atomic netCDF writing (:func:`write_netcdf`), so a crash never leaves a half-written file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from diagnostics._arviz import az
import numpy as np

from diagnostics.precision import name as precision_name

__all__ = ["to_inference_data", "write_netcdf", "read_netcdf", "atomic_write", "atomic_write_text",
           "atomic_savez", "with_time_coord", "SAMPLE_STATS_NAMES"]

#: ArviZ's conventional names for sampler statistics.
SAMPLE_STATS_NAMES = {
    "diverging": "diverging",
    "divergences": "diverging",
    "energy": "energy",
    "step_size": "step_size",
    "tree_depth": "tree_depth",
    "accept_prob": "acceptance_rate",
    "mean_accept_prob": "acceptance_rate",
    "acceptance_rate": "acceptance_rate",
    "acceptance": "acceptance_rate",
    "num_steps": "n_steps",
    "n_steps": "n_steps",
    "potential_energy": "lp",
    "lp": "lp",
}

_SAMPLED_GROUPS = ("posterior", "sample_stats", "log_likelihood", "posterior_predictive", "prior",
                   "prior_predictive", "sample_stats_prior")


def _as_numpy(values: Any, name: str, group: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == object:
        raise TypeError(f"{group}[{name!r}]: expected a numeric array, got dtype object")
    return array


def _check_sampled(group: str, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    chain_draw: tuple[int, int] | None = None
    for name, values in arrays.items():
        array = _as_numpy(values, name, group)
        if array.ndim < 2:
            raise ValueError(
                f"{group}[{name!r}]: expected shape (chain, draw, ...), got {array.shape}"
            )
        if chain_draw is None:
            chain_draw = array.shape[:2]
        elif array.shape[:2] != chain_draw:
            raise ValueError(
                f"{group}[{name!r}]: (chain, draw) = {array.shape[:2]} differs from "
                f"{chain_draw} of the other variables in {group}"
            )
        out[name] = array
    return out


def _check_dims(arrays: Mapping[str, np.ndarray], dims: Mapping[str, Sequence[str]], sampled: bool,
                group: str) -> dict[str, list[str]]:
    checked: dict[str, list[str]] = {}
    lead = 2 if sampled else 0
    for name, array in arrays.items():
        if name not in dims:
            continue
        names = list(dims[name])
        if len(names) != array.ndim - lead:
            raise ValueError(
                f"dims[{name!r}]: {names} names {len(names)} axes but {group}[{name!r}] has shape "
                f"{array.shape} ({array.ndim - lead} axes besides "
                f"{'(chain, draw)' if sampled else 'none'})"
            )
        checked[name] = names
    return checked


def _dataset(group: str, arrays: Mapping[str, Any], dims, coords, attrs, sampled: bool):
    import xarray as xr

    checked = _check_sampled(group, arrays) if sampled else {
        k: _as_numpy(v, k, group) for k, v in arrays.items()
    }
    var_dims = _check_dims(checked, dims or {}, sampled, group)
    data_vars = {}
    all_coords: dict[str, Any] = {}
    for name, array in checked.items():
        lead = ["chain", "draw"] if sampled else []
        names = var_dims.get(name) or [f"{name}_dim_{i}" for i in range(array.ndim - len(lead))]
        full = lead + names
        for axis, dim in enumerate(full):
            size = array.shape[axis]
            if dim in ("chain", "draw"):
                all_coords.setdefault(dim, np.arange(size))
            elif coords and dim in coords:
                values = np.asarray(coords[dim])
                if values.shape != (size,):
                    raise ValueError(
                        f"coords[{dim!r}]: has {values.shape[0] if values.ndim else 0} values but "
                        f"{group}[{name!r}] has {size} along {dim!r}"
                    )
                all_coords[dim] = values
            else:
                existing = all_coords.get(dim)
                if existing is not None and len(existing) != size:
                    raise ValueError(
                        f"dims: dimension {dim!r} has length {len(existing)} in one variable and "
                        f"{size} in {group}[{name!r}]"
                    )
                all_coords.setdefault(dim, np.arange(size))
        data_vars[name] = (full, array)
    return xr.Dataset(data_vars=data_vars, coords=all_coords, attrs=dict(attrs or {}))


def to_inference_data(
    *,
    posterior: Mapping[str, Any] | None = None,
    sample_stats: Mapping[str, Any] | None = None,
    log_likelihood: Mapping[str, Any] | None = None,
    posterior_predictive: Mapping[str, Any] | None = None,
    prior: Mapping[str, Any] | None = None,
    prior_predictive: Mapping[str, Any] | None = None,
    observed_data: Mapping[str, Any] | None = None,
    constant_data: Mapping[str, Any] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    coords: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    group_dims: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> az.InferenceData:
    """Assemble an ``InferenceData`` from named arrays.

    Args:
        posterior, log_likelihood, posterior_predictive, prior, prior_predictive: arrays shaped
            ``(chain, draw, *var_shape)``.
        sample_stats: sampler statistics shaped ``(chain, draw, ...)``; names are mapped to
            ArviZ's (``accept_prob`` -> ``acceptance_rate``, ``num_steps`` -> ``n_steps``, ...).
        observed_data, constant_data: arrays without chain/draw axes.
        dims: dimension names per variable (excluding chain and draw), shared by all groups.
        group_dims: per-group overrides, ``{group: {var: names}}`` (e.g. a per-step
            log-likelihood ``(series, time)`` beside observations ``(series, time, obs_dim)``).
        coords: coordinate values per dimension name.
        attrs: attributes (method, seed, entry name, ...) stored on the InferenceData itself
            (``idata.attrs``) and on every group; values must be netCDF-storable (str, numbers).
            ``attrs["precision"]`` defaults to the process's floating precision now
            (:func:`diagnostics.precision.name`, ``"float64"`` or ``"float32"``): the precision the
            run that produced the arrays used.
    """
    attrs = {"precision": precision_name(), **dict(attrs or {})}
    groups: dict[str, Any] = {}
    sampled_inputs = {
        "posterior": posterior,
        "log_likelihood": log_likelihood,
        "posterior_predictive": posterior_predictive,
        "prior": prior,
        "prior_predictive": prior_predictive,
    }
    if sample_stats:
        renamed = {}
        for key, value in sample_stats.items():
            renamed[SAMPLE_STATS_NAMES.get(key, key)] = value
        if "diverging" in renamed:
            renamed["diverging"] = np.asarray(renamed["diverging"]).astype(bool)
        sampled_inputs["sample_stats"] = renamed
    def dims_for(group):
        merged = dict(dims or {})
        merged.update((group_dims or {}).get(group, {}))
        return merged

    for group, arrays in sampled_inputs.items():
        if arrays:
            groups[group] = _dataset(group, arrays, dims_for(group), coords, attrs, sampled=True)
    for group, arrays in (("observed_data", observed_data), ("constant_data", constant_data)):
        if arrays:
            groups[group] = _dataset(group, arrays, dims_for(group), coords, attrs, sampled=False)
    if not groups:
        raise ValueError("to_inference_data: no group given; pass at least posterior=...")
    return az.InferenceData(attrs=attrs, **groups)


def with_time_coord(idata: az.InferenceData, times, *, dim: str = "time") -> az.InferenceData:
    """Give every group's ``dim`` axis the real ``times`` (``(T,)``) as its coordinate, in place
    (and returned): where a group has that axis with ``T`` entries, ``idata[group][dim]`` holds
    the data's times instead of ``0..T-1``. Groups without it, or with another length, are left."""
    times = np.asarray(times)
    if times.ndim != 1:
        raise ValueError(f"times: expected a 1-D array of times, got shape {times.shape}")
    for group in idata.groups():
        dataset = idata[group]
        if dim in dataset.dims and dataset.sizes[dim] == len(times):
            setattr(idata, group, dataset.assign_coords({dim: times}))
    return idata


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> str:
    """Write a file atomically: ``write(tmp_path)`` fills a temporary file in the same folder,
    which then replaces ``path`` (``os.replace``); on any error the temporary file is removed and
    ``path`` keeps its previous content. Returns ``path``. The one place every result file of the
    project (netCDF results, reports, checkpoints, CSVs, SBC replicates) is written through.

    The file ends up with the permissions an ordinary ``open(path, "w")`` would give it: an
    existing file's mode is kept, a new file gets ``0o666`` less the process umask (``mkstemp``
    alone would leave every result readable by its owner only, mode ``0o600``).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        write(tmp)
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _mode_for(path: str) -> int:
    """The mode ``open(path, "w")`` would leave: the existing file's, else 0o666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)  # reading the umask means setting it; set it straight back
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """:func:`atomic_write` for a text file (UTF-8)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)

    return atomic_write(path, write)


def atomic_savez(path: str | os.PathLike, /, **arrays: Any) -> str:
    """:func:`atomic_write` for an ``.npz`` file of ``arrays`` (``np.savez``), flushed to disk
    before the rename. The one ``.npz`` writer: SBC and estimate replicates and every
    :mod:`inference.checkpoint` file go through it (``path`` is positional-only, so an array may
    be named ``path``)."""
    def write(tmp: str) -> None:
        # through a handle: np.savez would append ".npz" to the temporary name
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_write(path, write)


def write_netcdf(idata: az.InferenceData, path: str | os.PathLike) -> str:
    """Write ``idata`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    return atomic_write(path, lambda tmp: idata.to_netcdf(tmp, engine="h5netcdf"))


def read_netcdf(path: str | os.PathLike) -> az.InferenceData:
    """Read an ``InferenceData`` written by :func:`write_netcdf` (or ArviZ)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no such result file {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"path: expected a netCDF result file, got the directory {path!r}")
    try:
        return az.from_netcdf(path, engine="h5netcdf")
    except (OSError, ValueError, KeyError, TypeError) as error:  # h5py/xarray on a damaged or foreign file
        detail = " ".join(str(error).split())[:200]
        raise ValueError(f"path: {path!r} is not a readable netCDF result ({type(error).__name__}: {detail})") from None
