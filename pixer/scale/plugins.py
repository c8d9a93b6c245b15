"""Dask worker plugins (imported only once Dask is in use)."""

from __future__ import annotations

import os

from distributed.diagnostics.plugin import WorkerPlugin


class TorchThreads(WorkerPlugin):
    """``torch.set_num_threads(n)`` in every worker, restarted ones included.

    Keeps ``workers x threads_per_worker x torch threads`` at the number of
    cores, so that the workers of one machine do not oversubscribe it.
    """

    name = "pixer-torch-threads"

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def setup(self, worker) -> None:
        """Called by Dask when the plugin is registered and when a worker starts."""
        import torch

        torch.set_num_threads(self.n)
        os.environ["OMP_NUM_THREADS"] = str(self.n)


class OneGPUPerWorker(WorkerPlugin):
    """Give each local worker process one GPU, round-robin, through ``CUDA_VISIBLE_DEVICES``.

    Runs in the worker before its first task, so before CUDA starts there: the
    worker then sees its GPU as ``cuda`` / ``cuda:0``. LocalCluster workers are
    named 0, 1, ...; worker ``i`` gets ``devices[i % len(devices)]`` (a
    replacement worker keeps its name, so its GPU).

    Parameters
    ----------
    devices
        GPU ids as CUDA counts them on this machine (``CUDA_VISIBLE_DEVICES``
        entries or indices), e.g. ``["0", "1", "2", "3"]``.
    """

    name = "pixer-one-gpu-per-worker"

    def __init__(self, devices: list[str]) -> None:
        if not devices:
            raise ValueError("OneGPUPerWorker needs at least one device")
        self.devices = [str(d) for d in devices]

    def setup(self, worker) -> None:
        """Called by Dask when the plugin is registered and when a worker starts."""
        try:
            index = int(worker.name)
        except (TypeError, ValueError):  # not a LocalCluster worker: spread by name
            index = sum(str(worker.name).encode())
        os.environ["CUDA_VISIBLE_DEVICES"] = self.devices[index % len(self.devices)]
