"""containers/pixer.def: lint, pins equal to requirements.lock and CI's torch, and its %test
run for real on this machine (destinations mapped back to the repository); each check shown to
catch a planted fault."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nf.apptainer import def_problems, host_test_script as def_test_script, parse_def
from nf.processes import task_env

ROOT = Path(__file__).resolve().parents[1]
DEF = ROOT / "containers" / "pixer.def"


def test_def_is_clean():
    assert def_problems(DEF, ROOT) == []


def test_def_pins_cuda_torch_and_base_image():
    d = parse_def(DEF)
    assert dict(d.header)["Bootstrap"] == "docker"
    assert d.arguments["TORCH_VERSION"] == "2.13.0"
    assert "download.pytorch.org/whl/" + d.arguments["TORCH_CUDA"] in d.sections["post"]


@pytest.mark.slow
def test_def_test_section_runs(tmp_path):
    """%test (locked versions, then a tiny simulate -> train -> pick) passes with this environment."""
    script = tmp_path / "test.sh"
    script.write_text(def_test_script(DEF, ROOT))
    run = subprocess.run(["bash", str(script)], cwd=tmp_path, env=task_env(ROOT), capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "pixer container test passed" in run.stdout


# ---- planted faults ---------------------------------------------------------------------------

@pytest.fixture()
def planted(tmp_path) -> Path:
    """A copy of the definition file inside a copy of what it refers to."""
    for name in ("containers", "bin", "pixer"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("*.sif", "__pycache__"))
    for name in ("requirements.lock", "pyproject.toml", "README.md", "Makefile"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def plant(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("file, old, new, expected", [
    ("containers/pixer.def", "Bootstrap: docker\n", "", "must be 'Bootstrap: ...'"),
    ("containers/pixer.def", "%labels", "%label", "unknown section %label"),
    ("containers/pixer.def", "    rm -rf /var/lib/apt/lists/*", "    if true; then rm -rf /var/lib/apt/lists/*",
     "%post fails bash -n"),
    ("containers/pixer.def", "    test -s picks/summary.csv", "    test -s picks/summary.csv )", "%test fails bash -n"),
    ("containers/pixer.def", "    pyproject.toml /opt", "    pyproject.tom /opt", "%files source pyproject.tom does not exist"),
    ("containers/pixer.def", "TORCH_VERSION=2.13.0", "TORCH_VERSION=2.12.0", "pins torch==2.12.0"),
    ("containers/pixer.def", '"$pip" check', '"$pip" install numpy==2.4.5\n    "$pip" check', "pins numpy==2.4.5"),
    ("containers/pixer.def", "-r /opt/pixer/requirements.lock", "/opt/pixer/src", "does not pip install -r"),
    ("containers/pixer.def", "{{ TORCH_CUDA }}\"", "{{ TORCH_CUDNN }}\"", "TORCH_CUDNN }} with no default"),
    ("containers/pixer.def", "python:3.11.7-slim", "python:3.12.1-slim", "is not Python 3.11"),
    ("requirements.lock", "# torch is installed first and separately: torch==2.13.0",
     "# torch is installed first and separately: torch==2.14.0", "requirements.lock says torch==2.14.0"),
])  # fmt: skip
def test_planted_def_faults_are_caught(planted, file, old, new, expected):
    plant(planted / file, old, new)
    problems = def_problems(planted / "containers" / "pixer.def", planted)
    assert any(expected in p for p in problems), problems


def test_planted_fault_in_test_section_fails(planted, tmp_path):
    """An unknown flag in %test makes the host run of %test fail."""
    plant(planted / "containers" / "pixer.def", "--snr-db -5", "--snr-dbb -5")
    script = tmp_path / "t.sh"
    script.write_text(def_test_script(planted / "containers" / "pixer.def", ROOT))
    run = subprocess.run(["bash", str(script)], cwd=tmp_path, env=task_env(ROOT), capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode != 0 and "--snr-dbb" in run.stderr
