"""Where work meets a cluster: Dask clusters and a sharded map over micrographs.

All Dask code of pixer lives here; the stages (:mod:`pixer.pick` …) never
import Dask. :func:`open_client` gives a connected client for a LocalCluster,
a dask-jobqueue SLURMCluster or an existing scheduler (None for a serial
run), and :func:`map_micrographs` runs a per-micrograph function over batches
of paths on it, with bounded memory, progress and failure rows.

Example
-------
>>> with open_client("local", workers=2) as client:          # doctest: +SKIP
...     rows = map_micrographs(task, paths, batch=8, client=client)
"""

from pixer.scale.cluster import KINDS, check_slurm_memory, gpu_layout, local_layout, make_cluster, open_client
from pixer.scale.mapper import map_micrographs, run_batch

__all__ = ["KINDS", "check_slurm_memory", "gpu_layout", "local_layout", "make_cluster", "map_micrographs", "open_client",
           "run_batch"]
