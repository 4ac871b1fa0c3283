"""Configuration ranges: every entry's configuration refuses out-of-range values by name.

``zoo.core.check_ranges`` reads a configuration class's ``COUNTS`` (integers >= 1) and
``POSITIVE`` (finite numbers > 0); ``zoo.core.with_overrides`` refuses, for every field, a
negative integer and a non-finite number. Before these, ``zoo simulate lgssm --set num_series=0``
wrote an empty CSV with exit code 0 and ``--set num_series=-1`` died in XLA with "Invalid type".
"""

from __future__ import annotations

import dataclasses
import math

import pytest

import zoo
from zoo.cli import main


def _configs():
    seen = {}
    for name in zoo.names():
        entry = zoo.get(name)
        for config_name, config in entry.configs.items():
            if dataclasses.is_dataclass(config):
                seen.setdefault(type(config), (entry, config_name))
    return sorted(seen.items(), key=lambda item: item[0].__qualname__)


CONFIGS = _configs()


def _zeroed(value):
    """The value with its first element 0 (a tuple) or 0 itself, keeping ints ints."""
    if isinstance(value, tuple):
        return (_zeroed(value[0]),) + value[1:]
    return 0 if isinstance(value, int) else 0.0


@pytest.mark.parametrize("config_type, where", CONFIGS, ids=[t.__qualname__ for t, _ in CONFIGS])
def test_every_configuration_declares_and_checks_its_ranges(config_type, where):
    entry, config_name = where
    config = entry.config(config_name)
    assert hasattr(config_type, "COUNTS") and hasattr(config_type, "POSITIVE"), (
        f"{config_type.__qualname__}: declare COUNTS and POSITIVE (ClassVar tuples, possibly empty) and call "
        "zoo.core.check_ranges in __post_init__")
    fields = {f.name for f in dataclasses.fields(config)}
    for kind in ("COUNTS", "POSITIVE"):
        unknown = set(getattr(config_type, kind)) - fields
        assert not unknown, f"{config_type.__qualname__}.{kind} names no field: {sorted(unknown)}"
    for name in config_type.COUNTS:
        value = getattr(config, name)
        assert all(isinstance(v, int) and v >= 1 for v in (value if isinstance(value, tuple) else (value,))), name
    for name in (*config_type.COUNTS, *config_type.POSITIVE):
        with pytest.raises(ValueError, match=rf"^config {name}: {name}: expected "):
            entry.config(config_name, **{name: _zeroed(getattr(config, name))})


def test_no_field_takes_a_negative_integer_or_a_non_finite_number():
    entry = zoo.get("lgssm")
    with pytest.raises(ValueError, match=r"^config num_steps: expected a non-negative integer .*got -1$"):
        entry.config("small", num_steps=-1)
    with pytest.raises(ValueError, match=r"^config prior_A_scale: expected a finite number, got nan$"):
        entry.config("small", prior_A_scale=math.nan)
    with pytest.raises(ValueError, match=r"^config true_A: expected finite numbers, got inf in "):
        entry.config("small", true_A=((0.8, math.inf), (-0.2, 0.8)))
    assert entry.config("small", true_A=((0.8, -0.2), (-0.2, 0.8))).true_A[0][1] == -0.2  # signs are the field's


def test_command_line_count_of_zero_exits_2_with_one_line(capsys, tmp_path):
    out = tmp_path / "y.csv"
    assert main(["simulate", "lgssm", "--set", "num_series=0", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["zoo simulate: error: --set num_series: num_series: expected an integer >= 1, got 0"]
    assert not out.exists()
