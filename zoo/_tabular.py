"""The zoo's CSV format, declared: :class:`Columns` and the long-table helpers behind it.

Every CSV in and out of the zoo is a long table, one row per series and time step: a series column
(optional on input: left out = one series), a time column and one column per observation channel.
An entry states which columns those are in a :class:`Columns` spec (``ZooEntry(columns=...)``); the
spec gives the entry its ``load_columns`` / ``dump_columns``, their shape checks and the CSV part of
its ``data_doc``. NaN (an empty cell) is the only missing-value marker in a CSV; integer channels
(counts, symbols) hold the spec's ``missing`` stand-in in the array, because an int array has no NaN.

Where rows sit in time is part of the spec (``grid``): on a regular grid of steps ``0..T-1``
(the time column places the rows: a gap of whole steps is missing values, times on no regular grid
are an error), on the config's observation times (a grid known before the
data: a time off it is an error, a grid point a series lacks is missing), or at times that are
themselves data (read from the file, handed to the entry with the values).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Columns", "Loaded", "long_to_array", "array_to_long", "series_times", "regular_steps"]

STEPS = "steps"
DATA = "data"


def _require(columns: Mapping[str, np.ndarray], names: Sequence[str], given: Sequence[str] | None = None) -> None:
    missing = [name for name in names if name not in columns]
    if missing:
        each = ", ".join(f"missing column {name!r}" for name in missing)
        raise ValueError(f"columns: missing column(s) {missing} ({each}); got {sorted(given or columns)}")


def _label(label):
    """A series label as a plain Python value (for messages: 0, not np.int64(0))."""
    return np.asarray(label).item()


def series_times(columns: Mapping[str, np.ndarray], *, time: str = "time", series: str = "series",
                 require_time: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
    """Series labels (sorted) and, per series, the row indices ordered by time.

    Without a ``series`` column all rows are one series. Without a ``time`` column (allowed when
    ``require_time`` is False) the rows are in time order as given. Raises ``ValueError`` if times
    repeat within a series or are not finite.
    """
    if require_time:
        _require(columns, [time])
    if not columns:
        raise ValueError("columns: expected at least one column")
    num_rows = len(next(iter(columns.values())))
    if time in columns:
        times = np.asarray(columns[time], dtype=float)
        if not np.all(np.isfinite(times)):
            raise ValueError(f"columns[{time!r}]: times must be finite numbers")
    else:
        times = np.arange(num_rows, dtype=float)
    labels_column = np.asarray(columns[series]) if series in columns else np.zeros(len(times), dtype=int)
    if len(labels_column) != len(times):
        raise ValueError(f"columns: {series!r} has {len(labels_column)} rows but {time!r} has {len(times)}")
    labels = np.unique(labels_column)
    rows = []
    for label in labels:
        idx = np.flatnonzero(labels_column == label)
        idx = idx[np.argsort(times[idx], kind="stable")]
        if np.any(np.diff(times[idx]) <= 0):
            raise ValueError(f"columns[{time!r}]: times repeat within series {_label(label)!r}; "
                             "expected strictly increasing times")
        rows.append(idx)
    return labels, rows


def _on_grid(time: np.ndarray, grid: np.ndarray) -> bool:
    """Every time within 1e-9 of the grid's span of a grid point."""
    tol = 1e-9 * max(1.0, float(np.max(np.abs(grid))))
    pos = np.clip(np.searchsorted(grid, time), 0, len(grid) - 1)
    lower = np.clip(pos - 1, 0, len(grid) - 1)
    return bool(np.all(np.minimum(np.abs(grid[pos] - time), np.abs(grid[lower] - time)) <= tol))


class Loaded(NamedTuple):
    """What :meth:`Columns.read` returns: the entry's ``data`` and ``times``, the ``(T,)`` real
    times of its time axis (the file's times on the steps grid, the config's grid, or the data's),
    and ``config``: the configuration made on the data's times by ``Columns.regrid`` when they
    were not on the given one's grid (None: the given configuration holds)."""

    data: Any
    times: np.ndarray
    config: Any = None


