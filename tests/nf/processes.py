"""Processes of the Nextflow pipeline as data, and their scripts run for real.

``nf_process.groovy describe`` reads every process (directives, inputs, outputs,
``script:``/``stub:`` source) and every config's params with the Groovy compiler;
``render`` evaluates a process's ``script:`` (or ``stub:``) section as Nextflow
does, with params, ``task`` and sample inputs bound. :func:`run_task` stages the
inputs into a fresh work directory as symlinks (as Nextflow does), runs the
command with ``bash -ue`` and ``bin/`` first on ``PATH``, and reports which
declared outputs are missing and whether an input changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nf.check import config_files, nf_files, run_groovy

NF_PROCESS = Path(__file__).with_name("nf_process.groovy")


def _groovy(args: list[str], root: Path) -> subprocess.CompletedProcess:
    return run_groovy(NF_PROCESS, args, cwd=root, env={"NF_PROJECT_DIR": str(root)})


def describe(root: Path) -> dict:
    """``{"processes": [...], "configs": {path: {params, docs, labels, names, includes, profiles}}}``.

    Raises ``RuntimeError`` with the compiler's message when a file does not parse.
    """
    files = [str(p.relative_to(root)) for p in nf_files(root) + config_files(root)]
    run = _groovy(["describe", *files], root)
    if run.returncode != 0:
        raise RuntimeError(run.stderr.strip())
    return json.loads(run.stdout)


def params_for(facts: dict, profile_configs: tuple[str, ...] = ()) -> dict:
    """Params of ``nextflow.config`` overlaid with those of the given config files (a profile's)."""
    params = dict(facts["configs"]["nextflow.config"]["params"])
    for name in profile_configs:
        params.update(facts["configs"][name]["params"])
    return params


def process(facts: dict, name: str) -> dict:
    """The description of one process (KeyError if the pipeline has none of that name)."""
    for proc in facts["processes"]:
        if proc["name"] == name:
            return proc
    raise KeyError(name)


def input_names(proc: dict) -> list[str]:
    """Names of a process's inputs, in declaration order (tuple elements flattened)."""
    return [item["name"] for decl in proc["inputs"] for item in decl["items"]]


def render(root: Path, specs: list[dict]) -> list[dict]:
    """Render processes: each spec ``{file, process, params, task, inputs}``; inputs map a
    name to a value, ``{"path": NAME}`` / ``{"path": [NAMES]}`` for files, ``[]`` for an absent
    optional file. Returns ``{process, script, stub, outputs}`` or ``{process, error}`` each."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(specs, f)
    try:
        run = _groovy(["render", f.name], root)
    finally:
        os.unlink(f.name)
    if not run.stdout.strip():
        raise RuntimeError(run.stderr.strip())
    return json.loads(run.stdout)


def _fingerprint(path: Path) -> dict[str, tuple[int, int, str]]:
    """Size, mtime (ns) and content hash of every file under ``path`` (what -resume hashes, and more)."""
    import hashlib

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest()) for p in files}


@dataclass
class TaskRun:
    """One process run: work directory, exit status, log, missing outputs, modified inputs."""

    workdir: Path
    returncode: int
    log: str
    outputs: dict[str, list[Path]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    modified_inputs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.missing and not self.modified_inputs

    def output(self, emit: str) -> Path:
        """The (first) file an ``emit:`` output matched."""
        return self.outputs[emit][0]


def task_env(root: Path) -> dict[str, str]:
    """The task environment: ``bin/`` then this interpreter's folder first on PATH, one thread."""
    path = os.pathsep.join([str(root / "bin"), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
            "PYTHONUNBUFFERED": "1"}  # fmt: skip


def run_task(rendered: dict, workdir: Path, inputs: dict[str, Path | list[Path] | None], root: Path,
             section: str = "script", timeout: float = 300) -> TaskRun:  # fmt: skip
    """Stage ``inputs`` (name -> file(s), None for an absent optional one) into ``workdir`` as
    symlinks, run the rendered ``section`` with ``bash -ue``, then match the declared outputs."""
    if "error" in rendered:
        return TaskRun(workdir, -1, rendered["error"])
    workdir.mkdir(parents=True)
    staged: list[Path] = []
    for value in inputs.values():
        for src in ([] if value is None else value if isinstance(value, list) else [value]):
            (workdir / src.name).symlink_to(src.resolve())
            staged.append(src.resolve())
    before = {str(p): _fingerprint(p) for p in staged}
    (workdir / ".command.sh").write_text(rendered[section])
    run = subprocess.run(["bash", "-ue", ".command.sh"], cwd=workdir, env=task_env(root), capture_output=True,
                         text=True, timeout=timeout)  # fmt: skip
    result = TaskRun(workdir, run.returncode, (run.stdout + run.stderr)[-4000:])
    result.modified_inputs = [p for p in before if _fingerprint(Path(p)) != before[p]]
    for out in rendered["outputs"]:
        for decl in out["paths"]:
            matches = sorted(workdir.glob(decl["pattern"]))
            if out["emit"]:
                result.outputs.setdefault(out["emit"], []).extend(matches)
            if not matches and not decl["optional"]:
                result.missing.append(f"{rendered['process']}: output {decl['pattern']!r} ({out['emit']}) not made")
    return result


def spec(proc: dict, params: dict, values: dict, cpus: int = 1) -> dict:
    """A render spec for ``proc``: ``values`` maps each input name to a plain value, a Path, a list
    of Paths or None (absent optional file)."""

    def encode(v):
        if v is None:
            return []
        if isinstance(v, Path):
            return {"path": v.name}
        if isinstance(v, list) and v and all(isinstance(x, Path) for x in v):
            return {"path": [x.name for x in v]}
        return v

    task = {"cpus": cpus, "memory": "4 GB", "attempt": 1, "index": 1, "process": proc["name"], "ext": {}}
    return {"file": proc["file"], "process": proc["name"], "params": params, "task": task,
            "inputs": {k: encode(v) for k, v in values.items()}}  # fmt: skip
