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


def test_list_show_and_errors(tmp_path, monkeypatch, capsys):
    """In process (``zoo.cli.main``, as the CLI's ``__main__`` calls it; the subprocess tests below
    run that ``__main__``): one interpreter for the five commands instead of five."""
    from zoo import cli

    monkeypatch.chdir(tmp_path)

    def run(*args):
        status = cli.main(list(args))
        return status, capsys.readouterr()

    status, out = run("list")
    assert status == 0 and "lgssm" in out.out and "hmm" in out.out
    status, out = run("show", "lgssm")
    assert status == 0 and "CSV columns series, time" in out.out
    status, out = run("show", "nope")
    assert status == 2 and "unknown zoo entry 'nope'" in out.err and "lgssm" in out.err
    status, out = run("fit", "lgssm", "--data", "missing.csv")
    assert status == 2 and "no such file" in out.err
    status, out = run("fit", "lgssm", "--method", "bogus")
    assert status == 2 and "unknown method 'bogus'" in out.err and not out.out  # refused before simulating


def test_simulate_fit_csv_and_report(tmp_path, monkeypatch, capsys):
    """simulate as a user runs it (a subprocess: the file it leaves, exit 0 from the CLI's
    ``__main__``); the fit and the reports in process (``zoo.cli.main``, which that ``__main__``
    calls: the same exit status, files and lines), so that only one interpreter starts. The fit's
    exit codes through a real process are tested below (interrupted: 130; refused data: 2). 50
    warmup iterations and 50 draws: what is checked is the files and their layout, not convergence."""
    from zoo import cli

    out = zoo_cli("simulate", "lgssm", "--out", "data.csv", "--truth", "truth.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    header = (tmp_path / "data.csv").read_text().splitlines()[0]
    assert header == "series,time,y0,y1"
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    status = cli.main(["fit", "lgssm", "--data", "data.csv", "--no-progress", "--option", "num_warmup=50",
                       "--option", "num_samples=50", "--option", "num_chains=2", "--out", "run.nc",
                       "--html", "report.html"])
    out = capsys.readouterr()
    assert status in (0, 1), out.err  # 1 = a convergence verdict failed; still a result
    assert "convergence diagnostics" in out.out and "overall:" in out.out
    idata = read_netcdf(tmp_path / "run.nc")
    assert idata.posterior["A"].shape == (2, 50, 2, 2)
    assert idata.attrs["entry"] == "lgssm"
    assert "config_overrides" not in idata.attrs  # no --set: nothing overridden is recorded
    html = (tmp_path / "report.html").read_text()
    assert "<html" in html.lower() and "A" in html
    assert cli.main(["report", "run.nc", "--html", "again.html"]) == 0 and (tmp_path / "again.html").exists()
    umask = os.umask(0)
    os.umask(umask)
    for written in ("run.nc", "report.html", "data.csv", "again.html"):  # as `open(..., "w")` leaves a file
        assert stat.S_IMODE(os.stat(tmp_path / written).st_mode) == 0o666 & ~umask, written
    capsys.readouterr()
    assert cli.main(["report", "run.nc"]) == 0  # no --html: Markdown on stdout
    out = capsys.readouterr().out
    assert out.startswith("# ") and "| " in out and "overall" in out.lower()
    bad = tmp_path / "bad.csv"
    bad.write_text("series,time,y0\n0,0,1.0\n")
    assert cli.main(["fit", "lgssm", "--data", "bad.csv"]) == 2
    assert "missing column(s) ['y1']" in capsys.readouterr().err


def test_help_version_and_exit_codes(tmp_path, capsys):
    """``--version`` and the help texts in process (``zoo.cli.main``; argparse ends them with
    ``SystemExit(0)``); argparse's own refusal in a real process: exit 2 and no traceback."""
    import inference
    from zoo import cli

    def run(*args):
        with pytest.raises(SystemExit) as exit:
            cli.main(list(args))
        return exit.value.code, capsys.readouterr().out

    status, out = run("--version")
    assert status == 0 and out.startswith("zoo (dynamics-zoo")
    status, out = run("--help")
    assert status == 0
    assert "examples:" in out and "exit status:" in out and "2  bad input" in out
    status, out = run("fit", "--help")
    assert status == 0
    text = " ".join(out.split())  # argparse wraps lines
    assert all(method in text for method in inference.methods())  # --method lists them
    for argument in ("NAME", "--config", "--seed", "--data", "--method", "--option", "--out"):
        line = next(line for line in out.splitlines() if line.strip().startswith(argument))
        assert len(line.split()) > 2 or argument == "NAME", f"{argument} has no help text"
    out = zoo_cli("fit", "--seed", "x", "lgssm", cwd=tmp_path)  # argparse's own errors: exit 2, no traceback
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_front_door_errors_are_one_line_with_distinct_exit_codes(tmp_path, monkeypatch, capsys):
    """Issue 20 item 7: was IsADirectoryError's traceback for a folder as --data, and a 33-line
    chained traceback with exit 1 (a diagnostics FAIL's code) for a value of 1e300. The refused
    paths and arguments in process (``zoo.cli.main``, as the CLI's ``__main__`` calls it); the
    value the model cannot take in a real process, which imports JAX and evaluates the model: its
    stderr holds whatever else that prints."""
    from zoo import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    cases = [
        (("fit", "lgssm", "--data", "folder"), "--data: expected a .csv or .nc file, got the directory 'folder'"),
        (("fit", "lgssm", "--out", "nowhere/run.nc"), "--out: the folder"),
        (("simulate", "lgssm", "--out", "folder"), "--out: expected a file path, got the directory 'folder'"),
        (("sbc", "lgssm", "--batch-size", "0", "--out", "sweep"), "--batch-size: expected a positive integer, got 0"),
        (("sbc", "lgssm", "--n", "-3", "--out", "sweep"), "--n: expected a positive integer, got -3"),
        (("sbc", "lgssm", "--draws", "0", "--out", "sweep"), "--draws: expected a positive integer, got 0"),
    ]
    for args, message in cases:
        status, (out, err) = cli.main(list(args)), capsys.readouterr()
        assert status == 2 and message in err, (args, err)
        assert not out and not (tmp_path / "sweep").exists(), (args, out)  # refused before the banner
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    rows = ["series,time,y"] + [f"0,{t},{0.1 * t}" for t in range(20)]
    rows[6] = "0,5,1e300"
    (tmp_path / "huge.csv").write_text("\n".join(rows) + "\n")
    out = zoo_cli("fit", "lgssm", "--config", "scalar", "--data", "huge.csv", "--no-progress", cwd=tmp_path)
    assert out.returncode == 2 and "non-finite log density" in out.stderr and "y (log density" in out.stderr
    errors = [line for line in out.stderr.strip().splitlines() if not line.startswith("zoo fit: note: ")]
    assert "Traceback" not in out.stderr and len(errors) == 1, out.stderr  # the note: scalar fixes q, r


def test_internal_error_and_interrupt_in_process(monkeypatch, capsys):
    """An unexpected exception is exit 3 in one line (the traceback behind --debug); Ctrl-C is 130."""
    from zoo import cli

    def broken(args):
        raise RuntimeError("something\nunexpected")

    monkeypatch.setattr(cli, "_cmd_list", broken)
    assert cli.main(["list"]) == 3
    err = capsys.readouterr().err
    assert err.strip() == ("zoo list: internal error: RuntimeError: something unexpected "
                           "(rerun with --debug for the traceback)")
    assert cli.main(["list", "--debug"]) == 3 and "Traceback" in capsys.readouterr().err

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_list", interrupted)
    assert cli.main(["list"]) == 130
    assert capsys.readouterr().err.strip() == "zoo list: interrupted; nothing more was written"


_GC_CALLBACK_CODE = r"""
import gc, signal, sys, time
from zoo import cli
cli._signals_as_interrupt()
received, inner = [], signal.getsignal(signal.SIGINT)
signal.signal(signal.SIGINT, lambda signum, frame: (received.append(signum), inner(signum, frame)))
first = [True]
def slow_callback(phase, info):  # as JAX's _xla_gc_callback: Python code run by every collection
    if phase == "start" and first[0]:
        first[0] = False
        print("in callback", flush=True)
        end = time.monotonic() + 30.0
        while not received and time.monotonic() < end:  # the signal's handler runs in this frame
            time.sleep(0.01)
gc.callbacks.append(slow_callback)
try:
    end = time.monotonic() + 20.0
    while time.monotonic() < end:
        gc.collect()
        time.sleep(0.01)
    print("ran on", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def test_an_interrupt_that_lands_in_a_gc_callback_is_not_dropped():
    """Python prints and drops an exception raised in a garbage-collector callback; `zoo sbc` ran on
    after a SIGINT and a SIGTERM that landed in JAX's. The handler sends the signal again until it
    lands outside: the command ends with exit 130."""
    import signal
    import subprocess
    import sys

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen([sys.executable, "-c", _GC_CALLBACK_CODE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert child.stdout.readline().strip() == "in callback"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130 and out.strip() == "interrupted", (out, err)
    assert "Exception ignored" not in err, err


def test_the_handler_sends_again_from_a_gc_callback_and_raises_elsewhere(monkeypatch):
    import gc
    import signal
    import sys

    from zoo import cli

    frames = []

    def callback(phase, info):
        if phase == "start" and not frames:
            frames.append(sys._getframe())

    sent = []
    monkeypatch.setattr(cli, "_resend", sent.append)
    gc.callbacks.append(callback)
    try:
        gc.collect()
        assert cli._interrupt(signal.SIGINT, frames[0]) is None and sent == [signal.SIGINT]
    finally:
        gc.callbacks.remove(callback)
    with pytest.raises(KeyboardInterrupt):
        cli._interrupt(signal.SIGTERM, sys._getframe())
    assert sent == [signal.SIGINT]


def test_ctrl_c_during_a_fit_exits_130_without_traceback(tmp_path):
    """Was a KeyboardInterrupt traceback. SIGINT is sent once the fit has started (its first line)."""
    import signal

    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    # SIGINT as at a terminal, even when pytest itself runs in the background (a shell without job
    # control starts background commands with SIGINT ignored, and Python then keeps it ignored)
    process = subprocess.Popen([sys.executable, "-m", "zoo.cli", "fit", "lgssm", "--no-progress", "--out", "run.nc"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = process.stdout.readline()
        assert first.startswith("no --data given"), first
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().endswith("zoo fit: interrupted; nothing more was written")
    assert not (tmp_path / "run.nc").exists()


_NEVER_ENDING_COMMAND = """
import jax, jax.numpy as jnp, sys
from jax.sharding import Mesh, PartitionSpec
from zoo import cli
mesh = Mesh(jax.devices(), ("d",))

def loop(v):  # never ends: sin(u) + 1e-3 stays below 2
    return jax.lax.while_loop(lambda u: u[0] < 2.0, lambda u: jnp.sin(u) + 1e-3, v)

def command(args):  # a computation handed to XLA's device threads, then the interrupt
    jax.jit(jax.shard_map(loop, mesh=mesh, in_specs=PartitionSpec("d"), out_specs=PartitionSpec("d")))(
        jnp.zeros(len(jax.devices())))
    print("dispatched", flush=True)
    raise KeyboardInterrupt

cli._cmd_list = command
sys.argv = ["zoo", "list"]
sys.exit(cli.main())
"""


def test_interrupt_on_the_command_line_does_not_wait_for_the_computation_in_flight(tmp_path):
    """Was: `zoo sbc hmm --batch-size 10` printed "interrupted" on SIGTERM and went on computing
    for minutes (the batch split over host devices runs on XLA's threads, and the interpreter's
    exit waited for it). Here the computation in flight never ends: the command line must still
    exit 130 at once after its one line."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1", DYNAMICS_ZOO_HOST_DEVICES="2",
               DYNAMICS_ZOO_COMPILE_CACHE="0")
    process = subprocess.Popen([sys.executable, "-c", _NEVER_ENDING_COMMAND], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the interrupted command waited for the computation in flight: {err[-500:]}")
    assert out.strip() == "dispatched"
    assert process.returncode == 130, err
    assert err.strip() == "zoo list: interrupted; nothing more was written"


@pytest.mark.xla_optimized  # the resumed draws equal the uninterrupted ones bit for bit as users compile
def test_an_interrupted_sbc_sweep_resumes_its_running_fit(monkeypatch, capsys, tmp_path):
    """`zoo sbc` interrupted mid-fit (after the fit's third checkpoint) keeps that fit's progress in
    the sweep folder; the same command resumes it and ranks the truth as an uninterrupted sweep
    does; the progress file is gone once the replicate is written."""
    import numpy as np

    from inference import checkpoint
    from tests.inference.test_checkpoint_runs import Interrupt
    from zoo import cli

    base = ["sbc", "lgssm", "--config", "scalar", "--n", "2", "--draws", "9", "--no-progress",
            "--option", "num_warmup=30", "--option", "num_samples=30", "--option", "num_chains=1",
            "--option", "chunk_size=10"]
    assert cli.main([*base, "--out", str(tmp_path / "plain")]) in (0, 1)
    real = checkpoint.atomic_savez
    with monkeypatch.context() as patch:
        Interrupt(patch, after=3)  # Ctrl-C right after the third checkpoint write
        assert cli.main([*base, "--out", str(tmp_path / "cut")]) == 130
    progress = [name for name in os.listdir(tmp_path / "cut") if name.endswith(".ckpt.npz")]
    assert len(progress) == 1 and progress[0].startswith("fit_"), os.listdir(tmp_path / "cut")
    assert int(checkpoint.read_extras(str(tmp_path / "cut" / progress[0]))["done"]) == 30  # the warmup's 3 chunks
    written = []

    def savez_counted(path, /, **arrays):
        real(path, **arrays)
        written.append(path)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "atomic_savez", savez_counted)
        assert cli.main([*base, "--out", str(tmp_path / "cut")]) in (0, 1)
    # replicate 0 went on from its 30 warmup iterations (3 sampling chunks left), replicate 1 ran all 6
    assert sum(path.endswith(".ckpt.npz") for path in written) == 3 + 6, written
    assert sorted(os.listdir(tmp_path / "cut")) == ["manifest.json", "replicate_00000.npz", "replicate_00001.npz"]
    for name in ("replicate_00000.npz", "replicate_00001.npz"):
        plain, resumed = (np.load(tmp_path / folder / name) for folder in ("plain", "cut"))
        np.testing.assert_array_equal(plain["ranks"], resumed["ranks"])
    capsys.readouterr()


