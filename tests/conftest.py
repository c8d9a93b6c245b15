"""Shared pytest fixtures."""

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real-data folder ``../shared/data`` beside the project (see its README)."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"../shared/data not present: real-data tests need {path}")
    return path


@pytest.fixture(scope="session")
def bench_script():
    """Load a script of ``bench/`` as a module: ``bench_script("eval_real")``."""

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
