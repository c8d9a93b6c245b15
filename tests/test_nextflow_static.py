"""Static checks of main.nf, workflows/ and nextflow.config, and proof that they catch
planted faults (a syntax error, an unknown process, a missing bin/ entry point)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nf.check import groovy_available, pipeline_problems

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not groovy_available(), reason="Debian groovy + JDK 17 not installed (CI installs them)")


@pytest.fixture()
def copy(tmp_path) -> Path:
    """A copy of the pipeline files to plant faults in."""
    for name in ("main.nf", "nextflow.config"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    shutil.copytree(ROOT / "bin", tmp_path / "bin")
    return tmp_path


def test_pipeline_is_clean():
    assert pipeline_problems(ROOT) == []


def test_syntax_error_is_caught(copy):
    demo = copy / "workflows" / "demo.nf"
    demo.write_text(demo.read_text().replace("workflow DEMO {", "workflow DEMO {{", 1))
    problems = pipeline_problems(copy)
    assert problems and any("demo.nf" in p for p in problems)


def test_unknown_process_is_caught(copy):
    demo = copy / "workflows" / "demo.nf"
    demo.write_text(demo.read_text().replace("    TRAIN(train)", "    TRAINN(train)", 1))
    assert any("TRAINN" in p for p in pipeline_problems(copy))


def test_bad_include_is_caught(copy):
    main = copy / "main.nf"
    main.write_text(main.read_text().replace("include { DEMO }", "include { DEMOX }", 1))
    assert any("DEMOX" in p for p in pipeline_problems(copy))


def test_missing_bin_script_is_caught(copy):
    (copy / "bin" / "pixer-pick").unlink()
    assert any("bin/pixer-pick does not exist" in p for p in pipeline_problems(copy))
