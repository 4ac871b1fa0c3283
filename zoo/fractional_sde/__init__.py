r"""Fractional Ornstein–Uhlenbeck process driven by Markov-approximate fBM (Daems et al., ICLR 2024).

One entry, ``fou_mafbm`` (:mod:`.fou`: the model card, the exact Kalman route, the recipe), and the
paper's variational route on the same model (:mod:`.paths`: Brownian increments as latent sites, a
controlled guide, the neural SDE, the Euler state-space form, the bridge check).
"""

from __future__ import annotations

from zoo.fractional_sde.fou import (augmented_system, BRIDGE, BROWNIAN, check, complete_params, discretised,
                                    exact_loglik, fou_ssm, FouConfig, lgssm_params, model, NEURAL, omega, PAPER, PATHS,
                                    posterior_paths, prior, simulate, simulate_exact_fbm, SMALL, true_params,
                                    TruncatedBeta22, validate_data, WELLSPECIFIED)
from zoo.fractional_sde.paths import (fbm_bridge_std, init_nets, ma_bridge_std, path_data, path_grid, path_guide,
                                      path_lgssm_params, path_model, path_ssm, path_svi_options, PathGrid)

__all__ = [
    "FouConfig",
    "TruncatedBeta22",
    "SMALL",
    "WELLSPECIFIED",
    "PATHS",
    "BROWNIAN",
    "BRIDGE",
    "NEURAL",
    "PAPER",
    "prior",
    "true_params",
    "augmented_system",
    "discretised",
    "lgssm_params",
    "validate_data",
    "model",
    "exact_loglik",
    "fou_ssm",
    "simulate",
    "simulate_exact_fbm",
    "posterior_paths",
    "check",
    "path_grid",
    "path_model",
    "path_guide",
    "path_svi_options",
    "path_data",
    "path_lgssm_params",
    "path_ssm",
    "init_nets",
    "omega",
    "PathGrid",
    "fbm_bridge_std",
    "ma_bridge_std",
    "complete_params",
]
