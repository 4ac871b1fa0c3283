"""Two processes compile the same programs into ONE persistent-cache folder at once.

The reproduction tried for the abort once seen inside JAX's ``compilation_cache.put_executable_and_time``
when two pytest workers shared a cache folder (``diagnostics/compile_cache.py`` records the outcome)::

    nice -n 10 python scripts/compile_cache_race.py --rounds 10 --programs 40

Each round makes a fresh folder and starts two worker processes (this file with ``--worker``) that
jit the same ``--programs`` programs (scans and a linear solve, differing by a constant and a shape)
with every program stored (minimum compile time and entry size 0); on odd rounds the second worker
starts half way through the list, so that it reads entries the other is writing. A round passes
when both exit 0 with the same checksum and no cache warning. Exit status 1 if any round fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import warnings


def worker(folder: str, num_programs: int, offset: int) -> None:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    caught: list[str] = []
    warnings.showwarning = lambda message, category, *args, **kwargs: caught.append(str(message)[:160])

    def program(i: int):
        def f(x):
            def body(c, _):
                c = jnp.tanh(c @ x + i) * 0.5 + jnp.sin(c) * (i + 1)
                return c, c.sum()

            c, s = jax.lax.scan(body, x, None, length=5 + i % 7)
            return jnp.linalg.solve(c + 10 * jnp.eye(c.shape[0]), s.sum() * jnp.ones(c.shape[0]))

        return jax.jit(f)

    total = 0.0
    for k in range(num_programs):
        i = (k + offset) % num_programs
        total += float(program(i)(jnp.eye(8 + i % 5) * 0.1).sum())
    print(f"checksum {total:.9f} warnings {len(caught)}", *caught[:3], sep="\n", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--programs", type=int, default=40)
    parser.add_argument("--worker", nargs=2, metavar=("FOLDER", "OFFSET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.programs, int(args.worker[1]))
        return 0
    failed = 0
    for r in range(1, args.rounds + 1):
        folder = tempfile.mkdtemp(prefix="compile_cache_race_")
        offsets = (0, args.programs // 2 if r % 2 else 0)
        procs = [subprocess.Popen([sys.executable, __file__, "--programs", str(args.programs), "--worker", folder,
                                   str(o)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for o in offsets]
        outs = [p.communicate()[0] for p in procs]
        codes = [p.returncode for p in procs]
        sums = {line for out in outs for line in out.splitlines() if line.startswith("checksum")}
        ok = codes == [0, 0] and len(sums) == 1 and all(" warnings 0" in s for s in sums)
        failed += not ok
        entries = len([f for f in os.listdir(folder) if f.endswith("-cache")])
        print(f"round {r}: offsets {offsets} exit codes {codes} entries {entries} {'ok' if ok else 'FAILED'}",
              flush=True)
        if not ok:
            print("\n".join(outs)[-2000:], flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{args.rounds - failed} of {args.rounds} rounds passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
