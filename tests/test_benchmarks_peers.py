"""benchmarks/peers.py: its argument errors and the README rewriting, on a tiny fake result.

No virtual environment is built and nothing is timed here: the figures are never asserted.
"""

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers", os.path.join(ROOT, "benchmarks", "peers.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["peers"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--only", "nonsense"], "--only: expected peers among"),
    (["--load-below", "0"], "--load-below: expected a positive load average, got 0.0"),
    (["--max-wait", "-1"], "--max-wait: expected seconds >= 0, got -1.0"),
])
def test_argument_errors_exit_2_with_one_line(peers, capsys, argv, message):
    with pytest.raises(SystemExit) as raised:
        peers.parse_args(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]
    assert not any("Traceback" in line for line in err)


def fake_result():
    return {"command": "python benchmarks/peers.py --quick", "date": "2026-12-04 04:00 UTC", "machine": "test cpu",
            "ours_version": "jax 0.0 (cpu, float64)", "mode": "quick", "threshold": 1.5, "max_wait": 0.0,
            "versions": {"scipy": "scipy 9.9"}, "unavailable": {"nutpie": "needs a Stan download"},
            "rows": [{"benchmark": "CTMC expm", "size": "6x6", "unit": "µs per matrix (wall)", "ours": 2.0,
                      "peer": 300.0, "peer_name": "scipy", "ratio": 150.0, "check": "max |P - scipy| 1e-15",
                      "load": {"load_before": 7.0, "load_after": 8.25, "quiet": False}}]}


def test_readme_rewritten_between_the_markers_only(peers, tmp_path):
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nkept before\n", "\nkept after\n"
    readme.write_text(f"{before}{peers.BEGIN}\nold table\n{peers.END}{after}")
    body = peers.render(fake_result())
    peers.rewrite_readme(str(readme), body)
    peers.rewrite_readme(str(readme), body)  # twice: replaced, not appended
    text = readme.read_text()
    assert text.startswith(before + peers.BEGIN) and text.endswith(peers.END + after)
    assert "old table" not in text and text.count("| CTMC expm |") == 1
    row = next(line for line in text.splitlines() if line.startswith("| CTMC expm"))
    cells = [c.strip() for c in row.replace("\\|", "¦").strip("|").split("|")]
    assert cells == ["CTMC expm", "6x6", "µs per matrix (wall)", "2", "scipy", "300", "150.00", "7.0 / 8.2 LOADED",
                     "max ¦P - scipy¦ 1e-15"]
    assert "`--quick` sizes" in text and "**nutpie**: needs a Stan download" in text and "scipy: scipy 9.9" in text


def test_readme_without_markers_is_refused(peers, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="readme: expected the markers"):
        peers.rewrite_readme(str(readme), "body")
    assert readme.read_text() == "no markers\n"


def test_the_benchmarks_readme_has_one_pair_of_markers(peers):
    with open(peers.README) as handle:
        text = handle.read()
    assert text.count(peers.BEGIN) == 1 and text.count(peers.END) == 1 and text.index(peers.BEGIN) < text.index(peers.END)


def test_every_peer_has_both_sides(peers):
    spec = importlib.util.spec_from_file_location("peer_side", os.path.join(ROOT, "benchmarks", "peer_side.py"))
    side = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(side)
    for name, peer in peers.PEERS.items():
        if peer.probe:  # checked in its venv, reported unavailable with the probe's reason
            assert name in side.PROBES, name
        elif peer.own:  # timed by this project's own scripts in this environment: no peer side
            assert name in peers.BENCHMARKS, name
        else:
            assert name in peers.BENCHMARKS and name in side.RUNNERS, name


def test_wait_quiet_waits_for_the_load_and_gives_up_after_max_wait(peers, monkeypatch):
    loads = iter([5.0, 4.0, 0.5, 0.5, 0.5, 0.5])
    monkeypatch.setattr(peers, "load", lambda: next(loads))
    monkeypatch.setattr(peers.time, "sleep", lambda s: None)
    state = peers.wait_quiet(1.0, max_wait=60.0)
    assert state["quiet"] and state["load_before"] == 0.5
    monkeypatch.setattr(peers, "load", lambda: 9.0)
    state = peers.wait_quiet(1.0, max_wait=0.0)
    assert not state["quiet"] and state["load_before"] == 9.0


def test_numpyro_peer_runs_in_this_environment(peers, tmp_path):
    # NumPyro's own defaults are timed with this project's interpreter: no venv is built for it
    assert peers.venv_python(str(tmp_path), "numpyro") == sys.executable
    assert not os.listdir(tmp_path)
    assert "numpyro" in peers.BENCHMARKS
