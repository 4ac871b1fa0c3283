"""shplrnn_gtf: adaptive GTF through the facade (the α trace; the estimands pair with the truth), and
the spec §3 acceptance of the small recipe (Lorenz-63, 8000 steps: D_stsp ≤ 1.5, D_H ≤ 0.15, α from
1 into (0.05, 0.6))."""

import dataclasses

import jax
import numpy as np
import pytest

import inference
import zoo
from tests.helpers import estimand_pairs, recipe_failures
from zoo import shplrnn_gtf

pytestmark = pytest.mark.xla_optimized  # training loops run long (tests/conftest.py)

ENTRY = zoo.get("shplrnn_gtf")
TINY = dataclasses.replace(ENTRY.configs["small"], num_train=3000, num_test=6000, eval_steps=5000)


def test_adaptive_alpha_run_through_the_facade():
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), TINY)
    options = dict(ENTRY.recipe.options, num_steps=300, evaluate_every=150)
    idata = inference.fit(ENTRY, data, method="tf", config=TINY, progress=False, **options)
    alphas = idata.training["alpha"].values
    assert alphas[0] == 1.0 and alphas.max() <= 1.0 and alphas[-1] < 1.0
    assert idata.attrs["alpha"] == "adaptive" and idata.attrs["final_alpha"] == alphas[-1]
    assert list(idata.training["eval_step"].values) == [150, 300]
    w = shplrnn_gtf.weights(idata, TINY)
    assert w.W1.shape == (3, 50) and w.clipped
    rec = shplrnn_gtf.reconstruction(idata, truth, TINY)
    assert rec.finite and rec.orbit.shape == (5000, 3)  # clipped: bounded orbits
    # zoo estimates: the estimands (attractor moments, λ_max) pair with the truth by name and shape;
    # the 5 % training noise does not enter the truth (the noise-free flow's statistics)
    pairs = estimand_pairs(ENTRY, idata, data, truth, TINY)
    assert set(pairs) == {f"attractor_{s}[{i}]" for s in ("mean", "std") for i in range(3)} | {"lyapunov_max"}
    assert all(np.isfinite(estimate) for estimate, _ in pairs.values())
    clean = ENTRY.simulate(jax.random.PRNGKey(0), dataclasses.replace(TINY, train_noise=0.0))[1]
    for name in ("attractor_mean", "attractor_std", "lyapunov_max"):
        np.testing.assert_array_equal(truth[name], clean[name])


def test_small_recipe_passes_the_spec_acceptance():
    assert recipe_failures("shplrnn_gtf") == []
