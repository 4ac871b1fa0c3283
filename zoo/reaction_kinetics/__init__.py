r"""Fluctuations and correlations in reaction kinetics and population dynamics (Täuber 2018).

Five entries, one module each, built on one reaction-network specification
(:mod:`zoo.processes.reactions`; the networks are in :mod:`~zoo.reaction_kinetics.networks`):
exact SSA, tau-leaping, the chemical Langevin SDE (CLE), the linear-noise approximation (LNA) and
the rate equations all come from the same species/stoichiometry/propensity description.
Mass action uses the combinatorial convention ``a = k n (n-1) / Omega`` for ``A + A``.

===================================  ==========================  ==================================
module                               entry                       model
===================================  ==========================  ==================================
:mod:`.lotka_volterra`               stochastic_lotka_volterra   predator–prey CTMC (LNA, CLE)
:mod:`.birth_death`                  logistic_birth_death        logistic chain, exact FSP
:mod:`.annihilation`                 pair_annihilation_1d        A + A -> 0 on a ring
:mod:`.cyclic`                       may_leonard                 May–Leonard and RPS fixation
:mod:`.rate_equations`               lotka_volterra_ode          mean-field LV rate equations
===================================  ==========================  ==================================

============  ============================================  ======================  =============
entry         parameters (prior)                            small-config truth      backend
============  ============================================  ======================  =============
stoch. LV     mu ~ LogN(log .5, .5), sigma ~ LogN(0, .5),   (0.5, 1.0, 1.5), N=500  NUTS (LNA);
              lam ~ LogN(log 1.5, .5)                                               PMMH/PG (CLE)
logistic BD   sigma ~ LogN(0,.5), kappa ~ LogN(log .5,.5),  (1, 0.5, 0.005), Ω=1    NUTS (expm)
              lam ~ LogN(log .005, 1)
annihilation  alpha ~ U(0, 1.5), c ~ LogN(0, 1)             (0.5, 1)                NUTS
cyclic        beta_v ~ N(1, 1), log c_v ~ N(0, 5)           β_RPS = 1               NUTS
LV ODE        mu, sigma, lam, N, a0, b0 ~ LogN (config),    (0.5, 1.0, 1.5, 500)    NUTS
              s ~ HalfNormal(config)
============  ============================================  ======================  =============

Reference: U. C. Täuber, "Fluctuations and correlations in chemical reaction kinetics and
population dynamics", arXiv:1807.01248 (2018). Methods: D. T. Gillespie, J. Phys. Chem. 81, 2340
(1977); N. G. van Kampen, Stochastic Processes in Physics and Chemistry (LNA); P. Fearnhead,
V. Giagos, C. Sherlock, Biometrics 70, 457 (2014) (LNA inference); B. Munsky, M. Khammash,
J. Chem. Phys. 124, 044104 (2006) (finite-state projection); T. Reichenbach, M. Mobilia, E. Frey,
Phys. Rev. E 74, 051907 (2006) (RPS extinction times).
"""

from __future__ import annotations

from zoo.reaction_kinetics.annihilation import AnnihilationData, PAConfig, annihilation_densities, glauber_density
from zoo.reaction_kinetics.birth_death import LBDConfig, lbd_model, lbd_simulate, logistic_transition
from zoo.reaction_kinetics.cyclic import (VARIANTS, FixationData, MLConfig, exact_mean_fixation_time, fixation_times,
                                          lna_stability)
from zoo.reaction_kinetics.lotka_volterra import (SLVConfig, slv_check, slv_lna_lgssm, slv_model, slv_simulate,
                                                  slv_ssm)
from zoo.reaction_kinetics.networks import (logistic_network, lotka_volterra_network, may_leonard_network,
                                            rock_paper_scissors_network)
from zoo.reaction_kinetics.rate_equations import LVData, LVODEConfig

__all__ = [
    "lotka_volterra_network",
    "logistic_network",
    "may_leonard_network",
    "rock_paper_scissors_network",
    "SLVConfig",
    "slv_model",
    "slv_ssm",
    "slv_lna_lgssm",
    "slv_simulate",
    "slv_check",
    "LBDConfig",
    "logistic_transition",
    "lbd_model",
    "lbd_simulate",
    "PAConfig",
    "AnnihilationData",
    "annihilation_densities",
    "glauber_density",
    "MLConfig",
    "VARIANTS",
    "FixationData",
    "fixation_times",
    "exact_mean_fixation_time",
    "lna_stability",
    "LVODEConfig",
    "LVData",
]
