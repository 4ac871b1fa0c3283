"""``stochastic_interpolant_gmm``'s stored point-estimate study, paired with the exact transport.

The entry's estimands (mode weights and mean of the ODE sampler's draws) use the check's fixed key,
so every replicate transports the same base draws and their Monte Carlo error is common to all
replicates: against the truth (weights 1/8, mean 0) it shows as a bias. This script computes the
same estimands with the exact fields (``exact_fields``) and the same key, subtracts them from the
stored replicates' estimates (the learned fields' error alone, with its standard error over the
replicates), and measures the sampler's own spread over fresh keys. The model card quotes its
output.

    PYTHONPATH=. nice python scripts/interpolant_paired_estimates.py [--keys 20]
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np
import pandas as pd

jax.config.update("jax_enable_x64", True)

import zoo  # noqa: E402
from zoo import stochastic_interpolant_gmm as entry_module  # noqa: E402


def exact_estimands(fields, config, key=None):
    """The entry's estimands of ``fields`` (``key=None``: the check's fixed key), as one vector."""
    values = entry_module.sampler_estimands(fields, config, key)
    return np.concatenate([values["weights"], values["mean"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20, help="fresh keys for the sampler's own spread")
    parser.add_argument("--folder", default=os.path.join(os.path.dirname(__file__), "..", "calibration",
                                                         "stochastic_interpolant_gmm", "small"))
    args = parser.parse_args()
    config = zoo.get("stochastic_interpolant_gmm").configs["small"]
    stored = pd.read_csv(os.path.join(args.folder, "estimates.csv"))
    labels = [f"weights[{m}]" for m in range(config.num_modes)] + ["mean[0]", "mean[1]"]
    fields = entry_module.exact_fields(config)
    fixed = exact_estimands(fields, config)
    fresh = np.stack([exact_estimands(fields, config, jax.random.PRNGKey(1000 + k)) for k in range(args.keys)])
    print(f"{'element':<12}{'bias':>10}{'exact@key':>11}{'paired':>10}{'± s.e.':>9}{'spread':>9}{'sampler SD':>12}")
    for i, label in enumerate(labels):
        rows = stored[stored.element == label]
        error = rows.estimate.to_numpy() - rows.truth.to_numpy()
        exact_error = fixed[i] - rows.truth.to_numpy()[0]
        se = error.std(ddof=1) / np.sqrt(error.size)
        print(f"{label:<12}{error.mean():>+10.4f}{exact_error:>+11.4f}{error.mean() - exact_error:>+10.4f}"
              f"{se:>9.4f}{error.std(ddof=1):>9.4f}{fresh[:, i].std(ddof=1):>12.4f}")


if __name__ == "__main__":
    main()
