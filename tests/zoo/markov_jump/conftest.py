"""The small-config DFR fit shared by the dfr and estimator tests (fitted once per package run)."""

import pytest

from tests.conftest import compile_optimised
from tests.zoo.markov_jump.common import FAST_NUTS, fit_dfr_small


@pytest.fixture(scope="package")
def dfr_fit():
    compile_optimised(True)  # its users, test_dfr and test_estimator, are marked xla_optimized
    return fit_dfr_small(**FAST_NUTS)
