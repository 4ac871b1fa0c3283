r"""Wetterich's "probabilistic world": classical statistics over all times, evolved by transfer
matrices and classical wave functions.

C. Wetterich (2020), "The probabilistic world", arXiv:2011.02867. The formalism (wave functions
from the past and the future, local probabilities, the classical density matrix, the Markov form
and the real wave function of unique-jump automata) lives in :mod:`zoo.processes.transfer_matrix`.

============================  ==============================  =============================================
module                        entry                           model
============================  ==============================  =============================================
:mod:`.ising_chain`           ``ising_chain_wavefunction``    Ising chain of spins on time slices
:mod:`.cellular_automaton`    ``cellular_automaton_hmm``      bits moving on a ring, read through flips
============================  ==============================  =============================================
"""

from __future__ import annotations

from zoo.probabilistic_world.cellular_automaton import AutomatonConfig, configuration_bits, shift_operator
from zoo.probabilistic_world.ising_chain import (IsingChainConfig, SpinReadout, exact_loglik, ising_ssm,
                                                 transfer_chain)

__all__ = ["AutomatonConfig", "configuration_bits", "shift_operator", "IsingChainConfig", "SpinReadout", "exact_loglik", "ising_ssm", "transfer_chain"]
