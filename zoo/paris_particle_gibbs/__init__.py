r"""Linear-Gaussian and stochastic-volatility benchmarks of PaRIS particle Gibbs (PPG).

Cardoso, Janati El Idrissi, Le Corff, Moulines & Olsson (ICML 2023), "State and parameter learning
with PaRIS particle Gibbs", arXiv:2301.00900. The paper's subject is an algorithm (PPG: PaRIS
smoothing of additive functionals driven by conditional-SMC moves, and its use for maximum
likelihood / Markov score climbing); these two entries are the models it is exercised on. The
algorithm lives in ``inference.particle.paris`` (method ``"ppg"`` of ``inference.fit``).

===============================  ===============================  ====================================
module                           entry                            model
===============================  ===============================  ====================================
:mod:`.linear_gaussian`          ``ppg_lgssm``                    scalar AR(1) in Gaussian noise
:mod:`.stochastic_volatility`    ``ppg_stochastic_volatility``    AR(1) log-variance, Gaussian returns
:mod:`.series`                   —                                the shared one-series data format
===============================  ===============================  ====================================
"""

from __future__ import annotations

from zoo.paris_particle_gibbs.linear_gaussian import (GuidedProposal, LGSSMConfig, exact_loglik, exact_score,
                                                      exact_smoothed_moments, kalman_mle, lgssm_optimal_proposal,
                                                      lgssm_params, lgssm_ssm)
from zoo.paris_particle_gibbs.stochastic_volatility import SVConfig, sv_ssm

__all__ = [
    "LGSSMConfig",
    "SVConfig",
    "lgssm_ssm",
    "lgssm_params",
    "exact_loglik",
    "exact_smoothed_moments",
    "exact_score",
    "kalman_mle",
    "GuidedProposal",
    "lgssm_optimal_proposal",
    "sv_ssm",
]
