"""The `zoo` command line, run as a user would: in a subprocess."""

import os
import subprocess
import sys

import pytest

from diagnostics.convert import read_netcdf


def zoo_cli(*args, cwd):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)


def test_list_show_and_errors(tmp_path):
    out = zoo_cli("list", cwd=tmp_path)
    assert out.returncode == 0 and "lgssm" in out.stdout and "hmm" in out.stdout
    out = zoo_cli("show", "lgssm", cwd=tmp_path)
    assert out.returncode == 0 and "CSV columns series, time" in out.stdout
    out = zoo_cli("show", "nope", cwd=tmp_path)
    assert out.returncode == 2 and "unknown zoo entry 'nope'" in out.stderr and "lgssm" in out.stderr
    out = zoo_cli("fit", "lgssm", "--data", "missing.csv", cwd=tmp_path)
    assert out.returncode == 2 and "no such file" in out.stderr
    out = zoo_cli("fit", "lgssm", "--method", "bogus", cwd=tmp_path)
    assert out.returncode == 2 and "unknown method 'bogus'" in out.stderr


def test_simulate_fit_csv_and_report(tmp_path):
    out = zoo_cli("simulate", "lgssm", "--out", "data.csv", "--truth", "truth.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    header = (tmp_path / "data.csv").read_text().splitlines()[0]
    assert header == "series,time,y0,y1"
    out = zoo_cli("fit", "lgssm", "--data", "data.csv", "--no-progress", "--option", "num_warmup=150",
                  "--option", "num_samples=150", "--option", "num_chains=2", "--out", "run.nc",
                  "--html", "report.html", cwd=tmp_path)
    assert out.returncode in (0, 1), out.stderr  # 1 = a convergence verdict failed; still a result
    assert "convergence diagnostics" in out.stdout and "overall:" in out.stdout
    idata = read_netcdf(tmp_path / "run.nc")
    assert idata.posterior["A"].shape == (2, 150, 2, 2)
    assert idata.attrs["entry"] == "lgssm"
    html = (tmp_path / "report.html").read_text()
    assert "<html" in html.lower() and "A" in html
    out = zoo_cli("report", "run.nc", "--html", "again.html", cwd=tmp_path)
    assert out.returncode == 0 and (tmp_path / "again.html").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("series,time,y0\n0,0,1.0\n")
    out = zoo_cli("fit", "lgssm", "--data", "bad.csv", cwd=tmp_path)
    assert out.returncode == 2 and "missing column(s) ['y1']" in out.stderr
