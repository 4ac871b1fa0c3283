"""Chains and runs split over devices (issue 21, item 2): PMMH, tempered SMC and BlackJAX NUTS.

:mod:`inference.sharding` splits a sampler's independent chains (runs) over the local devices
with ``jax.shard_map``. Each chain has its own keys, so the sharded draws must equal the
vectorised (one-device ``vmap``) draws for the same seed: exactly, or to rounding where a
smaller vmapped batch rounds differently (measured: PMMH exact, tempered SMC 9e-15, BlackJAX
3e-12; asserted below 1e-9).

Default (cheap, in this process): the shared helper on a toy function, where the test process
has several devices (importing the project splits the CPU into host devices). ``slow``: the
three samplers in a fresh interpreter with 4 host devices (JAX fixes its devices when it
starts), sharded against vectorised, and a vectorised PMMH run interrupted mid-warmup and
resumed sharded. The sharded PMMH resume itself is in the default suite:
``tests/inference/test_checkpoint_runs.py`` runs PMMH with ``chain_method="auto"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from inference.sharding import choose, devices_for, over_devices
from tests.helpers import run_fresh_python


def test_devices_for_uses_as_few_devices_as_one_slice_length_needs():
    assert [devices_for(n, 4) for n in (1, 2, 3, 4, 5, 6, 7, 8, 9)] == [1, 2, 3, 4, 3, 3, 4, 4, 3]
    assert devices_for(1000, 1) == 1


def test_choose_names_the_argument_and_obeys_a_request():
    with pytest.raises(ValueError, match=r"chain_method: expected one of \['auto', 'vectorized', 'sharded'\]"):
        choose("parallel", 4)
    method, reason = choose("vectorized", 4)
    assert method == "vectorized" and reason.startswith("asked for")
    assert choose("auto", 1)[0] == "vectorized"


@pytest.mark.skipif(jax.local_device_count() < 2, reason="needs several devices (DYNAMICS_ZOO_HOST_DEVICES)")
def test_over_devices_equals_vmap_with_padding_a_replicated_argument_and_a_carry_fed_back():
    def step(carry, keys, scale):
        return carry * 0.5 + jnp.cumsum(keys, axis=-1) * scale, keys.sum(axis=-1)

    size = 2 * jax.local_device_count() - 1  # one padded entry on every device count >= 2
    sharded = over_devices(step, size, replicated=(2,))
    carry, keys = jnp.arange(3.0 * size).reshape(size, 3), jnp.linspace(0.0, 1.0, 3 * size).reshape(size, 3)
    expected = carry
    for _ in range(3):  # the sharded carry goes back in as the next call's input
        carry, total = sharded(carry, keys, jnp.asarray(2.0))
        expected, total_expected = jax.vmap(step, in_axes=(0, 0, None))(expected, keys, jnp.asarray(2.0))
        assert carry.shape == (size, 3) and total.shape == (size,)
        assert jnp.array_equal(carry, expected) and jnp.array_equal(total, total_expected)
    assert len(carry.sharding.device_set) == devices_for(size)


@pytest.mark.skipif(jax.local_device_count() < 2, reason="needs several devices (DYNAMICS_ZOO_HOST_DEVICES)")
def test_auto_stays_vectorized_where_the_program_does_not_trace_under_shard_map():
    """diffrax's adaptive solve: its value traces split over the devices, its gradient does not
    (equinox's closure conversion, as under pmap); shapes only, nothing compiled."""
    diffrax = pytest.importorskip("diffrax")

    def decay(rate):
        term = diffrax.ODETerm(lambda t, y, args: -args * y)
        return diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, 1.0, None, jnp.ones(2), args=rate,
                                   stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6),
                                   max_steps=64).ys[-1].sum()

    rates = (jnp.array([0.5, 1.0]),)
    assert choose("auto", 2, probe=(jax.vmap(decay), rates))[0] == "sharded"
    method, reason = choose("auto", 2, probe=(jax.vmap(jax.grad(decay)), rates))
    assert method == "vectorized" and "does not trace under jax.shard_map (ValueError: Closure-converted" in reason


