"""``zoo sbc --store``: a sweep's progress is kept in the calibration folder as it runs, and the
same command from a fresh folder (another machine, a new clone) continues it.

In process (``zoo.cli.main``) on a registered toy entry, a normal mean under a normal prior
fitted by a short NUTS run, so a replicate is a fraction of a second after one compilation.
"""

from __future__ import annotations

import json

import pytest

import zoo
from tests.zoo.test_cli_estimates import ToyConfig, run, toy_model, toy_simulate
from zoo import cli
from zoo.core import Recipe, ZooEntry


@pytest.fixture
def toy():
    entry = ZooEntry(name="toy_sbc_store", title="toy", reference="none", summary="a normal mean by NUTS",
                     model=toy_model, simulate=toy_simulate, configs={"small": ToyConfig(num_obs=5), "paper": ToyConfig()},
                     recipe=Recipe("nuts", {"num_warmup": 100, "num_samples": 100, "num_chains": 1}),
                     check=lambda *args: [])
    zoo.register(entry)
    yield entry
    zoo.unregister(entry.name)


def test_a_stored_sweep_keeps_its_progress_and_is_continued_from_a_fresh_folder(toy, tmp_path, monkeypatch,
                                                                                 capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "calibration_root", lambda: str(tmp_path / "calibration"))
    stored = tmp_path / "calibration" / toy.name / "small"
    status, text, err = run(capsys, "sbc", toy.name, "--n", "2", "--draws", "9", "--out", "here", "--store")
    assert status in (0, 1), err
    manifest = json.loads((stored / "manifest.json").read_text())
    assert manifest["num_replicates"] == 2 and manifest["num_planned"] == 2
    assert manifest["recipe"] == {"method": "nuts", "options": {"num_warmup": 100, "num_samples": 100, "num_chains": 1}}
    # elsewhere, with a larger --n: the two stored replicates are taken, one is fitted
    status, text, err = run(capsys, "sbc", toy.name, "--n", "3", "--draws", "9", "--out", "there", "--store")
    assert status in (0, 1), err
    assert f"continuing the sweep stored in {stored}: 2 replicate(s) stored there" in text
    assert [line for line in text.splitlines() if line.startswith("sbc: replicate")] == [
        line for line in text.splitlines() if line.startswith("sbc: replicate 3/3 done")] != []
    assert json.loads((stored / "manifest.json").read_text())["num_replicates"] == 3
    # all of it stored already: nothing is fitted and the stored sweep (its date) is left as it is
    before = (stored / "manifest.json").read_text()
    status, text, err = run(capsys, "sbc", toy.name, "--n", "3", "--draws", "9", "--out", "third", "--store")
    assert status in (0, 1), err
    assert "sbc: replicate" not in text and f"every replicate was stored already in {stored}" in text
    assert (stored / "manifest.json").read_text() == before
    # the sweep folder that stored it, rerun: the same sweep (not "another"), nothing fitted or rewritten
    status, text, err = run(capsys, "sbc", toy.name, "--n", "3", "--draws", "9", "--out", "there", "--store")
    assert status in (0, 1), err
    assert f"continuing the sweep stored in {stored}: 3 replicate(s) stored there" in text, text
    assert "another sweep" not in text and f"every replicate was stored already in {stored}" in text
    assert (stored / "manifest.json").read_text() == before
    # another recipe is another sweep: nothing continued, and the stored one is replaced
    status, text, err = run(capsys, "sbc", toy.name, "--n", "1", "--draws", "9", "--out", "other", "--store",
                            "--option", "num_samples=50")
    assert status == 2 and "the tests need at least 2" in err, err  # one replicate is no SBC...
    assert "holds another sweep (other settings or recipe); storing this one will replace it" in text
    manifest = json.loads((stored / "manifest.json").read_text())  # ...but it was stored as it finished
    assert manifest["num_replicates"] == 1 and manifest["recipe"]["options"]["num_samples"] == 50
    assert manifest["num_planned"] == 1
    # a sweep in progress with one replicate: the table has a row per element, no verdict
    manifest["num_planned"] = 5
    (stored / "manifest.json").write_text(json.dumps(manifest))
    from diagnostics.calibration import calibration_table

    rows = calibration_table(tmp_path / "calibration")
    assert [(r.element, r.verdict, r.detail) for r in rows] == [("mu", "in progress", "1 of 5 replicates so far")]
    # a sweep folder is not resumed under another recipe either
    status, _, err = run(capsys, "sbc", toy.name, "--n", "2", "--draws", "9", "--out", "here",
                         "--option", "num_samples=50")
    assert status == 2 and "zoo sbc: error: out_dir:" in err and "recipe" in err, err
    # --store of an overridden config is refused before any work
    status, _, err = run(capsys, "sbc", toy.name, "--n", "2", "--out", "never", "--store", "--set", "num_obs=3")
    assert status == 2 and err.startswith("zoo sbc: error: --store:") and not (tmp_path / "never").exists()
