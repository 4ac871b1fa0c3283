"""Fuzzing the front doors (issue 20, item 8): random shapes, dtypes, NaN/inf patterns, empty and
one-row data, huge and tiny values, damaged files, unknown options. The outcome must be a named
error (a ``ValueError``/``TypeError`` whose message starts with the argument's name; exit 2 with
one line on the command line) or a correct result; never a raw XLA/NumPy error, an internal
error (exit 3) or a silent wrong answer (bool/complex/all-missing data accepted, symbols cast).

Hypothesis runs derandomized (fixed examples, the same on every run) with small budgets, so that
the default suite stays within its time; ``FUZZ_EXAMPLES`` raises the count for a longer search.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import inference
import zoo

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or None


def fuzz_settings(examples: int):
    return settings(max_examples=EXAMPLES or examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


# values a user's data may hold: ordinary, whole, huge, tiny, NaN, inf
VALUES = st.one_of(st.floats(-5, 5), st.integers(-3, 3).map(float), st.sampled_from(
    [np.nan, np.inf, -np.inf, 1e300, -1e300, 1e-300, 0.5, 1.5, 0.0]))
DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.bool_, np.complex128])
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def arrays(draw):
    dtype = draw(DTYPES)
    shape = draw(SHAPES)
    values = draw(hnp.arrays(np.float64, shape, elements=VALUES))
    with np.errstate(all="ignore"):
        if np.dtype(dtype).kind in "iub":
            values = np.where(np.isfinite(values), values, 0.0).clip(-3, 3)
        return values.astype(dtype)


NOT_ARRAYS = st.sampled_from(["1,2,3", b"abc", {"y": np.zeros(3)}, [[1.0, 2.0], [3.0]], [], object(),
                              {"y": np.array([True, False])}])


def assert_named(error: BaseException, names=("data",)) -> None:
    assert isinstance(error, (ValueError, TypeError)), f"{type(error).__name__}: {error}"
    message = str(error)
    assert message.startswith(tuple(names)) and "\n" not in message.strip(), message


def expected_refusal(data) -> str | None:
    """What must be refused whatever the entry: a reason, or None when the entry decides."""
    array = np.asarray(data) if isinstance(data, np.ndarray) else None
    if array is None:
        return None
    if array.dtype.kind == "b":
        return "bool"
    if array.dtype.kind == "c":
        return "complex"
    if array.size == 0:
        return "empty"
    if array.dtype.kind == "f" and np.isnan(array).all():
        return "all missing"
    return None


@pytest.mark.parametrize("name", zoo.names())
def test_every_entry_refuses_bad_data_by_name(name):
    """The facade's screening and the entry's preparation, as every method sees them (no fit)."""
    entry = zoo.get(name)

    @fuzz_settings(25)
    @given(st.one_of(arrays(), NOT_ARRAYS))
    def check(data):
        try:
            target = inference.resolve_target(entry, data, config="small")
        except (ValueError, TypeError) as error:
            assert_named(error)
            return
        reason = expected_refusal(data)
        assert reason is None, f"{name}: {reason} data accepted: {data!r}"
        if isinstance(data, np.ndarray) and entry.columns is not None and entry.columns.assemble is None \
                and isinstance(target.data, np.ndarray) and target.data.dtype.kind in "iu" \
                and data.dtype.kind == "f":  # symbols/counts: whole numbers kept, NaN -> the stand-in
            finite = np.isfinite(data)
            assert np.array_equal(target.data[finite], data[finite].astype(np.int64)), (data, target.data)

    check()


@pytest.mark.parametrize("name", ["lgssm", "hmm"])
def test_programs_refuse_bad_data_by_name(name):
    """Screening, preparation and the program's own checks (what a fit runs before sampling):
    every failure names ``data``; accepted data gives a finite log density or the fit's
    initial-point check names the site."""
    from numpyro.handlers import seed, trace

    entry = zoo.get(name)

    @fuzz_settings(12)
    @given(arrays())
    def check(data):
        try:
            target = inference.resolve_target(entry, data, config="small")
            trace(seed(target.model, jax.random.PRNGKey(0))).get_trace(target.data)
        except (ValueError, TypeError) as error:
            assert_named(error)
            return
        assert expected_refusal(data) is None

    check()


def test_fit_refuses_unknown_options_and_bad_batches_by_name():
    entry = zoo.get("lgssm")
    y, _ = entry.simulate(jax.random.PRNGKey(0), entry.config("scalar"))
    with pytest.raises(TypeError, match="bogus"):
        inference.fit(entry, y, config="scalar", bogus=1)
    with pytest.raises(ValueError, match="method: unknown method 'nut'"):
        inference.fit(entry, y, method="nut", config="scalar")
    with pytest.raises(ValueError, match="config: entry 'lgssm' has no config 'large'"):
        inference.fit(entry, y, config="large")
    for datasets, message in (("y.csv", "datasets: expected a sequence"), ([], "datasets: expected at least one"),
                              ([y, np.asarray(y) > 0], r"datasets\[1\]: data: got bool values")):
        with pytest.raises((TypeError, ValueError), match=message):
            inference.fit_batch(entry, datasets, config="scalar")


CELLS = st.sampled_from(["", "nan", "NA", "0", "1", "-1", "1.5", "2", "1e300", "1e-300", "inf", "abc", " 3 ", "1,2"])


@st.composite
def csv_text(draw):
    header = draw(st.lists(st.sampled_from(["series", "time", "y", "y0", "y1", "symbol", "z", ""]), min_size=0,
                           max_size=4))
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=5), min_size=0, max_size=6))
    lines = [",".join(header)] + [",".join(row) for row in rows]
    return "\n".join(lines[: draw(st.integers(0, len(lines)))]) + draw(st.sampled_from(["", "\n"]))


class _Reached(BaseException):
    """The fit was reached: everything before it accepted the file."""


@pytest.mark.parametrize("name, config", [("lgssm", "scalar"), ("hmm", "categorical")])
def test_cli_fit_data_files(name, config, tmp_path, monkeypatch, capsys):
    """`zoo fit NAME --data FILE`: a damaged file is exit 2 with one line naming --data (or the
    data); a file that reads is handed to the fit as data the facade accepts."""
    from zoo import cli

    def reached(entry, data, method, config_name, config, seed, options, progress):
        inference.resolve_target(entry, data, config=config)  # the facade's screening passes
        raise _Reached

    monkeypatch.setattr(cli, "_fit", reached)
    path = tmp_path / "data.csv"

    @fuzz_settings(30)
    @given(csv_text())
    def check(text):
        path.write_text(text)
        capsys.readouterr()
        try:
            status = cli.main(["fit", name, "--config", config, "--data", str(path), "--no-progress"])
        except _Reached:
            return
        err = capsys.readouterr().err.strip()
        assert status == 2 and len(err.splitlines()) == 1, (status, err)
        assert err.startswith(f"zoo fit: error: ") and "Traceback" not in err, err

    check()


def test_damaged_result_files_are_named(tmp_path, capsys):
    """`diagnostics.convert.read_netcdf` and `zoo report` on a damaged .nc: a named error / exit 2."""
    from diagnostics.convert import read_netcdf, to_inference_data, write_netcdf
    from zoo import cli

    good = tmp_path / "run.nc"
    rng = np.random.default_rng(0)
    write_netcdf(to_inference_data(posterior={"mu": rng.normal(size=(2, 50))}, attrs={"method": "nuts"}), good)
    raw = good.read_bytes()
    bad = tmp_path / "bad.nc"

    @fuzz_settings(15)
    @given(st.integers(0, len(raw) - 1), st.integers(0, 255), st.booleans())
    def check(position, byte, truncate):
        bad.write_bytes(raw[:position] if truncate else raw[:position] + bytes([byte]) + raw[position + 1:])
        try:
            read_netcdf(bad)
        except (ValueError, TypeError) as error:
            assert_named(error, names=("path",))
        capsys.readouterr()
        status = cli.main(["report", str(bad)])
        err = capsys.readouterr().err.strip()
        assert status in (0, 1, 2) and "Traceback" not in err, (status, err)
        if status == 2:
            assert len(err.splitlines()) == 1 and err.startswith("zoo report: error: "), err

    check()
    for content in (b"", b"\x00garbage" * 10, b"series,time,y\n0,0,1\n"):
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=r"path: '.*bad.nc' is not a readable netCDF result"):
            read_netcdf(bad)
    with pytest.raises(ValueError, match="path: expected a netCDF result file, got the directory"):
        read_netcdf(tmp_path)
