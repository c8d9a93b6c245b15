"""Static checks of main.nf, workflows/, nextflow.config and conf/, and proof that each one
catches a planted fault."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from nf.check import copy_pipeline, groovy_available, pipeline_problems, structure_problems

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not groovy_available(), reason="Debian groovy + JDK 17 not installed (CI installs them)")


@pytest.fixture()
def copy(tmp_path) -> Path:
    """A copy of the pipeline files to plant faults in."""
    return copy_pipeline(ROOT, tmp_path, docs=True)


def plant(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path}: {old!r} not found (the planted fault needs updating)"
    path.write_text(text.replace(old, new, 1))


def test_pipeline_is_clean():
    assert pipeline_problems(ROOT) == []


def test_pipeline_follows_the_conventions():
    assert structure_problems(ROOT) == []


def test_layout():
    """Thin main.nf; stage workflows in workflows/; one process per file in workflows/modules/."""
    stages = {p.stem for p in (ROOT / "workflows").glob("*.nf")}
    assert {"pixer", "simulate", "labels", "train", "pick", "evaluate", "samplesheet"} <= stages
    definition = re.compile(r"^\s*process\s+[A-Z]", re.M)
    assert not definition.search((ROOT / "main.nf").read_text())
    assert not any(definition.search((ROOT / "workflows" / f"{s}.nf").read_text()) for s in stages)


# ---- planted faults: parse, includes, calls, bin/ --------------------------------------------

def test_syntax_error_is_caught(copy):
    plant(copy / "workflows" / "pixer.nf", "workflow PIXER {", "workflow PIXER {{")
    problems = pipeline_problems(copy)
    assert problems and any("pixer.nf" in p for p in problems)


def test_config_syntax_error_is_caught(copy):
    plant(copy / "conf" / "base.config", "withLabel: process_low {", "withLabel: process_low {{")
    assert any("base.config" in p for p in pipeline_problems(copy))


def test_unknown_process_is_caught(copy):
    plant(copy / "workflows" / "pixer.nf", "    PICK(picking, models)", "    PICKK(picking, models)")
    assert any("PICKK" in p for p in pipeline_problems(copy))


def test_bad_include_is_caught(copy):
    plant(copy / "main.nf", "include { PIXER }", "include { PIXERX }")
    assert any("PIXERX" in p for p in pipeline_problems(copy))


def test_missing_module_file_is_caught(copy):
    (copy / "workflows" / "modules" / "pixer_pick.nf").unlink()
    assert any("pixer_pick" in p for p in pipeline_problems(copy))


def test_missing_bin_script_is_caught(copy):
    (copy / "bin" / "pixer-pick").unlink()
    assert any("bin/pixer-pick does not exist" in p for p in pipeline_problems(copy))


def test_non_executable_bin_script_is_caught(copy):
    os.chmod(copy / "bin" / "pixer-train", 0o644)
    assert any("bin/pixer-train is not executable" in p for p in pipeline_problems(copy))


# ---- planted faults: -resume hazards -----------------------------------------------------------

def test_closure_assigning_a_global_is_caught(copy):
    plant(copy / "workflows" / "pick.nf", "    PIXER_PICK(picking.join(models, failOnMismatch: true))",
          "    PIXER_PICK(picking.map { m, x -> last = m; [m, x] }.join(models, failOnMismatch: true))")
    assert any("assigns last, a global" in p for p in pipeline_problems(copy))


def test_order_dependent_merge_is_caught(copy):
    plant(copy / "workflows" / "pick.nf", "picking.join(models, failOnMismatch: true)", "picking.merge(models)")
    assert any("merge pairs channels by arrival order" in p for p in pipeline_problems(copy))


# ---- planted faults: conventions ---------------------------------------------------------------

MODULE = Path("workflows") / "modules" / "pixer_evaluate.nf"


@pytest.mark.parametrize("old, new, expected", [
    ("    stub:\n", "    // stub:\n", "no stub: block"),
    ("    container \"${params.container}\"\n", "", "no container directive"),
    ("    tag \"${meta.id}\"\n", "", "no tag directive"),
    ("label 'process_single'", "label 'process_tiny'", "label process_tiny has no withLabel resources"),
    (', emit: metrics', '', "has no emit: name"),
    ("pixer-evaluate --picks", "python -m pixer.cli.main evaluate --picks", "script calls no bin/pixer-* entry point"),
    ("${params.evaluate_args}", "${params.evaluate_argz}", "params.evaluate_argz is not declared"),
])  # fmt: skip
def test_module_convention_faults_are_caught(copy, old, new, expected):
    plant(copy / MODULE, old, new)
    assert any(expected in p for p in structure_problems(copy)), structure_problems(copy)


def test_second_process_in_a_module_is_caught(copy):
    module = copy / MODULE
    module.write_text(module.read_text() + "\nprocess EXTRA {\n    script:\n    \"echo\"\n}\n")
    problems = structure_problems(copy)
    assert any("defines 2 processes" in p for p in problems)


def test_undocumented_param_is_caught(copy):
    plant(copy / "nextflow.config", "    seed             = 0", "    secret_knob      = 3\n    seed             = 0")
    problems = structure_problems(copy)
    assert "nextflow.config: params.secret_knob has no comment saying what it is" in problems
    assert "docs/pipeline.md: params.secret_knob is not documented (--secret_knob)" in problems


def test_missing_profile_and_config_are_caught(copy):
    plant(copy / "nextflow.config", "    gpu {", "    gpux {")
    (copy / "conf" / "slurm.config").unlink()
    problems = structure_problems(copy)
    assert "nextflow.config: no profile gpu" in problems
    assert "nextflow.config: includeConfig conf/slurm.config: no such file" in problems


def test_missing_report_is_caught(copy):
    plant(copy / "nextflow.config", "dag {\n    enabled = true", "dag {\n    enabled = false")
    assert "nextflow.config: no dag report under params.outdir/pipeline_info" in structure_problems(copy)
