"""Bad input to ``pixer report`` and ``pixer benchmark`` (and the run folders they read):
one line naming the file and the problem, ``warning:`` lines for what does not stop them,
and benchmark's exit status. Tiny fake pick runs, no training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest

import pixer.evaluate.benchmark as bench
from pixer.cli.main import main
from pixer.errors import PixerError
from pixer.evaluate.benchmark import read_samplesheet
from pixer.io.mrc_write import write_mrc
from pixer.models.general import general_model_dir
from pixer.report.run import load_run

HEADER = "dataset,micrographs,apix,diameter,truth,model\n"
NAMES = ["mic_0000", "mic_0001"]


@pytest.fixture
def mics(tmp_path) -> Path:
    """Two 128 px noise micrographs at 4 Å/px."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "mics"
    for name in NAMES:
        write_mrc(folder / f"{name}.mrc", rng.normal(size=(128, 128)).astype(np.float32), 4.0)
    return folder


@pytest.fixture
def run(tmp_path, mics) -> Path:
    """A ``pixer pick`` output folder as the report reads it (no parts/), picks on both micrographs."""
    folder = tmp_path / "picks"
    folder.mkdir()
    names = [str(mics / f"{n}.mrc") for n in NAMES]
    pd.DataFrame({"micrograph": names, "status": "done", "n_picks": 2, "apix": 4.0}).to_csv(
        folder / "summary.csv", index=False)  # fmt: skip
    pd.DataFrame({"micrograph": np.repeat(names, 2), "x": [30.0, 90, 30, 90], "y": [30.0, 90, 90, 30],
                  "score": [0.9, 0.8, 0.7, 0.6]}).to_csv(folder / "picks.csv", index=False)  # fmt: skip
    record = {"arguments": {"diameter": 100.0, "micrographs": [str(mics)]}, "apix": 4.0, "threshold": 0.5}
    (folder / "pixer_pick.json").write_text(json.dumps(record))
    return folder


@pytest.fixture
def model(tmp_path) -> Path:
    """A model folder: the shipped model's config.json and weights."""
    folder = tmp_path / "model"
    shutil.copytree(general_model_dir(), folder)
    return folder


def _truth(path: Path, names: list[str]) -> Path:
    pd.DataFrame({"micrograph": [f"micrographs/{n}.mrc" for n in names], "x": 30.0, "y": 30.0}).to_csv(path,
                                                                                                    index=False)
    return path


def _err_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.strip()]


# 1. summary.csv / picks.csv without the columns a run has
@pytest.mark.parametrize(("name", "missing"),
                         [("summary.csv", "micrograph, status"), ("picks.csv", "micrograph, x, y")])
def test_garbage_run_csv_is_one_line(run, name, missing, tmp_path, capsys):
    (run / name).write_text("garbage\n")
    with pytest.raises(PixerError, match=rf"{name}: missing column\(s\) {missing}"):
        load_run(run)
    assert main(["report", "--picks", str(run), "--out", str(tmp_path / "r" / "r.html")]) == 2
    (line,) = _err_lines(capsys)
    assert line.startswith("pixer report: error: ") and str(run / name) in line and missing in line


def test_evaluate_garbage_summary_is_one_line(run, tmp_path, capsys):
    (run / "summary.csv").write_text("garbage\n")
    (run / "parts").mkdir()
    truth = _truth(tmp_path / "truth.csv", NAMES)
    assert main(["evaluate", "--picks", str(run), "--truth", str(truth), "--diameter", "100",
                 "--out", str(tmp_path / "e")]) == 2  # fmt: skip
    (line,) = _err_lines(capsys)
    assert "summary.csv: missing column(s) micrograph, status" in line


# 2. report's numeric options
@pytest.mark.parametrize("argv", [["--sample=-1"], ["--sample", "1.5"], ["--radius-fraction", "0"]])
def test_report_numeric_options_are_checked(run, argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["report", "--picks", str(run), "--out", str(tmp_path / "r.html"), *argv])
    assert info.value.code == 2
    assert "pixer report: error: argument" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


