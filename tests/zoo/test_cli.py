"""The `zoo` command line, run as a user would: in a subprocess."""

import os
import stat
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
    umask = os.umask(0)
    os.umask(umask)
    for written in ("run.nc", "report.html", "data.csv"):  # readable as `open(..., "w")` leaves a file
        assert stat.S_IMODE(os.stat(tmp_path / written).st_mode) == 0o666 & ~umask, written
    out = zoo_cli("report", "run.nc", cwd=tmp_path)  # no --html: Markdown on stdout
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# ") and "| " in out.stdout and "overall" in out.stdout.lower()
    bad = tmp_path / "bad.csv"
    bad.write_text("series,time,y0\n0,0,1.0\n")
    out = zoo_cli("fit", "lgssm", "--data", "bad.csv", cwd=tmp_path)
    assert out.returncode == 2 and "missing column(s) ['y1']" in out.stderr


def test_help_version_and_exit_codes(tmp_path):
    import inference

    out = zoo_cli("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("zoo (dynamics-zoo")
    out = zoo_cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    assert "examples:" in out.stdout and "exit status:" in out.stdout and "2  bad input" in out.stdout
    out = zoo_cli("fit", "--help", cwd=tmp_path)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())  # argparse wraps lines
    assert all(method in text for method in inference.methods())  # --method lists them
    for argument in ("NAME", "--config", "--seed", "--data", "--method", "--option", "--out"):
        line = next(line for line in out.stdout.splitlines() if line.strip().startswith(argument))
        assert len(line.split()) > 2 or argument == "NAME", f"{argument} has no help text"
    out = zoo_cli("fit", "--seed", "x", "lgssm", cwd=tmp_path)  # argparse's own errors: exit 2, no traceback
    assert out.returncode == 2 and "Traceback" not in out.stderr
