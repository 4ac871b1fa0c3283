"""gros_transient_states: the reservoir gate and the drift against closed forms written here, the
Euler sub-path density against a hand-summed Gaussian product, the simulator's reservoir decay
against its closed form, the decoded clique sequence at the truth, CSV and named errors; the
recipe's recovery and PMMH against a long PMMH run (slow)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from tests.helpers import mc_tolerance, recipe_failures
from zoo import transient_state_network as tsn

ENTRY = zoo.get("gros_transient_states")
SMALL = ENTRY.configs["small"]


@pytest.fixture(scope="module")
def simulated():
    return ENTRY.simulate(jax.random.PRNGKey(0), SMALL)


def _gate(phi, phi_c, u, width):
    lo = math.atan(-phi_c / width)
    return u + (1 - u) * (math.atan((phi - phi_c) / width) - lo) / (math.atan((1 - phi_c) / width) - lo)


def test_reservoir_gate_closed_form():
    phis = np.linspace(0, 1, 11)
    got = np.asarray(tsn.reservoir_gate(jnp.asarray(phis), 0.7, 0.05, 0.05))
    np.testing.assert_allclose(got, [_gate(p, 0.7, 0.05, 0.05) for p in phis], rtol=1e-12)
    assert got[0] == pytest.approx(0.05) and got[-1] == pytest.approx(1.0)
    assert np.all(np.diff(got) > 0)


def test_drift_against_the_equations_written_out():
    config = SMALL
    rng = np.random.default_rng(0)
    x, phi = rng.uniform(0, 1, config.num_neurons), rng.uniform(0, 1, config.num_neurons)
    gm, gp = 0.02, 0.005
    clique = config.clique_of
    expected_dx, expected_dphi = [], []
    for i in range(config.num_neurons):
        r = config.drive
        for j in range(config.num_neurons):
            if j == i:
                continue
            if clique[i] == clique[j]:
                r += _gate(phi[i], config.phi_c_w, config.u_w, config.gamma_phi) * config.w * x[j]
            else:
                r += config.z * _gate(phi[j], config.phi_c_z, config.u_z, config.gamma_phi) * x[j]
        expected_dx.append((1 - x[i]) * r if r > 0 else x[i] * r)
        if x[i] < config.x_c:
            expected_dphi.append(gp * (1 - phi[i]) * (1 - x[i] / config.x_c))
        else:
            expected_dphi.append(-gm * phi[i])
    got = np.asarray(tsn.drift(jnp.asarray(np.concatenate([x, phi])), gm, gp, config))
    np.testing.assert_allclose(got, np.concatenate([expected_dx, expected_dphi]), rtol=1e-10, atol=1e-14)


def test_sub_path_density_is_the_product_of_euler_steps(key):
    config = SMALL
    ssm = tsn.state_space_model(config)
    params = tsn.truth_params(config)
    path = np.asarray(ssm.initial(params).sample(key))
    assert path.shape == (config.num_substeps, 2 * config.num_neurons)
    prev = np.asarray(tsn.initial_state(config))
    scale = np.concatenate([np.full(config.num_neurons, config.process_noise),
                            np.full(config.num_neurons, config.reservoir_noise)]) * math.sqrt(config.dt)
    total = 0.0
    for z in path:
        mean = prev + config.dt * np.asarray(tsn.drift(jnp.asarray(prev), 0.02, 0.005, config))
        total += float(np.sum(-0.5 * ((z - mean) / scale) ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi)))
        prev = z
    assert float(ssm.initial(params).log_prob(jnp.asarray(path))) == pytest.approx(total, rel=1e-10)


def test_simulated_reservoirs_follow_the_closed_form_decay(simulated):
    # while clique 0 is on (x > x_c) its reservoirs obey phi' = -Γ⁻ phi: after k intervals the Euler
    # value is (1 - Γ⁻ dt)^(k Δ/dt) (noise s_phi sqrt(t) <= 0.001 * 6 here); the others stay full
    data, truth = simulated
    clique = truth["clique"]
    first_switch = int(np.argmax(clique != 0))
    assert first_switch > 10, "the initial clique should hold for a dwell time"
    steps = np.arange(1, first_switch - 1)
    x = truth["x"][steps - 1]
    on = np.all(x[:, SMALL.clique_of == 0] > SMALL.x_c, axis=1)
    steps = steps[on]
    expected = (1 - SMALL.true_gamma_minus * SMALL.dt) ** (steps * SMALL.num_substeps)
    phi0 = truth["phi"][steps - 1][:, SMALL.clique_of == 0]
    tol = 5 * SMALL.reservoir_noise * math.sqrt(steps.max() * SMALL.obs_interval)
    assert np.max(np.abs(phi0 - expected[:, None])) < tol
    off = truth["phi"][: first_switch - 1][:, SMALL.clique_of != 0]
    assert np.max(np.abs(off - 1.0)) < tol
    # the network visits more than one transient state and the data are the path plus N(0, s_y²)
    assert len(set(clique.tolist()) - {-1}) >= 2
    resid = (data - truth["x"]).ravel()
    assert abs(resid.std() - SMALL.obs_noise) < mc_tolerance(SMALL.obs_noise / math.sqrt(2), resid.size)


def _decoded(data, params, num_particles=64):
    import inference

    pf = inference.fit(ENTRY, data, method="pf", seed=1, progress=False, params=params, num_particles=num_particles)
    return tsn.decode_filtered(pf.posterior["x_filtered_mean"].values[0, 0], SMALL)


def test_decoded_clique_sequence_at_the_truth(simulated):
    data, truth = simulated
    assert np.mean(_decoded(data, tsn.truth_params(SMALL)) == truth["clique"]) >= 0.9
    with pytest.raises(ValueError, match="x_filtered_mean: expected filtering means"):
        tsn.decode_filtered(np.zeros((SMALL.num_obs, SMALL.num_neurons)), SMALL)


def test_active_clique_rule():
    x = np.zeros((3, SMALL.num_neurons))
    x[0, SMALL.clique_of == 2] = 0.9
    x[1, SMALL.clique_of == 1] = [0.9, 0.9, 0.4]
    x[2, :] = 0.6
    np.testing.assert_array_equal(tsn.active_clique(x, SMALL), [2, -1, 0])


def test_csv_round_trip(simulated):
    data, _ = simulated
    columns = ENTRY.dump_columns(data, SMALL)
    assert set(columns) == {"time", *(f"x{i}" for i in range(SMALL.num_neurons))}
    np.testing.assert_array_equal(columns["time"], SMALL.obs_times)
    np.testing.assert_allclose(np.asarray(ENTRY.load_columns(columns, SMALL)), data)


@pytest.mark.parametrize("field, value, match", [
    ("dt", 0.1, "dt: the Heaviside dynamics are stiff"),
    ("dt", 0.03, "dt: must divide obs_interval"),
    ("z", 0.5, "z: expected a negative"),
    ("num_cliques", 1, "num_cliques"),
    ("x_c", 1.5, "x_c"),
    ("phi_c_w", -0.1, "phi_c_w"),
    ("obs_noise", 0.0, "obs_noise"),
    ("prior_gamma_minus", (0.0, -1.0), "prior_gamma_minus"),
    ("initial_clique", 7, "initial_clique"),
])
def test_config_errors_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(SMALL, **{field: value})


def test_data_errors():
    with pytest.raises(ValueError, match="data: gros_transient_states expects neuron activities of shape"):
        tsn.validate_data(np.zeros((5, SMALL.num_neurons)), SMALL)
    bad = np.zeros((SMALL.num_obs, SMALL.num_neurons))
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="data: activities must be finite"):
        tsn.validate_data(bad, SMALL)


@pytest.mark.slow
def test_recipe_recovers_the_truth_on_small():
    assert recipe_failures("gros_transient_states") == []


@pytest.mark.slow
def test_recipe_posterior_agrees_with_a_long_pmmh_run(simulated):
    # No exact likelihood exists (the Heaviside network has no linear-Gaussian reduction), so the
    # reference is a long PMMH run (4 chains x 2000 draws, 256 particles) on the same data. Declared
    # tolerance: the recipe's posterior median of log Γ⁻ within 4 Monte Carlo standard errors of
    # the long run's (MCSE from the recipe's effective sample size), plus 1% for the long run's own error.
    import arviz as az

    import inference

    data, _ = simulated
    short = inference.fit(ENTRY, data, method="pmmh", seed=1, **ENTRY.recipe.options_for("small"))
    long = inference.fit(ENTRY, data, method="pmmh", seed=2, num_particles=256, num_warmup=1000,
                         num_samples=2000, num_chains=4, adapt=True, init_radius=0.1,
                         init_scale={"gamma_minus": 0.05, "gamma_plus": 0.9})
    log_short = np.log(short.posterior["gamma_minus"].values)
    log_long = np.log(long.posterior["gamma_minus"].values)
    ess = float(az.ess(np.asarray(log_short)))
    mcse = log_long.std() / math.sqrt(max(ess, 1.0))
    assert abs(np.median(log_short) - np.median(log_long)) < 4 * mcse + 0.01
    assert 0.5 < log_short.std() / log_long.std() < 2.0


# --------------------------------------------------------------------------------------------
# Semantic-learning variant: the rule's pieces (default, cheap) and the bars-and-stripes demo (slow)
# --------------------------------------------------------------------------------------------


def test_bars_and_stripes_components_and_stimuli():
    comps = tsn.bars_and_stripes_components(3)
    np.testing.assert_array_equal(comps[0].reshape(3, 3), [[1, 1, 1], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(comps[4].reshape(3, 3), [[0, 1, 0], [0, 1, 0], [0, 1, 0]])
    assert comps.shape == (6, 9) and np.all(comps.sum(1) == 3)
    images, present = tsn.bars_and_stripes(jax.random.PRNGKey(0), 3, 0.1, (4000,))
    images, present = np.asarray(images), np.asarray(present)
    assert images.shape == (4000, 9) and present.shape == (4000, 6)
    # a pixel is on iff a present component covers it
    np.testing.assert_array_equal(images, (present.astype(float) @ comps) > 0)
    # components independent with probability 0.1: frequency within 4 binomial SDs (false alarm ~1e-4)
    freq = present.mean(0)
    assert np.all(np.abs(freq - 0.1) < 4 * math.sqrt(0.1 * 0.9 / len(present)))
    pairs = (present[:, 0] & present[:, 3]).mean()
    assert abs(pairs - 0.01) < 4 * math.sqrt(0.01 * 0.99 / len(present))


def test_hebbian_update_hand_made_case():
    v = np.array([[0.2, 0.5, 0.3], [0.2, 0.3, 0.5]])
    x = np.array([1.0, 0.0])  # neuron 0 in the winning clique, neuron 1 silent
    y = np.array([1.0, 0.0, 1.0])
    got = np.asarray(tsn.hebbian_update(jnp.asarray(v), jnp.asarray(x), jnp.asarray(y), 1.0, 0.2, 1.0))
    # written out: row 0 grows by 0.2 on pixels 0 and 2, then is divided by its sum 1.4
    np.testing.assert_allclose(got[0], [0.4 / 1.4, 0.5 / 1.4, 0.5 / 1.4], rtol=1e-12)
    np.testing.assert_allclose(got[1], v[1], rtol=1e-12)  # a silent neuron keeps its weights
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-12)  # normalisation kept
    assert got[0, 0] > v[0, 0] and got[0, 2] > v[0, 2] and got[0, 1] < v[0, 1]  # toward the stimulus
    # no learning signal (outside a sensitive period, or the stimulus changed nothing): no update
    same = np.asarray(tsn.hebbian_update(jnp.asarray(v), jnp.asarray(x), jnp.asarray(y), 0.0, 0.2, 1.0))
    np.testing.assert_allclose(same, v, rtol=1e-12)
    # rows renormalised to another afferent norm
    scaled = np.asarray(tsn.hebbian_update(jnp.asarray(2 * v), jnp.asarray(x), jnp.asarray(y), 1.0, 0.2, 2.0))
    np.testing.assert_allclose(scaled.sum(1), 2.0, rtol=1e-12)


def test_stimulus_enters_the_drive():
    config = SMALL
    rng = np.random.default_rng(1)
    state = jnp.asarray(np.concatenate([rng.uniform(0, 1, config.num_neurons), rng.uniform(0, 1, config.num_neurons)]))
    stimulus = jnp.asarray(rng.uniform(0, 0.3, config.num_neurons))
    # r enters dx as (1 - x) r (r > 0) or x r (r < 0): recover r from the autonomous drift and add the stimulus
    x = np.asarray(state[: config.num_neurons])
    dx0 = np.asarray(tsn.drift(state, 0.02, 0.005, config))[: config.num_neurons]
    r0 = np.where(dx0 > 0, dx0 / (1 - x), dx0 / x)
    r = r0 + np.asarray(stimulus)
    expected = np.where(r > 0, (1 - x) * r, x * r)
    got = np.asarray(tsn.drift(state, 0.02, 0.005, config, stimulus))
    np.testing.assert_allclose(got[: config.num_neurons], expected, rtol=1e-10)
    autonomous = np.asarray(tsn.drift(state, 0.02, 0.005, config))
    np.testing.assert_allclose(got[config.num_neurons:], autonomous[config.num_neurons:])


def test_assignment_accuracy_and_selectivity_on_hand_made_weights():
    config = tsn.LEARNING  # 8 cliques of 3, L = 3
    comps = tsn.bars_and_stripes_components(3)
    v = np.full((config.network.num_neurons, 9), 1 / 9)
    for c in range(6):  # cliques 0..5 tuned to components 0..5, cliques 6, 7 untuned
        v[3 * c: 3 * c + 3] = comps[c] / 3
    assert tsn.assignment_accuracy(v, config) == 1.0 and tsn.selectivity(v, config) == pytest.approx(1.0)
    v[0:3] = (comps[0] + comps[1]) / 6  # clique 0 answers bars 0 and 1 (0.5 each, stripes 1/3)
    v[3:6] = comps[3] / 3  # clique 1 tuned to stripe 0 like clique 3: bar 1 has no clique of its own
    assert tsn.assignment_accuracy(v, config) == pytest.approx(5 / 6)
    uniform = np.full((config.network.num_neurons, 9), 1 / 9)
    assert tsn.selectivity(uniform, config) == pytest.approx(1 / 3)


@pytest.mark.parametrize("field, value, match", [
    ("side", 1, "side: expected at least 2"),
    ("component_prob", 1.0, "component_prob"),
    ("learning_rate", 0.0, "learning_rate"),
    ("num_episodes", 0, "num_episodes"),
    ("noise", -1.0, "noise"),
])
def test_learning_config_errors_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(tsn.LEARNING, **{field: value})


def test_learning_weights_error():
    with pytest.raises(ValueError, match="weights: expected finite non-negative afferent weights of shape"):
        tsn.learn(jax.random.PRNGKey(0), tsn.LEARNING, weights=np.ones((3, 9)))
    with pytest.raises(ValueError, match="weights: expected finite non-negative"):
        tsn.learn(jax.random.PRNGKey(0), tsn.LEARNING, weights=-np.ones((24, 9)))


@pytest.fixture(scope="module")
def learned():
    # the spec's check: bars and stripes with L = 3 (6 components), 8 cliques, 500 hand-overs
    return tsn.learn(jax.random.PRNGKey(0), tsn.LEARNING)


@pytest.mark.slow
def test_learning_assigns_distinct_cliques_to_the_components(learned):
    config = tsn.LEARNING
    assert tsn.assignment_accuracy(learned.weights, config) >= 5 / 6
    # the accuracy alone is weak (untrained weights reach 5/6 on 7 of 10 seeds with 8 cliques):
    # the learned cliques are also selective; untrained weights give about 1/L = 0.33-0.41
    _, untrained = tsn.initial_learning_state(jax.random.split(jax.random.PRNGKey(0))[0], config)
    assert tsn.selectivity(untrained, config) < 0.42
    assert tsn.selectivity(learned.weights, config) > 0.45
    np.testing.assert_allclose(np.asarray(learned.weights).sum(1), config.afferent_norm, rtol=1e-6)
    assert np.all(np.asarray(learned.weights) >= 0)


@pytest.mark.slow
def test_learning_signal_only_when_the_stimulus_changed_the_winner(learned):
    config = tsn.LEARNING
    winner, twin, signal = (np.asarray(a) for a in (learned.winner, learned.autonomous_winner, learned.signal))
    assert np.all(winner >= 0) and np.all(twin >= 0), "every episode ends in a hand-over"
    np.testing.assert_array_equal(signal, (winner != twin).astype(float))
    # empty stimuli leave the driven network on the autonomous flow (common noise, no input)
    empty = ~np.asarray(learned.components).any(1)
    assert empty.sum() > 100 and np.all(signal[empty] == 0)
    # the flow visits every clique and the stimulus redirects a fair share of the hand-overs
    assert set(winner.tolist()) == set(range(config.network.num_cliques))
    assert 0.1 < signal.mean() < 0.9


@pytest.mark.slow
def test_learning_at_paper_scale():
    # L = 5 (10 components), 12 cliques, 6000 hand-overs: 46-63 s CPU. Measured at this key:
    # accuracy 0.9, selectivity 0.56; the untrained weights give 0.8 and 0.22 (1/L = 0.2)
    config = tsn.LEARNING_PAPER
    run = tsn.learn(jax.random.PRNGKey(0), config)
    assert tsn.assignment_accuracy(run.weights, config) >= 0.8
    assert tsn.selectivity(run.weights, config) > 0.4