def regular_steps(time: np.ndarray, labels: Sequence, rows: Sequence[np.ndarray], *,
                  name: str = "time", rtol: float = 1e-6) -> tuple[list[np.ndarray], np.ndarray]:
    """Place rows with real times on a regular grid of steps; ``(positions per series, grid)``.

    The step ``h`` is the smallest gap between consecutive times of any series (1 when no series
    has two rows and the times are whole numbers); the grid starts at the earliest time ``t0`` of
    all series and every time must be ``t0 + k h`` for a whole ``k`` (within ``rtol`` of a step).
    A gap of several steps is then unambiguous: the steps in it are missing. Times that sit on no
    such grid (gaps of 1 and 1.5 steps, say) are ambiguous: ``ValueError`` naming the first one
    and its series. ``rows`` are the row indices per series in time order (:func:`series_times`).
    """
    per_series = [time[idx] for idx in rows]
    gaps = np.concatenate([np.diff(t) for t in per_series])
    t0 = float(min(t[0] for t in per_series))
    if gaps.size:
        step = float(gaps.min())
    elif all(float(t[0]).is_integer() for t in per_series):
        step = 1.0
    elif len({float(t[0]) for t in per_series}) == 1:
        step = 1.0
    else:
        raise ValueError(f"columns[{name!r}]: one row per series at different times {sorted({float(t[0]) for t in per_series})}: "
                         "no step to place them on a regular grid; give whole-number step indices")
    positions = []
    for label, t in zip(labels, per_series):
        k = (t - t0) / step
        off = np.abs(k - np.round(k)) > rtol * np.maximum(1.0, np.abs(k))
        if off.any():
            i = int(np.argmax(off))
            before = f"{t[i - 1]:g} to {t[i]:g}" if i > 0 else f"{t0:g} (the earliest time) to {t[i]:g}"
            raise ValueError(
                f"columns[{name!r}]: the rows are not on a regular time grid: series {_label(label)!r} goes from {before}, "
                f"{(t[i] - (t[i - 1] if i > 0 else t0)) / step:.4g} steps of {step:g} (the smallest gap); this entry's "
                "rows sit on regular steps, so a gap must be a whole number of steps (its steps are then missing). "
                "Give times on one grid")
        positions.append(np.round(k).astype(np.int64))
    length = int(max(p[-1] for p in positions)) + 1
    num_rows = max(len(t) for t in per_series)
    if length > 100 * num_rows + 1000:
        raise ValueError(f"columns[{name!r}]: the times span {length} steps of {step:g} for at most {num_rows} rows "
                         "per series; the gaps would leave the grid almost all missing. Check the time column")
    return positions, t0 + step * np.arange(length)


def long_to_array(columns: Mapping[str, np.ndarray], names: Sequence[str], *, fill=np.nan) -> np.ndarray:
    """Stack value columns ``names`` into ``(series, time, len(names))``; shorter series padded with ``fill``."""
    _require(columns, list(names))
    _, rows = series_times(columns)
    length = max(len(idx) for idx in rows)
    values = np.stack([np.asarray(columns[name]) for name in names], axis=-1)
    out = np.full((len(rows), length, len(names)), fill, dtype=np.result_type(values.dtype, np.asarray(fill).dtype))
    for s, idx in enumerate(rows):
        out[s, : len(idx)] = values[idx]
    return out


def array_to_long(data: np.ndarray, names: Sequence[str], times: np.ndarray | None = None, *,
                  time: str = "time", series: str | None = "series") -> dict[str, np.ndarray]:
    """Inverse of :func:`long_to_array`: ``(series, time, channels)`` -> columns ``series, time, *names``.

    ``times`` is ``(time,)`` or ``(series, time)``; default the integer step index. With
    ``series=None`` the series column is left out (``data`` must then hold one series).
    """
    data = np.asarray(data)
    if data.ndim != 3 or data.shape[2] != len(names):
        raise ValueError(f"data: expected shape (series, time, {len(names)}), got {data.shape}")
    num_series, num_steps, _ = data.shape
    if times is None:
        times = np.arange(num_steps)
    times = np.broadcast_to(np.asarray(times), (num_series, num_steps))
    columns = {} if series is None else {series: np.repeat(np.arange(num_series), num_steps)}
    columns[time] = times.reshape(-1)
    for c, name in enumerate(names):
        columns[name] = data[:, :, c].reshape(-1)
    return columns


def _call(value, config):
    return value(config) if callable(value) else value


