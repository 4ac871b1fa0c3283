"""``--set FIELD=VALUE``: overriding a configuration's fields from the command line and from Python
(``ZooEntry.config(name, **overrides)``), and the notice for parameters a configuration fixes.

The CLI runs in-process (``zoo.cli.main``) so that the tiny NUTS fits share one interpreter."""

import json

import pytest

import zoo
from diagnostics.convert import read_netcdf
from diagnostics.report import markdown_report
from zoo.cli import main
from zoo.core import FixedParameter

TINY = ["--option", "num_samples=30", "--option", "num_warmup=30", "--option", "num_chains=1", "--no-progress"]


def test_python_overrides_run_the_configs_own_checks():
    entry = zoo.get("lgssm")
    config = entry.config("scalar", fixed_noise=False, num_steps=50, prior_A_scale=1)
    assert (config.fixed_noise, config.num_steps, config.state_dim) == (False, 50, 1)
    assert isinstance(config.prior_A_scale, float) and config.prior_A_scale == 1.0  # int accepted for a float
    assert entry.config("scalar") is entry.configs["scalar"]  # no overrides: the preset itself
    lists = entry.config("scalar", true_A=[[0.5]], true_q=[2.0])  # lists become tuples: still hashable
    assert lists.true_A == ((0.5,),) and hash(lists)
    with pytest.raises(ValueError, match=r"^config: LGSSMConfig has no field 'nope'; known fields: state_dim, "):
        entry.config("small", nope=1)
    with pytest.raises(ValueError, match=r"^config num_steps: expected int, got 'many'"):
        entry.config("small", num_steps="many")
    with pytest.raises(ValueError, match=r"^config fixed_noise: expected bool, got 1"):
        entry.config("small", fixed_noise=1)
    with pytest.raises(ValueError, match=r"^config state_dim: true_A: expected shape \(3, 3\)"):
        entry.config("small", state_dim=3)  # LGSSMConfig.__post_init__ refuses it


def test_configs_declare_the_parameters_they_fix():
    lgssm = zoo.get("lgssm")
    assert lgssm.fixed_parameters("small") == {}
    assert lgssm.fixed_parameters("scalar") == {"q": FixedParameter([1.0], "fixed_noise=False"),
                                                "r": FixedParameter([0.5], "fixed_noise=False")}
    assert lgssm.fixed_parameters(lgssm.config("scalar", fixed_noise=False)) == {}
    dysts = zoo.get("dysts_flows")
    fixed = dysts.fixed_parameters(dysts.config("small", inferred=("rho",)))
    assert sorted(fixed) == ["beta", "sigma"] and fixed["sigma"] == FixedParameter(10.0, "inferred=None")
    hmm_rnn = zoo.get("hmm_rnn")
    fixed = hmm_rnn.fixed_parameters(hmm_rnn.config("small", learn_emissions=False))
    assert list(fixed) == ["emission_probs"] and fixed["emission_probs"].free == "learn_emissions=True"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("command", ["simulate", "fit", "check", "sbc"])
