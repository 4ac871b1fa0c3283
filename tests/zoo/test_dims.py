"""Every axis of every site has a name (issue 20, item 10): no ArviZ default ``<site>_dim_<k>``.

The walk traces each entry's program on its prior (``data=None``, every config; shapes only) and names
each sample and deterministic site's axes the way ``inference.runner.pack`` names them in every
group (``target_dims``: the declared names, their leading ones for a per-step log-likelihood with
fewer axes). Shapes only (``jax.eval_shape``), so the walk compiles nothing.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

import zoo
from inference._sites import merge_init_rest
from inference.runner import target_dims


def site_shapes(entry, config_name: str) -> dict[str, tuple[int, ...]] | None:
    from numpyro.handlers import seed, trace

    model = functools.partial(entry.model, config=entry.config(config_name))

    def values(key):
        tr = trace(seed(model, key)).get_trace(None)
        return {k: s["value"] for k, s in tr.items() if s["type"] in ("sample", "deterministic")}

    try:
        shapes = jax.eval_shape(values, jax.random.PRNGKey(0))
    except ValueError as error:
        if str(error).startswith("config"):
            return None  # a config whose program is another (e.g. fou_mafbm's neural SDE: path_model)
        raise
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
            jax.errors.TracerArrayConversionError, jax.errors.TracerIntegerConversionError):
        if config_name != "small":
            return None  # run eagerly only at the small size
        shapes = values(jax.random.PRNGKey(0))  # a program with Python control flow on values
    arrays = {k: np.zeros(np.shape(v)) for k, v in shapes.items()}
    return {k: np.shape(v) for k, v in merge_init_rest(arrays, lead=0).items()}


@pytest.mark.parametrize("name", zoo.names())
def test_every_axis_of_every_site_is_named(name):
    entry = zoo.get(name)
    for config_name in entry.configs:
        shapes = site_shapes(entry, config_name)
        if shapes is not None:
            check_named(entry, config_name, shapes)


def check_named(entry, config_name, shapes):
    name = f"{entry.name} ({config_name})"
    arrays = {k: np.zeros(s) for k, s in shapes.items() if len(s)}
    named = target_dims(arrays, entry.dims, lead=0)
    anonymous = {k: (s, named.get(k)) for k, s in shapes.items()
                 if len(s) and (k not in named or any("_dim_" in d for d in named[k]))}
    assert not anonymous, f"{name}: declare dims for {anonymous} (site: (shape, names given))"
    sizes: dict[str, set] = {}  # one size per dim name, as xarray requires within a group
    for k, names in named.items():
        for dim, size in zip(names, shapes[k]):
            sizes.setdefault(dim, set()).add((size, k))
    clashes = {dim: found for dim, found in sizes.items() if len({size for size, _ in found}) > 1}
    assert not clashes, f"{name}: one dim name, several sizes: {clashes}"
    # the per-step log-likelihood y (one axis fewer than the predictive y) takes the leading names
    if "y" in named and len(shapes["y"]) > 1:
        short = target_dims({"y": np.zeros(shapes["y"][:-1])}, entry.dims, lead=0)["y"]
        assert short == named["y"][:-1]
