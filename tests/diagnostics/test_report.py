"""The HTML/Markdown report: renders, is self-contained, holds the numbers, is written atomically."""

from __future__ import annotations

import base64
import os
import re
from typing import NamedTuple

import numpy as np
import pytest

import diagnostics.render as render
import diagnostics.report as report
from diagnostics.checks import run_checks
from diagnostics.convert import to_inference_data
from diagnostics.render import Section
from diagnostics.report import write_report
from tests.diagnostics.synthetic import outlier_run


class Rec(NamedTuple):
    name: str
    passed: bool
    value: float
    target: str
    detail: str = ""


@pytest.fixture(scope="module")
def run():
    """Exact-posterior normal model with an outlier (Pareto k flagged), plus a latent path,
    NUTS-like sampler statistics and a time series predictive."""
    rng = np.random.default_rng(0)
    idata, y = outlier_run(rng, n=20, chains=2, draws=300)
    chains, draws, steps = 2, 300, 25
    truth_path = np.sin(np.arange(steps) / 4)
    path = truth_path + 0.3 * rng.normal(size=(chains, draws, steps))
    extra = to_inference_data(
        posterior={"x": path},
        sample_stats={"diverging": np.zeros((chains, draws), bool),
                      "energy": rng.normal(size=(chains, draws))},
        dims={"x": ["time"]},
        attrs={"entry": "normal", "method": "nuts", "seed": 0, "config": "small"},
    )
    idata.posterior["x"] = extra.posterior["x"]
    idata.add_groups(sample_stats=extra.sample_stats)
    return idata, {"mu": 0.0, "sigma": 1.0, "x": truth_path}


@pytest.fixture(scope="module")
def tiny():
    """A small two-parameter run: cheap to render several times."""
    rng = np.random.default_rng(2)
    return to_inference_data(posterior={"mu": rng.normal(size=(2, 100)),
                                        "sigma": np.exp(0.1 * rng.normal(size=(2, 100)))},
                             attrs={"entry": "tiny", "method": "nuts", "seed": 2})


def _images(text):
    return re.findall(r'<img[^>]*src="([^"]*)"', text)


def test_report_renders_self_contained_with_numbers(run, tmp_path):
    idata, truth = run
    checks = [Rec("mu close", True, 0.01, "< 0.1", "E[mu] = 0.01"),
              Rec("sigma covered", True, 1.0, "[0.8, 1.4]")]
    html_path = tmp_path / "out" / "report.html"
    md_path = tmp_path / "out" / "report.md"
    returned = write_report(idata, html_path, title="Normal <demo>", recovery=checks,
                            markdown_path=md_path, truth=truth)
    assert returned == str(html_path)
    text = html_path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<title>Normal &lt;demo&gt;</title>" in text  # titles are escaped
    # self-contained: no external source, link, stylesheet or script
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', text)
    assert "<link" not in text and "<script" not in text
    images = _images(text)
    assert len(images) >= 5  # trace, rank, densities, path, predictive, Pareto k
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # the summary numbers: posterior mean and sd of mu as the table prints them (4 sig. digits)
    draws = np.asarray(idata.posterior["mu"].values).reshape(-1)
    assert f"<td>{draws.mean():.4g}</td>" in text
    assert f"<td>{draws.std(ddof=1):.4g}</td>" in text
    # the run attributes, verdicts and recovery verdict
    for attr in ("entry", "method", "seed", "config"):
        assert f"<td>{attr}</td>" in text
    verdicts = run_checks(idata)
    pareto = [v for v in verdicts if v.name == "Pareto k y"][0]
    assert pareto.status != "ok"
    assert f'<tr class="{pareto.status}">' in text
    assert "R-hat mu" in text and "ESS bulk x" in text
    assert '<span class="badge pass">PASS</span>' in text
    assert "2 of 2 check(s) passed" in text
    assert "Latent paths" in text and "Posterior predictive" in text
    markdown = md_path.read_text(encoding="utf-8")
    assert markdown.startswith("# Normal <demo>")
    assert "**recovery: PASS**" in markdown
    assert f"| {draws.mean():.4g} |" in markdown
    assert "| R-hat mu |" in markdown
    assert "data:image" not in markdown


def test_failed_recovery_is_loud(run, tmp_path):
    idata, _ = run
    checks = [Rec("mu close", True, 0.01, "< 0.1"), Rec("sigma covered", False, 3.0, "[0.8, 1.4]")]
    path = write_report(idata, tmp_path / "r.html", recovery=checks)
    text = open(path, encoding="utf-8").read()
    assert '<span class="badge fail">FAIL</span>' in text
    assert "1 of 2 check(s) passed" in text
    assert '<tr class="fail"><td>FAIL</td><td>sigma covered</td>' in text


