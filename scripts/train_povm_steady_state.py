"""Train the autoregressive Transformer steady-state ansatz of ``povm_dissipative_ising`` and
print (and optionally write) its per-site observables.

This is where the ansatz (``zoo.povm_lindblad.steady_state_problem``: the Transformer of
``zoo.nets.transformer``, the L1 objective from the two-site blocks) meets the training loop
(``inference.train``): ``zoo`` may not import ``inference.train`` (docs/contracts.md).

Usage (from the repository root)::

    python scripts/train_povm_steady_state.py --qubits 16 --g 1.0 --g 2.0 --steps 500 --samples 10000 \\
        --out runs/povm_steady_n16.json --checkpoint runs/povm_steady_n16

The defaults are the paper's (Luo et al. 2022): ring of N qubits, V = 2, γ = 1, Transformer
d_model 32 / 1 layer / 1 head / FF 16, Adam 1e-2 (0.9, 0.98), 500 steps of 10^4 samples (an
accelerator run at N = 16-40), except the objective: ``‖𝓛̃P_θ‖₂`` with the rate decayed on a
cosine to 1e-4 (``--l1-steps K`` ends with K steps of the paper's ``‖𝓛̃P_θ‖₁``, ``--final-lr``
sets the end rate; see the model card). With ``--checkpoint PREFIX`` each g checkpoints to
``PREFIX_g{g}.ckpt.npz`` and an existing checkpoint is resumed (``inference.train``). For N <= 5
the exact steady state (null vector of the dense generator) is printed alongside.

From Python (tests, notebooks)::

    import importlib.util
    spec = importlib.util.spec_from_file_location("train_povm_steady_state", "scripts/train_povm_steady_state.py")
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    ansatz = module.train_steady_state(zoo.povm_lindblad.STEADY_CHECK)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from inference.train import train  # noqa: E402
from zoo import povm_lindblad as pl  # noqa: E402

__all__ = ["train_steady_state", "main"]


def train_steady_state(config: pl.SteadyStateConfig, *, checkpoint_path: str | None = None,
                       progress: bool = False) -> pl.SteadyStateAnsatz:
    """Train the ansatz of ``config`` with ``inference.train.train`` (resumable through
    ``checkpoint_path``); the :class:`zoo.povm_lindblad.SteadyStateAnsatz` it gives."""
    problem = pl.steady_state_problem(config)
    result = train(problem.loss_fn, problem.init_params, problem.make_batch, problem.optimizer,
                   problem.num_steps, seed=problem.seed, checkpoint_path=checkpoint_path, progress=progress,
                   log_every=25)
    return pl.SteadyStateAnsatz(config, result.params, np.asarray(result.losses))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qubits", type=int, default=16)
    parser.add_argument("--g", type=float, action="append", help="transverse field (repeatable; default 1.0)")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--l1-steps", type=int, default=0, help="final steps on the L1 objective (default 0)")
    parser.add_argument("--final-lr", type=float, default=1e-4, help="cosine-decayed learning rate at the end")
    parser.add_argument("--open", action="store_true", help="an open chain instead of a ring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the observables as JSON here")
    parser.add_argument("--checkpoint", help="checkpoint prefix (resumed when the file exists)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for g in args.g or [1.0]:
        try:
            config = dataclasses.replace(pl.STEADY_PAPER, num_qubits=args.qubits, g=g, num_steps=args.steps,
                                         num_samples=args.samples, periodic=not args.open, seed=args.seed,
                                         l1_steps=args.l1_steps, final_learning_rate=args.final_lr)
        except (TypeError, ValueError) as err:
            parser.exit(2, f"error: {err}\n")
        start = time.process_time()
        ckpt = None if args.checkpoint is None else f"{args.checkpoint}_g{g:g}.ckpt.npz"
        ansatz = train_steady_state(config, checkpoint_path=ckpt, progress=not args.no_progress)
        mean, err = ansatz.observables(jax.random.PRNGKey(args.seed + 1), num_samples=args.samples)
        cpu = time.process_time() - start
        row = {"num_qubits": args.qubits, "g": g, "steps": args.steps, "samples": args.samples,
               "final_loss": float(np.mean(ansatz.losses[-20:])), "cpu_seconds": cpu,
               "sigma": mean.tolist(), "sigma_stderr": err.tolist()}
        if args.qubits <= 5:
            row["exact_sigma"] = pl.exact_steady_observables(config).tolist()
        rows.append(row)
        print(f"N = {args.qubits}, g = {g}: objective estimate (mean of last 20 steps) {row['final_loss']:.4f}, "
              f"process CPU {cpu:.0f} s")
        print("  site-mean <sx, sy, sz> = " + np.array2string(mean.mean(axis=0), precision=4)
              + " +- " + np.array2string(err.mean(axis=0), precision=4))
        if "exact_sigma" in row:
            print("  exact <sx, sy, sz>     = " + np.array2string(np.mean(row["exact_sigma"], axis=0), precision=4))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as stream:
            json.dump(rows, stream, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
