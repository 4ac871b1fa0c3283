r"""Markov jump processes observed at discrete, irregular times (Berghaus et al. 2024, FIM).

Two entries on one observation model (a continuous-time Markov chain observed through label noise,
the path summed out exactly) and the paper's amortised zero-shot estimator at our scale. The model
cards are the modules' docstrings:

=============================  ===============  ==============================================
module                         entry            holds
=============================  ===============  ==============================================
:mod:`.observations`           —                data, validation, CSV columns, per-path likelihood
:mod:`.dfr`                    ``mjp_dfr``      the discrete flashing ratchet (6 states)
:mod:`.generic`                ``mjp_generic``  a C-state chain with a link mask
:mod:`.estimator`              —                the amortised zero-shot estimator (flax)
=============================  ===============  ==============================================

Reference: D. Berghaus, K. Cvejoski, P. Seifner, C. Ojeda, R. J. Sánchez, "Foundation Inference
Models for Markov Jump Processes", NeurIPS 2024, arXiv:2406.06419.
"""

from __future__ import annotations

from zoo.markov_jump.dfr import (DFRConfig, dfr_exact_loglik, dfr_mask, dfr_model, dfr_parameters_from_rates,
                                 dfr_rate_matrix, dfr_simulate, dfr_truth)
from zoo.markov_jump.estimator import (ESTIMATOR_CONFIGS, Estimator, EstimatorConfig, EstimatorTrainingProblem,
                                       dfr_amortised_estimate, estimate_rates, estimator_arrays,
                                       estimator_training_problem, heldout_errors, load_estimator)
from zoo.markov_jump.generic import GenericConfig, generic_exact_loglik, generic_mask, generic_simulate
from zoo.markov_jump.observations import (as_observations, dump_columns, load_columns, prior_observations,
                                           simulate_observations)

__all__ = [
    "DFRConfig",
    "GenericConfig",
    "dfr_rate_matrix",
    "dfr_mask",
    "dfr_parameters_from_rates",
    "dfr_model",
    "dfr_exact_loglik",
    "dfr_truth",
    "dfr_simulate",
    "generic_mask",
    "generic_exact_loglik",
    "generic_simulate",
    "simulate_observations",
    "as_observations",
    "prior_observations",
    "load_columns",
    "dump_columns",
    "EstimatorConfig",
    "ESTIMATOR_CONFIGS",
    "EstimatorTrainingProblem",
    "estimator_training_problem",
    "estimator_arrays",
    "Estimator",
    "load_estimator",
    "estimate_rates",
    "heldout_errors",
    "dfr_amortised_estimate",
]
