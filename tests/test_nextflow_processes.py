"""Every process's script, rendered with sample values, runs for real through the bin/ entry
points on tiny simulated data and makes the outputs it declares; so does its stub.

The stages are chained as the pipeline chains them (SIMULATE -> LABELS -> TRAIN_CLASSIFIER ->
TRAIN -> PICK -> EVALUATE and REPORT; BENCHMARK with the trained model), with the `test` profile's params (pick without Dask here). Planted
faults prove the checks bite: an unknown flag, an undeclared params key, a declared output the
script does not make, and a script that writes into its input.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nf.check import copy_pipeline, groovy_available
from nf.processes import describe, input_names, params_for, process, render, run_task, spec

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not groovy_available(), reason="Debian groovy + JDK 17 not installed (CI installs them)")]  # fmt: skip


def sample_params(facts) -> dict:
    params = params_for(facts, ("conf/test.config",))
    params.update(pick_cluster="none", outdir="results")
    return params


@pytest.fixture(scope="module")
def facts() -> dict:
    return describe(ROOT)


def _inputs(facts: dict, name: str, values: dict) -> dict:
    """The sample inputs of a process, checked against the inputs it declares."""
    assert sorted(values) == sorted(input_names(process(facts, name))), f"{name}: inputs changed; update the test"
    return values


def _run(facts, name, values, workdir, section="script", params=None):
    proc = process(facts, name)
    rendered = render(ROOT, [spec(proc, params or sample_params(facts), _inputs(facts, name, values))])[0]
    return run_task(rendered, workdir, _files(values), ROOT, section)


def _files(values: dict) -> dict:
    """The file inputs among sample values (None: an absent optional file)."""
    return {k: v for k, v in values.items()
            if v is None or isinstance(v, Path) or (isinstance(v, list) and all(isinstance(x, Path) for x in v))}


@pytest.fixture(scope="module")
def chain(facts, tmp_path_factory) -> dict:
    """Run every stage's script in order, each on the previous stages' outputs."""
    base = tmp_path_factory.mktemp("nf_tasks")
    params = sample_params(facts)
    meta = {"id": "test", "diameter": params["sim_diameter"], "apix": params["sim_apix"]}
    runs = {}

    def go(key, name, values):
        runs[key] = _run(facts, name, {"meta": meta, **values}, base / key)
        assert runs[key].ok, f"{key}: exit {runs[key].returncode}, missing {runs[key].missing}, " \
                             f"modified inputs {runs[key].modified_inputs}\n{runs[key].log}"
        return runs[key]

    train = go("simulate_train", "PIXER_SIMULATE", {"role": "train", "seed": params["seed"] + 1,
                                                    "n": params["sim_n_train"]}).output("data")  # fmt: skip
    test = go("simulate_test", "PIXER_SIMULATE", {"role": "test", "seed": params["seed"] + 2,
                                                  "n": params["sim_n_test"]}).output("data")  # fmt: skip
    mics = train / "micrographs"
    labels = go("labels", "PIXER_LABELS", {"micrographs": mics, "particles": train / "particles.star",
                                           "map": train / "map.mrc"}).output("labels")  # fmt: skip
    classifier = go("classifier", "PIXER_TRAIN_CLASSIFIER", {"micrographs": mics, "particles": train / "particles.star",
                                                             "junk_masks": train / "truth"}).output("classifier")  # fmt: skip
    model = go("train", "PIXER_TRAIN", {"micrographs": mics, "labels": labels, "classifier": classifier}).output("model")
    picks = go("pick", "PIXER_PICK", {"micrographs": test / "micrographs", "model": model}).output("picks")
    go("evaluate", "PIXER_EVALUATE", {"picks": picks, "truth": test / "particles.star"})
    go("report", "PIXER_REPORT", {"picks": picks, "micrographs": test / "micrographs", "truth": test / "particles.star"})
    sheet = base / "inputs" / "benchmark.csv"   # pixer benchmark's columns; absolute paths (the sheet is staged)
    sheet.parent.mkdir()
    sheet.write_text("dataset,micrographs,apix,diameter,truth\n"
                     f"sim,{test / 'micrographs'},{meta['apix']},{meta['diameter']},{test / 'particles.star'}\n")
    go("benchmark", "PIXER_BENCHMARK", {"meta": {"id": "benchmark"}, "samplesheet": sheet, "model": model})
    runs["meta"] = meta
    return runs


def test_every_process_is_exercised(facts, chain):
    names = {p["name"] for p in facts["processes"]}
    run = {"PIXER_SIMULATE", "PIXER_LABELS", "PIXER_TRAIN_CLASSIFIER", "PIXER_TRAIN", "PIXER_PICK", "PIXER_EVALUATE",
           "PIXER_REPORT", "PIXER_BENCHMARK"}  # fmt: skip
    assert names == run, f"processes without a run in this test: {sorted(names - run)}"


def test_chain_outputs(chain):
    assert (chain["labels"].output("labels") / "label_index.star").is_file()
    assert (chain["train"].output("model") / "model.pt").is_file()
    assert (chain["pick"].output("picks") / "summary.csv").is_file()
    assert (chain["evaluate"].output("metrics")).is_file()
    assert chain["report"].output("report").stat().st_size > 1000
    assert "sim" in chain["benchmark"].output("table").read_text()


def test_labels_from_coordinates_without_map(facts, chain, tmp_path):
    train = chain["simulate_train"].output("data")
    run = _run(facts, "PIXER_LABELS", {"meta": chain["meta"], "micrographs": train / "micrographs",
                                       "particles": train / "particles.star", "map": None}, tmp_path / "w")  # fmt: skip
    assert run.ok, run.log
    assert "--coords" in (run.workdir / ".command.sh").read_text()


def test_stubs_make_the_declared_outputs(facts, chain, tmp_path):
    """-stub-run: every stub makes what its output: block declares."""
    values = {
        "PIXER_SIMULATE": {"role": "train", "seed": 1, "n": 2},
        "PIXER_LABELS": {"micrographs": Path("micrographs"), "particles": Path("particles.star"), "map": None},
        "PIXER_TRAIN_CLASSIFIER": {"micrographs": Path("micrographs"), "particles": Path("particles.star"),
                                   "junk_masks": None},
        "PIXER_TRAIN": {"micrographs": Path("micrographs"), "labels": Path("labels"), "classifier": Path("classifier")},
        "PIXER_PICK": {"micrographs": Path("micrographs"), "model": Path("model")},
        "PIXER_EVALUATE": {"picks": Path("picks"), "truth": Path("particles.star")},
        "PIXER_REPORT": {"picks": Path("picks"), "micrographs": Path("micrographs"), "truth": None},
        "PIXER_BENCHMARK": {"samplesheet": Path("benchmark.csv"), "model": None},
    }
    params = sample_params(facts)
    specs = [spec(process(facts, n), params, _inputs(facts, n, {"meta": chain["meta"], **v})) for n, v in values.items()]
    for rendered in render(ROOT, specs):
        run = run_task(rendered, tmp_path / rendered["process"], {}, ROOT, section="stub")
        assert run.ok, f"{rendered['process']} stub: {run.missing} {run.log}"


# ---- planted faults -------------------------------------------------------------------------

@pytest.fixture()
def planted(tmp_path) -> Path:
    """A copy of the pipeline to plant faults in."""
    return copy_pipeline(ROOT, tmp_path)


def _evaluate_in(root: Path, chain, workdir: Path):
    facts = describe(root)
    proc = process(facts, "PIXER_EVALUATE")
    values = {"meta": chain["meta"], "picks": chain["pick"].output("picks"),
              "truth": chain["simulate_test"].output("data") / "particles.star"}  # fmt: skip
    rendered = render(root, [spec(proc, sample_params(facts), values)])[0]
    return run_task(rendered, workdir, _files(values), ROOT)


def _plant(root: Path, old: str, new: str) -> None:
    module = root / "workflows" / "modules" / "pixer_evaluate.nf"
    text = module.read_text()
    assert old in text
    module.write_text(text.replace(old, new, 1))


def test_planted_unknown_flag_fails(planted, chain, tmp_path):
    _plant(planted, "--diameter ${meta.diameter}", "--diamter ${meta.diameter}")
    run = _evaluate_in(planted, chain, tmp_path / "w")
    assert run.returncode == 2 and "pixer evaluate: error:" in run.log and not run.ok


def test_planted_undeclared_param_fails(planted, chain, tmp_path):
    _plant(planted, "${params.evaluate_args}", "${params.evaluate_argz}")
    run = _evaluate_in(planted, chain, tmp_path / "w")
    assert not run.ok and "params.evaluate_argz is not declared" in run.log


def test_planted_missing_output_fails(planted, chain, tmp_path):
    _plant(planted, "    output:\n", '    output:\n    tuple val(meta), path("evaluation/report.html"), emit: report\n')
    run = _evaluate_in(planted, chain, tmp_path / "w")
    assert run.returncode == 0 and run.missing == ["PIXER_EVALUATE: output 'evaluation/report.html' (report) not made"]


def test_planted_input_modification_fails(planted, chain, tmp_path):
    _plant(planted, "    pixer-evaluate", "    echo '# touched' >> ${truth}\n    pixer-evaluate")
    truth = chain["simulate_test"].output("data") / "particles.star"
    saved = truth.read_bytes()
    try:
        run = _evaluate_in(planted, chain, tmp_path / "w")
    finally:
        truth.write_bytes(saved)
    assert run.modified_inputs == [str(truth.resolve())]