_CODE = r"""
import json
import jax, jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist
import inference
from inference import checkpoint as ckpt
from tests.inference.particle import models

def difference(a, b):
    out = 0.0
    for group in ("posterior", "sample_stats"):
        for name in a[group].data_vars:
            x, y = np.asarray(a[group][name].values, float), np.asarray(b[group][name].values, float)
            out = max(out, float(np.max(np.abs(x - y), initial=0.0)))
    return out

def placement(idata):
    return [idata.attrs["chain_method"], int(idata.attrs["num_devices"])]

# PMMH: 5 chains on 4 devices -> 3 devices, 2 chains each, one padded copy dropped
ssm = models.ar1(rho_prior=True)
rng = np.random.default_rng(3)  # AR(1) + noise, rho 0.7, drawn here (not by the model)
x = np.zeros(15)
for t in range(1, 15):
    x[t] = 0.7 * x[t - 1] + rng.normal()
ys = jnp.asarray(x + 0.5 * rng.normal(size=15))[None]
def pmmh(method, path=None):
    return inference.fit(ssm, ys, method="pmmh", seed=2, progress=False, num_particles=16, num_warmup=20,
                         num_samples=10, num_chains=5, chunk_size=10, chain_method=method, checkpoint_path=path)
out = {"devices": jax.local_device_count()}
vectorized, auto = pmmh("vectorized"), pmmh("auto")
# a vectorised run stopped after its first chunk (mid-warmup, adaptation under way) resumes sharded
real, count = ckpt.atomic_savez, [0]
def interrupting(path, /, **arrays):
    real(path, **arrays)
    count[0] += 1
    if count[0] == 1:
        raise KeyboardInterrupt
ckpt.atomic_savez = interrupting
try:
    pmmh("vectorized", "__PATH__")
except KeyboardInterrupt:
    pass
ckpt.atomic_savez = real
resumed = pmmh("sharded", "__PATH__")
out["pmmh"] = {"placement": [placement(vectorized), placement(auto), placement(resumed)],
               "reason": auto.attrs["chain_method_reason"], "resumed_from": resumed.attrs["resumed_from"],
               "difference": difference(vectorized, auto), "resumed": difference(vectorized, resumed)}

def model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0, 10))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2))
    with numpyro.plate("obs", 20):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)
y = np.random.default_rng(0).normal(1.0, 1.5, 20)
fits = {
    "smc": lambda m: inference.fit(model, y, method="smc", seed=1, progress=False, num_particles=64, num_runs=3,
                                   posterior_predictive=False, chain_method=m),
    "blackjax": lambda m: inference.fit(model, y, method="blackjax-nuts", seed=3, progress=False, num_warmup=30,
                                        num_samples=20, num_chains=3, posterior_predictive=False, chain_method=m),
}
for name, run in fits.items():
    one, split = run("vectorized"), run("auto")
    out[name] = {"difference": difference(one, split), "placement": [placement(one), placement(split)],
                 "log_evidence": [one.attrs.get("log_evidence"), split.attrs.get("log_evidence")]}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_sharded_pmmh_smc_and_blackjax_give_the_vectorized_draws(tmp_path):
    code = _CODE.replace("__PATH__", str(tmp_path / "pmmh.ckpt.npz"))
    result = run_fresh_python(code, drop=("JAX_NUM_CPU_DEVICES", "XLA_FLAGS"), timeout=900,
                              DYNAMICS_ZOO_HOST_DEVICES="4", XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert result["devices"] == 4
    pmmh = result["pmmh"]
    assert pmmh["placement"] == [["vectorized", 4], ["sharded", 4], ["sharded", 4]]
    assert "5 chains split over 3 device(s), 2 per device" in pmmh["reason"]
    assert pmmh["resumed_from"] == "warmup iteration 10"
    assert pmmh["difference"] == 0.0, f"sharded PMMH differs from vectorised by {pmmh['difference']}"
    assert pmmh["resumed"] == 0.0, f"vectorised PMMH resumed sharded differs by {pmmh['resumed']}"
    for name in ("smc", "blackjax"):
        assert result[name]["placement"] == [["vectorized", 4], ["sharded", 4]], name
        assert result[name]["difference"] < 1e-9, f"{name}: sharded differs by {result[name]['difference']}"
    one, split = result["smc"]["log_evidence"]
    assert abs(one - split) < 1e-9