def test_several_runs_and_extra_sections(run, tmp_path):
    idata, _ = run
    single = to_inference_data(posterior={"mu": np.random.default_rng(1).normal(size=(1, 200))},
                               attrs={"method": "svi", "draws": "iid"})
    extra = Section("Model comparison", "<p>elpd table here</p>", "elpd table here")
    path = write_report({"nuts run": idata, "svi run": single}, tmp_path / "two.html",
                        extra_sections=[extra], markdown_path=tmp_path / "two.md")
    text = open(path, encoding="utf-8").read()
    assert "Run: nuts run" in text and "Run: svi run" in text
    assert text.index("Model comparison") < text.index("Run: nuts run")
    assert "<td>svi run</td>" in text  # overview row
    assert "elpd table here" in (tmp_path / "two.md").read_text(encoding="utf-8")


def test_precomputed_verdicts_are_used(tiny, tmp_path):
    idata = tiny
    from diagnostics.checks import Verdict

    mine = [Verdict("custom check", "fail", 9.0, 1.0, "made up for the test")]
    text = open(write_report(idata, tmp_path / "v.html", verdicts=mine), encoding="utf-8").read()
    assert "custom check" in text and "R-hat mu" not in text


def test_atomic_write_keeps_the_previous_file(tiny, tmp_path, monkeypatch):
    idata = tiny
    target = tmp_path / "report.html"
    write_report(idata, target, title="first")
    before = target.read_bytes()

    from diagnostics import convert

    def crash_half_way(path, text):
        def write(tmp):
            with open(tmp, "w") as handle:
                handle.write(text[: len(text) // 2])
            raise OSError("disk full (simulated)")

        return convert.atomic_write(path, write)

    monkeypatch.setattr(render, "atomic_write_text", crash_half_way)  # the writer of every page
    with pytest.raises(OSError, match="simulated"):
        write_report(idata, target, title="second")
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["report.html"]  # no temporary file left behind

    monkeypatch.undo()

    def broken_section(*args, **kwargs):
        raise RuntimeError("section failed (simulated)")

    monkeypatch.setattr(report, "summary_section", broken_section)
    with pytest.raises(RuntimeError, match="simulated"):
        write_report(idata, target, title="third")
    assert target.read_bytes() == before


def test_bad_inputs_are_named(tiny, tmp_path):
    idata = tiny
    with pytest.raises(TypeError, match="runs"):
        write_report({"a": 1}, tmp_path / "x.html")
    with pytest.raises(TypeError, match="runs"):
        write_report([idata], tmp_path / "x.html")
    with pytest.raises(TypeError, match="recovery"):
        write_report(idata, tmp_path / "x.html", recovery=[("mu", True)])
    with pytest.raises(KeyError, match="verdicts"):
        write_report({"a": idata, "b": idata}, tmp_path / "x.html", verdicts={"a": []})
    with pytest.raises(TypeError, match="extra_sections"):
        write_report(idata, tmp_path / "x.html", extra_sections=["<p>raw</p>"])
    assert not (tmp_path / "x.html").exists()


def test_recovery_result_gives_truth_and_verdict(tiny, tmp_path):
    from diagnostics.checks import Verdict
    from diagnostics.recovery import RecoveryResult

    checks = [Rec("mu close", True, 0.01, "< 0.1")]
    failed_diagnostics = [Verdict("R-hat mu", "fail", 1.3, 1.05, "unmixed")]
    result = RecoveryResult(tiny, {"mu": 0.5}, checks, failed_diagnostics, passed=False)
    text = open(write_report(tiny, tmp_path / "rec.html", recovery=result), encoding="utf-8").read()
    assert '<span class="badge fail">FAIL</span>' in text
    assert "convergence diagnostics failed" in text
    assert "(red: truth)" in text


def test_package_exports_lazily():
    import subprocess
    import sys

    code = "\n".join([
        "import sys, diagnostics.convert",
        "loaded = sorted(m for m in sys.modules if m.startswith('diagnostics'))",
        # diagnostics.precision, .compile_cache and .devices: the JAX settings every package
        # applies on import (tiny, no plots); ._arviz: the ArviZ import convert needs, guarded
        "assert loaded == ['diagnostics', 'diagnostics._arviz', 'diagnostics.compile_cache', "
        "'diagnostics.convert', 'diagnostics.devices', 'diagnostics.precision'], loaded",
        "import diagnostics",
        "f = diagnostics.write_report",
        "assert 'diagnostics.report' in sys.modules",
        "assert diagnostics.run_checks.__module__ == 'diagnostics.checks'",
    ])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == 0, done.stderr


def test_top_level_attrs_and_unmatched_predictive(tmp_path):
    rng = np.random.default_rng(4)
    idata = to_inference_data(posterior={"mu": rng.normal(size=(2, 100))},
                              posterior_predictive={"y": rng.normal(size=(2, 100, 5))},
                              observed_data={"y0": rng.normal(size=5)},
                              attrs={"method": "nuts"})
    idata.attrs.update({"entry": "lgssm", "config": "small"})  # as zoo's command line does
    text = open(write_report(idata, tmp_path / "a.html"), encoding="utf-8").read()
    assert "<td>entry</td><td>lgssm</td>" in text and "<td>config</td><td>small</td>" in text
    assert "no variable is both predicted (y) and observed (y0)" in text
