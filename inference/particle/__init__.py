"""Particle backends on state-space models (Feynman–Kac adapters of ``zoo.core.StateSpaceModel``).

Modules (import what you use; nothing heavy is imported here):

* :mod:`~inference.particle.resampling`: multinomial, stratified, systematic, residual; ``ess``.
* :mod:`~inference.particle.noise`: ``jax.random`` normal / uniform / split draws, bit for bit, with
  the Threefry rounds unrolled so that XLA:CPU fuses them (the filter's noise).
* :mod:`~inference.particle.filter`: bootstrap/guided filters as ``init``/``step``/``run``, with a
  pinned reference particle for conditional SMC; runner ``run_filter`` (method ``"pf"``).
* :mod:`~inference.particle.space`: the unconstrained parameter space of ``ssm.prior()``.
* :mod:`~inference.particle.pmmh`: particle marginal Metropolis–Hastings; ``run_pmmh`` (``"pmmh"``),
  correlated with ``correlation=ρ``.
* :mod:`~inference.particle.correlated`: the bootstrap filter as a function of Gaussian noise
  (correlated pseudo-marginal MH).
* :mod:`~inference.particle.csmc`: conditional SMC with ancestor / backward sampling.
* :mod:`~inference.particle.gibbs`: particle Gibbs; ``run_particle_gibbs`` (``"pgibbs"``).
* :mod:`~inference.particle.paris`, :mod:`~inference.particle.smc2`: PaRIS / PPG and SMC².
"""
