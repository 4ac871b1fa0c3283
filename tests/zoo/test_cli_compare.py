"""`zoo report` comparing two fitted runs, and `zoo sbc`, run as a user would (`zoo sbc` in
subprocesses; `zoo report`, which only reads files, in process: ``zoo.cli.main``, as the CLI's
``__main__`` calls it).

Two models of one data set (the ``lgssm`` entry's ``scalar`` config, an AR(1) state seen in
noise): the entry itself and a white-noise model ``y_t ~ N(0, s^2)``. Both are fitted here with
tempered SMC, saved as netCDF, and compared by ``zoo report a.nc b.nc``; the page must hold the
numbers computed from the files: each model's PSIS-LOO ELPD, its approximate LFO ELPD and its
log-evidence with standard error, plus the comparison sections.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import inference
import zoo
from diagnostics import compare, sbc
from diagnostics.convert import read_netcdf, write_netcdf
from diagnostics.render import format_cell
from zoo import cli


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def zoo_cli(*args, cwd):
    # the repository first on the path: the subprocess runs in a temporary folder and must import
    # this checkout, installed or not
    path = os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=path)
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=900)


def white_noise(data=None):
    s = numpyro.sample("s", dist.HalfNormal(2.0))
    y = jnp.asarray(data)[..., 0]  # (series, time)
    numpyro.factor("y", dist.Normal(0.0, s).log_prob(y))


def _normal_prior(key):  # mu ~ N(0, 1), y_1..4 ~ N(mu, 1): exact posterior draws for an SBC sweep
    mu = float(jax.random.normal(key))
    return {"mu": mu}, mu + np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (4,)))


def _normal_exact_fit(data):
    rng = np.random.default_rng(zlib.crc32(np.asarray(data).tobytes()))
    return az.from_dict(posterior={"mu": np.sum(data) / 5 + rng.normal(size=(1, 100)) / np.sqrt(5)})


def test_report_compares_two_runs_side_by_side(tmp_path, monkeypatch, capsys):
    entry = zoo.get("lgssm")
    data, _ = entry.simulate(jax.random.PRNGKey(3), entry.configs["scalar"])
    options = dict(num_particles=200, num_runs=4, progress=False, posterior_predictive=False)
    ar1 = inference.fit(entry, data, method="smc", config="scalar", seed=0, **options)
    noise = inference.fit(inference.resolve_target(white_noise, np.asarray(data))._replace(
        dims={"y": ("series", "time")}, name="white_noise"), method="smc", seed=0, **options)
    write_netcdf(ar1, tmp_path / "ar1.nc")
    write_netcdf(noise, tmp_path / "noise.nc")
    sweep = sbc.run_sbc(_normal_prior, _normal_exact_fit, num_replicates=30, num_draws=19, out_dir=tmp_path / "sweep")
    monkeypatch.chdir(tmp_path)
    status = cli.main(["report", "ar1.nc", "noise.nc", "--sbc", "sweep", "--html", "compare.html",
                       "--md", "compare.md"])
    assert status == 0, capsys.readouterr().err
    html = (tmp_path / "compare.html").read_text()
    md = (tmp_path / "compare.md").read_text()
    for title in ("Model comparison", "Pareto k (PSIS-LOO)", "Leave-future-out cross-validation",
                  "Evidence and Bayes factors", "Convergence per model"):
        assert title in html
    assert html.count("data:image/png;base64,") >= 3  # Pareto k, LFO curve, evidence bars inlined
    for label in ("ar1", "noise"):
        idata = read_netcdf(tmp_path / f"{label}.nc")
        elpd = float(compare.loo(idata).elpd_loo)
        lfo = compare.psis_lfo(compare.pointwise_loglik(idata))
        evidence = compare.log_evidence(idata)
        for value in (elpd, lfo.elpd, evidence.log_evidence, evidence.se):
            assert format_cell(value) in md, (label, value)
    assert "Simulation-based calibration: sweep" in html and f"n={sweep.num_replicates} replicates" in md
    # the AR(1) model explains the autocorrelated data far better: first row of the table
    table = md.split("## Model comparison")[1].split("\n\n")[1].splitlines()
    assert table[2].startswith("| ar1 |")


@pytest.mark.slow
def test_sbc_command_runs_and_resumes(tmp_path):
    args = ("sbc", "lgssm", "--config", "scalar", "--n", "3", "--draws", "19", "--method", "nuts",
            "--option", "num_warmup=150", "--option", "num_samples=100", "--option", "num_chains=1",
            "--out", "sweep", "--html", "sbc.html")
    out = zoo_cli(*args, cwd=tmp_path)
    assert out.returncode in (0, 1), out.stderr
    assert "SBC over n=3 replicates, L=19 draws" in out.stdout
    assert sorted(p for p in os.listdir(tmp_path / "sweep") if p.endswith(".npz")) == [
        f"replicate_{i:05d}.npz" for i in range(3)]
    assert "Simulation-based calibration" in (tmp_path / "sbc.html").read_text()
    again = zoo_cli(*args, cwd=tmp_path)  # everything is on disk: no refit, same table
    assert again.returncode == out.returncode
    assert "replicate" not in again.stdout.split("(resumable)")[1].split("parameter")[0]  # nothing refitted
    assert again.stdout.split("parameter")[1] == out.stdout.split("parameter")[1]


@pytest.mark.slow
def test_sbc_command_batches_replicates(tmp_path):
    """--batch-size 2: the replicates go through inference.fit_batch (one compiled NUTS loop)."""
    out = zoo_cli("sbc", "lgssm", "--config", "scalar", "--n", "4", "--draws", "19", "--batch-size", "2",
                  "--option", "num_warmup=150", "--option", "num_samples=100", "--option", "num_chains=1",
                  "--out", "sweep", cwd=tmp_path)
    assert out.returncode in (0, 1), out.stderr
    assert "SBC over n=4 replicates, L=19 draws" in out.stdout
    assert sorted(p for p in os.listdir(tmp_path / "sweep") if p.endswith(".npz")) == [
        f"replicate_{i:05d}.npz" for i in range(4)]
    bad = zoo_cli("sbc", "lgssm", "--config", "scalar", "--batch-size", "0", "--out", "other", cwd=tmp_path)
    assert bad.returncode != 0 and "--batch-size" in bad.stderr
