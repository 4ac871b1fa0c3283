"""Entry ``stochastic_lotka_volterra``: the LNA program equals the Kalman log-likelihood built by hand;
the CLE state-space form's transition density is the product of Euler–Maruyama Gaussians; the LNA route
is calibrated over many data sets and agrees with the particle posterior (slow)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density

import zoo
from inference import exact
from tests.helpers import assert_within_mc_error, mle_over_datasets
from zoo.reaction_kinetics import lotka_volterra_network, slv_lna_lgssm


@pytest.fixture(scope="module")
def slv():
    entry = zoo.get("stochastic_lotka_volterra")
    config = dataclasses.replace(entry.configs["small"], num_series=2, num_obs=8)
    data, truth = entry.simulate(jax.random.PRNGKey(2), config)
    return entry, config, data, truth


def test_slv_lna_program_is_the_kalman_likelihood(slv):
    """Both LNA forms against references built by hand: the fixed (non-restarting) LNA is an exact
    Kalman filter of the LGSSM below; the restarting one (default) is ``lna_filter`` (itself checked
    against a numpy filter in tests/processes/test_reactions.py) with the Poisson variance at the
    predicted mean; the program's log density is that likelihood plus the log-normal priors."""
    entry, config, data, truth = slv
    params = {"mu": jnp.asarray(0.55), "sigma": jnp.asarray(0.9), "lam": jnp.asarray(1.4)}
    rates = jnp.stack([params["mu"], params["sigma"], params["lam"]])
    net = lotka_volterra_network(config.capacity)
    times = jnp.asarray(np.concatenate([[0.0], config.obs_times]))
    # jitted: run eagerly, the adaptive solve dispatches op by op (several times the compilation)
    lna = jax.jit(lambda r: net.lna(r, jnp.asarray(config.x0, float), times))(rates)
    # by hand: x_k = phi_k + Phi (x_{k-1} - phi_{k-1}) + eta, y_k = x_k + N(0, diag(phi_k))
    lg = exact.LGSSMParams(
        initial_mean=lna.means[1], initial_cov=lna.covs[1], transition_matrix=lna.transition_matrices[1:],
        transition_offset=lna.means[2:] - jnp.einsum("tij,tj->ti", lna.transition_matrices[1:], lna.means[1:-1]),
        transition_cov=lna.transition_covs[1:], emission_matrix=jnp.eye(2), emission_offset=jnp.zeros(2),
        emission_cov=jax.vmap(jnp.diag)(lna.means[1:]))
    fixed = dataclasses.replace(config, lna_form="fixed")
    expected = sum(float(exact.kalman_filter(lg, y).log_likelihood) for y in data)
    # one compilation for the values of the fixed form, one for those of the restarting form
    got_fixed, initial_mean = jax.jit(lambda p: (entry.exact_loglik(p, data, fixed),
                                                 slv_lna_lgssm(p, config).initial_mean))(params)
    np.testing.assert_allclose(float(got_fixed), expected, rtol=1e-5)  # step 0.25 vs adaptive
    np.testing.assert_allclose(initial_mean, lna.means[1], rtol=1e-5)

    @jax.jit
    def restarting_values(p):
        by_hand = jax.vmap(lambda y: net.lna_filter(rates, jnp.asarray(config.x0, float), times, y, jnp.eye(2),
                                                    lambda m: jnp.diag(jnp.maximum(m, 1.0))).log_likelihood)(data)
        return by_hand, entry.exact_loglik(p, data, config), log_density(entry.model, (data,), {"config": config}, p)[0]

    restarting, got, lp = restarting_values(params)
    got = float(got)
    np.testing.assert_allclose(got, float(restarting.sum()), rtol=1e-5)
    assert abs(got - expected) > 1e-3  # the two forms are different approximations
    prior = sum(float(jax.scipy.stats.norm.logpdf(jnp.log(params[k]), *getattr(config, f"prior_{k}")) - jnp.log(params[k]))
                for k in ("mu", "sigma", "lam"))
    np.testing.assert_allclose(float(lp), got + prior, rtol=1e-6)
    with pytest.raises(ValueError, match="lna_form"):
        dataclasses.replace(config, lna_form="exact")


