"""Trained networks back out of InferenceData: the inverse of the point-estimate packing.

The point-estimate methods (``"tf"``, ``"map"``) store a ``flax_module`` site's parameters as one
posterior variable per leaf, ``<site>.<module>.<...>.<leaf>`` (``inference.runner.param_variables``).
:func:`point_values` reads the point (chain 0, draw 0; or the end of a training stage from the
``stage_params`` group of a staged ``"map"`` run) and :func:`module_params` rebuilds the nested
``{"params": ...}`` dict that ``module.apply`` takes.

Example::

    values = point_values(idata)                       # {"koopa.inv_encoder.Dense_0.kernel": ..., "sigma": ...}
    net.apply(module_params(values, "koopa"), x, mask)
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

__all__ = ["point_values", "module_params", "program_params"]


def point_values(idata, *, stage: int | None = None) -> dict[str, np.ndarray]:
    """``{variable: array}`` of a point-estimate run: the posterior's single draw, or with ``stage``
    the parameters at the end of that training stage (``stage_params`` group; -1 is the last)."""
    if stage is None:
        return {name: np.asarray(var.values[0, 0]) for name, var in idata.posterior.data_vars.items()}
    if "stage_params" not in idata.groups():
        raise KeyError("idata: no 'stage_params' group; it is written by a 'map' run with several stages")
    group = idata.stage_params
    count = group.sizes["stage"]
    if not -count <= stage < count:
        raise IndexError(f"stage: the run has {count} stages, got {stage}")
    return {name: np.asarray(var.values[stage]) for name, var in group.data_vars.items()}


def module_params(values: Mapping[str, np.ndarray], site: str) -> dict:
    """``{"params": nested}`` of the variables ``<site>.<k1>.<k2>...`` in ``values``."""
    prefix = site + "."
    tree: dict = {}
    for name, value in values.items():
        if not name.startswith(prefix):
            continue
        node = tree
        *parents, leaf = name[len(prefix):].split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = jnp.asarray(value)
    if not tree:
        raise KeyError(f"values: no variables of the network site {site!r} (expected names {prefix}<...>); "
                       f"got {sorted(values)[:5]}...")
    return {"params": tree}


def program_params(values: Mapping[str, np.ndarray]) -> dict:
    """All the parameters of a program from ``{variable: array}`` (the ``parameters`` group of a
    ``"vae"`` run, or :func:`point_values`): ``{"<site>$params": module_params(values, site)["params"]}`` for
    every network site (names with a dot; the nested dict without the ``"params"`` level, as
    ``flax_module`` stores it) and the plain ``numpyro.param`` sites as they are; the
    inverse of ``inference.runner.param_variables``, ready for ``numpyro.handlers.substitute``."""
    out: dict = {}
    for site in sorted({name.split(".")[0] for name in values if "." in name}):
        out[f"{site}$params"] = module_params(values, site)["params"]
    out.update({name: jnp.asarray(value) for name, value in values.items() if "." not in name})
    return out
