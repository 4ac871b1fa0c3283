#!/bin/bash
# Sweep throughput, Dask against one process (issue 21, "Speed"): the same SBC replicates of
#     zoo sbc ENTRY --config CONFIG --n N
# fitted sequentially in one process, then on a Dask LocalCluster of K workers (--workers K).
# Each run starts from an empty results folder and an empty compilation-cache folder
# (DYNAMICS_ZOO_CACHE_DIR), so both pay their compilations (the K workers share the cache folder,
# as on one machine). Wall and CPU (user + sys of the process and its children, the workers) come
# from /usr/bin/time; fits per minute = N / wall. Prints the load average before and after.
#     bash benchmarks/sweep_throughput.sh [ENTRY] [CONFIG] [N] [K]      # default: lgssm scalar 8 2
cd "$(dirname "$0")/.."
unset JAX_COMPILATION_CACHE_DIR
export PYTHONPATH=$PWD MPLBACKEND=Agg
entry=${1:-lgssm}; config=${2:-scalar}; n=${3:-8}; k=${4:-2}
root=/tmp/zoo-sweep-throughput
for mode in sequential dask; do
  rm -rf "$root/$mode"; mkdir -p "$root/$mode/cache"
  extra=(); [ "$mode" = dask ] && extra=(--workers "$k")
  before=$(cut -d' ' -f1 /proc/loadavg)
  DYNAMICS_ZOO_CACHE_DIR=$root/$mode/cache /usr/bin/time -f "%e %U %S" -o "$root/$mode/time" \
    python -m zoo.cli sbc "$entry" --config "$config" --n "$n" --no-progress --out "$root/$mode/results" \
    "${extra[@]}" > "$root/$mode/log" 2>&1
  rc=$?
  after=$(cut -d' ' -f1 /proc/loadavg)
  read wall user sys < "$root/$mode/time"
  python - "$mode" "$n" "$wall" "$user" "$sys" "$before" "$after" "$rc" "$root/$mode/results" <<'PY'
import glob, sys
mode, n, wall, user, sys_, before, after, rc, results = sys.argv[1:]
done = len(glob.glob(f"{results}/replicate_*.npz"))
print(f"{mode:10s} fits {done}/{n}  wall {float(wall):6.1f} s  cpu {float(user) + float(sys_):6.1f} s  "
      f"fits/min {60 * done / float(wall):5.1f}  load before/after {before}/{after}  exit {rc}")
PY
done
