"""pixer.scale: the sharded map (serial and on a real LocalCluster), failures, cluster sizing,
the per-process model cache, and the layering rule (stages never import Dask)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import dask
import distributed  # noqa: F401 - loads its config before dask.config.set below touches it
import pytest

from pixer.errors import PixerError
from pixer.models.segmentation import TINY_CONFIG, AtrousSegNet
from pixer.models.store import save_model
from pixer.pick.batch import PickTask, cached_model
from pixer.pick.picker import PickParams
from pixer.scale import check_slurm_memory, gpu_layout, local_layout, map_micrographs, open_client, run_batch


def square(x: int) -> dict:
    if x == 13:
        raise ValueError("unlucky")
    return {"item": x, "value": x * x, "pid": os.getpid()}


def error_row(item, reason: str) -> dict:
    return {"item": item, "value": None, "error": reason}


def die_on_7(x: int) -> dict:
    if x == 7:
        os._exit(1)  # the worker process dies, as on an OOM kill
    return {"item": x, "value": x * x}


@pytest.fixture(scope="module")
def client():
    # A killed batch is given up on the first loss, to keep the test short.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            open_client("local", workers=2, torch_threads=1) as c:  # fmt: skip
        yield c


def test_serial_map_keeps_order_and_turns_errors_into_rows():
    rows = map_micrographs(square, list(range(20)), client=None, on_error=error_row, progress=False)
    assert [r["item"] for r in rows] == list(range(20))
    assert rows[13]["error"] == "ValueError: unlucky" and rows[12]["value"] == 144
    with pytest.raises(ValueError):
        run_batch(square, [13])


def test_dask_map_equals_serial_with_a_bounded_window(client):
    items = list(range(101))
    rows = map_micrographs(square, items, batch=3, client=client, on_error=error_row, progress=False,
                           max_in_flight=4)  # fmt: skip
    serial = map_micrographs(square, items, client=None, on_error=error_row, progress=False)
    assert [(r["item"], r["value"]) for r in rows] == [(r["item"], r["value"]) for r in serial]
    assert len({r["pid"] for r in rows if "pid" in r}) == 2  # both worker processes took part
    assert os.getpid() not in {r.get("pid") for r in rows}


def test_a_lost_batch_becomes_failed_rows_and_the_rest_completes(client):
    rows = map_micrographs(die_on_7, list(range(12)), batch=4, client=client, retries=0, on_error=error_row,
                           progress=False)  # fmt: skip
    lost = [r["item"] for r in rows if r.get("error")]
    assert lost == [4, 5, 6, 7]  # the batch holding 7
    assert "batch failed" in rows[7]["error"]
    assert [r["value"] for r in rows if not r.get("error")] == [i * i for i in range(12) if i not in lost]


def test_torch_threads_are_set_in_the_workers(client):
    def threads():
        import torch

        return torch.get_num_threads()

    assert set(client.run(threads).values()) == {1}


def _visible() -> str | None:
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_each_local_worker_gets_its_own_gpu_and_keeps_it_after_a_restart():
    # real worker processes; what torch then sees there is CUDA's business (checked on a GPU machine)
    before = _visible()

    def by_name(c) -> dict[str, str | None]:
        return {str(w["name"]): c.run(_visible, workers=[a])[a] for a, w in c.scheduler_info()["workers"].items()}

    with open_client("local", workers=3, torch_threads=1, worker_gpus=["5", "7"]) as c:
        assert by_name(c) == {"0": "5", "1": "7", "2": "5"}
        c.restart()
        assert by_name(c) == {"0": "5", "1": "7", "2": "5"}
    assert _visible() == before  # this process is left alone


@pytest.mark.parametrize(
    ("device", "workers", "n_gpus", "visible", "expected"),
    [
        ("cuda", None, 4, None, (4, ["0", "1", "2", "3"])),
        ("cuda", None, 2, "3,6", (2, ["3", "6"])),
        ("cuda", 4, 2, None, (4, ["0", "1"])),       # more workers than GPUs: round-robin
        ("cuda", None, 1, None, (1, [])),
        ("cuda:1", None, 4, None, (1, [])),          # one named GPU: one worker on it
        ("cpu", None, 0, None, (None, [])),
        ("cpu", 3, 0, None, (3, [])),
    ],
)
def test_gpu_layout(device, workers, n_gpus, visible, expected):
    assert gpu_layout(device, workers, n_gpus, visible) == expected


def test_local_layout_shares_the_cores():
    assert local_layout(cores=16) == {"n_workers": 16, "threads_per_worker": 1, "torch_threads": 1}
    assert local_layout(workers=4, cores=16) == {"n_workers": 4, "threads_per_worker": 1, "torch_threads": 4}
    assert local_layout(threads_per_worker=2, cores=16)["n_workers"] == 8
    assert local_layout(workers=8, cores=2)["torch_threads"] == 1


def test_memory_request_is_checked():
    with pytest.raises(PixerError, match="not a memory size"):
        check_slurm_memory("lots")
    assert check_slurm_memory("1MB") == 10**6


def test_unknown_cluster_kind_is_a_pixer_error():
    with pytest.raises(PixerError, match="k8s"), open_client("k8s"):
        pass


def test_pick_task_pickles_small_and_the_model_is_loaded_once_per_process(tmp_path):
    save_model(tmp_path / "m", AtrousSegNet.from_config(TINY_CONFIG), {"particle_px": 24})
    task = PickTask(str(tmp_path / "m"), str(tmp_path / "out"), PickParams(diameter_A=100.0))
    assert len(pickle.dumps(task)) < 1000  # the model travels as a path, not as weights
    assert cached_model(tmp_path / "m")[0] is cached_model(str(tmp_path / "m"))[0]


def test_stages_never_import_dask():
    code = ("import sys, pixer.pick.batch, pixer.pick.picker, pixer.cli.pick; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'dask_jobqueue')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
