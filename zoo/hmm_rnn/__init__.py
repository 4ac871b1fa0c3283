r"""RNNs emulating hidden Markov models (Torre et al., NeurIPS 2025, arXiv:2510.25674).

One entry, ``hmm_rnn`` (:mod:`.hmms`: the paper's HMMs as NumPyro programs, exact decoding, the
recipe), and the emulation study on them (:mod:`.emulation`: a noise-driven RNN trained by a
Sinkhorn divergence, the emission-statistics checks, the dynamical analysis of the trained RNN).
"""

from __future__ import annotations

from zoo.hmm_rnn.emulation import (analyse_emulator, emission_statistics, EmissionStatistics, emulation_checks,
                                   emulation_problem, EmulationProblem, EmulatorAnalysis, generate,
                                   hmm_emission_statistics, pooled_output_statistics, RNN_CONFIGS,
                                   rnn_outputs_onehot, RNNConfig, transition_statistics_penalty)
from zoo.hmm_rnn.hmms import (Architecture, architecture, CategoricalMissing, check, CONFIGS, exact_loglik,
                              hmm_matrices, hmm_rnn_ssm, HMMRNNConfig, log_likelihood, model, posterior_paths,
                              simulate, simulate_sequences, smoothed_marginals, SortedIID, true_sites,
                              validate_hmm, validate_symbols, viterbi_paths)

__all__ = [
    "HMMRNNConfig",
    "RNNConfig",
    "Architecture",
    "SortedIID",
    "architecture",
    "validate_symbols",
    "validate_hmm",
    "hmm_matrices",
    "simulate_sequences",
    "log_likelihood",
    "smoothed_marginals",
    "viterbi_paths",
    "posterior_paths",
    "EmissionStatistics",
    "emission_statistics",
    "hmm_emission_statistics",
    "EmulationProblem",
    "emulation_problem",
    "transition_statistics_penalty",
    "pooled_output_statistics",
    "generate",
    "emulation_checks",
    "EmulatorAnalysis",
    "analyse_emulator",
    "model",
    "simulate",
    "check",
    "exact_loglik",
    "true_sites",
    "hmm_rnn_ssm",
    "CategoricalMissing",
    "rnn_outputs_onehot",
    "CONFIGS",
    "RNN_CONFIGS",
]