@dataclasses.dataclass(frozen=True)
class Columns:
    """An entry's CSV format: which columns are series, time and observation channels.

    Attributes:
        values: the channel columns. A tuple of names: the data's last axis is the channel
            ``(..., time, channel)``; one name (a string): no channel axis ``(..., time)``. May be
            a function of the config (channel names that depend on e.g. ``obs_dim``).
        time: the time column; None (only on the ``"steps"`` grid): rows are in time order and no
            time column is written (a ``time`` column given on input still places the rows).
        series: the series column, or None when the data is a single series (no series axis).
            On input the series column may be left out: all rows are then one series.
        grid: where the rows sit in time.
            ``"steps"``: a regular grid ``0..T-1``; on input the time column places the rows on
            it (step = the smallest gap; a gap of several steps is missing values, NaN; times on
            no regular grid are an error, :func:`regular_steps`); it may be left out (rows are
            then in time order). It is written as the step index.
            A function ``grid(config) -> (T,)``: the config's observation times; every time must
            lie on it (within 1e-9 of the span) and a grid point a series has no row for is
            missing. ``"data"``: the times are data, shared by all series; they are read from
            the file and handed to ``assemble`` (and taken from ``disassemble`` on output).
        integer: the channels hold integers (counts, symbols; bool or a function of the config).
            The array is then int64 and an empty/NaN cell becomes ``missing`` in it; on output
            ``missing`` is written as NaN.
        missing: the integer channels' stand-in for a missing value; None: no value may be
            missing (an empty cell is an error).
        aliases: other names accepted on input for a channel, ``((alias, name), ...)`` (used when
            ``name`` is absent).
        validate: ``validate(data, config) -> data``, the entry's own check of its data, run on
            what is loaded and on what is dumped (after the shape check).
        assemble, disassemble: for data that are not a bare array:
            ``assemble(values, times, config) -> data`` and ``disassemble(data, config) ->
            (values, times)``, ``times`` the ``(T,)`` times (None on the ``"steps"`` grid).
        describe: what the data is, in words (the start of the generated ``data_doc``).
        names_doc: how to write ``values`` in the docs when it is a function of the config.
        grid_hint: what to do when times are off the config's grid (appended to that error).
        regrid: ``regrid(config, times) -> config``, for a function ``grid``: the same
            configuration on the data's own times. Given it, times off the config's grid are no
            error: the data's times (all series' together, sorted) become the grid, and
            :meth:`read` returns the configuration it made (``Loaded.config``).
    """

    values: Sequence[str] | str | Callable[[Any], Sequence[str] | str]
    time: str | None = "time"
    series: str | None = "series"
    grid: str | Callable[[Any], np.ndarray] = STEPS
    integer: bool | Callable[[Any], bool] = False
    missing: int | None = -1
    aliases: tuple[tuple[str, str], ...] = ()
    validate: Callable[[Any, Any], Any] | None = None
    assemble: Callable[..., Any] | None = None
    disassemble: Callable[..., Any] | None = None
    describe: str = ""
    names_doc: str = ""
    grid_hint: str = ""
    regrid: Callable[[Any, np.ndarray], Any] | None = None

    def __post_init__(self) -> None:
        if not (self.grid in (STEPS, DATA) or callable(self.grid)):
            raise ValueError(f"grid: expected 'steps', 'data' or a function of the config, got {self.grid!r}")
        if self.time is None and self.grid != STEPS:
            raise ValueError("time: a time column is needed unless the rows sit on the 'steps' grid")
        if (self.assemble is None) != (self.disassemble is None):
            raise ValueError("assemble, disassemble: give both or neither")

    # -- the channels of one config ---------------------------------------------------------

    def names(self, config) -> tuple[tuple[str, ...], bool]:
        """``(channel names, squeezed)``: squeezed when ``values`` is one name (no channel axis)."""
        values = _call(self.values, config)
        if isinstance(values, str):
            return (values,), True
        return tuple(values), False

    def _shape_doc(self, config=None) -> str:
        axes = (["series"] if self.series else []) + ["time"]
        if config is None and callable(self.values):
            return f"({', '.join(axes)}[, channel])"
        names, squeezed = self.names(config)
        if not squeezed:
            axes.append(str(len(names)))
        return f"({', '.join(axes)})"

    def doc(self, config=None) -> str:
        """The generated ``data_doc``: the array, the missing marker, the CSV columns."""
        known = config is not None or not callable(self.values)
        names = self.names_doc or (", ".join(self.names(config)[0]) if known else "the channel columns")
        integer = _call(self.integer, config) if config is not None or not callable(self.integer) else None
        kind = "array" if integer is None else "int array" if integer else "float array"
        array = f"{kind} {self._shape_doc(config)}"
        if integer and self.missing is None:
            missing = "no missing values"
        elif integer:
            missing = f"{self.missing} = missing (an empty cell, NaN, in a CSV)"
        else:
            missing = "NaN = missing" + (f" (int channels: {self.missing})" if integer is None and self.missing is not None else "")
        listed = ([self.series] if self.series else []) + ([self.time] if self.time else []) + [names]
        notes = []
        if self.series:
            notes.append(f"{self.series} optional (absent: one series)")
        if self.grid == STEPS:
            notes.append(f"{self.time} places the rows on regular steps (a gap = missing steps; optional)" if self.time
                         else "rows in time order (a time column, if given, orders them)")
        elif self.grid == DATA:
            notes.append(f"{self.time} = the observation times (data, the same for every series)")
        else:
            notes.append(f"{self.time} on the config's observation grid (a grid time without a row is missing)")
        head = f"{self.describe}: " if self.describe else ""
        return f"{head}{array}, {missing}. CSV columns {', '.join(listed)}; {'; '.join(notes)}."

    # -- loading and dumping ------------------------------------------------------------------

    def _check_shape(self, array: np.ndarray, config, what: str) -> np.ndarray:
        names, squeezed = self.names(config)
        if self.series and array.ndim == (1 if squeezed else 2):
            array = array[None]
        ndim = (2 if self.series else 1) + (0 if squeezed else 1)
        length = len(_call(self.grid, config)) if callable(self.grid) else None
        ok = array.ndim == ndim and (squeezed or array.shape[-1] == len(names))
        ok = ok and (length is None or array.shape[-1 if squeezed else -2] == length)
        if not ok:
            raise ValueError(f"{what}: expected shape {self._shape_doc(config)}"
                             + (f" with {length} times (the config's grid)" if length is not None else "")
                             + f" for the columns {list(names)}, got {array.shape}")
        return array

    def load(self, columns: Mapping[str, np.ndarray], config) -> Any:
        """CSV columns -> the entry's data (the generated ``load_columns``) on ``config``'s grid
        (no ``regrid``: the data must fit the configuration the caller holds)."""
        return self.read(columns, config, regrid=False).data

    def read(self, columns: Mapping[str, np.ndarray], config, *, regrid: bool = True) -> Loaded:
        """CSV columns -> :class:`Loaded`: the entry's data and the real times of its time axis.

        On the ``"steps"`` grid a time column places the rows (:func:`regular_steps`): a gap in
        it is missing steps (NaN), never a shift of the later rows; times that sit on no regular
        grid are an error naming the first gap. ``times`` is the grid the data sit on: the file's
        own times on the steps grid (``0..T-1`` without a time column), the config's grid, or the
        data's times. With ``regrid`` (and the spec's ``regrid``), times off the config's grid
        make the configuration on the data's times, returned as ``Loaded.config``.
        """
        names, squeezed = self.names(config)
        given = sorted(columns)
        columns = dict(columns)
        for alias, name in self.aliases:
            if name not in columns and alias in columns:
                columns[name] = columns[alias]
        _require(columns, list(names), given)
        series = self.series or "series"
        time_name = self.time or "time"
        labels, rows = series_times(columns, time=time_name, series=series, require_time=self.grid != STEPS)
        if self.series is None and len(labels) > 1:
            raise ValueError(f"columns: this entry takes one series; got {len(labels)} series in column 'series'")
        values = np.stack([np.asarray(columns[name], dtype=float) for name in names], axis=-1)
        times = None
        regridded = None
        if callable(self.grid):
            grid = np.asarray(_call(self.grid, config), dtype=float)
            time = np.asarray(columns[time_name], dtype=float)
            if regrid and self.regrid is not None and not _on_grid(time, grid):  # the data's times are the grid
                regridded = self.regrid(config, np.unique(time))
                config = regridded
                grid = np.asarray(_call(self.grid, config), dtype=float)
            times = grid
            table = np.full((len(rows), len(grid), len(names)), np.nan)
            tol = 1e-9 * max(1.0, float(np.max(np.abs(grid))))
            for s, idx in enumerate(rows):
                pos = np.clip(np.searchsorted(grid, time[idx]), 0, len(grid) - 1)
                lower = np.clip(pos - 1, 0, len(grid) - 1)
                nearest = np.where(np.abs(grid[lower] - time[idx]) < np.abs(grid[pos] - time[idx]), lower, pos)
                off = np.abs(grid[nearest] - time[idx]) > tol
                if off.any():
                    raise ValueError(f"columns[{self.time!r}]: times {time[idx][off][:3].tolist()} are not on the "
                                     "configuration's observation grid" + (f"; {self.grid_hint}" if self.grid_hint else ""))
                table[s, nearest] = values[idx]
        elif self.grid == STEPS and time_name in columns:
            # the time column places the rows on the regular grid: a gap is missing steps, not a shift
            time = np.asarray(columns[time_name], dtype=float)
            positions, times = regular_steps(time, labels, rows, name=time_name)
            table = np.full((len(rows), len(times), len(names)), np.nan)
            for s, idx in enumerate(rows):
                table[s, positions[s]] = values[idx]
        else:
            length = max(len(idx) for idx in rows)
            table = np.full((len(rows), length, len(names)), np.nan)
            for s, idx in enumerate(rows):
                table[s, : len(idx)] = values[idx]
            if self.grid == STEPS:
                times = np.arange(length, dtype=float)
            if self.grid == DATA:
                time = np.asarray(columns[time_name], dtype=float)
                per_series = [time[idx] for idx in rows]
                if any(len(t) != length or not np.array_equal(t, per_series[0]) for t in per_series):
                    raise ValueError(f"columns[{self.time!r}]: every {series} must be observed at the same times")
                times = per_series[0]
        if _call(self.integer, config):
            finite = table[~np.isnan(table)]
            if np.any(finite != np.round(finite)):
                raise ValueError(f"columns {list(names)}: expected whole numbers (empty or NaN = missing)")
            if self.missing is None and np.isnan(table).any():
                raise ValueError(f"columns {list(names)}: a value is missing (an empty cell, or a grid time "
                                 "without a row); this entry's data has no missing values")
            table = np.where(np.isnan(table), -1 if self.missing is None else self.missing, table).astype(np.int64)
        if squeezed:
            table = table[..., 0]
        if self.series is None:
            table = table[0]
        data = self.assemble(table, times if self.grid == DATA else None, config) if self.assemble is not None else table
        return Loaded(self.validate(data, config) if self.validate is not None else data, times, regridded)

    def prepare(self, data, config, *, allow_all_missing: bool = False) -> Any:
        """Data given in Python (``inference.fit``) in the form the entry's program takes, with the
        rules a CSV follows: NaN is the missing marker in every entry. Integer channels (symbols,
        counts) must hold whole numbers; NaN there becomes the ``missing`` stand-in (an error when
        ``missing`` is None), so that no backend casts 1.5 to 1 or NaN to the smallest int. An
        entry whose data is one array (no ``assemble``) refuses a dict or record by name. Data
        already screened by ``inference.validate.screen_data``; traced data is returned as is.
        """
        from inference.validate import first_index, is_traced

        if data is None or is_traced(data) or self.assemble is not None:
            return data
        names, _ = self.names(config)
        if isinstance(data, Mapping) or hasattr(data, "_fields"):
            raise TypeError(f"data: expected one array {self._shape_doc(config)} (channels {list(names)}), "
                            f"got a {type(data).__name__}")
        if not _call(self.integer, config):
            return data
        array = np.asarray(data)
        if np.issubdtype(array.dtype, np.integer):
            values = array
            missing = array == self.missing if self.missing is not None else np.zeros(array.shape, bool)
        else:
            missing = np.isnan(array)
            infinite = np.isinf(array)
            if infinite.any():
                raise ValueError(f"data: expected whole numbers in {list(names)} (NaN = missing), got "
                                 f"{array[infinite].flat[0]} at index {first_index(infinite)}")
            fractional = ~missing & (array != np.round(np.where(missing, 0.0, array)))
            if fractional.any():
                raise ValueError(f"data: expected whole numbers in {list(names)} (NaN = missing), got "
                                 f"{array[fractional].flat[0]} at index {first_index(fractional)}")
            if missing.any() and self.missing is None:
                raise ValueError(f"data: a value is missing (NaN) at index {first_index(missing)}; this "
                                 "entry's data has no missing values")
            values = np.where(missing, self.missing if self.missing is not None else 0, array).astype(np.int64)
        if missing.all() and not allow_all_missing:
            raise ValueError("data: every value is missing: nothing is observed. A fit would return the "
                             "prior; pass allow_all_missing=True to inference.fit if that is what you want")
        return values

    def dump(self, data, config) -> dict[str, np.ndarray]:
        """The entry's data -> CSV columns (the generated ``dump_columns``)."""
        names, squeezed = self.names(config)
        if self.validate is not None:
            data = self.validate(data, config)
        if self.disassemble is not None:
            data, times = self.disassemble(data, config)
        else:
            times = None
        array = self._check_shape(np.asarray(data), config, "data")
        if not self.series:
            array = array[None]
        if squeezed:
            array = array[..., None]
        if _call(self.integer, config) and self.missing is not None:
            array = np.where(array == self.missing, np.nan, array.astype(float))
        if not callable(self.grid):
            columns = array_to_long(array, names, times, time=self.time or "time", series=self.series)
            if self.time is None:
                del columns["time"]
            return columns
        # on the config's grid a missing row is a missing value: rows with every channel missing are left out
        columns = array_to_long(array, names, np.asarray(_call(self.grid, config), dtype=float), time=self.time,
                                series=self.series)
        keep = ~np.all(np.isnan(array.reshape(-1, len(names)).astype(float)), axis=-1)
        return {name: column[keep] for name, column in columns.items()}
