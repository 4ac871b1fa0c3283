r"""The reaction networks of Täuber (2018) shared by the ``reaction_kinetics`` entries.

Each network is one :class:`~zoo.processes.reactions.ReactionNetwork` (species, stoichiometry,
mass-action propensities with the combinatorial convention ``a = k n (n-1) / Omega`` for
``A + A``), from which the exact SSA, tau-leaping, the chemical Langevin SDE, the linear-noise
approximation and the rate equations all derive. :func:`sample_lognormal` is the log-normal
prior site the entries share.

Reference: U. C. Täuber, "Fluctuations and correlations in chemical reaction kinetics and
population dynamics", arXiv:1807.01248 (2018). Methods: D. T. Gillespie, J. Phys. Chem. 81, 2340
(1977); N. G. van Kampen, Stochastic Processes in Physics and Chemistry (LNA); P. Fearnhead,
V. Giagos, C. Sherlock, Biometrics 70, 457 (2014) (LNA inference); B. Munsky, M. Khammash,
J. Chem. Phys. 124, 044104 (2006) (finite-state projection); T. Reichenbach, M. Mobilia, E. Frey,
Phys. Rev. E 74, 051907 (2006) (RPS extinction times).
"""

from __future__ import annotations

from typing import Any

import numpyro
import numpyro.distributions as dist

from zoo.processes.reactions import Conservation, ReactionNetwork


__all__ = ["REFERENCE", "sample_lognormal", "lotka_volterra_network", "logistic_network",
           "may_leonard_network", "rock_paper_scissors_network"]

REFERENCE = "arXiv:1807.01248"


def sample_lognormal(name: str, prior: tuple[float, float]):
    """NumPyro site ``name ~ LogNormal(loc, scale)`` with ``prior = (loc, scale)``."""
    loc, scale = prior
    return numpyro.sample(name, dist.LogNormal(loc, scale))


def lotka_volterra_network(capacity: Any) -> ReactionNetwork:
    """Predator A, prey B on ``capacity`` sites with empty sites ``E = N - A - B``.

    Rates ``(mu, sigma, lam)``: ``A -> E``, ``B + E -> 2 B``, ``A + B -> 2 A`` (volume N).
    """
    empty = Conservation("E", 1.0, (("A", -1.0), ("B", -1.0)))
    return ReactionNetwork.from_strings(["A -> E", "B + E -> 2 B", "A + B -> 2 A"], species=("A", "B", "E"),
                                        volume=capacity, conserved=(empty,),
                                        reaction_names=("predator death", "prey birth", "predation"))


def logistic_network(volume: Any = 1.0) -> ReactionNetwork:
    """``A -> 2A`` (sigma), ``A -> 0`` (kappa), ``2A -> A`` (lambda; ``lambda n(n-1)/Omega``)."""
    return ReactionNetwork.from_strings(["A -> 2 A", "A -> 0", "2 A -> A"], volume=volume,
                                        reaction_names=("birth", "death", "competition"))


def may_leonard_network(size: Any) -> ReactionNetwork:
    """May–Leonard on ``size`` sites: predation ``A + B -> A`` cyclically (sigma), reproduction
    into empty sites ``A + E -> 2A`` (mu); rates ordered (sigma_AB, sigma_BC, sigma_CA, mu_A, mu_B, mu_C)."""
    empty = Conservation("E", 1.0, (("A", -1.0), ("B", -1.0), ("C", -1.0)))
    return ReactionNetwork.from_strings(
        ["A + B -> A", "B + C -> B", "C + A -> C", "A + E -> 2 A", "B + E -> 2 B", "C + E -> 2 C"],
        species=("A", "B", "C", "E"), volume=size, conserved=(empty,))


def rock_paper_scissors_network(size: Any) -> ReactionNetwork:
    """Rock–paper–scissors on ``size`` fully occupied sites: ``A + B -> 2A`` cyclically (C = N - A - B)."""
    closure = Conservation("C", 1.0, (("A", -1.0), ("B", -1.0)))
    return ReactionNetwork.from_strings(["A + B -> 2 A", "B + C -> 2 B", "C + A -> 2 C"], species=("A", "B", "C"),
                                        volume=size, conserved=(closure,))
