"""How long `zoo list` takes, and what it imports, as the zoo grows.

Three measurements, each in a fresh Python process (wall clock, best and median of ``--reps``):

* ``zoo list``: ``python -m zoo.cli list`` as a user runs it; also the number of modules it
  imports and whether any entry module, JAX or flax is among them (none should be);
* the catalogue with 36 entries: a temporary copy of ``zoo/`` topped up to 36 entry modules
  (copies of the real ones' sources under new entry names) scanned by ``zoo._registry.scan``,
  the same code ``zoo list`` runs, in a fresh process;
* for comparison, importing every entry (``zoo.entries()``), what ``zoo list`` did before the
  catalogue read the sources.

Run from the repository root: ``python benchmarks/registry.py [--reps 7]``. Figures go in
benchmarks/README.md; nothing here is asserted in a test (a test checks what ``zoo list``
imports, not how long it takes).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

PROBE = """
import sys, time
t0 = time.perf_counter()
{body}
elapsed = time.perf_counter() - t0
mods = set(sys.modules)
print("@@" + __import__("json").dumps({{"in_process_s": elapsed, "modules": len(mods),
    "jax": "jax" in mods, "numpyro": "numpyro" in mods, "flax": any(m.startswith("flax") for m in mods),
    "entry_modules": sorted(m for m in mods if m.startswith("zoo.") and m.split(".")[1] not in
                            ("_registry", "cli", "_tabular"))}}))
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(body: str, *, env=None) -> tuple[float, dict]:
    """Wall time of a fresh interpreter running ``body``, and what it reported (with its CPU
    time, user + system, in ``report["cpu_s"]``: the figure a loaded machine distorts least)."""
    cpu, start = _children_cpu(), time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], capture_output=True, text=True,
                         cwd=ROOT, env=env, check=True).stdout
    wall = time.perf_counter() - start
    report = json.loads(next(line[2:] for line in out.splitlines() if line.startswith("@@")))
    report["cpu_s"] = _children_cpu() - cpu
    return wall, report


def synthetic_package(directory: pathlib.Path, count: int) -> None:
    """``directory/zoo_synth/``: a copy of ``zoo/`` (imports renamed, so constants resolve inside
    it) plus copies of its entry modules under new entry names, up to ``count`` entries."""
    sys.path.insert(0, str(ROOT))
    from zoo._registry import candidate_modules

    package = directory / "zoo_synth"
    shutil.copytree(ROOT / "zoo", package, ignore=shutil.ignore_patterns("__pycache__", "data"))
    for path in package.rglob("*.py"):
        path.write_text(re.sub(r"\bzoo\.", "zoo_synth.", path.read_text()))
    sources = [path for _, path in candidate_modules(str(package), "zoo_synth")
               if re.search(r"^ENTRY = ZooEntry\(", pathlib.Path(path).read_text(), re.M)]
    for i in range(count - len(sources)):
        text = pathlib.Path(sources[i % len(sources)]).read_text()
        text = re.sub(r'(ENTRY = ZooEntry\(\s*name=)"([^"]+)"', rf'\1"\2_{i}"', text, count=1)
        (package / f"entry_{i}.py").write_text(text)


def summary(times: list[float]) -> str:
    return f"best {min(times):.2f} s, median {statistics.median(times):.2f} s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--entries", type=int, default=36)
    args = parser.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f} at the start")

    walls, cpus, report = [], [], {}
    for _ in range(args.reps):
        wall, report = run("import zoo.cli, contextlib, io\n"
                           "with contextlib.redirect_stdout(io.StringIO()):\n    zoo.cli.main(['list'])", env=env)
        walls.append(wall)
        cpus.append(report["cpu_s"])
    print(f"zoo list ({report['modules']} modules imported; jax: "
          f"{report['jax']}, numpyro: {report['numpyro']}, flax: {report['flax']}, entry modules: "
          f"{report['entry_modules'] or 'none'}): wall {summary(walls)}; CPU {summary(cpus)}")

    with tempfile.TemporaryDirectory() as tmp:
        synthetic_package(pathlib.Path(tmp), args.entries)
        env_synth = dict(env, PYTHONPATH=f"{tmp}{os.pathsep}{ROOT}")
        walls, inner, cpus = [], [], []
        for _ in range(args.reps):
            wall, rep = run(f"import zoo._registry as r\nfound = r.scan({str(pathlib.Path(tmp) / 'zoo_synth')!r}, "
                            f"'zoo_synth')\nassert len(found) == {args.entries}, len(found)\n"
                            "assert all(i.static for i in found.values())", env=env_synth)
            walls.append(wall)
            inner.append(rep["in_process_s"])
            cpus.append(rep["cpu_s"])
        print(f"catalogue of {args.entries} entries (fresh process; {rep['modules']} modules imported, jax: "
              f"{rep['jax']}): wall {summary(walls)}; CPU {summary(cpus)}; the scan itself {summary(inner)} wall")
        shutil.rmtree(tmp, ignore_errors=True)

    walls, cpus = [], []
    for _ in range(max(1, args.reps // 3)):
        wall, report = run("import zoo\nzoo.entries()", env=env)
        walls.append(wall)
        cpus.append(report["cpu_s"])
    print(f"importing every entry (zoo.entries(), {report['modules']} modules): wall {summary(walls)}; "
          f"CPU {summary(cpus)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
