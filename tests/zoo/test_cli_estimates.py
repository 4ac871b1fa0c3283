"""``zoo estimates``: a point-estimate recipe's sampling distribution (issue 23, item 2).

In process (``zoo.cli.main``) on a registered toy entry whose recipe is a MAP with a closed form
(a normal mean under a wide normal prior), so each replicate is one small compiled optax loop and
the estimate read from the run can be compared with the exact MAP of the replicate's data.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import zoo
from diagnostics import calibration, estimates, sweep
from zoo import cli
from zoo.core import Recipe, ZooEntry

PRIOR_SD = 10.0


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    num_obs: int = 20
    true_mu: float = 1.5


def toy_model(data=None, *, config: ToyConfig):
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    with numpyro.plate("obs", config.num_obs):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=data)


SIMULATED: list[int] = []


def toy_simulate(key, config: ToyConfig):
    SIMULATED.append(int(np.asarray(key)[-1]))  # PRNGKey(seed) holds the seed last
    return config.true_mu + np.asarray(jax.random.normal(key, (config.num_obs,))), {"mu": config.true_mu}


def exact_map(y) -> float:
    return float(np.sum(y) / (len(y) + 1 / PRIOR_SD**2))


@pytest.fixture
def toy():
    entry = ZooEntry(name="toy_point_estimate", title="toy", reference="none", summary="a normal mean by MAP",
                     model=toy_model, simulate=toy_simulate,
                     configs={"small": ToyConfig(), "paper": ToyConfig(num_obs=200)},
                     recipe=Recipe("map", {"num_steps": 400, "learning_rate": 0.05}), check=lambda *args: [])
    zoo.register(entry)
    SIMULATED.clear()
    yield entry
    zoo.unregister(entry.name)


def run(capsys, *args):
    try:
        status = cli.main(list(args))
    except SystemExit as exit:  # argparse's own refusals
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_study_writes_resumes_and_stores(toy, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "study")
    status, text, err = run(capsys, "estimates", toy.name, "--n", "3", "--seed", "5", "--out", out)
    assert status == 0, err
    assert text.splitlines()[0].startswith("point-estimate study of toy_point_estimate (small) with map")
    assert sweep.finished(out, "replicate", "npz") == [0, 1, 2]
    assert SIMULATED == [5, 6, 7]                     # replicate i is the data of zoo check --seed 5+i
    result = estimates.load_estimates(out)
    expected = [exact_map(toy_simulate(jax.random.PRNGKey(5 + i), ToyConfig())[0]) for i in range(3)]
    np.testing.assert_allclose(result.estimates["mu"], expected, atol=1e-3)  # Adam's endpoint, not the sampling error
    np.testing.assert_array_equal(result.truths["mu"], [1.5] * 3)
    SIMULATED.clear()
    monkeypatch.setattr(cli, "calibration_root", lambda: str(tmp_path / "calibration"))
    status, text, err = run(capsys, "estimates", toy.name, "--n", "3", "--seed", "5", "--out", out, "--store")
    assert status == 0, err
    assert SIMULATED == [] and "estimates: replicate" not in text          # resumed: nothing fitted again
    (row,) = calibration.calibration_table(str(tmp_path / "calibration"))
    assert (row.entry, row.config, row.method, row.element, row.kind, row.replicates) == \
        (toy.name, "small", "map", "mu", "estimate", 3)
    manifest = calibration._manifest(os.path.join(str(tmp_path / "calibration"), toy.name, "small"))
    assert manifest["note"].startswith(f"zoo estimates {toy.name} --config small --n 3 --seed 5")


def test_an_entrys_estimands_are_paired_with_the_truth(toy, tmp_path, capsys):
    """An entry's ``estimands`` (what a fit implies whose truth is known) join the estimated
    parameters; on a name both give, the estimand's value is the one paired."""
    def simulate(key, config):
        data, truth = toy_simulate(key, config)
        return data, {**truth, "mu_squared": truth["mu"] ** 2}

    def estimands(idata, data, config):
        mu = float(idata.posterior["mu"].values.ravel()[0])
        return {"mu_squared": np.asarray(mu**2), "mu": np.asarray(mu + 100.0)}

    implied = dataclasses.replace(toy, name="toy_estimands", simulate=simulate, estimands=estimands)
    zoo.register(implied)
    try:
        out = str(tmp_path / "study")
        status, text, err = run(capsys, "estimates", implied.name, "--n", "2", "--seed", "5", "--out", out)
    finally:
        zoo.unregister(implied.name)
    assert status == 0, err
    result = estimates.load_estimates(out)
    maps = np.array([exact_map(toy_simulate(jax.random.PRNGKey(5 + i), ToyConfig())[0]) for i in range(2)])
    np.testing.assert_allclose(result.estimates["mu_squared"], maps**2, rtol=1e-2)
    np.testing.assert_allclose(result.truths["mu_squared"], [2.25, 2.25])
    np.testing.assert_allclose(result.estimates["mu"], maps + 100.0, atol=1e-2)


def test_arguments_are_refused_in_one_line(toy, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for args, start in [(["--n", "0"], "zoo estimates: error: --n: expected a positive integer"),
                        (["--method", "nosuch"], "zoo estimates: error: method: unknown method 'nosuch'"),
                        (["--set", "num_obz=3"], "zoo estimates: error: --set: ToyConfig has no field 'num_obz'"),
                        (["--set", "num_obs=30", "--store"], "zoo estimates: error: --store:"),
                        (["--option", "num_steps"], "zoo estimates: error: --option: expected KEY=VALUE")]:
        status, _, err = run(capsys, "estimates", toy.name, "--out", "s", *args)
        assert status == 2 and err.startswith(start) and err.count("\n") == 1, err
    status, _, err = run(capsys, "estimates", "no_such_entry")
    assert status == 2 and err.startswith("zoo estimates: error: name: unknown zoo entry") and "Traceback" not in err
    assert SIMULATED == [] and not os.path.exists("s")  # refused before any work
    # SBC of a point-estimate recipe: one line naming the study that applies, after the first fit
    status, _, err = run(capsys, "sbc", toy.name, "--n", "2", "--draws", "9", "--out", "sb", "--no-progress")
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("zoo sbc: error: --method: method 'map' returned a point estimate") and "zoo estimates" in err


def test_a_stored_note_says_where_the_fits_ran():
    """The manifest's note records ``--workers K`` (or that a scheduler ran the fits), never a
    ``--batch-size 1`` the command did not give."""
    import argparse

    assert cli._where_note(argparse.Namespace(workers=2, scheduler=None)) == " --workers 2"
    assert cli._where_note(argparse.Namespace(workers=None, scheduler="tcp://h:8786")) == " (on a Dask scheduler)"
    assert cli._where_note(argparse.Namespace(workers=None, scheduler=None)) == ""
