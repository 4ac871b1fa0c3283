"""Entry ``hmm_rnn``: the paper's architectures and the program, exact references (enumeration,
quadrature, brute-force decoding), the state-space form, named errors, recovery by the recipe (slow)."""

import dataclasses
import itertools

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import inference
import zoo
from inference import exact
from tests.helpers import mc_tolerance
from zoo import hmm_rnn as H
from zoo.hmm_rnn import hmms
from zoo.processes.discrete_hmm import categorical_log_likelihoods

ENTRY = zoo.get("hmm_rnn")


# --------------------------------------------------------------------------------------------
# Architectures and the program
# --------------------------------------------------------------------------------------------


def test_paper_architectures():
    for name in ("chain2", "chain3", "chain4", "chain5", "fully3", "cyclic4"):
        arch = H.architecture(ENTRY.configs[name])
        np.testing.assert_allclose(arch.transition.sum(1), 1.0, atol=1e-12)
        np.testing.assert_allclose(arch.emissions.sum(1), 1.0, atol=1e-12)
        assert np.all(np.diff(arch.emissions[:, -1]) > 0)  # the model's labelling
    np.testing.assert_allclose(H.architecture(ENTRY.configs["chain2"]).transition, [[0.95, 0.05], [0.05, 0.95]])
    np.testing.assert_allclose(H.architecture(ENTRY.configs["chain3"]).transition[1, 1], 0.55279, atol=1e-5)
    np.testing.assert_allclose(H.architecture(ENTRY.configs["chain4"]).transition[1, 1], 0.26319, atol=1e-5)
    np.testing.assert_allclose(H.architecture(ENTRY.configs["chain5"]).transition[2, 2], 0.05426, atol=1e-5)
    np.testing.assert_allclose(H.architecture(ENTRY.configs["chain3"]).emissions[1], [0.495, 0.01, 0.495])
    cyc = H.architecture(ENTRY.configs["cyclic4"])
    np.testing.assert_allclose(cyc.emissions[:, -1], [0.0, 0.4, 0.6, 1.0])
    ring = {tuple(sorted(p)) for p in np.argwhere(cyc.mask & ~np.eye(4, dtype=bool)).tolist()}
    assert ring == {(0, 1), (1, 3), (2, 3), (0, 2)}  # ring 0-1-3-2-0 in sorted labels


def test_prior_predictive_and_ordered_dirichlet_emission_prior(key):
    from numpyro.infer import Predictive

    cfg = dataclasses.replace(ENTRY.configs["cyclic4"], num_sequences=3, num_steps=7)
    n = 4000
    draws = Predictive(ENTRY.model, num_samples=n)(key, None, config=cfg)
    assert draws["y"].shape == (n, 3, 7) and draws["transition_matrix"].shape == (n, 4, 4)
    assert np.all(np.asarray(draws["transition_matrix"])[:, ~H.architecture(cfg).mask] == 0)
    e = np.asarray(draws["emission_probs"])
    assert np.all(np.diff(e[..., -1], axis=-1) > 0)
    # unsorted, the emission rows are iid Dirichlet(1,1,1): the mean over states of E_ik is 1/3
    # (an average of 4 exchangeable rows, sd <= sqrt(Var[E_ik] / 4) = sqrt(1/18/4))
    means = e.mean(1)
    assert np.all(np.abs(means.mean(0) - 1 / 3) <= mc_tolerance(np.sqrt(1 / 18 / 4), n, num_comparisons=3))
    ys, truth = ENTRY.simulate(key, cfg)
    assert ys.shape == (3, 7) and ys.dtype == jnp.int32 and truth["states"].shape == (3, 7)


