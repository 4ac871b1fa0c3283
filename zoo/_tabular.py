"""Long-format tables (one row per series and time) <-> arrays ``(series, time, channels)``.

Shared by entries' ``load_columns`` / ``dump_columns`` so that every CSV in and out of the zoo
has the same shape: columns ``series`` (optional; default one series), ``time`` and value columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["long_to_array", "array_to_long", "series_times"]


def _require(columns: Mapping[str, np.ndarray], names: Sequence[str]) -> None:
    missing = [name for name in names if name not in columns]
    if missing:
        raise ValueError(f"columns: missing column(s) {missing}; got {sorted(columns)}")


def series_times(columns: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Series labels (sorted) and, per series, the row indices ordered by time.

    Raises ``ValueError`` if times repeat within a series or are not finite.
    """
    _require(columns, ["time"])
    time = np.asarray(columns["time"], dtype=float)
    if not np.all(np.isfinite(time)):
        raise ValueError("columns['time']: times must be finite numbers")
    series = np.asarray(columns["series"]) if "series" in columns else np.zeros(len(time), dtype=int)
    if len(series) != len(time):
        raise ValueError(f"columns: 'series' has {len(series)} rows but 'time' has {len(time)}")
    labels = np.unique(series)
    rows = []
    for label in labels:
        idx = np.flatnonzero(series == label)
        idx = idx[np.argsort(time[idx], kind="stable")]
        if np.any(np.diff(time[idx]) <= 0):
            raise ValueError(f"columns['time']: times repeat within series {label!r}; expected strictly increasing times")
        rows.append(idx)
    return labels, rows


def long_to_array(columns: Mapping[str, np.ndarray], names: Sequence[str], *, fill=np.nan) -> np.ndarray:
    """Stack value columns ``names`` into ``(series, time, len(names))``; shorter series padded with ``fill``."""
    _require(columns, list(names))
    _, rows = series_times(columns)
    length = max(len(idx) for idx in rows)
    values = np.stack([np.asarray(columns[name]) for name in names], axis=-1)
    dtype = values.dtype if np.issubdtype(values.dtype, np.floating) or fill != fill else values.dtype
    out = np.full((len(rows), length, len(names)), fill, dtype=np.result_type(dtype, np.asarray(fill).dtype))
    for s, idx in enumerate(rows):
        out[s, : len(idx)] = values[idx]
    return out


def array_to_long(data: np.ndarray, names: Sequence[str], times: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Inverse of :func:`long_to_array`: ``(series, time, channels)`` -> columns ``series, time, *names``.

    ``times`` is ``(time,)`` or ``(series, time)``; default the integer step index.
    """
    data = np.asarray(data)
    if data.ndim != 3 or data.shape[2] != len(names):
        raise ValueError(f"data: expected shape (series, time, {len(names)}), got {data.shape}")
    num_series, num_steps, _ = data.shape
    if times is None:
        times = np.arange(num_steps)
    times = np.broadcast_to(np.asarray(times), (num_series, num_steps))
    columns = {
        "series": np.repeat(np.arange(num_series), num_steps),
        "time": times.reshape(-1),
    }
    for c, name in enumerate(names):
        columns[name] = data[:, :, c].reshape(-1)
    return columns
