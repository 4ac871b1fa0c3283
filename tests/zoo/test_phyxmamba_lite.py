"""phyxmamba_lite: the program's objective against the paper's losses computed by hand (next-patch
+ MTP MSE; rollout MSE + the two MMD terms), the simulator against the flow map, the data format,
the named errors (a horizon longer than the data, a non-finite rollout, an embedding longer than
the context), a short pretraining fit that must beat the persistence forecast and whose estimands
pair with the truth, and (slow) the spec's acceptance on ``small``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.handlers import seed, substitute, trace
from numpyro.infer.util import log_density

import inference
import zoo
from diagnostics.metrics import smape
from inference.losses import mmd
from tests.helpers import estimand_pairs
from zoo.nets.params import module_params, point_values
from zoo.nets.selective_ssm import EmbeddingTooLargeError
from zoo.phyxmamba_lite import (SMALL, HorizonTooLongError, NonFiniteRolloutError, PhyxMambaConfig, _networks,
                                forecast, model, standardisation, stages, score_forecasts)
from zoo.processes import chaos

ENTRY = zoo.get("phyxmamba_lite")
# the default tests' run: fewer and shorter series, a narrower network, a 150-step test horizon
FAST = ENTRY.config("small", num_series=4, num_test=6, horizon=150, d_model=16, d_state=8, batch_size=32)


@pytest.fixture(scope="module")
def simulated():
    return ENTRY.simulate(jax.random.PRNGKey(0), FAST)


@pytest.fixture(scope="module")
def fitted(simulated):
    data, truth = simulated
    # pretraining only: compiling the rollout stage's gradient (through the generation scan) costs
    # more than the default budget allows; the slow test runs both stages
    idata = inference.fit(ENTRY, data, method="map", config=FAST, progress=False, stages=stages(300, 1)[:1])
    return idata, score_forecasts(idata, truth, FAST)


def _windows(data, config, idx):
    mean, std = standardisation(data, config)
    z = (np.asarray(data) - np.asarray(mean)) / np.asarray(std)
    series, start = idx // config.starts_per_series, idx % config.starts_per_series
    return np.stack([z[s, t: t + config.window] for s, t in zip(series, start)])


def test_simulator_pieces_follow_the_flow_map(simulated):
    data, truth = simulated
    assert data.shape == (FAST.num_series, FAST.num_points, 3)
    assert truth["test"].shape == (FAST.num_test, FAST.lookback + FAST.horizon, 3)
    dt = float(truth["dt"])
    np.testing.assert_allclose(dt, chaos.get_flow("Lorenz").lyapunov_time / 30, rtol=1e-12)
    f = chaos.vector_field("Lorenz")
    substeps, _ = chaos.sampling_step(dt, chaos.get_flow("Lorenz").max_step)
    for piece in (data[0], data[-1], truth["test"][0]):
        step = jax.vmap(lambda x: chaos.flow_map(f, x, dt, substeps))(jnp.asarray(piece[:5]))
        np.testing.assert_allclose(step, piece[1:6], rtol=1e-10, atol=1e-10)
    starts = truth["initial_states"]
    assert np.min(np.linalg.norm(starts[:, None] - starts[None], axis=-1) + 1e9 * np.eye(len(starts))) > 0.1


def test_pretraining_objective_is_the_papers_mse_loss(simulated):
    """log p = −(N/n)/(2σ²) · [SSE(next patch) + λ_mtp/K · SSE(MTP)] + const, at any parameters."""
    data, _ = simulated
    config = FAST
    tr = trace(seed(model, jax.random.PRNGKey(1))).get_trace(data, config=config)
    idx = np.asarray(tr["window"]["value"])
    x = _windows(data, config, idx)
    targets = x.reshape(len(idx), -1, config.patch, 3)

    def sse(params):
        main, extra = _networks(config).forward(params, jnp.asarray(x))
        first = np.sum((np.asarray(main[:, :-1], float) - targets[:, 1:]) ** 2)
        second = np.sum((np.asarray(extra[:, 0, :-2], float) - targets[:, 2:]) ** 2)
        return first + config.lambda_mtp / config.num_mtp * second

    p0 = tr["net$params"]["value"]
    p1 = jax.tree_util.tree_map(lambda v: v * 1.1, p0)

    def logp(params):
        site = trace(substitute(seed(model, jax.random.PRNGKey(1)), data={"net$params": params, "window": jnp.asarray(idx)})).get_trace(
            data, config=config)
        return sum(float(site[k]["fn"].log_prob(site[k]["value"]).sum()) * site[k]["scale"] for k in ("y", "y_mtp0"))

    scale = config.num_windows / len(idx)
    want = -scale / (2 * config.obs_sigma**2) * (sse(p1) - sse(p0))
    np.testing.assert_allclose(logp(p1) - logp(p0), want, rtol=1e-5)


def test_rollout_objective_has_the_mmd_factor(simulated):
    """Stage 2: the factor is −c·(λ_u MMD²(μ̂*, ŷ_h) + λ_c MMD²(y_h, ŷ_h)) averaged over h, c = N R d / (2σ²),
    and the rollout likelihood scores the free run against the next R steps."""
    data, _ = simulated
    config = FAST
    tr = trace(seed(model, jax.random.PRNGKey(2))).get_trace(data, config=config, stage="rollout")
    idx = np.asarray(tr["window"]["value"])
    x = _windows(data, config, idx)
    params = {"params": tr["net$params"]["value"]}
    mean, std = (np.asarray(v) for v in standardisation(data, config))
    L, R = config.lookback, config.rollout
    pred = (forecast(params, x[:, :L] * std + mean, R, config, mean=mean, std=std) - mean) / std
    np.testing.assert_allclose(tr["y_rollout"]["fn"].base_dist.loc, pred, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tr["y_rollout"]["value"], x[:, L: L + R], rtol=1e-12)
    mmd_u = np.mean([float(mmd(x[:, 0], pred[:, h])) for h in range(R)])
    mmd_c = np.mean([float(mmd(x[:, L + h], pred[:, h])) for h in range(R)])
    c = config.num_windows * R * 3 / (2 * config.obs_sigma**2)
    factor = float(tr["mmd"]["fn"].log_prob(tr["mmd"]["value"]))
    np.testing.assert_allclose(factor, -c * (config.lambda_u * mmd_u + config.lambda_c * mmd_c), rtol=1e-4)
    assert tr["mmd"]["scale"] is None   # a batch-level term: not rescaled by the window plate
    lp, _ = log_density(model, (data,), {"config": config, "stage": "rollout"}, {})
    assert np.isfinite(float(lp))


def test_data_format_and_named_errors(simulated):
    data, truth = simulated
    columns = ENTRY.dump_columns(data, FAST)
    assert sorted(columns) == ["series", "time", "x", "y", "z"]
    np.testing.assert_allclose(ENTRY.load_columns(columns, FAST), data)
    with pytest.raises(EmbeddingTooLargeError, match="delay_dim: an embedding of dimension 6 with delay_tau=7 spans 35"):
        PhyxMambaConfig(delay_dim=6)
    with pytest.raises(HorizonTooLongError, match="rollout: lookback \\+ rollout = 65 steps is longer than the training"):
        PhyxMambaConfig(rollout=35)
    with pytest.raises(HorizonTooLongError, match="horizon: lookback \\+ horizon = 330 steps is longer than the test"):
        score_forecasts(None, {"test": truth["test"], "series": data}, SMALL)
    with pytest.raises(HorizonTooLongError, match="data: series of 500 steps are shorter than the training part"):
        trace(seed(model, jax.random.PRNGKey(0))).get_trace(data[:, :500], config=FAST)
    with pytest.raises(ValueError, match="horizon: expected a multiple of patch=5, got 301"):
        PhyxMambaConfig(horizon=301)
    with pytest.raises(ValueError, match="stage: expected one of"):
        trace(seed(model, jax.random.PRNGKey(0))).get_trace(data, config=FAST, stage="finetune")
    with pytest.raises(ValueError, match="data: the series must be complete"):
        bad = np.array(data)
        bad[1, 10, 2] = np.nan
        trace(seed(model, jax.random.PRNGKey(0))).get_trace(bad, config=FAST)
    params = {"params": _networks(FAST).init(jax.random.PRNGKey(0))}
    broken = jax.tree_util.tree_map(lambda v: v * np.nan, params)
    mean, std = (np.asarray(v) for v in standardisation(data, FAST))
    with pytest.raises(NonFiniteRolloutError, match="forecast: rollout 0 is not finite from step 0 of 10"):
        forecast(broken, truth["test"][:2, : FAST.lookback], 10, FAST, mean=mean, std=std)


def test_short_fit_beats_persistence(simulated, fitted):
    """300 pretraining steps on 4 series: the forecast beats repeating the last context state, by VPT and by
    sMAPE over the first Lyapunov time, and every rollout is finite and inside 3x the training box."""
    _, truth = simulated
    idata, scores = fitted
    assert list(idata.training.stage_steps.values) == [300]
    assert scores.finite and scores.inside_box
    assert np.mean(scores.vpt) > np.mean(scores.persistence_vpt)
    first = slice(0, FAST.pts_per_lyapunov)
    last = truth["test"][:, FAST.lookback - 1: FAST.lookback]
    persistence = smape(scores.truth[:, first], np.broadcast_to(last, scores.truth[:, first].shape))
    assert scores.smape[0] < persistence, (scores.smape, persistence)
    values = point_values(idata)
    assert module_params(values, "net")["params"]["embed"]["kernel"].shape == (3 * 3 * FAST.patch, FAST.d_model)


def test_estimands_are_the_pooled_forecasts_moments_and_pair_with_the_attractors(simulated, fitted):
    data, truth = simulated
    idata, _ = fitted
    pairs = estimand_pairs(ENTRY, idata, data, truth, FAST)
    assert set(pairs) == {f"attractor_{s}[{i}]" for s in ("mean", "std") for i in range(3)}
    moments = chaos.invariant_moments(FAST.flow)
    np.testing.assert_array_equal(truth["attractor_std"], moments.std)
    # the forecasts of `horizon` steps from the last `lookback` steps of each training series, pooled
    mean, std = standardisation(data, FAST)
    pred = forecast(module_params(point_values(idata), "net"), data[:, -FAST.lookback:], FAST.horizon, FAST,
                    mean=mean, std=std).reshape(-1, 3)
    np.testing.assert_allclose([pairs[f"attractor_mean[{i}]"][0] for i in range(3)], pred.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose([pairs[f"attractor_std[{i}]"][0] for i in range(3)], pred.std(axis=0), rtol=1e-12)


@pytest.mark.slow
def test_recipe_passes_the_spec_acceptance_on_small():
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), SMALL)
    idata = inference.fit(ENTRY, data, method="map", progress=False, **ENTRY.recipe.options)
    checks = ENTRY.check(idata, truth, SMALL)
    assert len(checks) == 4 and all(c.passed for c in checks), checks
