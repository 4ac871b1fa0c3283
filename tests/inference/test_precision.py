"""One precision policy: the dtype does not depend on which package is imported first.

Each check runs in a fresh interpreter (the policy is applied at import; this test process already
has x64 on from tests/conftest.py), with the repository first on sys.path and neither
``DYNAMICS_ZOO_X64`` nor ``JAX_ENABLE_X64`` inherited unless set here.
"""

from __future__ import annotations


import pytest

from tests.helpers import run_fresh_python



def _run(code: str, x64: str | None = None) -> dict:
    extra = {} if x64 is None else {"DYNAMICS_ZOO_X64": x64}
    return run_fresh_python(code, drop=("DYNAMICS_ZOO_X64", "JAX_ENABLE_X64"), **extra)


_PROBE = """
import json, numpy as np, jax.numpy as jnp
from diagnostics.convert import to_inference_data
a = to_inference_data(posterior={"x": np.zeros((1, 2))})
b = to_inference_data(posterior={"x": np.zeros((1, 2))}, attrs={"precision": "given"})
print(json.dumps({"dtype": str(jnp.zeros(1).dtype), "attrs": [a.attrs["precision"], a.posterior.attrs["precision"],
                  b.attrs["precision"]]}))
"""


@pytest.mark.parametrize("first", ["inference", "diagnostics", "zoo"])
@pytest.mark.parametrize("x64, expected", [(None, "float64"), ("0", "float32")])
def test_dtype_does_not_depend_on_the_package_imported_first(first, x64, expected):
    """The package named first is imported before anything else; every InferenceData records it."""
    result = _run(f"import {first}\n" + _PROBE, x64=x64)
    assert result == {"dtype": expected, "attrs": [expected, expected, "given"]}, result


def test_fit_of_a_plain_numpyro_program_runs_in_float64_and_records_it():
    """The float32 trap of issue 22: inference.fit on a plain program, zoo never imported."""
    code = """
import json, sys
import numpy as np
import inference
import numpyro, numpyro.distributions as dist

def model(data=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=data)

idata = inference.fit(model, np.array([0.1, -0.3, 0.4]), method="nuts", num_warmup=20, num_samples=20,
                      num_chains=1, progress=False, posterior_predictive=False)
print(json.dumps({"dtype": str(idata.posterior["mu"].dtype), "precision": idata.attrs.get("precision"),
                  "zoo": "zoo" in sys.modules}))
"""
    result = _run(code)
    assert result == {"dtype": "float64", "precision": "float64", "zoo": False}
