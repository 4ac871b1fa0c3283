"""shplrnn_gtf, on one run of the small recipe through the facade: adaptive GTF (the α trace; the
estimands pair with the truth), and the spec §3 acceptance (Lorenz-63, 8000 steps: D_stsp ≤ 1.5,
D_H ≤ 0.15, α from 1 into (0.05, 0.6))."""

import dataclasses

import jax
import numpy as np
import pytest

import inference
import zoo
from tests.helpers import estimand_pairs
from zoo import shplrnn_gtf

pytestmark = pytest.mark.xla_optimized  # training loops run long (tests/conftest.py)

ENTRY = zoo.get("shplrnn_gtf")
SMALL = ENTRY.configs["small"]


@pytest.fixture(scope="module")
def small_fit():
    """The small recipe's run (``tests.helpers.recipe_failures``'s: data from ``PRNGKey(0)``, the
    recipe's options): 8000 adaptive-α steps, most of this module's time, shared by both tests.
    Trained optimised, as the module's mark asks (tests/conftest.py sets a marked module's level
    before its module fixtures): the chaotic trajectories of a later ``simulate`` match its own."""
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), SMALL)
    idata = inference.fit(ENTRY, data, method=ENTRY.recipe.method, config="small", progress=False,
                          **ENTRY.recipe.options_for("small"))
    return data, truth, idata


def test_adaptive_alpha_run_through_the_facade(small_fit):
    data, truth, idata = small_fit
    alphas = idata.training["alpha"].values
    assert alphas[0] == 1.0 and alphas.max() <= 1.0 and alphas[-1] < 1.0
    assert idata.attrs["alpha"] == "adaptive" and idata.attrs["final_alpha"] == alphas[-1]
    assert list(idata.training["eval_step"].values) == [2000, 4000, 6000, 8000]  # evaluate_every=2000
    w = shplrnn_gtf.weights(idata, SMALL)
    assert w.W1.shape == (3, 50) and w.clipped
    rec = shplrnn_gtf.reconstruction(idata, truth, SMALL)
    assert rec.finite and rec.orbit.shape == (SMALL.eval_steps, 3)  # clipped: bounded orbits
    # zoo estimates: the estimands (attractor moments, λ_max) pair with the truth by name and shape;
    # the 5 % training noise does not enter the truth (the noise-free flow's statistics)
    pairs = estimand_pairs(ENTRY, idata, data, truth, SMALL)
    assert set(pairs) == {f"attractor_{s}[{i}]" for s in ("mean", "std") for i in range(3)} | {"lyapunov_max"}
    assert all(np.isfinite(estimate) for estimate, _ in pairs.values())
    clean = ENTRY.simulate(jax.random.PRNGKey(0), dataclasses.replace(SMALL, train_noise=0.0))[1]
    for name in ("attractor_mean", "attractor_std", "lyapunov_max"):
        np.testing.assert_array_equal(truth[name], clean[name])


def test_small_recipe_passes_the_spec_acceptance(small_fit):
    _, truth, idata = small_fit
    failed = [c for c in ENTRY.check(idata, truth, SMALL) if not c.passed]
    assert failed == []
