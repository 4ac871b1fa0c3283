"""JAX's persistent compilation cache is on by default (diagnostics.compile_cache, issue 22 item 3).

Each check runs in a fresh interpreter (the setting is applied at import), with the repository first
on sys.path, ``XDG_CACHE_HOME`` pointed at a temporary folder and neither
``JAX_COMPILATION_CACHE_DIR`` nor ``DYNAMICS_ZOO_*`` cache variables inherited unless set here.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import run_fresh_python

_INHERITED = ("JAX_COMPILATION_CACHE_DIR", "DYNAMICS_ZOO_COMPILE_CACHE", "DYNAMICS_ZOO_CACHE_DIR",
              "XDG_CACHE_HOME", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "EQX_ON_ERROR")


def _run(code: str, tmp_path, **env_vars) -> dict:
    return run_fresh_python(code, drop=_INHERITED, **{"XDG_CACHE_HOME": str(tmp_path / "xdg"), **env_vars})


_PROBE = """
import json, jax
print(json.dumps({"folder": jax.config.jax_compilation_cache_dir,
                  "min_time": jax.config.jax_persistent_cache_min_compile_time_secs}))
"""


@pytest.mark.parametrize("first", ["inference", "diagnostics", "zoo"])
def test_on_by_default_under_the_user_cache_folder(first, tmp_path):
    result = _run(f"import {first}\n" + _PROBE, tmp_path)
    assert result == {"folder": str(tmp_path / "xdg" / "dynamics-zoo" / "jax"), "min_time": 0.0}


def test_applied_when_jax_was_imported_first(tmp_path):
    result = _run("import jax\nimport inference\n" + _PROBE, tmp_path)
    assert result == {"folder": str(tmp_path / "xdg" / "dynamics-zoo" / "jax"), "min_time": 0.0}


def test_a_minimum_compile_time_the_user_chose_wins(tmp_path):
    assert _run("import zoo\n" + _PROBE, tmp_path, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="2")["min_time"] == 2.0
    code = "import jax\njax.config.update('jax_persistent_cache_min_compile_time_secs', 3.0)\nimport zoo\n" + _PROBE
    assert _run(code, tmp_path)["min_time"] == 3.0


def test_switched_off_by_the_environment_variable(tmp_path):
    result = _run("import zoo\n" + _PROBE, tmp_path, DYNAMICS_ZOO_COMPILE_CACHE="0")
    assert result == {"folder": None, "min_time": 1.0}


def test_a_folder_the_user_chose_wins(tmp_path):
    mine = str(tmp_path / "mine")
    assert _run("import inference\n" + _PROBE, tmp_path, JAX_COMPILATION_CACHE_DIR=mine)["folder"] == mine
    code = f"import jax\njax.config.update('jax_compilation_cache_dir', {mine!r})\nimport zoo\n" + _PROBE
    assert _run(code, tmp_path)["folder"] == mine
    own = str(tmp_path / "own")
    assert _run("import inference\n" + _PROBE, tmp_path, DYNAMICS_ZOO_CACHE_DIR=own)["folder"] == \
        os.path.join(own, "jax")


def test_a_compiled_program_is_written_to_the_folder(tmp_path):
    """With the minimum compile time at 0 (the default set here) even a tiny program is stored."""
    code = """
import json, os
import inference
import jax, jax.numpy as jnp
from diagnostics import compile_cache
jax.block_until_ready(jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((3, 3))))
folder = compile_cache.folder()
print(json.dumps({"folder": folder, "files": len(os.listdir(folder)) if os.path.isdir(folder) else 0}))
"""
    result = _run(code, tmp_path)
    assert result["folder"] == str(tmp_path / "xdg" / "dynamics-zoo" / "jax")
    assert result["files"] >= 1, result


_ODE_PROGRAM = """
import json, os
{first}
import jax, jax.numpy as jnp, diffrax
from diagnostics import compile_cache
from zoo.processes.reactions import solve_ode

def solve(rate):
    term = diffrax.ODETerm(lambda t, y, args: -rate * y)
    return solve_ode(term, 0.0, 1.0, jnp.ones(2), None, 1e-6, 1e-6, 64, diffrax.SaveAt(ts=jnp.linspace(0.0, 1.0, 5)))

text = jax.jit(solve).lower(0.5).as_text()
jax.block_until_ready(jax.jit(solve)(0.5))
folder = compile_cache.folder()
print(json.dumps({"mode": os.environ.get("EQX_ON_ERROR"), "callback": "callback" in text,
                  "stored": any(name.startswith("jit_solve") for name in os.listdir(folder))}))
"""


def test_a_program_with_an_ode_solve_is_stored(tmp_path):
    """Equinox's ``raise`` mode puts a host callback into every diffrax program and JAX then never
    stores it; the packages default Equinox to ``nan`` (the solves check their own result) unless
    the user chose a mode."""
    assert _run(_ODE_PROGRAM.replace("{first}", "import zoo"), tmp_path) == {"mode": "nan", "callback": False,
                                                                       "stored": True}
    assert _run(_ODE_PROGRAM.replace("{first}", "import zoo"), tmp_path / "b", EQX_ON_ERROR="raise") == \
        {"mode": "raise", "callback": True, "stored": False}


def test_compiled_programs_are_released_near_the_mapping_limit(monkeypatch):
    """Above half of vm.max_map_count JAX's caches are dropped (a jitted function compiles again
    after), below it nothing happens; the sweeps call the guard after every task."""
    import jax

    from diagnostics import compile_cache, sweep

    held, limit = compile_cache.memory_mappings()
    assert limit > 0 and (held > 0 or not os.path.exists("/proc/self/maps"))
    traces = []

    @jax.jit
    def double(x):
        traces.append(1)
        return 2 * x

    double(1.0)
    monkeypatch.setattr(compile_cache, "memory_mappings", lambda: (100, 65530))
    assert not compile_cache.release_compiled_programs()
    double(1.0)
    assert len(traces) == 1
    monkeypatch.setattr(compile_cache, "memory_mappings", lambda: (40000, 65530))
    assert compile_cache.release_compiled_programs()
    double(1.0)
    assert len(traces) == 2
    released = []
    monkeypatch.setattr(sweep, "release_compiled_programs", lambda: released.append(1))
    assert list(sweep.map_tasks(lambda x: x + 1, [1, 2, 3])) == [(0, 2), (1, 3), (2, 4)]
    assert len(released) == 3