@pytest.mark.xla_optimized  # the resumed draws equal the uninterrupted ones bit for bit as users compile
def test_sigterm_mid_fit_keeps_the_checkpoint_and_the_rerun_resumes_to_the_same_draws(monkeypatch, capsys, tmp_path):
    """Issue 20, item 9: `zoo fit --checkpoint FILE` interrupted (here by SIGTERM right after the
    warmup's four checkpoints and the first sampling chunk's) exits 130 naming FILE; the same
    command with --resume writes the draws an uninterrupted run writes. A process killed outright
    right after its first checkpoint (mid-warmup) resumes to the same draws too."""
    import signal

    import numpy as np

    from inference import checkpoint
    from zoo import cli

    options = ["--option", "num_warmup=40", "--option", "num_samples=30", "--option", "num_chains=2",
               "--option", "chunk_size=10", "--option", "posterior_predictive=False"]
    ckpt = str(tmp_path / "fit.ckpt.npz")
    base = ["fit", "lgssm", "--config", "scalar", "--no-progress", *options]
    assert cli.main([*base, "--out", str(tmp_path / "plain.nc")]) in (0, 1)

    real, calls = checkpoint.atomic_savez, []

    def savez_then_sigterm(path, /, **arrays):
        real(path, **arrays)
        calls.append(path)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "atomic_savez", savez_then_sigterm)
        capsys.readouterr()
        assert cli.main([*base, "--checkpoint", ckpt, "--out", str(tmp_path / "resumed.nc")]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"the progress of the last complete chunk is in {ckpt}" in err
    assert int(checkpoint.read_extras(ckpt)["done"]) == 10 and not (tmp_path / "resumed.nc").exists()
    assert "rerun the same command with --resume" in err
    # an existing checkpoint is continued only when asked; --resume needs one
    assert cli.main([*base, "--checkpoint", ckpt, "--out", str(tmp_path / "resumed.nc")]) == 2
    assert "already holds a run's progress: add --resume" in capsys.readouterr().err
    assert cli.main([*base, "--resume", "--checkpoint", str(tmp_path / "none.npz")]) == 2
    assert "--resume: no checkpoint at" in capsys.readouterr().err
    assert cli.main([*base, "--resume"]) == 2
    assert "--resume: expected --checkpoint FILE" in capsys.readouterr().err
    assert cli.main([*base, "--checkpoint", ckpt, "--resume", "--out", str(tmp_path / "resumed.nc")]) in (0, 1)
    plain, resumed = read_netcdf(tmp_path / "plain.nc"), read_netcdf(tmp_path / "resumed.nc")
    assert resumed.attrs["resumed_from"] == "sample iteration 10"
    for name in plain.posterior.data_vars:
        np.testing.assert_array_equal(plain.posterior[name].values, resumed.posterior[name].values)

    # a real process killed outright (SIGKILL: no handler runs, possibly mid-write) right after its
    # first checkpoint (the first warmup chunk's, or a later one): the file is readable and
    # --resume continues to the same draws
    import time

    from tests.helpers import ROOT

    killed = str(tmp_path / "killed.ckpt.npz")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
           "JAX_PLATFORMS": "cpu"}
    process = subprocess.Popen([sys.executable, "-m", "zoo.cli", *base, "--checkpoint", killed,
                                "--out", str(tmp_path / "never.nc")], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while process.poll() is None and not os.path.exists(killed):
            time.sleep(0.01)
        process.kill()
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {err[-500:]}"
    assert not (tmp_path / "never.nc").exists()
    extras = checkpoint.read_extras(killed)
    assert (int(extras["phase"]), int(extras["done"])) < (1, 30)
    assert cli.main([*base, "--checkpoint", killed, "--resume", "--out", str(tmp_path / "after_kill.nc")]) in (0, 1)
    after_kill = read_netcdf(tmp_path / "after_kill.nc")
    for name in plain.posterior.data_vars:
        np.testing.assert_array_equal(plain.posterior[name].values, after_kill.posterior[name].values)
    assert cli.main(["fit", "lgssm", "--method", "map", "--checkpoint", ckpt]) == 2
    assert "--checkpoint: method 'map' does not write checkpoints" in capsys.readouterr().err