# 3. unreadable micrographs: the page is written, and each is a warning line
def test_report_warns_about_unreadable_micrographs(run, mics, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mic_0000.mrc").write_bytes((mics / "mic_0000.mrc").read_bytes()[:3000])  # truncated
    with mrcfile.new(bad / "mic_0001.mrc") as mrc:  # a 3D stack
        mrc.set_data(np.zeros((3, 16, 16), np.float32))
    out = tmp_path / "r.html"
    assert main(["report", "--picks", str(run), "--micrographs", str(bad), "--out", str(out)]) == 0
    assert out.exists()
    warnings = [line for line in _err_lines(capsys) if "warning:" in line]
    assert len(warnings) == 2, warnings
    assert all(w.startswith("pixer report: warning: ") for w in warnings)
    assert "mic_0000.mrc: not a readable MRC file" in warnings[0]
    assert "mic_0001.mrc: expected a 2D micrograph" in warnings[1]


def test_report_summarises_many_unreadable_micrographs():
    from pixer.report.build import MAX_WARNINGS, _unreadable_warnings

    errors = [f"m{i}.mrc: 4 NaN/Inf pixels" for i in range(MAX_WARNINGS + 1)]
    assert _unreadable_warnings(errors) == [f"{MAX_WARNINGS + 1} micrographs not drawn (unreadable), first: {errors[0]}"]


# 7. truth about other micrographs (report)
def test_report_truth_matching_no_micrograph_is_an_error(run, tmp_path, capsys):
    truth = _truth(tmp_path / "nomatch.csv", ["other_9999"])
    assert main(["report", "--picks", str(run), "--truth", str(truth), "--out", str(tmp_path / "r.html")]) == 2
    (line,) = _err_lines(capsys)
    assert str(truth) in line and str(run) in line and "none of its 1 micrograph" in line
    assert not (tmp_path / "r.html").exists()


def test_report_truth_matching_some_micrographs_warns(run, tmp_path, capsys):
    truth = _truth(tmp_path / "some.csv", ["mic_0000", "other_9999", "other_9998"])
    assert main(["report", "--picks", str(run), "--truth", str(truth), "--out", str(tmp_path / "r.html")]) == 0
    (line,) = [w for w in _err_lines(capsys) if "warning:" in w]
    assert line.startswith(f"pixer report: warning: {truth}: 1 of the 2 micrographs picked in {run} have no truth")
    assert "2 of its 3 micrographs are not among them" in line


# 4. benchmark's exit status and warnings
def test_benchmark_pixer_failure_warns_and_exits_1(mics, model, tmp_path, capsys):
    (model / "model.pt").write_bytes((general_model_dir() / "model.pt").read_bytes()[:2000])  # corrupt weights
    sheet = tmp_path / "s.csv"
    sheet.write_text(HEADER + f"d1,{mics},,100,{_truth(tmp_path / 't.csv', NAMES)},{model}\n")
    out = tmp_path / "out"
    assert main(["benchmark", "--samplesheet", str(sheet), "--out", str(out), "--cluster", "none",
                 "--no-progress", "--peers", "lattice"]) == 1  # fmt: skip
    (line,) = [w for w in _err_lines(capsys) if "warning:" in w]
    assert line.startswith("pixer benchmark: warning: d1 / pixer: failed: ") and "model.pt" in line
    table = pd.read_csv(out / "benchmark.csv")
    assert list(table["status"]) [1:] == ["ok"] and table["status"][0].startswith("failed")


def test_benchmark_peer_failure_is_only_a_warning(mics, model, tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("relion exploded")

    monkeypatch.setattr(bench, "_run_pixer", lambda *a, **k: {"n_micrographs": 2, "n_picks": 0})
    monkeypatch.setattr(bench, "_peer_function", lambda name: (broken, ""))
    sheet = tmp_path / "s.csv"
    sheet.write_text(HEADER + f"d1,{mics},,100,,{model}\n")
    assert main(["benchmark", "--samplesheet", str(sheet), "--out", str(tmp_path / "out"), "--peers", "relion"]) == 0
    (line,) = [w for w in _err_lines(capsys) if "warning:" in w]
    assert line == "pixer benchmark: warning: d1 / relion: failed: RuntimeError: relion exploded"


def test_peer_picks_without_apix_are_scored_at_the_header_pixel_size(mics, model, tmp_path, monkeypatch):
    def pick(files, dest, *, diameter_A, apix):
        dest.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"micrograph": [str(f) for f in files], "x": 30.0, "y": 30.0, "score": 1.0}).to_csv(
            dest / "picks.csv", index=False)  # fmt: skip
        return {"default": dest / "picks.csv", "seconds": 0.0}

    monkeypatch.setattr(bench, "_peer_function", lambda name: (pick, ""))
    sheet = tmp_path / "s.csv"
    sheet.write_text(HEADER + f"d1,{mics},,100,{_truth(tmp_path / 't.csv', NAMES)},{model}\n")
    (ds,) = read_samplesheet(sheet)
    row = bench._run_peer("relion", ds, tmp_path / "relion", bench._read_truth(ds))
    assert "status" not in row and row["f1"] == 1.0


