"""Resumable sweeps: many independent tasks, each writing its result atomically into one folder.

A sweep (the replicates of simulation-based calibration, :mod:`diagnostics.sbc`; the grid points of
``zoo sweep``) is a list of tasks numbered ``0..n-1``. Its folder holds ``manifest.json`` (the
settings; a rerun with other settings refuses the folder) and one file per finished task,
``<prefix>_<i:05d>.<ext>``, written atomically (:func:`diagnostics.convert.atomic_write`), so a
file is either whole or absent. A rerun finds the finished tasks (:func:`finished`) and runs only
the others: an interrupted sweep loses at most the tasks that were running.

Tasks run here, one after another, or on a Dask cluster (:func:`map_tasks` with a
``distributed.Client``: a ``LocalCluster`` on this machine or a running scheduler elsewhere), one
Dask task per sweep task. Each task writes its own file on the worker that ran it (the folder must
be one the workers can write: on several machines, a shared file system), so a lost worker loses
only its running task; Dask reschedules it on another worker. Dask, not a scheduler of our own:
it brings retries, work stealing, the dashboard and the cluster launchers (SSH, SLURM, Kubernetes).

Each Dask worker is a separate Python process: it compiles a program once and keeps it for the
tasks after (JAX's in-memory cache), and the persistent compilation cache
(:mod:`diagnostics.compile_cache`, shared through the folder on one machine) spares the other
workers the compilation.

This module imports neither ``zoo`` nor ``inference``, nor Dask at import.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .compile_cache import release_compiled_programs
from .convert import atomic_write_text

__all__ = ["MANIFEST", "task_path", "manifest_values", "open_folder", "finished", "element_columns",
           "map_tasks", "make_client"]

#: the settings file of a sweep folder
MANIFEST = "manifest.json"


def task_path(out_dir: str, prefix: str, index: int, ext: str) -> str:
    """The file of task ``index``: ``out_dir/<prefix>_<index:05d>.<ext>``."""
    return os.path.join(out_dir, f"{prefix}_{index:05d}.{ext}")


def manifest_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as a manifest keeps them: JSON scalars (``int``, ``float``, ``str``, ``bool``,
    None) as they are, anything else as its ``str``."""
    return {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
            for k, v in dict(settings).items()}


def open_folder(out_dir: str | os.PathLike, settings: Mapping[str, Any], *, kind: str = "a sweep") -> str:
    """Create ``out_dir`` (or reuse it) for a sweep with ``settings`` (JSON values).

    A folder whose manifest records other settings is refused with a ``ValueError`` naming
    ``out_dir`` and the settings that differ; a new folder gets the manifest (atomically).
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, MANIFEST)
    settings = dict(settings)
    if os.path.exists(path):
        with open(path) as stream:
            stored = json.load(stream)
        differing = {k: (stored.get(k), v) for k, v in settings.items() if stored.get(k) != v}
        if differing:
            raise ValueError(f"out_dir: {out_dir!r} holds {kind} with other settings "
                             f"{ {k: old for k, (old, _) in differing.items()} } than this one "
                             f"{ {k: new for k, (_, new) in differing.items()} }; use another folder")
        return out_dir
    atomic_write_text(path, json.dumps(settings, indent=1, sort_keys=True))
    return out_dir


def finished(out_dir: str, prefix: str, ext: str, total: int | None = None) -> list[int]:
    """Indices of the tasks whose file exists in ``out_dir`` (below ``total`` when given), sorted."""
    found = []
    head, tail = f"{prefix}_", f".{ext}"
    for name in os.listdir(out_dir):
        if name.startswith(head) and name.endswith(tail) and name[len(head):-len(tail)].isdigit():
            index = int(name[len(head):-len(tail)])
            if total is None or index < total:
                found.append(index)
    return sorted(found)


def element_columns(done: Mapping[int, Mapping[str, Sequence[float]]]
                    ) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Per-replicate records as columns: ``done[i][label]`` a tuple of numbers (a rank and a truth,
    an estimate and a truth) -> ``(replicates, [{label: (n,) first numbers}, {label: (n,) second
    numbers}, ...])``, replicates sorted; a replicate whose labels differ from the first's is a
    ``ValueError`` naming it."""
    replicates = np.array(sorted(done), dtype=int)
    labels = list(done[int(replicates[0])])
    for i in replicates:
        if list(done[int(i)]) != labels:
            raise ValueError(f"replicate {int(i)}: parameter elements {list(done[int(i)])} differ from "
                             f"{labels} of the other replicates")
    width = len(done[int(replicates[0])][labels[0]]) if labels else 0
    return replicates, [{k: np.array([done[int(i)][k][j] for i in replicates]) for k in labels} for j in range(width)]


def map_tasks(function: Callable[[Any], Any], items: Sequence[Any], *, client: Any = None) -> Iterator[tuple[int, Any]]:
    """``(position, function(item))`` for every item, as each finishes.

    Without a client: here, in order. With a ``distributed.Client``: one Dask task per item
    (``pure=False``: every item is run even when two are equal), yielded as they complete; a task's
    error is raised here when its turn comes, after which the remaining tasks are cancelled (also
    when the caller stops early or is interrupted). A result taken is released on the cluster.
    ``function`` and the items must pickle (cloudpickle: closures do).
    """
    function = _releasing(function)
    if client is None:
        for position, item in enumerate(items):
            yield position, function(item)
        return
    import time

    pending = {client.submit(function, item, pure=False): k for k, item in enumerate(items)}
    try:
        while pending:
            # a plain polling loop (not distributed.as_completed): Ctrl-C reaches it at once
            ready = [future for future in pending if future.done()]
            if not ready:
                time.sleep(0.2)
                continue
            for future in ready:
                position = pending.pop(future)
                result = future.result()
                future.release()  # the scheduler forgets it: a worker lost later does not redo it
                yield position, result
    finally:
        client.cancel(list(pending))


def _releasing(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``function``, then :func:`diagnostics.compile_cache.release_compiled_programs` (here or on the
    Dask worker that ran it): a process running many fits stays below the memory-mapping limit."""
    def task(item):
        try:
            return function(item)
        finally:
            release_compiled_programs()

    return task


def make_client(*, workers: int | None = None, scheduler: str | None = None) -> Any:
    """A ``distributed.Client``: on the scheduler at ``scheduler`` (an address such as
    ``tcp://host:8786``), or on a new ``LocalCluster`` of ``workers`` processes with one thread
    each (JAX uses the cores of its process itself). Close it (``client.close()``, and for a local
    cluster ``client.cluster.close()``) when done; it is a context manager."""
    if (workers is None) == (scheduler is None):
        raise ValueError("workers: give either a number of local workers or a scheduler address, not both")
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:  # an optional dependency
        raise ImportError("workers: Dask sweeps need the 'distributed' package "
                          "(pip install 'dask[distributed]', or the project's 'cluster' extra)") from error
    if scheduler is not None:
        return Client(scheduler)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: expected a positive integer, got {workers!r}")
    # no dashboard; the scheduler's HTTP server (health, metrics) on a free port, not Dask's default
    # 8787, which a second sweep (or a notebook's cluster) would find taken, with a UserWarning
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           scheduler_kwargs={"dashboard_address": ":0"})
    return Client(cluster)
