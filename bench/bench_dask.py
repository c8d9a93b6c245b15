"""Scheduler overhead per micrograph and client memory of ``pixer.scale.map_micrographs``.

Maps a trivial per-micrograph function (a seeded 64x64 image, smoothed in
Fourier space, reduced to one number: ~0.1 ms) over N names, first serially
in this process (the compute time), then on a Dask cluster whose scheduler and
workers are separate processes, so this process holds only the client. Prints

* overhead per micrograph = (Dask wall time - serial compute time) / N
  (goal <= 10 ms; pixer's real per-micrograph work is ~1 s),
* the client's peak memory during the map at each N: Python allocations
  (tracemalloc peak, in a separate run from the timing), the part of it that
  is the returned summary rows (linear in N, ~0.3 kB per micrograph; all the
  rest is bounded: at most ``max_in_flight`` tasks are submitted at a time
  and Dask's client keeps a log of its last 1000 messages), and the growth of
  the peak RSS (VmHWM, reset before each run).

Example::

    python bench/bench_dask.py --n 1000 10000 30000 --workers 2 --batch 8
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def tiny_work(name: str) -> dict:
    """The stand-in for picking one micrograph: ~0.1 ms of numpy, a small summary row."""
    seed = int(name.rsplit("_", 1)[1].split(".")[0])
    img = np.random.default_rng(seed).standard_normal((64, 64), dtype=np.float32)
    f = np.fft.rfft2(img)
    f[8:-8, 8:] = 0
    return {"micrograph": name, "value": float(np.fft.irfft2(f, s=img.shape).std())}


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def start_cluster(workers: int, tmp: Path) -> tuple[list[subprocess.Popen], str]:
    """A scheduler and ``workers`` single-thread worker processes, outside this process."""
    sched_file = tmp / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file",
                               str(sched_file), "--port", "0", "--no-dashboard"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    t0 = time.monotonic()
    while not sched_file.exists():
        if time.monotonic() - t0 > 60:
            raise RuntimeError("scheduler did not start")
        time.sleep(0.1)
    procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                   str(sched_file), "--nworkers", str(workers), "--nthreads", "1",
                                   "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))  # fmt: skip
    return procs, str(sched_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000, 30000], help="micrograph counts")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (1 thread each)")
    parser.add_argument("--batch", type=int, default=8, help="micrographs per task (--batch-micrographs)")
    args = parser.parse_args()

    from distributed import Client

    from pixer.scale import map_micrographs

    with tempfile.TemporaryDirectory() as tmp:
        procs, sched_file = start_cluster(args.workers, Path(tmp))
        try:
            with Client(scheduler_file=sched_file) as client:
                client.wait_for_workers(args.workers, timeout=120)
                client.run(lambda: None)
                map_micrographs(tiny_work, [f"warm_{i}.mrc" for i in range(64)], batch=args.batch, client=client,
                                progress=False)  # fmt: skip
                print(f"workers: {args.workers} processes x 1 thread; batch {args.batch} micrographs/task")
                print(f"{'N':>7} {'serial s':>9} {'dask s':>8} {'overhead ms/mic':>16} {'mic/s':>8} "
                      f"{'client py peak MB':>18} {'of which rows MB':>17} {'client RSS peak +MB':>20}")
                for n in args.n:
                    names = [f"mic_{i:06d}.mrc" for i in range(n)]
                    t0 = time.perf_counter()
                    for name in names:
                        tiny_work(name)
                    serial = time.perf_counter() - t0

                    t0 = time.perf_counter()
                    rows = map_micrographs(tiny_work, names, batch=args.batch, client=client, progress=False)
                    wall = time.perf_counter() - t0
                    assert len(rows) == n and rows[-1]["micrograph"] == names[-1]
                    del rows

                    rss_ok = _reset_peak_rss()
                    rss0 = _rss_kb("VmRSS")
                    tracemalloc.start()
                    rows = map_micrographs(tiny_work, names, batch=args.batch, client=client, progress=False)
                    with_rows, py_peak = tracemalloc.get_traced_memory()
                    rss_peak = (_rss_kb("VmHWM") - rss0) / 1024 if rss_ok else float("nan")
                    del rows
                    rows_mb = (with_rows - tracemalloc.get_traced_memory()[0]) / 2**20
                    tracemalloc.stop()
                    print(f"{n:>7} {serial:>9.2f} {wall:>8.2f} {1e3 * (wall - serial) / n:>16.3f} {n / wall:>8.0f} "
                          f"{py_peak / 2**20:>18.1f} {rows_mb:>17.1f} {rss_peak:>20.1f}")
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    main()
