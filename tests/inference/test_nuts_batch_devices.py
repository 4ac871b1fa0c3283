"""fit_batch over devices (issue 21, item 2): the data sets split over the emulated CPU devices.

``jax.shard_map`` gives each device its slice of the data sets (padded to a multiple of the device
count); each data set's chains run the same program on the same keys as unsharded, so the draws
agree to rounding (a smaller vmapped batch may round differently; measured in the message).
JAX fixes its devices when it starts. The test process has several host devices by default
(``max(4, cpu_count)``, :mod:`diagnostics.devices`), so the cases run in it; where it has too few
(``DYNAMICS_ZOO_HOST_DEVICES=1``, say) a case runs in a fresh interpreter with the devices it needs.
"""

from __future__ import annotations

import jax
import numpy as np

from tests.helpers import run_fresh_python


def _run(case: str, devices: int, **env: str) -> dict:
    """``case()`` here when this process has at least ``devices`` devices, else in a fresh
    interpreter with exactly ``devices``."""
    if jax.local_device_count() >= devices:
        return globals()[case]()
    code = f"import json\nfrom tests.inference.test_nuts_batch_devices import {case}\nprint(json.dumps({case}()))"
    return run_fresh_python(code, drop=("JAX_NUM_CPU_DEVICES", "XLA_FLAGS"), timeout=900,
                            DYNAMICS_ZOO_HOST_DEVICES=str(devices), **env)


def _split_case() -> dict:
    import numpyro
    import numpyro.distributions as dist

    import inference

    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0, 10))
        with numpyro.plate("obs", 30 if y is None else y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    rng = np.random.default_rng(0)
    datasets = [rng.normal(m, 1, 30) for m in (0.5, 1.0, 1.5)]  # 3 data sets: padded to 4 devices
    kw = dict(method="nuts", seeds=[1, 2, 3], num_warmup=100, num_samples=100, num_chains=2, progress=False)
    one = inference.fit_batch(model, datasets, shard=False, **kw)
    split = inference.fit_batch(model, datasets, **kw)
    diff = max(float(np.max(np.abs(a.posterior["mu"].values - b.posterior["mu"].values))
                     / float(a.posterior["mu"].std())) for a, b in zip(one, split))
    return {"devices": [r.attrs["batch_devices"] for r in one + split], "difference": diff,
            "means": [float(r.posterior["mu"].mean()) for r in split]}


def test_fit_batch_splits_data_sets_over_devices():
    # 3 data sets on 3 or more devices use 3 (one data set each); a fresh interpreter gets 4
    result = _run("_split_case", 3, DYNAMICS_ZOO_COMPILE_CACHE="0")
    assert result["devices"] == [1, 1, 1, 3, 3, 3]  # 3 data sets use 3 of the (at least 3) devices
    assert result["difference"] < 1e-3, f"sharded and unsharded draws differ by {result['difference']} sds"
    # each data set's own posterior (conjugate: mean = sum(y) / (30 + 1/100), sd 0.18), not a neighbour's
    rng = np.random.default_rng(0)
    exact = [float(rng.normal(m, 1, 30).sum() / (30 + 1e-2)) for m in (0.5, 1.0, 1.5)]
    assert all(abs(a - b) < 0.1 for a, b in zip(result["means"], exact))


def _ode_case() -> dict:
    import diffrax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    import inference

    def model(data=None):  # exponential decay observed at the data's own times (as lotka_volterra_ode)
        times = jnp.linspace(0.0, 2.0, 8) if data is None else data[0]
        rate = numpyro.sample("rate", dist.LogNormal(0.0, 0.5))
        term = diffrax.ODETerm(lambda t, y, args: -rate * y)
        sol = diffrax.diffeqsolve(term, diffrax.Euler(), t0=times[0], t1=times[-1], dt0=0.25, y0=jnp.ones(()),
                                  saveat=diffrax.SaveAt(ts=times), stepsize_controller=diffrax.ConstantStepSize(),
                                  max_steps=16)
        numpyro.sample("y", dist.Normal(sol.ys, 0.05), obs=None if data is None else data[1])

    times = np.linspace(0.0, 2.0, 8)
    rng = np.random.default_rng(0)
    datasets = [np.stack([times, np.exp(-r * times) + 0.05 * rng.normal(size=8)]) for r in (0.8, 1.2)]
    kw = dict(method="nuts", seeds=[1, 2], num_warmup=30, num_samples=30, num_chains=2, progress=False)
    auto = inference.fit_batch(model, datasets, **kw)
    try:
        inference.fit_batch(model, datasets, shard=True, **kw)
        asked = "ran"
    except ValueError as error:
        asked = type(error).__name__
    return {"devices": [r.attrs["batch_devices"] for r in auto], "reason": auto[0].attrs["chain_method_reason"],
            "asked": asked, "means": [float(r.posterior["rate"].mean()) for r in auto]}


def test_fit_batch_falls_back_to_one_device_when_the_sampler_does_not_shard():
    """The gradient of a diffrax solve on times taken from the data (lotka_volterra_ode's program)
    does not trace under jax.shard_map (equinox's closure conversion, equinox 0.13 / JAX 0.10):
    `zoo sbc lotka_volterra_ode --batch-size 5` failed on it. Chosen automatically, the data sets
    run vmapped on one device (the shard=False program) with the reason in attrs; asked for
    explicitly (shard=True), the error is raised. About 40 s of CPU: the single-device fit's
    initialisation, trace and compilation of NUTS over the solve's gradient (measured 7.6, 8.8 and
    13.4 s); the failed shard_map attempt before it costs about 1 s (it fails while tracing), and
    the shard=True call repeats the initialisation before failing the same way."""
    result = _run("_ode_case", 2)
    assert result["devices"] == [1, 1]
    assert "failed under jax.shard_map (ValueError: Closure-converted" in result["reason"], result["reason"]
    assert result["asked"] == "ValueError"
    # each data set keeps its own posterior (true rates 0.8 and 1.2, posterior sd about 0.06;
    # Euler at dt = 0.25 decays faster than exp(-rate t), so both sit lower): ordered, apart
    assert result["means"][1] - result["means"][0] > 0.3, result["means"]
