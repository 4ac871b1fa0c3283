"""Particles sharded over devices (issue 21, items 1 and 5): the same filter on 4 emulated CPU devices.

JAX fixes its devices when it starts, so the check runs in a fresh interpreter with
``DYNAMICS_ZOO_HOST_DEVICES=4`` (JAX's CPU split into 4 host devices, :mod:`diagnostics.devices`).
With the particle axis sharded the algorithm is unchanged (global resampling), so the estimates
must equal the unsharded filter's for the same keys to rounding (1e-9 nats; measured 2e-15).
"""

from __future__ import annotations


from tests.helpers import run_fresh_python


_CODE = r"""
import json
import jax, jax.numpy as jnp, numpy as np
import inference, zoo
from inference.particle import filter as pf

entry = zoo.get("lgssm")
config = entry.config("scalar")
data, truth = entry.simulate(jax.random.PRNGKey(1), config)
ssm = entry.ssm(config)
params = {k: jnp.asarray(truth[k]) for k in ("A", "q", "r")}
fk = ssm.feynman_kac(params, jnp.asarray(data)[0])
N = 1024
mesh = pf.particle_mesh(N)
plain = jax.jit(lambda k: pf.run(k, fk, N).log_likelihood_increments)
sharded_fn = jax.jit(lambda k: pf.run(k, fk, N, mesh=mesh))
diffs, sharding = [], None
for s in range(4):
    out = sharded_fn(jax.random.PRNGKey(s))
    diffs.append(float(jnp.max(jnp.abs(out.log_likelihood_increments - plain(jax.random.PRNGKey(s))))))
    sharding = len(out.final_state.particles.sharding.device_set)
runs = {flag: inference.fit(entry, data, method="pf", config=config, params=params, num_particles=N,
                            num_replicates=3, seed=5, progress=False, shard_particles=flag)
        for flag in (False, True)}
evidence = [runs[f].sample_stats["log_evidence"].values.ravel().tolist() for f in (False, True)]
try:
    pf.particle_mesh(1001)
    error = ""
except ValueError as e:
    error = str(e)
print(json.dumps({"devices": jax.local_device_count(), "max_diff": max(diffs), "sharded_over": sharding,
                  "evidence": evidence, "attrs": [runs[f].attrs["particle_devices"] for f in (False, True)],
                  "exact": float(entry.exact_loglik(params, data, config=config)), "error": error}))
"""


def test_sharded_particles_give_the_unsharded_answers():
    result = run_fresh_python(_CODE, drop=("JAX_NUM_CPU_DEVICES", "XLA_FLAGS"), timeout=900,
                              DYNAMICS_ZOO_HOST_DEVICES="4", DYNAMICS_ZOO_COMPILE_CACHE="0")
    assert result["devices"] == 4 and result["sharded_over"] == 4
    assert result["max_diff"] < 1e-9
    unsharded, sharded = result["evidence"]
    assert result["attrs"] == [1, 4]
    assert max(abs(a - b) for a, b in zip(unsharded, sharded)) < 1e-9
    # the estimates are of the exact log-likelihood (T = 100, N = 1024: sd well below 1 nat)
    assert all(abs(v - result["exact"]) < 2.0 for v in sharded)
    assert result["error"].startswith("num_particles: 1001 particles do not split evenly over 4 devices")