def test_slv_prior_predictive_gives_counts_the_likelihood_reads(slv, key):
    """The prior predictive draws rates and Gaussian counts jointly restricted to finite counts >= 0
    (``slv_prior_paths``), the data ``_validate_counts`` accepts: its sites are that draw, the fit's
    log density of the replicate is finite. Rates given from outside get counts in that domain at
    them; at rates whose LNA leaves it on every draw (predators die out, the LNA goes below 0 and
    then NaN) a concrete run is one named error."""
    import functools

    from numpyro.handlers import seed, substitute, trace

    from inference.prior_predictive import prior_simulate
    from zoo.reaction_kinetics import lotka_volterra as slv_module

    entry, config, _, _ = slv
    model = functools.partial(entry.model, config=config)
    # the program's log density at its parameters, compiled once for both replicates (eager, each
    # evaluation dispatches the LNA filter op by op)
    log_joint = jax.jit(lambda data, params: log_density(model, (data,), {}, params)[0])
    for i in range(2):
        k = jax.random.fold_in(key, i)
        params, data = prior_simulate(model, k)
        tr = trace(seed(model, k)).get_trace(None)
        (drawn, _), accepted = slv_module.slv_prior_paths(jax.random.split(jax.random.split(k)[1])[1], config)
        assert bool(accepted) and bool(tr["counts_valid"]["value"])
        assert set(params) == {"mu", "sigma", "lam"} and all(np.isclose(params[n], drawn[n]) for n in params)
        np.testing.assert_array_equal(data, tr["y"]["value"])
        assert data.shape == (config.num_series, config.num_obs, 2) and np.all(np.isfinite(data)) and np.all(data >= 0)
        assert np.isfinite(float(log_joint(data, params)))
    # rates given as float arrays, as a posterior predictive gives them: Python numbers are weakly
    # typed and would compile the program's rejection loop a second time (~10 s)
    truth = {name: np.float64(v) for name, v in {"mu": 0.5, "sigma": 1.0, "lam": 1.5}.items()}
    tr = trace(seed(substitute(model, data=truth), key)).get_trace(None)
    assert float(tr["mu"]["value"]) == 0.5 and np.all(tr["y"]["value"] >= 0) and bool(tr["counts_valid"]["value"])
    extinct = {name: np.float64(v) for name, v in {"mu": 4.0, "sigma": 1.0, "lam": 0.2}.items()}
    # every one of the rejection's draws leaves the domain, the last one through NaN (the program's
    # own compiled rejection loop, the one the named error below runs)
    (_, ys), accepted = slv_module._slv_counts_in_domain(key, extinct, config)
    assert not bool(accepted) and not np.all(np.isfinite(ys))
    with pytest.raises(ValueError, match=r"parameters: no counts in the likelihood's domain \(finite, >= 0\) in 200 "
                                         r"prior-predictive draws at mu=4, sigma=1, lam=0.2"):
        trace(seed(substitute(model, data=extinct), key)).get_trace(None)


def test_slv_data_and_state_space_form(slv, key):
    entry, config, data, truth = slv
    assert data.shape == (2, 8, 2) and truth["x"].shape == (2, 8, 2)
    assert np.all(np.asarray(data) >= 0) and np.all(np.asarray(data) == np.round(np.asarray(data)))
    ssm = entry.ssm(config)
    params = {k: jnp.asarray(truth[k]) for k in ("mu", "sigma", "lam")}
    xs, ys = ssm.simulate(key, params, 4)
    assert xs.shape == (4, config.num_substeps, 2) and ys.shape == (4, 2)
    # transition density = product of Euler–Maruyama Gaussian steps from the block's last point
    net = lotka_volterra_network(config.capacity)
    rates = jnp.stack([params["mu"], params["sigma"], params["lam"]])
    @jax.jit
    def by_steps(block, prev):
        total = 0.0
        for j in range(config.num_substeps):
            total += net.cle_transition(rates, prev, config.cle_dt).log_prob(block[j])
            prev = block[j]
        return total

    got = jax.jit(lambda a, b: ssm.transition(params, 1, a).log_prob(b))(xs[0], xs[1])
    np.testing.assert_allclose(got, by_steps(xs[1], xs[0, -1]), rtol=1e-9)
    columns = entry.dump_columns(data, config)
    assert set(columns) == {"series", "time", "predator", "prey"}
    np.testing.assert_array_equal(np.asarray(entry.load_columns(columns, config)), np.asarray(data))
    with pytest.raises(ValueError, match="non-negative"):
        entry.exact_loglik(params, -jnp.ones((1, 8, 2)), config)
    with pytest.raises(ValueError, match="shape"):
        entry.exact_loglik(params, jnp.ones((1, 7, 2)), config)


@pytest.mark.slow
def test_slv_lna_route_is_unbiased():
    """The (restarting) LNA MLE averaged over 12 SSA-exact data sets is within MC error of the truth.

    Measured besides (not asserted here: minutes of CPU): on 150 series the restarting LNA's MLE is
    -0.9%, -1.5%, -1.2% (SE 0.8%) off (mu, sigma, lam), the fixed LNA's -0.7%, -2.2%, -1.4%; over 83
    small-config data sets the fixed LNA's 90% intervals missed 8.4%, 9.6%, 10.8% of the time."""
    entry = zoo.get("stochastic_lotka_volterra")
    estimates, true = mle_over_datasets(entry, entry.configs["small"], ["mu", "sigma", "lam"], range(100, 112))
    assert_within_mc_error(estimates.mean(0), true, estimates.std(0, ddof=1), len(estimates), what="MLE mean")


@pytest.mark.slow
def test_slv_lna_and_particle_posteriors_overlap():
    """Spec 3b: PMMH on the CLE (256 particles) and NUTS on the LNA agree within one posterior SD."""
    import inference

    entry = zoo.get("stochastic_lotka_volterra")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    lna = inference.fit(entry, data, method="nuts", progress=False, **entry.recipe.options_for("small"))
    pf = inference.fit(entry, data, method="pmmh", progress=False, num_particles=256, num_warmup=1000,
                       num_samples=1000, num_chains=2)
    for name in ("mu", "sigma", "lam"):
        a = np.asarray(lna.posterior[name]).ravel()
        b = np.asarray(pf.posterior[name]).ravel()
        assert abs(a.mean() - b.mean()) < max(a.std(), b.std()), (name, a.mean(), b.mean(), a.std(), b.std())
