"""Dask clusters for ``pixer``: in-process, a local process pool, or SLURM jobs.

:func:`open_client` is the one entry point the commands use::

    with open_client("local", workers=4) as client:      # None for kind="none"
        rows = map_micrographs(task, paths, client=client)

Kinds
-----
``none``
    No Dask at all: the caller runs a plain loop in its own process.
``local``
    A :class:`distributed.LocalCluster` of worker *processes* sized to the
    machine: ``workers`` (default: cores // threads_per_worker) processes with
    ``threads_per_worker`` (default 1) Dask threads each; every worker sets
    ``torch.set_num_threads(cores // (workers * threads_per_worker))`` so the
    machine is used once, not oversubscribed.
``slurm``
    A :class:`dask_jobqueue.SLURMCluster`, one worker process per job booking
    ``cores`` CPUs, ``memory`` and ``gpus``, scaled adaptively between 1 and
    ``max_jobs`` jobs. A memory request above every node's ``RealMemory``
    (which sbatch refuses while the cluster only logs it) is caught up front
    with a :class:`~pixer.errors.PixerError`, and a cluster whose first worker
    does not start within ``startup_timeout`` seconds raises one too.
``scheduler_address``
    Attaches to a running scheduler (any kind) instead of making a cluster.

The cluster is always closed (and SLURM jobs cancelled) when the ``with``
block ends, also on errors and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence

from pixer.errors import PixerError

KINDS = ("local", "slurm", "none")


def machine_cores() -> int:
    """CPUs this process may use (affinity mask, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def local_layout(workers: int | None = None, threads_per_worker: int = 1, cores: int | None = None) -> dict:
    """Worker processes, Dask threads and torch threads for a LocalCluster.

    Returns
    -------
    dict
        ``n_workers``, ``threads_per_worker``, ``torch_threads``.
    """
    cores = cores or machine_cores()
    tpw = max(1, int(threads_per_worker))
    n = int(workers) if workers else max(1, cores // tpw)
    return {"n_workers": n, "threads_per_worker": tpw, "torch_threads": max(1, cores // (n * tpw))}


def slurm_node_memory_mb() -> int | None:
    """Largest ``RealMemory`` (MB) of the SLURM nodes (``sinfo -h -o %m``), None if unknown."""
    if shutil.which("sinfo") is None:
        return None
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%m"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    values = [int(v.rstrip("+")) for v in out.split() if v.rstrip("+").isdigit()]
    return max(values) if values else None


def check_slurm_memory(memory: str) -> int:
    """Bytes of a ``--memory`` request; a PixerError when no node has that much.

    sbatch rejects such a job ("Requested node configuration is not
    available") but dask-jobqueue only logs it and waits forever.
    """
    from dask.utils import format_bytes, parse_bytes

    try:
        request = parse_bytes(memory)
    except (ValueError, TypeError):
        raise PixerError(f"--memory {memory!r}: not a memory size (e.g. 4GB, 500MiB)") from None
    node_mb = slurm_node_memory_mb()
    if node_mb is not None and request > node_mb * 2**20:
        raise PixerError(f"--memory {memory}: more than any SLURM node has ({format_bytes(node_mb * 2**20)} "
                         f"RealMemory, sinfo -o %m); sbatch would reject every job")
    return request


def _single_node_here() -> bool:
    """Whether the SLURM cluster is this machine alone (then the loopback interface works)."""
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    nodes = set(out.split())
    return bool(nodes) and nodes <= {socket.gethostname().split(".")[0], socket.gethostname(), "localhost"}


def make_cluster(
    kind: str,
    *,
    workers: int | None = None,
    threads_per_worker: int = 1,
    queue: str | None = None,
    cores: int = 1,
    memory: str = "4GB",
    gpus: int = 0,
    walltime: str = "01:00:00",
    max_jobs: int = 4,
    job_extra: Sequence[str] = (),
    interface: str | None = "auto",
    log_directory: str | None = None,
):
    """Create (but do not connect to) a Dask cluster.

    Parameters
    ----------
    kind
        ``"local"`` or ``"slurm"``.
    workers, threads_per_worker
        LocalCluster layout (see :func:`local_layout`).
    queue, cores, memory, gpus, walltime, job_extra
        Per-job SLURM request: partition, CPUs, memory (e.g. ``"4GB"``), GPUs
        (``--gres=gpu:N``), time limit, extra ``#SBATCH`` options
        (e.g. ``"--qos=high"``).
    max_jobs
        Upper bound of the adaptive scaling (jobs = worker processes).
    interface
        Network interface of scheduler and workers; ``"auto"`` picks ``lo``
        when the SLURM cluster is this one machine, else Dask's default.
    log_directory
        Where SLURM job logs go.

    Returns
    -------
    cluster, torch_threads
        The cluster and the torch threads each worker should use.
    """
    if kind == "local":
        from distributed import LocalCluster

        layout = local_layout(workers, threads_per_worker)
        cluster = LocalCluster(n_workers=layout["n_workers"], threads_per_worker=layout["threads_per_worker"],
                               processes=True, dashboard_address=None, silence_logs=logging.ERROR)
        return cluster, layout["torch_threads"]
    if kind == "slurm":
        if shutil.which("sbatch") is None:
            raise PixerError("--cluster slurm: sbatch not found (is this a SLURM submit host?)")
        check_slurm_memory(memory)
        from dask_jobqueue import SLURMCluster

        if interface == "auto":
            interface = "lo" if _single_node_here() else None
        extra = list(job_extra) + ([f"--gres=gpu:{int(gpus)}"] if gpus else [])
        cluster = SLURMCluster(
            queue=queue, cores=max(1, int(threads_per_worker)), processes=1, job_cpu=int(cores), memory=memory,
            walltime=walltime, job_extra_directives=extra, interface=interface,
            scheduler_options={"interface": interface, "dashboard_address": None} if interface else
            {"dashboard_address": None},
            log_directory=log_directory, job_name="pixer", silence_logs=logging.ERROR,
        )  # fmt: skip
        cluster.adapt(minimum_jobs=1, maximum_jobs=int(max_jobs))
        return cluster, max(1, int(cores) // max(1, int(threads_per_worker)))
    raise PixerError(f"--cluster {kind!r}: expected one of {', '.join(KINDS)}")


def gpu_layout(device: str, workers: int | None, n_gpus: int, visible: str | None) -> tuple[int | None, list[str]]:
    """Local worker processes and the GPU each one gets, for a ``pixer pick`` on ``device``.

    Parameters
    ----------
    device
        The run's torch device: ``"cuda"`` spreads the workers over every
        GPU; ``"cuda:K"`` (one named GPU) or ``"cpu"`` spreads nothing.
    workers
        ``--workers`` (None: one per GPU for ``"cuda"``, one for ``"cuda:K"``,
        the CPU default otherwise).
    n_gpus
        GPUs torch sees (``torch.cuda.device_count()``).
    visible
        ``CUDA_VISIBLE_DEVICES`` of this process (None: unset); its entries
        are what the workers' own ``CUDA_VISIBLE_DEVICES`` are chosen from.

    Returns
    -------
    workers, devices
        Worker processes (None: the CPU default) and the GPU ids to hand out
        (empty: leave the workers' devices alone).
    """
    if not device.startswith("cuda"):
        return workers, []
    if device != "cuda" or n_gpus <= 1:
        return (1 if workers is None else workers), []  # they would all share one GPU anyway
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    ids = ids[:n_gpus] if len(ids) >= n_gpus else [str(i) for i in range(n_gpus)]
    return (n_gpus if workers is None else workers), ids


@contextlib.contextmanager
def open_client(
    kind: str = "local",
    *,
    scheduler_address: str | None = None,
    startup_timeout: float = 300.0,
    torch_threads: int | None = None,
    worker_gpus: Sequence[str] | None = None,
    **options,
) -> Iterator[object | None]:
    """Context manager yielding a connected :class:`distributed.Client` (None for ``"none"``).

    Parameters
    ----------
    kind
        ``"local"``, ``"slurm"`` or ``"none"``.
    scheduler_address
        ``tcp://host:port`` of a running scheduler to attach to (``kind`` is
        then ignored and nothing is created or closed but the client).
    startup_timeout
        Seconds to wait for the first worker (SLURM jobs may queue).
    torch_threads
        Torch threads per worker (default: the cluster's cores shared out,
        see :func:`local_layout`; left alone on an attached scheduler).
    worker_gpus
        ``"local"`` only: GPU ids handed out one per worker process, round-robin
        (:class:`pixer.scale.plugins.OneGPUPerWorker`; see :func:`gpu_layout`).
    **options
        Passed to :func:`make_cluster`.
    """
    if scheduler_address is None and kind == "none":
        yield None
        return
    from distributed import Client

    cluster = None
    client = None
    try:
        if scheduler_address:
            try:
                client = Client(scheduler_address, timeout="30s")
            except OSError as exc:
                raise PixerError(f"--scheduler-address {scheduler_address}: cannot connect ({exc})") from None
        else:
            cluster, default_threads = make_cluster(kind, **options)
            client = Client(cluster)
            torch_threads = torch_threads or default_threads
        if torch_threads:
            from pixer.scale.plugins import TorchThreads

            client.register_plugin(TorchThreads(torch_threads))
        if worker_gpus and cluster is not None and kind == "local":
            from pixer.scale.plugins import OneGPUPerWorker

            client.register_plugin(OneGPUPerWorker(list(worker_gpus)))
        if cluster is not None and kind == "slurm":
            _wait_for_first_worker(client, startup_timeout)
        yield client
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=30)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=60)


def _wait_for_first_worker(client, timeout: float) -> None:
    """Wait until one SLURM worker has joined; a PixerError naming the job state otherwise."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, OSError):
        state = ""
        if shutil.which("squeue"):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                state = subprocess.run(["squeue", "-h", "-n", "pixer", "-o", "%i %T %r"], capture_output=True,
                                       text=True, timeout=30, check=False).stdout.strip().replace("\n", "; ")
        raise PixerError(f"--cluster slurm: no worker started within {timeout:.0f} s "
                         f"(squeue: {state or 'no pixer job'}); check the partition, --memory and job logs") from None
