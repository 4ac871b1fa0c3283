"""Host devices for parallel chains (diagnostics.devices; issue 22 item 1, issue 21 item 2).

JAX fixes its devices when it starts, so each check runs in a fresh interpreter with the
repository first on sys.path and none of the device variables inherited unless set here.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import run_fresh_python

_INHERITED = ("JAX_NUM_CPU_DEVICES", "DYNAMICS_ZOO_HOST_DEVICES", "XLA_FLAGS")


def _run(code: str, **env_vars) -> dict:
    return run_fresh_python(code, drop=_INHERITED, DYNAMICS_ZOO_COMPILE_CACHE="0", **env_vars)


_PROBE = """
import json, jax
from diagnostics import devices
print(json.dumps({"devices": jax.local_device_count(), "note": devices.note()}))
"""


def test_each_package_asks_for_host_devices_before_jax_starts():
    for first in ("zoo", "inference", "diagnostics"):
        assert _run(f"import {first}\n" + _PROBE, DYNAMICS_ZOO_HOST_DEVICES="3") == {"devices": 3, "note": ""}
    # the default: at least the default number of chains
    assert _run("import zoo\n" + _PROBE)["devices"] == max(4, os.cpu_count() or 1)
    # JAX imported (not started) first: set through jax.config
    assert _run("import jax\nimport inference\n" + _PROBE, DYNAMICS_ZOO_HOST_DEVICES="3")["devices"] == 3


def test_a_count_the_user_chose_wins():
    assert _run("import zoo\n" + _PROBE, XLA_FLAGS="--xla_force_host_platform_device_count=2")["devices"] == 2
    assert _run("import zoo\n" + _PROBE, JAX_NUM_CPU_DEVICES="5")["devices"] == 5
    assert _run("import zoo\n" + _PROBE, DYNAMICS_ZOO_HOST_DEVICES="1")["devices"] == 1


def test_jax_started_too_early_is_said_and_recorded():
    code = """
import json, jax, jax.numpy as jnp
jnp.ones(2).block_until_ready()
import numpy as np, numpyro, numpyro.distributions as dist
import inference
def model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    numpyro.sample("y", dist.Normal(mu, 1), obs=y)
idata = inference.fit(model, np.array([0.3, -0.2, 0.5]), method="nuts", num_warmup=20, num_samples=20,
                      progress=False, posterior_predictive=False)
print(json.dumps({"devices": jax.local_device_count(), "chain_method": idata.attrs["chain_method"],
                  "note": idata.attrs.get("host_devices_note", "")}))
"""
    result = _run(code)
    assert result["devices"] == 1 and result["chain_method"] == "vectorized"
    assert result["note"].startswith("JAX was initialised before dynamics-zoo was imported")


def test_a_bad_count_warns_and_leaves_jax_alone():
    code = "import warnings\nwith warnings.catch_warnings(record=True) as w:\n    warnings.simplefilter('always')\n" \
           "    import zoo\n" + _PROBE.replace('"note": devices.note()', '"warned": str(w[0].message)')
    result = _run(code, DYNAMICS_ZOO_HOST_DEVICES="two")
    assert result["devices"] == 1
    assert result["warned"].startswith("DYNAMICS_ZOO_HOST_DEVICES: expected a positive integer")


# One fresh interpreter on 4 host devices serves the two tests below (module fixture): the fits of
# the first, then the pmap probes of the second (shapes only, after the fits).
_FOUR_DEVICES = """
import json, numpy as np, jax, jax.numpy as jnp, diffrax, numpyro, numpyro.distributions as dist
from numpyro.infer.util import potential_energy
import inference
from inference.nuts import choose_chain_method

def model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0, 10))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2))
    numpyro.sample("y", dist.Normal(mu, sigma), obs=y)
y = np.random.default_rng(0).normal(1.0, 2.0, size=40)
runs = {m: inference.fit(model, y, method="nuts", num_warmup=100, num_samples=100, chain_method=m, seed=3,
                         progress=False, posterior_predictive=False) for m in ("auto", "sequential")}
same = max(float(np.max(np.abs(runs["auto"].posterior[v].values - runs["sequential"].posterior[v].values)))
           / float(runs["sequential"].posterior[v].std()) for v in ("mu", "sigma"))
chains = {"chain_method": runs["auto"].attrs["chain_method"], "num_devices": runs["auto"].attrs["num_devices"],
          "asked": runs["sequential"].attrs["chain_method_reason"], "difference": same}

def decay(rate):
    term = diffrax.ODETerm(lambda t, y, args: -args * y)
    return diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, 1.0, None, jnp.ones(2), args=rate,
                               saveat=diffrax.SaveAt(ts=jnp.array([1.0])),
                               stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6), max_steps=256).ys[0]

def ode_model(y):
    rate = numpyro.sample("rate", dist.LogNormal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(decay(rate), 0.1), obs=y)

def plain_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

probes = {}
for name, site, m in (("ode", "rate", ode_model), ("plain", "mu", plain_model)):
    # the potential energy of the unconstrained point, as the sampler's (traced, never compiled)
    potential = lambda z, m=m: potential_energy(m, (jnp.full(2, 0.4),), {}, z)
    probes[name] = choose_chain_method(2, probe=(potential, {site: jnp.asarray(0.0)}))
print(json.dumps({"chains": chains, "probes": probes}))
"""


@pytest.fixture(scope="module")
def four_devices() -> dict:
    return run_fresh_python(_FOUR_DEVICES, drop=_INHERITED, timeout=900, DYNAMICS_ZOO_COMPILE_CACHE="0",
                            DYNAMICS_ZOO_HOST_DEVICES="4")


def test_parallel_chains_draw_what_sequential_chains_draw(four_devices):
    """The default on 4 host devices runs the chains in parallel, records it, and a chain's draws
    are those of the same chain run one after another (same key, same algorithm) to rounding: the
    two are compiled differently (``pmap`` and ``lax.map``), so the last bits differ and a
    trajectory carries the difference along; measured 1e-5 posterior sds at most here."""
    result = dict(four_devices["chains"])
    difference = result.pop("difference")
    assert result == {"chain_method": "parallel", "num_devices": 4, "asked": "asked for"}
    assert difference < 1e-3, f"parallel and sequential chains differ by {difference} posterior sds"


def test_auto_chain_method_runs_vectorized_where_the_gradient_does_not_trace_under_pmap(four_devices):
    """With a device per chain "auto" picks pmap, unless the program's gradient cannot be traced
    under pmap: diffrax's adaptive solve (its checkpointed loop's closure conversion, equinox
    0.13.8 / JAX 0.10.2) made `zoo check stochastic_lotka_volterra` and `lotka_volterra_ode` exit
    2 at the first gradient. Shapes only: the probe traces the gradient of the potential energy,
    nothing is compiled."""
    result = four_devices["probes"]
    assert result["plain"] == ["parallel", "4 cpu devices for 2 chains"]
    method, reason = result["ode"]
    assert method == "vectorized" and "does not trace under pmap (ValueError: Closure-converted" in reason
