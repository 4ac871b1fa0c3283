"""The calibration table: stored SBC ranks round-trip, the verdicts are recomputed from them.

Sweeps of the conjugate model of ``test_sbc`` (exact posterior: calibrated; halved spread:
flagged) are stored the way ``zoo sbc --store`` stores them and read back into the table.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from diagnostics import calibration, sbc
from tests.diagnostics.test_sbc import exact_fit, prior_simulate

pytestmark = pytest.mark.xla_optimized  # the fits' seeds are checksums of simulated data bits (tests/conftest.py)


def sweep(folder, spread, *, n=120, entry="conj"):
    return sbc.run_sbc(prior_simulate, exact_fit(spread=spread), num_replicates=n, num_draws=49, seed=1,
                       out_dir=folder, settings={"entry": entry, "config": "small", "method": "exact"})


def test_stored_ranks_round_trip(tmp_path):
    result = sweep(tmp_path / "sweep", 1.0)
    dest = tmp_path / "calibration" / "conj" / "small"
    calibration.store_sweep(tmp_path / "sweep", dest, date="2026-01-02", note="zoo sbc conj")
    assert sorted(os.listdir(dest)) == ["manifest.json", "ranks.csv"]
    loaded, manifest = calibration.load_stored(dest)
    assert manifest["entry"] == "conj" and manifest["num_replicates"] == 120 and manifest["date"] == "2026-01-02"
    assert manifest["num_draws"] == 49 and manifest["note"] == "zoo sbc conj"
    np.testing.assert_array_equal(loaded.replicates, result.replicates)
    assert list(loaded.ranks) == list(result.ranks)
    for label in result.ranks:
        np.testing.assert_array_equal(loaded.ranks[label], result.ranks[label])
        np.testing.assert_array_equal(loaded.truths[label], result.truths[label])  # repr round-trips a float
    assert [t.flagged for t in sbc.element_tests(loaded)] == [t.flagged for t in sbc.element_tests(result)]


def test_table_recomputes_verdicts_per_element(tmp_path):
    root = tmp_path / "calibration"
    sweep(tmp_path / "good", 1.0, entry="good")
    sweep(tmp_path / "narrow", 0.5, entry="narrow")
    calibration.store_sweep(tmp_path / "good", root / "good" / "small", date="2026-01-02")
    calibration.store_sweep(tmp_path / "narrow", root / "narrow" / "small", date="2026-01-02")
    rows = calibration.calibration_table(root)
    verdicts = {(r.entry, r.element): r.verdict for r in rows}
    assert verdicts == {("good", "mu"): "calibrated", ("good", "tau[0]"): "calibrated",
                        ("good", "tau[1]"): "calibrated", ("narrow", "mu"): "flagged",
                        ("narrow", "tau[0]"): "flagged", ("narrow", "tau[1]"): "flagged"}
    assert all(r.replicates == 120 and r.num_draws == 49 and r.method == "exact" for r in rows)
    only = calibration.calibration_table(root, entry="narrow")
    assert {r.entry for r in only} == {"narrow"}
    text = calibration.format_table(only)
    assert "flagged" in text and "120 (L=49)" in text and "2026-01-02" in text
    page = calibration.rst_table(rows)
    assert page.startswith(".. list-table::") and page.count("   * - ") == len(rows) + 1
    assert "little power" not in text  # 120 replicates
    few = [r._replace(replicates=10) for r in only]
    assert "only 10 replicates" in calibration.format_table(few)
    assert calibration.calibration_table(tmp_path / "absent") == []
    assert calibration.format_table([]) == "(no stored calibration)"


def test_a_long_site_gets_one_summary_row(tmp_path, monkeypatch):
    """A site with more elements than MAX_ELEMENT_ROWS (a latent path of hundreds) is one row that
    counts its flagged elements; shorter sites keep one row per element. Here the limit is 1, so
    ``tau`` (2 elements) is summarised and ``mu`` is not."""
    root = tmp_path / "calibration"
    for entry, spread in (("good", 1.0), ("narrow", 0.5)):
        sweep(tmp_path / entry, spread, entry=entry)
        calibration.store_sweep(tmp_path / entry, root / entry / "small", date="2026-01-02")
    monkeypatch.setattr(calibration, "MAX_ELEMENT_ROWS", 1)
    rows = {(r.entry, r.element): r for r in calibration.calibration_table(root)}
    assert sorted(rows) == [("good", "mu"), ("good", "tau (2 elements)"), ("narrow", "mu"),
                            ("narrow", "tau (2 elements)")]
    assert rows["good", "tau (2 elements)"].verdict == "calibrated"
    assert rows["good", "tau (2 elements)"].detail.startswith("0 of 2 element(s) flagged;")
    narrow = rows["narrow", "tau (2 elements)"]
    assert narrow.verdict == "flagged" and narrow.detail.startswith("2 of 2 element(s) flagged (tau[0], tau[1]);")
    assert "ECDF outside its band in 2" in narrow.detail


def test_point_estimates_give_bias_and_spread(tmp_path):
    rng = np.random.default_rng(0)
    truth = np.full(200, 0.8)
    estimates = truth + 0.1 + 0.05 * rng.normal(size=200)
    dest = tmp_path / "calibration" / "net" / "small"
    calibration.store_estimates(dest, {"a": estimates}, {"a": truth},
                                settings={"entry": "net", "config": "small", "method": "ppg"}, date="2026-01-02")
    (row,) = calibration.calibration_table(tmp_path / "calibration")
    assert row.kind == "estimate" and row.replicates == 200 and row.entry == "net"
    bias = float(row.detail.split()[1])
    # the bias is estimated within its standard error 0.05 / sqrt(200), z = 4 (false failure < 1e-4)
    assert abs(bias - 0.1) < 4 * 0.05 / np.sqrt(200)
    with pytest.raises(ValueError, match="settings"):
        calibration.store_estimates(dest, {"a": estimates}, {"a": truth}, settings={"entry": "net"})


def test_incomplete_or_foreign_folders(tmp_path):
    dest = tmp_path / "c" / "e" / "small"
    dest.mkdir(parents=True)
    (dest / "manifest.json").write_text(json.dumps({"entry": "e", "config": "small", "num_draws": 9}))
    (dest / "ranks.csv").write_text("replicate,element,rank,truth,max_rhat,divergences\n0,a,1,0.5,nan,-1\n"
                                    "1,b,1,0.5,nan,-1\n")
    with pytest.raises(ValueError, match="lack a rank"):
        calibration.load_stored(dest)
    (dest / "ranks.csv").write_text("replicate,element,rank\n0,a,1\n")
    with pytest.raises(ValueError, match="missing column"):
        calibration.load_stored(dest)
    with pytest.raises(FileNotFoundError, match="manifest"):
        calibration.load_stored(tmp_path)


def test_zoo_show_prints_the_entry_rows(tmp_path, monkeypatch, capsys):
    from zoo import cli

    sweep(tmp_path / "sweep", 1.0, n=30, entry="lgssm")
    calibration.store_sweep(tmp_path / "sweep", tmp_path / "calibration" / "lgssm" / "scalar", date="2026-01-02")
    monkeypatch.setattr(cli, "calibration_root", lambda: str(tmp_path / "calibration"))
    assert cli.main(["show", "lgssm"]) == 0
    out = capsys.readouterr().out
    assert "calibration (stored results" in out and "30 (L=49)" in out and "tau[1]" in out
    monkeypatch.setattr(cli, "calibration_root", lambda: str(tmp_path / "none"))
    assert cli.main(["show", "lgssm"]) == 0
    assert "(no stored calibration)" in capsys.readouterr().out


def test_the_table_says_when_the_recipe_changed_since_the_sweep(tmp_path):
    root = tmp_path / "calibration"
    sweep(tmp_path / "good", 1.0, entry="good")
    ran = {"method": "nuts", "options": {"num_chains": 1, "num_warmup": 300, "posterior_predictive": False}}
    calibration.store_sweep(tmp_path / "good", root / "good" / "small", date="2026-01-02", recipe=ran)
    _, manifest = calibration.load_stored(root / "good" / "small")
    # a calibration run's own settings are not the recipe
    assert manifest["recipe"] == {"method": "nuts", "options": {"num_chains": 1, "num_warmup": 300}}
    same = {("good", "small"): {"method": "nuts", "options": {"num_chains": 1, "num_warmup": 300}}}
    assert all(r.recipe_changed == "" for r in calibration.calibration_table(root, recipes=same))
    now = {("good", "small"): {"method": "nuts", "options": {"num_chains": 1, "num_warmup": 300, "init": "optimize"}}}
    rows = calibration.calibration_table(root, recipes=now)
    assert all(r.recipe_changed == "init='(unset)' then, 'optimize' now" for r in rows)
    assert "a verdict of another recipe" in calibration.format_table(rows)
    other = {("good", "small"): {"method": "smc", "options": {}}}
    assert all("method nuts then, smc now" == r.recipe_changed for r in calibration.calibration_table(root, recipes=other))
    # a result stored without its recipe (or a table without recipes) says nothing
    assert all(r.recipe_changed == "" for r in calibration.calibration_table(root))


def test_a_point_estimate_study_keeps_its_recipe_and_the_table_says_when_it_changed(tmp_path):
    root = tmp_path / "calibration"
    ran = {"method": "tf", "options": {"num_steps": 500, "progress": False}}
    calibration.store_estimates(root / "net" / "small", {"a": [1.0, 1.2, 0.9]}, {"a": [1.0, 1.0, 1.0]},
                                settings={"entry": "net", "config": "small", "method": "tf"}, date="2026-01-02",
                                recipe=ran)
    manifest = calibration._manifest(os.fspath(root / "net" / "small"))
    assert manifest["recipe"] == {"method": "tf", "options": {"num_steps": 500}}
    same = {("net", "small"): {"method": "tf", "options": {"num_steps": 500}}}
    assert [r.recipe_changed for r in calibration.calibration_table(root, recipes=same)] == [""]
    now = {("net", "small"): {"method": "tf", "options": {"num_steps": 800}}}
    (row,) = calibration.calibration_table(root, recipes=now)
    assert row.recipe_changed == "num_steps=500 then, 800 now"
    assert "the recipe has changed since this study" in calibration.format_table([row])
    assert "figures of another recipe" in calibration.format_table([row])


def test_a_recipe_with_a_function_option_is_recorded_the_same_in_every_process():
    """A function's repr carries its memory address; the record names it instead, so a recipe
    with a function option (``ppg_lgssm``'s proposal) does not look changed on every read."""
    import functools

    record = calibration.recipe_record("ppg", {"proposal": calibration.recipe_record, "scale": 2.0,
                                               "wrapped": functools.partial(calibration.recipe_record, "nuts")})
    assert record["options"] == {
        "proposal": "diagnostics.calibration.recipe_record", "scale": 2.0,
        "wrapped": "functools.partial(diagnostics.calibration.recipe_record, 'nuts')"}


def test_a_sweep_stored_in_progress_is_shown_without_verdict_and_continued_elsewhere(tmp_path):
    """``zoo sbc --store`` keeps a sweep's progress; a fresh folder (another machine, a new clone)
    continues it from the stored ranks and fits only the rest, to the ranks of an uninterrupted run."""
    settings = {"entry": "conj", "config": "small", "method": "exact"}
    recipe = {"method": "exact", "options": {"spread": 1.0}}
    dest = tmp_path / "calibration" / "conj" / "small"
    fitted = []

    def fit(data):
        fitted.append(1)
        return exact_fit()(data)

    sbc.run_sbc(prior_simulate, fit, num_replicates=40, num_draws=49, seed=1, out_dir=tmp_path / "first",
                settings=settings, on_result=lambda i: calibration.store_sweep(
                    tmp_path / "first", dest, date="2026-01-02", recipe=recipe, planned=120))
    _, manifest = calibration.load_stored(dest)
    assert manifest["num_replicates"] == 40 and manifest["num_planned"] == 120
    rows = calibration.calibration_table(tmp_path / "calibration")
    assert {r.verdict for r in rows} == {"in progress"} and all(r.replicates == 40 for r in rows)
    text = calibration.format_table(rows)
    assert "40 of 120 replicates so far" in text and "little power" not in text

    # another sweep's settings or recipe: nothing is continued
    sweep_manifest = {"num_draws": 49, "seed": 1, **settings}
    assert calibration.continue_stored(dest, tmp_path / "x", {**sweep_manifest, "seed": 2}, recipe) == 0
    assert calibration.continue_stored(dest, tmp_path / "x", sweep_manifest, {"method": "exact", "options": {}}) == 0
    assert not (tmp_path / "x").exists()

    assert calibration.continue_stored(dest, tmp_path / "second", sweep_manifest, recipe, num_replicates=120) == 40
    fitted.clear()
    result = sbc.run_sbc(prior_simulate, fit, num_replicates=120, num_draws=49, seed=1, out_dir=tmp_path / "second",
                         settings=settings)
    assert len(fitted) == 80  # only the replicates the stored sweep lacked
    whole = sbc.run_sbc(prior_simulate, exact_fit(), num_replicates=120, num_draws=49, seed=1)
    for label in whole.ranks:
        np.testing.assert_array_equal(result.ranks[label], whole.ranks[label])
        np.testing.assert_array_equal(result.truths[label], whole.truths[label])
    calibration.store_sweep(tmp_path / "second", dest, recipe=recipe, planned=120)
    assert {r.verdict for r in calibration.calibration_table(tmp_path / "calibration")} == {"calibrated"}
    # a sweep folder's recipe setting (JSON text, as zoo sbc writes it) is stored as the recipe
    sbc.run_sbc(prior_simulate, exact_fit(), num_replicates=3, num_draws=49, seed=1, out_dir=tmp_path / "textual",
                settings={**settings, "recipe": json.dumps(calibration.recipe_record(**recipe))})
    calibration.store_sweep(tmp_path / "textual", tmp_path / "stored_textual")
    assert calibration.load_stored(tmp_path / "stored_textual")[1]["recipe"] == calibration.recipe_record(**recipe)
    # a shorter rerun takes only the stored replicates below its size
    assert calibration.continue_stored(dest, tmp_path / "third", sweep_manifest, recipe, num_replicates=10) == 10