# 5. MRC without pixel size and an empty apix column
def test_mrc_without_pixel_size_asks_for_the_apix_column(mics, model, tmp_path):
    with mrcfile.open(mics / "mic_0001.mrc", "r+") as mrc:
        mrc.voxel_size = 0
    sheet = tmp_path / "s.csv"
    sheet.write_text(HEADER + f"d1,{mics},,100,,{model}\n")
    with pytest.raises(PixerError, match=r"row 2 \(d1\): apix is empty and mic_0001.mrc has no pixel size in its "
                                         r"header: fill the samplesheet's apix column"):  # fmt: skip
        read_samplesheet(sheet)
    sheet.write_text(HEADER + f"d1,{mics},4,100,,{model}\n")  # the column filled: fine
    assert read_samplesheet(sheet)[0].apix == 4.0


def test_pick_advice_to_pass_apix_is_reworded(mics, model, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise PixerError(f"{mics}: every micrograph failed, first error: x.mrc: pixel size unknown: pass --apix")

    monkeypatch.setattr(bench, "_run_pixer", fail)
    sheet = tmp_path / "s.csv"
    sheet.write_text(HEADER + f"d1,{mics},,100,,{model}\n")
    table = bench.run_benchmark(read_samplesheet(sheet), tmp_path / "out")
    assert table["status"][0].endswith("pixel size unknown: fill the samplesheet's apix column")


# 6. rows wider than the header
@pytest.mark.parametrize(
    ("rows", "expected"),
    [("d1,{m},,100,,{model},extra,more\n", "row 2 has 8 fields, the header 6"),
     ("d1,{m},,100,,{model}\n# a comment\n\nd2,{m},,100,,{model},extra\n", "row 3 has 7 fields, the header 6")],
)
def test_row_wider_than_header_is_one_line(mics, model, tmp_path, rows, expected):
    sheet = tmp_path / "s.csv"
    sheet.write_text(HEADER + rows.format(m=mics, model=model))
    with pytest.raises(PixerError, match=rf"^{sheet}: {expected}$"):
        read_samplesheet(sheet)


# 7. truth about other micrographs (benchmark)
def test_benchmark_truth_matching_no_micrograph_fails_the_row(mics, model, tmp_path, capsys):
    truth = _truth(tmp_path / "nomatch.csv", ["other_9999"])
    sheet = tmp_path / "s.csv"
    sheet.write_text(HEADER + f"d1,{mics},,100,{truth},{model}\n")
    assert main(["benchmark", "--samplesheet", str(sheet), "--out", str(tmp_path / "out")]) == 2
    lines = _err_lines(capsys)
    assert lines[0].startswith(f"pixer benchmark: warning: d1 / pixer: failed: truth: {truth}: none of its 1")
    assert str(mics) in lines[0]
    assert lines[-1].startswith("pixer benchmark: error: ") and "every data set failed" in lines[-1]


def test_benchmark_truth_matching_some_micrographs_warns(mics, model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "_run_pixer", lambda *a, **k: {"n_micrographs": 2, "n_picks": 0})
    truth = _truth(tmp_path / "some.csv", ["mic_0000"])
    sheet = tmp_path / "s.csv"
    sheet.write_text(HEADER + f"d1,{mics},,100,{truth},{model}\n")
    assert main(["benchmark", "--samplesheet", str(sheet), "--out", str(tmp_path / "out")]) == 0
    (line,) = [w for w in _err_lines(capsys) if "warning:" in w]
    assert line == (f"pixer benchmark: warning: d1: {truth}: 1 of the 2 micrographs of {mics} have no truth "
                    "(their picks count as false positives)")  # fmt: skip
