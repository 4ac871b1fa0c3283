"""The small-config DFR fit shared by the dfr and estimator tests (fitted once per package run)."""

import pytest

from tests.zoo.markov_jump.common import FAST_NUTS, fit_dfr_small


@pytest.fixture(scope="package")
def dfr_fit():
    return fit_dfr_small(**FAST_NUTS)
