"""The reaction-kinetics package registers its five entries under one reference."""

import zoo


NAMES = ["stochastic_lotka_volterra", "logistic_birth_death", "pair_annihilation_1d", "may_leonard",
         "lotka_volterra_ode"]


def test_all_entries_registered():
    assert set(NAMES) <= set(zoo.names())
    for name in NAMES:
        entry = zoo.get(name)
        assert entry.reference == "arXiv:1807.01248" and entry.recipe.method == "nuts"
