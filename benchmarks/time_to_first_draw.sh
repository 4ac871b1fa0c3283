#!/bin/bash
# Time to first draw, cold and warm compilation cache (issue 22, item 3), for the entries named:
#     bash benchmarks/time_to_first_draw.sh lgssm hmm fou_mafbm
# Each entry: `zoo fit ENTRY --method nuts` with 1 warm-up step and 1 draw per chain (so the time is
# start-up, compilation and the work around sampling, not sampling), twice in fresh processes on
# an emptied cache folder (DYNAMICS_ZOO_CACHE_DIR=/tmp/zoo-ttfd-cache/ENTRY): cold, then warm.
# Prints wall and process CPU seconds, the load average and the number of cached programs.
# The fit's recovery verdict fails (one draw): it is not what is measured.
cd "$(dirname "$0")/.."
unset JAX_COMPILATION_CACHE_DIR
export PYTHONPATH=$PWD MPLBACKEND=Agg
root=/tmp/zoo-ttfd-cache
for entry in "$@"; do
  cache=$root/$entry; rm -rf "$cache"; mkdir -p "$cache"
  for run in cold warm; do
    DYNAMICS_ZOO_CACHE_DIR=$cache python - "$entry" "$root" <<'PY' > "$root/$entry-$run.log" 2>&1
import os, resource, sys, time
t0 = time.perf_counter()
from zoo import cli
try:
    cli.main(["fit", sys.argv[1], "--method", "nuts", "--option", "num_warmup=1", "--option", "num_samples=1",
              "--no-progress", "--out", f"{sys.argv[2]}/{sys.argv[1]}.nc"])
except SystemExit as e:
    print("exit", e.code)
r = resource.getrusage(resource.RUSAGE_SELF)
print(f"RESULT wall {time.perf_counter() - t0:.1f} s cpu {r.ru_utime + r.ru_stime:.1f} s load {os.getloadavg()[0]:.1f}")
PY
    echo "$entry $run $(grep RESULT "$root/$entry-$run.log") programs cached $(ls "$cache/jax" 2>/dev/null | wc -l)"
  done
done