def test_unknown_field_and_bad_value_exit_2_with_one_line(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([command, "lgssm", "--set", "nope=1"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"zoo {command}: error: --set: LGSSMConfig has no field 'nope'; known fields: ")
    assert "fixed_noise" in line and "num_steps" in line
    assert main([command, "lgssm", "--set", "num_steps=1.5"]) == 2
    assert "--set num_steps: expected int, got 1.5" in _one_error_line(capsys)
    assert main([command, "lgssm", "--config", "scalar", "--set", "state_dim=2"]) == 2
    assert "--set state_dim: true_A: expected shape (2, 2)" in _one_error_line(capsys)
    assert main([command, "lgssm", "--set", "num_steps"]) == 2
    assert "--set: expected KEY=VALUE, got 'num_steps'" in _one_error_line(capsys)


def test_set_reaches_the_simulator(tmp_path, capsys):
    out = tmp_path / "y.csv"
    assert main(["simulate", "lgssm", "--config", "scalar", "--set", "num_steps=50", "--set", "num_series=2",
                 "--out", str(out)]) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "series,time,y" and len(rows) == 1 + 2 * 50


def test_fit_of_user_data_says_what_is_fixed_and_set_frees_it(tmp_path, capsys):
    """The note comes before the fit (an unknown --option stops the run right after it, so no fit
    is needed to see it); what a fit of the fixing config records (no q, r in the posterior, the
    fixed values in ``attrs``: ``inference.record_entry``, which the command line calls too) is
    checked by test_python_fit_of_a_data_frame_keeps_its_times_and_records_fixed_parameters; a run
    without --set records no overrides (tests/zoo/test_cli.py::test_simulate_fit_csv_and_report)."""
    data = tmp_path / "y.csv"
    assert main(["simulate", "lgssm", "--config", "scalar", "--set", "num_steps=60", "--out", str(data)]) == 0
    capsys.readouterr()

    assert main(["fit", "lgssm", "--config", "scalar", "--data", str(data), *TINY, "--option", "nope=1"]) == 2
    note, error = capsys.readouterr().err.strip().splitlines()
    assert note == ("zoo fit: note: config 'scalar' of lgssm fixes q=[1.0], r=[0.5] (not learned from the data); "
                    "to learn them add --set fixed_noise=False")
    assert error.startswith("zoo fit: error: ") and "nope" in error

    free_run = tmp_path / "free.nc"
    code = main(["fit", "lgssm", "--config", "scalar", "--data", str(data), "--set", "fixed_noise=False", *TINY,
                 "--out", str(free_run)])
    assert code in (0, 1)  # 1: a convergence verdict failed on 30 draws; the result is still written
    assert "fixes" not in capsys.readouterr().err
    idata = read_netcdf(free_run)
    assert idata.posterior["q"].shape == (1, 30, 1) and idata.posterior["r"].shape == (1, 30, 1)
    assert json.loads(idata.attrs["config_overrides"]) == {"fixed_noise": False}
    assert "fixed_parameters" not in idata.attrs
    assert "config_overrides" in markdown_report(idata)  # the report shows what was overridden


def test_a_parameter_the_model_never_learns_is_announced_too(tmp_path, capsys):
    """latent_sde_ou always fixes its observation noise s; the note says how to change the value.
    (An unknown --option stops the run right after the note: no fit is needed to see it.)"""
    data = tmp_path / "z.csv"
    assert main(["simulate", "latent_sde_ou", "--set", "num_series=2", "--out", str(data)]) == 0
    capsys.readouterr()
    assert main(["fit", "latent_sde_ou", "--data", str(data), "--set", "obs_noise=0.2", "--option", "nope=1"]) == 2
    note, error = capsys.readouterr().err.strip().splitlines()
    assert note == ("zoo fit: note: config 'small' of latent_sde_ou fixes s=0.2 (not learned from the data); "
                    "latent_sde_ou does not learn them; to change the value use --set obs_noise=VALUE")
    assert error.startswith("zoo fit: error: ") and "nope" in error


def test_python_fit_of_a_data_frame_keeps_its_times_and_records_fixed_parameters():
    """Issue 19, item 3: a DataFrame fitted from Python keeps its real times as the result's
    `time` coordinate (a gap is a missing step), and the result says what the config holds fixed."""
    import jax
    import numpy as np
    import pandas as pd

    import inference

    lgssm = zoo.get("lgssm")
    config = lgssm.config("scalar", num_steps=40)
    data, _ = lgssm.simulate(jax.random.PRNGKey(0), config)
    frame = pd.DataFrame(lgssm.dump_columns(data, config))
    frame["time"] = 10.0 + 0.5 * frame["time"]
    frame = frame.drop(index=7)  # a gap: time 13.5 is missing
    idata = inference.fit(lgssm, frame, config=config, method="nuts", progress=False, num_warmup=20,
                          num_samples=10, num_chains=1, posterior_predictive=False)
    times = 10.0 + 0.5 * np.arange(40)
    np.testing.assert_array_equal(idata.observed_data["time"].values, times)
    np.testing.assert_array_equal(idata.log_likelihood["time"].values, times)
    assert np.isnan(idata.observed_data["y"].sel(time=13.5).values).all()
    assert "q" not in idata.posterior and "r" not in idata.posterior  # fixed: not sampled
    assert json.loads(idata.attrs["fixed_parameters"]) == {"q": [1.0], "r": [0.5]}
    assert idata.attrs["entry"] == "lgssm" and idata.attrs["config"] == "custom"