def test_sorted_iid_density_is_normalised():
    # order statistics of 2 iid logit-Beta(1, 2): the density integrates to 1 over x0 < x1
    d = H.SortedIID(hmms._logit_beta(1.0, 2.0), 2)
    grid = np.linspace(-25, 12, 1500)
    x0, x1 = np.meshgrid(grid, grid, indexing="ij")
    inside = np.where(x0 < x1, 1.0, np.where(x0 == x1, 0.5, 0.0))  # half weight on the diagonal
    dens = inside * np.exp(np.asarray(d.log_prob(jnp.stack([x0, x1], -1))))
    np.testing.assert_allclose(np.trapezoid(np.trapezoid(dens, grid, axis=1), grid), 1.0, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Exact references
# --------------------------------------------------------------------------------------------


def _brute_force_joint(ys, trans, emis, init):
    """log p(z, y) for every path z (K^T, T) of one sequence."""
    k, t_len = trans.shape[0], len(ys)
    paths = np.array(list(itertools.product(range(k), repeat=t_len)))
    lp = np.log(init)[paths[:, 0]] + np.log(emis)[paths, ys].sum(1)
    lp += np.log(trans)[paths[:, :-1], paths[:, 1:]].sum(1)
    return paths, lp


def test_forward_loglik_equals_enumeration(key):
    cfg = dataclasses.replace(ENTRY.configs["chain3"], num_sequences=3, num_steps=6)
    ys, truth = ENTRY.simulate(key, cfg)
    ys = np.asarray(ys).copy()
    ys[1, 2] = -1  # a missing symbol: summed over
    arch = H.architecture(cfg)
    init = np.full(3, 1 / 3)
    brute = 0.0
    for y in ys:
        obs = y >= 0
        paths = np.array(list(itertools.product(range(3), repeat=len(y))))
        with np.errstate(divide="ignore"):  # structural zeros of the chain: log 0 = -inf paths
            lp = np.log(init)[paths[:, 0]] + np.log(arch.transition)[paths[:, :-1], paths[:, 1:]].sum(1)
        lp += np.where(obs, np.log(arch.emissions + 1e-300)[paths, np.where(obs, y, 0)], 0.0).sum(1)
        brute += logsumexp(lp)
    sites = H.true_sites(cfg)
    np.testing.assert_allclose(float(ENTRY.exact_loglik({"q": sites["q"], "emission_probs": arch.emissions},
                                                        ys, cfg)), brute, rtol=1e-12)
    np.testing.assert_allclose(float(H.log_likelihood(ys, arch.transition, arch.emissions)), brute, rtol=1e-12)


def test_nuts_posterior_of_stay_probability_matches_quadrature(key):
    # tiny chain2 HMM with known emissions: the posterior of p alone, exact on a grid with the
    # likelihood computed by enumerating all 2^8 paths of each sequence
    cfg = dataclasses.replace(ENTRY.configs["small"], num_sequences=12, num_steps=8, learn_emissions=False)
    ys, _ = ENTRY.simulate(key, cfg)
    ys = np.asarray(ys)
    arch = H.architecture(cfg)
    emis = arch.emissions + 1e-300
    grid = np.linspace(1e-4, 1 - 1e-4, 3001)
    # enumeration: log p(y | p) = logsumexp over paths of [emission terms + n_stay log p + n_move log(1-p)]
    paths = np.array(list(itertools.product(range(2), repeat=ys.shape[1])))
    n_stay = (paths[:, 1:] == paths[:, :-1]).sum(1)
    n_move = ys.shape[1] - 1 - n_stay
    log_post = stats.beta(20, 2).logpdf(grid)
    for y in ys:
        base = np.log(0.5) + np.log(emis)[paths, y].sum(1)  # (paths,)
        lp = base[None] + np.outer(np.log(grid), n_stay) + np.outer(np.log1p(-grid), n_move)
        log_post += logsumexp(lp, axis=1)
    w = np.exp(log_post - log_post.max())
    w /= np.trapezoid(w, grid)
    mean = np.trapezoid(w * grid, grid)
    var = np.trapezoid(w * (grid - mean) ** 2, grid)
    m4 = np.trapezoid(w * (grid - mean) ** 4, grid)
    idata = inference.fit(ENTRY, ys, method="nuts", config=cfg, progress=False, seed=3,
                          num_warmup=300, num_samples=1000, num_chains=2, posterior_predictive=False)
    draws = idata.posterior["p"].values.reshape(-1)
    ess = float(az.ess(idata, var_names=["p"])["p"])
    assert abs(draws.mean() - mean) <= mc_tolerance(np.sqrt(var), ess, num_comparisons=2)
    assert abs(draws.var() - var) <= mc_tolerance(np.sqrt(m4 - var**2), ess, num_comparisons=2)
    assert idata.log_likelihood["y"].shape[-2:] == (12, 8)


def test_ffbs_path_frequencies_match_smoothed_marginals(key):
    cfg = dataclasses.replace(ENTRY.configs["chain3"], num_sequences=1, num_steps=15)
    ys, _ = ENTRY.simulate(key, cfg)
    arch = H.architecture(cfg)
    n = 4000
    paths = np.asarray(H.posterior_paths(jax.random.PRNGKey(7), ys[0], arch.transition, arch.emissions, n))
    marg = np.asarray(H.smoothed_marginals(ys[0], arch.transition, arch.emissions))
    freq = np.stack([(paths == k).mean(0) for k in range(3)], -1)
    tol = mc_tolerance(np.sqrt(marg * (1 - marg)), n, num_comparisons=marg.size)
    assert np.all(np.abs(freq - marg) <= tol + 1e-12)
    # pairs (z_t, z_{t+1}) against the smoothed two-slice marginals
    ll = categorical_log_likelihoods(jnp.asarray(arch.emissions), ys[0])
    two = np.asarray(exact.hmm_smoother(jnp.full(3, 1 / 3), jnp.asarray(arch.transition), ll).smoothed_transitions)
    pair = np.zeros_like(two)
    for t in range(paths.shape[1] - 1):
        np.add.at(pair[t], (paths[:, t], paths[:, t + 1]), 1.0 / n)
    tol = mc_tolerance(np.sqrt(two * (1 - two)), n, num_comparisons=two.size)
    assert np.all(np.abs(pair - two) <= tol + 1e-12)


def test_viterbi_equals_brute_force(key):
    k1, k2, k3 = jax.random.split(key, 3)
    trans = np.asarray(jax.random.dirichlet(k1, jnp.ones(3), (3,)))
    emis = np.asarray(jax.random.dirichlet(k2, jnp.ones(3), (3,)))
    _, ys = H.simulate_sequences(k3, trans, emis, 4, 7)
    paths = np.asarray(H.viterbi_paths(ys, trans, emis))
    for y, path in zip(np.asarray(ys), paths):
        all_paths, lp = _brute_force_joint(y, trans, emis, np.full(3, 1 / 3))
        np.testing.assert_array_equal(path, all_paths[np.argmax(lp)])


def test_state_space_form_takes_sampled_sites_or_matrices(key):
    # a particle backend's parameter space holds the sampled sites only; prior() returns matrices
    from numpyro.handlers import seed, trace

    # each step compiled as one program (eager, every primitive of the prior and the scans compiled alone)
    cfg = dataclasses.replace(ENTRY.configs["cyclic4"], num_sequences=1, num_steps=6)
    ssm = ENTRY.ssm(cfg)
    sites = jax.jit(lambda k: {name: site["value"] for name, site in trace(seed(ssm.prior, k)).get_trace().items()
                               if site["type"] == "sample"})(key)
    mats = jax.jit(ssm.sample_prior)(key)
    assert "transition_matrix" not in sites and set(mats) == {"transition_matrix", "emission_probs"}
    xs, ys = jax.jit(ssm.simulate, static_argnums=2)(jax.random.fold_in(key, 1), mats, 6)
    trans, emis = np.asarray(mats["transition_matrix"]), np.asarray(mats["emission_probs"])
    xs_, ys_ = np.asarray(xs), np.asarray(ys).astype(int)
    brute = (np.log(0.25) + np.log(trans[xs_[:-1], xs_[1:]]).sum() + np.log(emis[xs_, ys_]).sum())
    log_joint = jax.jit(ssm.log_joint)
    np.testing.assert_allclose(float(log_joint(sites, xs, ys)), brute, rtol=1e-10)
    np.testing.assert_allclose(float(log_joint(mats, xs, ys)), brute, rtol=1e-10)


def test_state_space_form_skips_missing_symbols_like_the_forward_algorithm(key):
    # the entry's data mark a missing symbol by -1; the particle route must skip it (log-weight 0)
    # exactly as the forward algorithm does, not score it as a symbol
    from numpyro.handlers import seed, trace

    cfg = dataclasses.replace(ENTRY.configs["chain3"], num_sequences=2, num_steps=12)
    ys, _ = ENTRY.simulate(key, cfg)
    ys = np.asarray(ys).copy()
    ys[0, [2, 5, 6]] = -1
    ys[1, [0, 11]] = -1  # first and last steps too
    tr = trace(seed(ENTRY.ssm(cfg).prior, jax.random.PRNGKey(4))).get_trace()
    sites = {k: v["value"] for k, v in tr.items() if v["type"] == "sample"}  # interior prior draw
    exact_loglik = jax.jit(lambda sites, ys: ENTRY.exact_loglik(sites, ys, cfg))  # one compile, four data sets
    exact_ll = float(exact_loglik(sites, ys))
    # the exact route skips -1: p(y with y_{0,5} missing) = Σ_k p(y with y_{0,5} = k)
    filled = [ys.copy() for _ in range(3)]
    for k, y in enumerate(filled):
        y[0, 5] = k
    summed = logsumexp([float(exact_loglik(sites, y)) for y in filled])
    np.testing.assert_allclose(exact_ll, summed, rtol=1e-10)
    # the emission log-weight of -1 is 0 for every state, of a symbol its log-probability
    emission = ENTRY.ssm(cfg).emission
    emis = np.asarray(H.hmm_matrices(sites, cfg)[2])
    for z in range(3):
        assert float(emission(sites, 0, z).log_prob(-1)) == 0.0
        np.testing.assert_allclose(float(emission(sites, 0, z).log_prob(2)), np.log(emis[z, 2]), rtol=1e-10)
    # bootstrap filter: Ẑ is unbiased for p(y), so mean(Ẑ / p(y)) = 1 within Monte Carlo error
    reps = 32
    idata = inference.fit(ENTRY, ys, method="pf", config=cfg, params=sites, num_particles=1000,
                          num_replicates=reps, seed=5, progress=False)
    ratio = np.exp(idata.sample_stats["log_evidence"].values.reshape(-1) - exact_ll)
    assert abs(ratio.mean() - 1.0) <= mc_tolerance(ratio.std(ddof=1), reps), (ratio.mean(), ratio.std())


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_named_errors(key):
    cfg = ENTRY.configs["small"]
    arch = H.architecture(cfg)
    with pytest.raises(ValueError, match="outside the alphabet"):
        ENTRY.exact_loglik({"p": 0.9, "emission_probs": arch.emissions}, np.array([[0, 1, 3]]), cfg)
    with pytest.raises(ValueError, match="outside the alphabet"):
        inference.fit(ENTRY, np.array([[0, 1, -2]]), method="nuts", num_warmup=1, num_samples=1, num_chains=1,
                      progress=False)
    with pytest.raises(ValueError, match="outside the alphabet"):
        H.viterbi_paths(np.array([0, 5]), arch.transition, arch.emissions)
    with pytest.raises(ValueError, match="integers"):
        H.validate_symbols(np.array([0.5, 1.0]), 3)
    bad = np.array([[0.9, 0.2], [0.05, 0.95]])
    with pytest.raises(ValueError, match="transition_matrix"):
        H.simulate_sequences(key, bad, arch.emissions, 2, 5)
    with pytest.raises(ValueError, match="transition_matrix"):
        H.viterbi_paths(np.array([0, 1]), bad, arch.emissions)
    with pytest.raises(ValueError, match="transition_matrix"):
        H.validate_hmm(np.full((4, 4), 0.25), H.architecture(ENTRY.configs["cyclic4"]).emissions,
                       mask=H.architecture(ENTRY.configs["cyclic4"]).mask)
    with pytest.raises(ValueError, match="emission_probs"):
        H.log_likelihood(np.array([0, 1]), arch.transition, arch.emissions[:, :2])
    with pytest.raises(ValueError, match="architecture"):
        H.HMMRNNConfig(architecture="ring")
    with pytest.raises(ValueError, match="transition_prior"):
        H.HMMRNNConfig(architecture="cyclic", num_states=4, transition_prior="tied")


@pytest.mark.slow
def test_small_recovery_by_recipe(key):
    cfg = ENTRY.configs["small"]
    ys, truth = ENTRY.simulate(jax.random.PRNGKey(0), cfg)
    idata = inference.fit(ENTRY, ys, method=ENTRY.recipe.method, progress=False, **ENTRY.recipe.options_for("small"))
    checks = ENTRY.check(idata, truth, cfg)
    assert all(c.passed for c in checks), checks
