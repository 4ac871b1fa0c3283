"""Errors that name the site: NumPyro's argument checks and non-finite log densities (issue 20,
items 2 and 3), for every runner through the shared plumbing."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import inference
from inference import InvalidParameterError, NonFiniteLogDensityError
from inference._sites import SiteInfo, abstract_sites, invalid_parameters


def sqrt_of_negative(y=None):
    mu = numpyro.sample("mu", dist.Normal(-3.0, 0.1))
    numpyro.sample("y", dist.Normal(jnp.sqrt(mu), 1.0), obs=y)


def test_abstract_sites_read_the_trace_without_running_it():
    """Site kinds and shapes from one abstract trace; a program that branches on its own draw
    (needs a concrete value) is traced eagerly instead, with the same answer."""
    def program(y=None):
        k = numpyro.sample("k", dist.Poisson(2.0))
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.deterministic("total", mu.sum() + k)
        numpyro.sample("y", dist.Normal(mu.sum(), 1.0), obs=y)

    def branching(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        scale = 1.0 if float(mu[0]) > 0 else 2.0  # a Python branch on a draw: not traceable
        numpyro.sample("y", dist.Normal(mu.sum(), scale), obs=y)

    expected = {"k": SiteInfo("sample", False, (), True), "mu": SiteInfo("sample", False, (2,), False),
                "total": SiteInfo("deterministic", False, (), False), "y": SiteInfo("sample", True, (), False)}
    assert abstract_sites(program, 0.5) == expected
    assert list(abstract_sites(program, 0.5)) == ["k", "mu", "total", "y"]
    assert abstract_sites(branching, 0.5) == {"mu": expected["mu"], "y": expected["y"]}


def test_invalid_parameters_names_site_parameter_and_values():
    found = invalid_parameters(sqrt_of_negative, np.zeros(3), params={"mu": -4.0})
    assert found == ["site 'y': Normal got loc = nan, outside its constraint Real() (where mu = -4)"]
    assert invalid_parameters(sqrt_of_negative, np.zeros(3), params={"mu": 4.0}) == []


@pytest.mark.parametrize("method, options", [
    ("nuts", {"num_warmup": 5, "num_samples": 5, "num_chains": 1}),
    ("svi", {"num_steps": 5, "num_samples": 5}),
    ("smc", {"num_particles": 16}),
])
def test_numpyro_argument_check_names_the_site(method, options):
    """Was: "Normal distribution got invalid loc parameter." with no site, from every method."""
    with pytest.raises(InvalidParameterError, match=r"site 'y': Normal got loc = nan, outside its constraint "
                                                    r"Real\(\) \(where mu = -[23]\.\d+\)") as info:
        inference.fit(sqrt_of_negative, np.zeros(3), method=method, progress=False, **options)
    assert isinstance(info.value, ValueError)  # still a ValueError: callers catching that still do


def nan_above_one(y=None):
    """A log density that is NaN for mu > 1 (issue 20 item 2): the posterior given y = 1.11
    (50 draws) is N(1.11, 0.14^2) without the bad factor; NUTS cannot enter mu > 1."""
    mu = numpyro.sample("mu", dist.Normal(1.0, 1.0))
    numpyro.factor("bad", jnp.where(mu > 1, jnp.nan, 0.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_nuts_names_the_site_where_the_log_density_is_nan():
    """Was: a truncated posterior (mean 0.89 for 1.11 +- 0.14) with a generic divergence warning only."""
    from diagnostics import checks
    from inference.runner import NonFiniteLogDensityWarning

    with pytest.warns(NonFiniteLogDensityWarning, match=r"not finite at site\(s\) \['bad'\]"):
        idata = inference.fit(nan_above_one, np.full(50, 1.11), method="nuts", progress=False, num_warmup=100,
                              num_samples=100, num_chains=2)
    assert idata.attrs["nonfinite_sites"] == "bad"
    verdicts = {v.name: v for v in checks.run_checks(idata)}
    assert verdicts["log density"].status == "fail" and "'bad'" in verdicts["log density"].message
    assert checks.overall(verdicts.values()) == "fail"


def test_the_divergence_probe_takes_the_data_as_an_argument():
    """The probe's compiled programs (unconstraining the draws, the potential at the probed points)
    take the data as an argument: on other data of the same shape (a sweep's next replicate) they
    compile nothing, and the site is still named."""
    from inference.runner import probe_nonfinite
    from inference.types import Target
    from tests.helpers import persistent_cache_misses

    rng = np.random.default_rng(0)
    samples = {"mu": 0.9 + 0.05 * rng.standard_normal((2, 50))}
    flagged = samples["mu"] > 0.95
    first = probe_nonfinite(Target(nan_above_one, np.full(50, 1.11)), samples, flagged)
    with persistent_cache_misses() as misses:
        second = probe_nonfinite(Target(nan_above_one, np.full(50, 0.97)), samples, flagged)
    assert not misses, f"the probe compiled {len(misses)} programs again for other data"
    assert first.sites == second.sites == ("bad",) and second.hits > 0


def test_svi_names_the_site_not_only_the_step():
    with pytest.raises(NonFiniteLogDensityError, match=r"svi: the loss became non-finite at step \d+; just before it "
                                                       r"the model's log density is not finite at site\(s\) bad"):
        inference.fit(nan_above_one, np.full(50, 1.11), method="svi", progress=False, num_steps=50, num_samples=10)


def test_nonfinite_draws_name_the_site():
    from inference.nuts import raise_if_nonfinite_run
    from inference.types import Target

    target = Target(model=nan_above_one, data=np.full(5, 1.0))
    potential = np.array([[1.0, np.nan], [1.0, 1.0]])
    samples = {"mu": np.array([[0.5, 1.5], [0.5, 0.5]])}
    with pytest.raises(NonFiniteLogDensityError, match=r"at site\(s\) bad \(log density nan\) \(chain 0, draw 1\)"):
        raise_if_nonfinite_run(potential, "nuts", target, samples)
