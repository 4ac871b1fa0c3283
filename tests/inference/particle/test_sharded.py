"""Particles sharded over devices (issue 21, items 1 and 5): the same filter, conditional SMC and SMC²
on 4 emulated CPU devices.

JAX fixes its devices when it starts, so the check runs in a fresh interpreter with
``DYNAMICS_ZOO_HOST_DEVICES=4`` (JAX's CPU split into 4 host devices, :mod:`diagnostics.devices`).
With the particle axis sharded the algorithm is unchanged (global resampling), so the estimates
must equal the unsharded filter's for the same keys to rounding (1e-9 nats; measured 2e-15).
"""

from __future__ import annotations

import pytest

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



# Conditional SMC and SMC² (θ-particles sharded), the same key with and without a mesh; x64 so that
# "to rounding" is 1e-12 (measured 7e-15 and 4e-16). SAMPLINGS and FULL (longer CSMC chains, a final
# SMC² resample-move, the fits) are filled in per test.
_CODE_CONDITIONAL = r"""
import dataclasses, json
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from inference.particle import csmc as C, filter as pf, smc2 as S2
from tests.inference.particle.models import RHO, SIGMA, ar1

params = {"rho": jnp.asarray(RHO), "sigma": jnp.asarray(SIGMA)}
_, ys = ar1().simulate(jax.random.PRNGKey(1), params, 12)
fk = ar1().feynman_kac(params, ys)
N = 16
mesh = pf.particle_mesh(N)
diffs = {}
for sampling in SAMPLINGS:
    def chain(key, m):  # one kernel from a path of the state prior (FULL: two, and a fresh start path)
        path = C.simulate_path(jax.random.PRNGKey(2), fk)
        k1, k2, k3 = jax.random.split(key, 3)
        path, info = C.csmc(k1, fk, path, N, sampling=sampling, mesh=m)
        if not FULL:
            return path, info.conditional_log_evidence
        path, info = C.csmc(k2, fk, path, N, sampling=sampling, mesh=m)
        return path, info.conditional_log_evidence, C.sample_path(k3, fk, N, sampling=sampling, mesh=m)
    a, b = (jax.jit(lambda k, m=m: chain(k, m))(jax.random.PRNGKey(3)) for m in (None, mesh))
    diffs[sampling] = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(a, b))
smc2, fits = {}, {}
if FULL:
    NT = 8
    runs = [jax.jit(lambda k, m=m: S2.run(k, ar1(rho_prior=True), ys[None], num_theta=NT, num_particles=8,
                                           num_moves=1, final_moves=1, mesh=m))(jax.random.PRNGKey(5))
            for m in (None, pf.particle_mesh(NT))]
    smc2 = {"evidence": [float(r.log_evidence) for r in runs],
            "theta": [r.state.positions.ravel().tolist() for r in runs],
            "resampled": int(runs[0].info.resampled.sum()),
            "sharded_over": len(runs[1].state.positions.sharding.device_set)}

    import inference, zoo
    entry = zoo.get("lgssm")
    config = dataclasses.replace(entry.configs["scalar"], num_steps=12)
    data, _ = entry.simulate(jax.random.PRNGKey(1), config)
    options = {"pgibbs": {"num_particles": 8, "num_warmup": 3, "num_samples": 3, "num_chains": 2, "chunk_size": 3,
                          "loglik_particles": 8},
               "ppg": {"num_particles": 8, "num_iterations": 3, "burn_in": 1, "num_samples": 2, "num_chains": 2,
                       "chunk_size": 3, "backward": "exact", "loglik_particles": 8},
               "smc2": {"num_theta": 8, "num_particles": 8, "num_moves": 1}}
    for method, opts in options.items():
        pair = [inference.fit(entry, data, method=method, config=config, seed=3, progress=False,
                              shard_particles=flag, **opts) for flag in (False, True)]
        gap = 0.0
        for group in ("posterior", "sample_stats"):
            for name, var in getattr(pair[0], group).data_vars.items():
                if np.issubdtype(var.dtype, np.floating):
                    other = getattr(pair[1], group)[name].values
                    gap = max(gap, float(np.nanmax(np.abs(var.values - other))))
        fits[method] = {"gap": gap, "devices": [int(p.attrs["particle_devices"]) for p in pair]}
print(json.dumps({"devices": jax.local_device_count(), "csmc": diffs, "smc2": smc2, "fits": fits}))
"""


def _conditional(samplings: tuple[str, ...], full: bool) -> dict:
    code = _CODE_CONDITIONAL.replace("SAMPLINGS", repr(samplings)).replace("FULL", repr(full))
    result = run_fresh_python(code, drop=("JAX_NUM_CPU_DEVICES", "XLA_FLAGS"), timeout=1800,
                              DYNAMICS_ZOO_HOST_DEVICES="4", DYNAMICS_ZOO_COMPILE_CACHE="0")
    assert result["devices"] == 4
    assert set(result["csmc"]) == set(samplings)
    assert max(result["csmc"].values()) < 1e-12
    return result


def test_sharded_csmc_gives_the_unsharded_path():
    """One CSMC kernel with ancestor sampling (a global ancestor draw); the rest is slow (SMC² alone
    compiles for about 12 s of CPU)."""
    _conditional(("ancestor",), full=False)


@pytest.mark.slow
def test_sharded_csmc_kernels_smc2_and_fits_give_the_unsharded_answers():
    """Every CSMC kernel; SMC² with its θ-particles sharded (evidence and θ-particles); and
    fit(method="pgibbs" / "ppg" / "smc2", shard_particles=True) against the unsharded fit with the
    same seed: every float of posterior and sample_stats to rounding."""
    result = _conditional(("ancestor", "backward", "none"), full=True)
    smc2 = result["smc2"]
    assert smc2["sharded_over"] == 4
    plain, sharded = smc2["evidence"]
    assert abs(plain - sharded) < 1e-12
    assert max(abs(a - b) for a, b in zip(*smc2["theta"])) < 1e-12
    assert smc2["resampled"] >= 1  # the θ resample-move (global) ran inside the compared runs
    assert set(result["fits"]) == {"pgibbs", "ppg", "smc2"}
    for method, fit in result["fits"].items():
        assert fit["devices"] == [1, 4], method
        assert fit["gap"] < 1e-9, (method, fit["gap"])
