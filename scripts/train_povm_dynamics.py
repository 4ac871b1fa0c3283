"""Run the autoregressive Transformer dynamics of ``povm_dissipative_ising``'s 2-D benchmark (the
dissipative XYZ lattice, Luo et al. 2022) and print ``⟨σ^z⟩(t)`` against the exact path.

Each time step minimises the forward-backward trapezoid objective
``‖(1 − τ𝓛̃/2)P_θ − (1 + τ𝓛̃/2)P_{θ_old}‖₁`` on draws of the new model
(``zoo.povm_lindblad.dynamics_problem``) with ``inference.train`` (``zoo`` may not import it,
docs/contracts.md), starting from the previous step's parameters with a fresh Adam, as the
paper's code does. The network starts at the exact product state ``P(0)`` (all ``|0⟩``).

Usage (from the repository root)::

    python scripts/train_povm_dynamics.py --rows 2 --cols 2 --steps 10 --tau 0.016 --out runs/povm_xyz_2x2.json

From Python (tests, notebooks)::

    import importlib.util
    spec = importlib.util.spec_from_file_location("train_povm_dynamics", "scripts/train_povm_dynamics.py")
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    run = module.run_dynamics(zoo.povm_lindblad.DynamicsConfig(num_time_steps=5))
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inference.train import train  # noqa: E402
from zoo import povm_lindblad as pl  # noqa: E402

__all__ = ["DynamicsRun", "run_dynamics", "main"]


class DynamicsRun(NamedTuple):
    """``times (T+1,)`` from 0, the network's ``sigma_z (T+1, N)`` per lattice site (exact sums over
    its ``4^N`` strings), ``losses (T, inner_steps)`` (the objective's estimates), the final
    ``params``."""

    times: np.ndarray
    sigma_z: np.ndarray
    losses: np.ndarray
    params: dict


def run_dynamics(config: pl.DynamicsConfig, *, progress: bool = False) -> DynamicsRun:
    """``config.num_time_steps`` trapezoid steps of the Transformer (see the module docstring)."""
    problem = pl.dynamics_problem(config)
    params = problem.init_params
    sigma = [pl.sequence_sigma_z(config, params)]
    losses = []
    for k in range(config.num_time_steps):
        old = params
        result = train(problem.loss_fn, old, lambda key, step, old=old: old, problem.optimizer,
                       problem.inner_steps, seed=problem.seed * 10_000 + k, progress=False,
                       log_every=problem.inner_steps)
        params = result.params
        losses.append(np.asarray(result.losses))
        sigma.append(pl.sequence_sigma_z(config, params))
        if progress:
            print(f"step {k + 1}: t = {(k + 1) * config.tau:.3f}, objective (last 20 mean) "
                  f"{losses[-1][-20:].mean():.2e}, <sz> = {sigma[-1].mean():.4f}", flush=True)
    times = config.tau * np.arange(config.num_time_steps + 1)
    return DynamicsRun(times, np.stack(sigma), np.stack(losses), params)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--cols", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="time steps")
    parser.add_argument("--tau", type=float, default=0.016, help="trapezoid time step (the paper's 2 dt)")
    parser.add_argument("--inner-steps", type=int, default=120)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--order", default="snake")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the result as JSON here")
    args = parser.parse_args(argv)
    try:
        config = pl.DynamicsConfig(rows=args.rows, cols=args.cols, num_time_steps=args.steps, tau=args.tau,
                                   inner_steps=args.inner_steps, num_samples=args.samples, order=args.order,
                                   seed=args.seed, tabulate=args.rows * args.cols <= 8)
    except (TypeError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    start = time.process_time()
    run = run_dynamics(config, progress=True)
    cpu = time.process_time() - start
    row = {"config": {k: getattr(config, k) for k in config.__dataclass_fields__}, "cpu_seconds": cpu,
           "times": run.times.tolist(), "sigma_z": run.sigma_z.tolist()}
    if config.num_qubits <= 6:
        exact = pl.xyz_exact_sigma_z(config, run.times[1:])
        row["exact_sigma_z"] = exact.tolist()
        err = np.abs(run.sigma_z[1:].mean(axis=1) - exact.mean(axis=1))
        print(f"max |<sz>_net - <sz>_exact| (site mean) over t <= {run.times[-1]:.3f}: {err.max():.4f}")
    print(f"process CPU {cpu:.0f} s")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as stream:
            json.dump(row, stream, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
