"""Train the amortised MJP estimator of ``zoo.markov_jump`` and write its weights.

This is the one place where the estimator's network (``zoo.markov_jump``) meets the training
loop (``inference.train``) and the project's atomic writer (``diagnostics.convert``): ``zoo``
may import only ``inference.exact`` (docs/contracts.md), so the driver lives outside the
packages, as the benchmarks do.

Usage (from the repository root)::

    python scripts/train_mjp_estimator.py --config small --weights zoo/data/mjp_estimator_small.npz \\
        --checkpoint runs/mjp_estimator_small.ckpt.npz

``small`` trains in a few CPU minutes; ``paper`` (GRU encoder of width 256, 200k steps) is for an
accelerator. With ``--checkpoint`` the run checkpoints every ``--checkpoint-every`` steps and an
existing checkpoint is resumed: the result equals an uninterrupted run (``inference.train``).

From Python (tests, notebooks)::

    import importlib.util
    spec = importlib.util.spec_from_file_location("train_mjp_estimator", "scripts/train_mjp_estimator.py")
    ...
    result = module.train_estimator("small", weights_path="w.npz")
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from diagnostics.convert import atomic_write  # noqa: E402
from inference.train import TrainResult, train  # noqa: E402
from zoo import markov_jump as mj  # noqa: E402

__all__ = ["train_estimator", "save_estimator", "main"]


def save_estimator(path: str | os.PathLike, params, config: mj.EstimatorConfig, losses=None) -> str:
    """Write the weights file read by :func:`zoo.markov_jump.load_estimator` (``.npz``, see
    :func:`zoo.markov_jump.estimator_arrays`), atomically (``diagnostics.convert.atomic_write``)."""
    arrays = mj.estimator_arrays(params, config, losses=losses)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as stream:  # a stream: np.savez would append ".npz" to a bare name
            np.savez_compressed(stream, **arrays)

    return atomic_write(path, write)


def train_estimator(config: mj.EstimatorConfig | str = "small", *, checkpoint_path: str | None = None,
                    checkpoint_every: int = 100, num_steps: int | None = None, progress: bool = True,
                    weights_path: str | None = None) -> TrainResult:
    """Train the estimator on simulated MJPs with ``inference.train.train``; resumable.

    Args:
        config: a name of ``zoo.markov_jump.ESTIMATOR_CONFIGS`` or an ``EstimatorConfig``.
        checkpoint_path: checkpoint file; an existing one is resumed.
        checkpoint_every: steps between checkpoints.
        num_steps: stop after this many steps (default ``config.num_steps``; the learning-rate
            schedule always spans ``config.num_steps``, so a run stopped early and resumed later
            equals an uninterrupted one).
        progress: show a progress bar.
        weights_path: where to write the final weights (``.npz``), or None.

    Returns:
        ``inference.train.TrainResult`` (params, losses per step, state).
    """
    problem = mj.estimator_training_problem(config)
    steps = problem.num_steps if num_steps is None else int(num_steps)
    result = train(problem.loss_fn, problem.init_params, problem.make_batch, problem.optimizer, steps,
                   seed=problem.seed, checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
                   progress=progress, log_every=25)
    if weights_path is not None:
        save_estimator(weights_path, result.params, problem.config, losses=result.losses)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="small", choices=sorted(mj.ESTIMATOR_CONFIGS))
    parser.add_argument("--weights", required=True, help="output weights file (.npz)")
    parser.add_argument("--checkpoint", help="checkpoint file (resumed when it exists)")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--steps", type=int, help="stop after this many steps (default: the config's)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override an EstimatorConfig field, e.g. --set batch_size=4 (repeatable)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    config = mj.ESTIMATOR_CONFIGS[args.config]
    if args.set:
        import ast

        fields = {f.name for f in dataclasses.fields(config)}
        overrides = {}
        for pair in args.set:
            name, sep, value = pair.partition("=")
            if not sep or name not in fields:
                parser.error(f"--set: expected FIELD=VALUE with FIELD one of {sorted(fields)}, got {pair!r}")
            try:
                overrides[name] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                overrides[name] = value
        config = dataclasses.replace(config, **overrides)
    result = train_estimator(config, checkpoint_path=args.checkpoint, checkpoint_every=args.checkpoint_every,
                             num_steps=args.steps, progress=not args.no_progress, weights_path=args.weights)
    print(f"trained {result.state.step} steps; final loss {result.losses[-1]:.4g}; wrote {args.weights}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
