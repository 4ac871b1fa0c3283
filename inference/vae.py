"""Amortised variational inference with the project's trainer (method ``"vae"``).

``run_vae`` fits a guide function to a NumPyro program by maximising the ELBO with
:func:`inference.train.train` and :func:`inference.train.elbo_loss`, so the options a sequential
VAE or a deep Markov model needs are there: KL annealing (``kl_start``, ``kl_steps``), gradient
clipping (``clip_norm``), coordinated dropout (``coordinated_dropout``), early stopping on the
ELBO of held-out sequences (``validation``, ``evaluate_every``, ``patience``; the best parameters
are kept), minibatches of sequences (``batch_size``), and resumable checkpoints
(``checkpoint_path``). NumPyro's ``SVI`` (method ``"svi"``)
has none of the first four; this runner differs from it in those options only. The draws are the
fitted guide's (``attrs["draws"] = "iid"``); the trained parameters of both programs (guide and
model networks, ``numpyro.param`` sites) are stored as the group ``parameters``, one variable per
leaf (``inference.runner.param_variables``; ``zoo.nets.params.module_params`` rebuilds a network).

Data: an array whose leading axis is the sequences (``(S, T, ...)``); ``validation=k`` holds the
last ``k`` sequences out of training.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from inference.optim import OPTIMIZERS, make_optimizer
from inference.runner import param_variables, posterior_to_idata
from inference.types import Target
from inference.validate import choice, positive_int

__all__ = ["run_vae"]


def run_vae(
    target: Target,
    *,
    seed: int = 0,
    progress: bool = True,
    guide: Callable | None = None,
    num_steps: int = 2000,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    clip_norm: float | None = None,
    kl_start: float = 1.0,
    kl_steps: int = 1,
    coordinated_dropout: float | None = None,
    num_particles: int = 1,
    batch_size: int | None = None,
    validation: int = 0,
    evaluate_every: int = 100,
    eval_particles: int = 16,
    patience: int | None = None,
    num_samples: int = 200,
    checkpoint_path: str | None = None,
    checkpoint_every: int = 500,
    posterior_predictive: bool = False,
):
    """Fit ``guide`` to ``target.model`` by the trainer (method ``"vae"``).

    Args:
        guide: the guide function ``guide(data)`` (a flax encoder through ``flax_module``;
            parameters unconstrained: see :func:`inference.train.elbo_parameters`). Required.
        num_steps, optimizer, learning_rate, clip_norm: the optax optimiser (a name of
            :data:`inference.optim.OPTIMIZERS`) and its steps.
        kl_start, kl_steps: KL annealing, β from ``kl_start`` to 1 over ``kl_steps`` steps
            (:class:`inference.train.KLAnnealing`; the default 1, 1 is the plain ELBO).
        coordinated_dropout: drop rate of :func:`inference.train.train` (None: off).
        num_particles: guide draws per ELBO estimate.
        batch_size: sequences per step, drawn without replacement from the training sequences by
            the step's batch key (None: all of them every step). The loss is then the ELBO of the
            batch (its gradient is ``batch_size / S`` times an unbiased estimate of the full
            one; Adam does not see the factor), and ``training.loss`` is per batch.
        validation: hold out the last ``validation`` sequences; every ``evaluate_every`` steps
            their ELBO (``eval_particles`` draws, fixed key) is computed and the best parameters
            are kept; ``patience`` evaluations without a new best stop the run.
        num_samples: guide draws returned as the posterior.
        checkpoint_path, checkpoint_every: resumable checkpoints (:func:`inference.train.train`).

    Returns:
        InferenceData (``draws="iid"``): guide draws of the model's latent and deterministic
        sites given the training data, groups ``parameters`` (the chosen parameters) and
        ``training`` (``loss`` per step; ``eval_step``/``eval_score`` = minus the held-out ELBO
        per sequence), attrs ``final_loss``, ``selected_step``, ``stopped_step``.
    """
    from numpyro.handlers import substitute

    from inference import train as trainer

    if guide is None or not callable(guide):
        raise TypeError(f"guide: method 'vae' needs a guide function guide(data), got {type(guide).__name__}")
    choice("optimizer", optimizer, sorted(OPTIMIZERS))
    num_steps = positive_int("num_steps", num_steps)
    num_samples = positive_int("num_samples", num_samples)
    validation = positive_int("validation", validation, minimum=0)
    evaluate_every = positive_int("evaluate_every", evaluate_every)
    eval_particles = positive_int("eval_particles", eval_particles)
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")
    if target.data is None:
        raise ValueError("data: method 'vae' trains on data; got None")
    data = jnp.asarray(target.data)
    if validation:
        if data.ndim < 2 or data.shape[0] <= validation:
            raise ValueError(f"validation: expected fewer held-out sequences than the {data.shape[0] if data.ndim else 0} "
                             f"in the data's leading axis, got {validation}")
        train_data, held_out = data[:-validation], data[-validation:]
    else:
        train_data, held_out = data, None
    model = target.model
    key = jax.random.PRNGKey(seed)
    params0 = trainer.elbo_parameters(model, guide, train_data, jax.random.fold_in(key, 10**9))
    loss = trainer.elbo_loss(model, guide, num_particles=num_particles)

    evaluate = None
    if held_out is not None:
        held_loss = trainer.elbo_loss(model, guide, num_particles=eval_particles)
        eval_key = jax.random.fold_in(key, 10**9 + 1)
        score = jax.jit(lambda p: held_loss(p, held_out, eval_key) / validation)

        def evaluate(p):
            return float(score(p))

    make_batch = lambda batch_key, step: train_data  # noqa: E731
    if batch_size is not None:
        batch_size = positive_int("batch_size", batch_size)
        if batch_size > train_data.shape[0]:
            raise ValueError(f"batch_size: expected at most the {train_data.shape[0]} training sequences, got {batch_size}")
        if batch_size < train_data.shape[0]:
            def make_batch(batch_key, step):
                return train_data[jax.random.choice(batch_key, train_data.shape[0], (batch_size,), replace=False)]
    kl = None if (kl_start == 1.0 and kl_steps == 1) else trainer.KLAnnealing(float(kl_start), positive_int("kl_steps", kl_steps))
    started = time.perf_counter()
    result = trainer.train(loss, params0, make_batch, make_optimizer(optimizer, learning_rate),
                           num_steps, seed=seed, checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
                           progress=progress, evaluate=evaluate, evaluate_every=evaluate_every, clip_norm=clip_norm,
                           kl_weight=kl, coordinated_dropout=coordinated_dropout, patience=patience)
    elapsed = time.perf_counter() - started
    chosen = result.best_params if result.best_params is not None else result.params

    from inference.svi import _guide_posterior

    fitted = target._replace(model=substitute(model, data=chosen))
    samples = _guide_posterior(fitted, substitute(guide, data=chosen), {}, num_samples, jax.random.fold_in(key, 2))
    attrs = {"guide": getattr(guide, "__name__", "custom"), "num_steps": int(num_steps),
             "final_loss": float(result.losses[-1]), "training_time_s": round(elapsed, 3),
             "kl_start": float(kl_start), "kl_steps": int(kl_steps)}
    if result.best_step is not None:
        attrs["selected_step"] = int(result.best_step)
    if result.stopped_step is not None:
        attrs["stopped_step"] = int(result.stopped_step)
    idata = posterior_to_idata(fitted, samples, {}, seed=seed, method="vae", draws="iid", attrs=attrs,
                               posterior_predictive=posterior_predictive)
    _add_groups(idata, chosen, result)
    return idata


def _add_groups(idata, params: dict, result) -> None:
    import xarray as xr

    flat = param_variables(params)
    parameters = xr.Dataset({name: (tuple(f"{name.replace('.', '_')}_{i}" for i in range(np.ndim(v))), np.asarray(v))
                             for name, v in flat.items()})
    training = {"loss": (("step",), result.losses)}
    if result.evaluations is not None and len(result.evaluations):
        training["eval_step"] = (("evaluation",), result.evaluations[:, 0].astype(np.int64))
        training["eval_score"] = (("evaluation",), result.evaluations[:, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata.add_groups({"parameters": parameters,
                          "training": xr.Dataset(training, coords={"step": np.arange(len(result.losses))})})
