"""Sweeps on Dask (issue 21, items 3 and 5): `zoo sbc --workers K` and `zoo sweep ENTRY --grid`.

The cluster sweep runs as a user would, in a subprocess (the command line's SIGINT, exit 130, a
LocalCluster it starts); the grid sweep without a cluster in process. Both on the cheapest entry
(lgssm --config scalar: one unknown) with tiny NUTS runs: what is tested is the sweep's bookkeeping
(every task once, atomically written, resumed after an interrupt with nothing lost and nothing
fitted twice), not calibration.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from diagnostics import sweep

TINY = ["--option", "num_warmup=20", "--option", "num_samples=20", "--option", "num_chains=1"]


def _env():
    # the compilation cache stays on, as for a user: the command and its Dask workers inherit this
    # test process's folder (tests/conftest.py), so a worker's next replicate, and the rerun's
    # workers, load the programs the first replicates compiled instead of compiling them again
    return dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")


def _files(folder, prefix, ext):
    """{index: (inode, mtime_ns)} of the finished tasks' files."""
    return {i: (os.stat(sweep.task_path(str(folder), prefix, i, ext)).st_ino,
                os.stat(sweep.task_path(str(folder), prefix, i, ext)).st_mtime_ns)
            for i in sweep.finished(str(folder), prefix, ext)}


def test_sbc_on_a_local_cluster_is_interrupted_and_resumed(tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "sbc"
    command = [sys.executable, "-m", "zoo.cli", "sbc", "lgssm", "--config", "scalar", "--n", "6", "--draws", "9",
               *TINY, "--workers", "2", "--out", str(out)]
    busy = socket.socket()  # Dask's default HTTP port taken (another sweep's): no warning about it
    with contextlib.suppress(OSError):
        busy.bind(("", 8787))
        busy.listen()
    # SIGINT as at a terminal, even when pytest itself runs in the background (where it is ignored)
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_env(), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            if out.exists() and len(sweep.finished(str(out), "replicate", "npz")) >= 2:
                break
            time.sleep(0.5)
        assert process.poll() is None, "the sweep ended before it could be interrupted"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=300)
    finally:
        busy.close()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err[-2000:]
    assert "already in use" not in err, err[-2000:]
    before = _files(out, "replicate", "npz")
    assert 2 <= len(before) < 6
    assert not [name for name in os.listdir(out) if name.startswith(".") or name.endswith(".tmp")]

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=900)
    assert again.returncode in (0, 1), again.stderr[-2000:]  # 1: SBC flagged (tiny fits); not the point
    fitted = sorted(int(m) - 1 for m in re.findall(r"sbc: replicate (\d+)/6 done", again.stdout))
    after = _files(out, "replicate", "npz")
    assert sorted(after) == list(range(6))                       # nothing lost
    assert fitted == sorted(set(range(6)) - set(before))        # nothing fitted twice
    assert all(after[i] == before[i] for i in before)            # finished files untouched
    assert "SBC over n=6 replicates" in again.stdout


def test_sweep_over_a_grid_writes_one_file_per_point_and_resumes(tmp_path, monkeypatch, capsys):
    """In process (``zoo.cli.main``, as the CLI's ``__main__`` calls it: the same exit status, the
    same lines, the same files): without --workers the sweep runs its points in the command's own
    process, and what is tested is the folder it leaves; the command line's process, its signals
    and a cluster are tested above. The rerun that finds every point done and the rerun with
    other settings read only the folder."""
    from zoo import cli

    out = tmp_path / "grid"
    # without the posterior predictive (12% of the fits' CPU): what is checked is the folder, the rows, the
    # overrides recorded and the observed data's length, none of which reads it
    arguments = ["sweep", "lgssm", "--config", "scalar", "--grid", "num_steps=30,40", "--grid", "true_r=(0.5,),(1.0,)",
                 *TINY, "--option", "posterior_predictive=False", "--out", str(out)]
    monkeypatch.chdir(tmp_path)
    status = cli.main(arguments)
    first = capsys.readouterr()
    assert status in (0, 1), first.err[-2000:]
    files = _files(out, "point", "nc")
    assert sorted(files) == [0, 1, 2, 3]
    rows = [line for line in first.out.splitlines() if re.match(r"\| \d \|", line)]
    assert [row.split("|")[2:4] for row in rows] == [[" 30 ", " (0.5,) "], [" 30 ", " (1.0,) "],
                                                     [" 40 ", " (0.5,) "], [" 40 ", " (1.0,) "]]
    from diagnostics.convert import read_netcdf

    idata = read_netcdf(sweep.task_path(str(out), "point", 3, "nc"))
    assert json.loads(idata.attrs["config_overrides"]) == {"num_steps": 40, "true_r": [1.0]}
    assert idata.observed_data["y"].shape[-2] == 40
    assert cli.main(arguments) == status
    again = capsys.readouterr().out
    assert "4 already done" in again and "sweep: point" not in again
    assert _files(out, "point", "nc") == files
    assert cli.main(arguments[:-2] + ["--seed", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "out_dir:" in err and "other settings" in err


def test_grid_and_cluster_arguments_are_checked_before_any_work(tmp_path, monkeypatch, capsys):
    """In process (``zoo.cli.main``, as the CLI's ``__main__`` calls it): one interpreter for all the
    refusals, none of which may print a banner or make a results folder; argparse's own refusal is
    its ``SystemExit(2)``."""
    from zoo import cli

    monkeypatch.chdir(tmp_path)

    def run(*args):
        try:
            status = cli.main(list(args))
        except SystemExit as exit:
            status = exit.code
        return status, capsys.readouterr().err

    status, err = run("sweep", "lgssm", "--config", "scalar", "--grid", "num_stepz=3,4", "--out", "g")
    assert status == 2 and "--grid" in err
    status, err = run("sweep", "lgssm", "--config", "scalar", "--out", "g")
    assert status == 2 and "--grid: give at least one" in err
    for command in ("sbc", "estimates"):  # refused before the banner and before the results folder
        status, err = run(command, "lgssm", "--workers", "0", "--out", "s")
        assert status == 2 and "--workers: expected a positive integer" in err and not (tmp_path / "s").exists()
    status, err = run("sweep", "lgssm", "--config", "scalar", "--grid", "num_steps=3,4", "--workers", "0", "--out", "g")
    assert status == 2 and "--workers: expected a positive integer" in err and not (tmp_path / "g").exists()
    status, err = run("sbc", "lgssm", "--workers", "2", "--scheduler", "tcp://x:1")
    assert status == 2 and "not allowed with argument" in err
