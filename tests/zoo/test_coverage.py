"""Coverage over replicates: the counterpart of recovery checks that judge one data set (issue 23, item 3).

A recovery check (``zoo check NAME``) asks whether the default recipe's intervals cover the truth
and its posterior means are close on ONE simulated data set. Here each listed entry's ``small``
config is simulated ``NUM_REPLICATES`` times at its truth and fitted by its default recipe
(batched NUTS, ``tests.helpers.interval_coverage``); the number of 90% central intervals that
cover each true parameter element must lie in the two-sided acceptance region of
Binomial(n, 0.9) at a false-failure budget of 1e-4 per test, Bonferroni-split over the elements
(``tests.helpers.assert_binomial_coverage``; with n = 50 the region is about [36, 50]). At a
fixed truth a Bayesian interval covers at about the nominal rate when the data dominate the prior;
a region this wide catches intervals that are too narrow or biased by a standard error or more,
which one data set cannot show. Slow: each is n fits of the entry's recipe.
"""

from __future__ import annotations

import pytest

from tests.helpers import assert_binomial_coverage, interval_coverage

NUM_REPLICATES = 50

#: entry -> the parameters its recovery check judges on one data set
CHECKED = {
    "affect_vad": ("sigma_r", "alpha", "mu"),
    "lgssm": ("A", "q", "r"),
    "hmm": ("transition_matrix", "means", "scales"),
    "logistic_birth_death": ("sigma", "kappa", "lam"),
    "lotka_volterra_ode": ("mu", "sigma", "lam", "capacity"),
    "driven_electrolyte_ldd": ("E", "kappa", "D"),
    "latent_sde_ou": ("theta", "sigma"),
    "phase_oscillator_chain": ("K", "D", "c"),
    "ising_chain_wavefunction": ("beta", "h", "eta_in", "eta_final"),
    "pair_annihilation_1d": ("alpha", "c"),
    "povm_dissipative_ising": ("g", "gamma"),
    "maxent_ion_channel": ("log_k0", "log_kh", "coupling", "mu_left", "mu_right"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHECKED))
def test_intervals_cover_at_the_nominal_rate(name):
    counts = interval_coverage(name, CHECKED[name], num_replicates=NUM_REPLICATES)
    assert_binomial_coverage(counts, NUM_REPLICATES, 0.9)


def test_binomial_region_refuses_too_narrow_intervals():
    """The assertion's own arithmetic: 45/50 inside, 30/50 (60% coverage) outside."""
    assert_binomial_coverage({"a": 45, "b": 50}, 50, 0.9)
    with pytest.raises(AssertionError, match="b"):
        assert_binomial_coverage({"a": 45, "b": 30}, 50, 0.9)
