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
