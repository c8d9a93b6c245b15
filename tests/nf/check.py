"""Static checks of the Nextflow pipeline (Nextflow itself cannot run on our machines).

The Groovy compiler parses every ``.nf`` and ``.config`` file up to its CONVERSION
phase (syntax errors fail there); ``nf_ast.groovy`` prints the processes,
workflows, includes and calls it finds, and :func:`pipeline_problems` checks that
includes resolve to files that define what they import, that every called
process/workflow exists, that every ``bin/`` entry point a script uses exists and
is executable, and that no closure assigns a global or merges channels by order.
:func:`structure_problems` checks the conventions (nf-core's) on what
``nf_process.groovy describe`` reads: one process per module file, each with tag,
label (defined in a config), container, named outputs, a script calling a
``bin/`` entry point and a stub; every ``params.X`` used is declared, commented
and documented; profiles, resource labels, run reports and the lenient-cache
switch exist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

NF_AST = Path(__file__).with_name("nf_ast.groovy")
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
BIN_CALL = re.compile(r"\b(pixer-[a-z][a-z0-9-]*)")
PARAM_USE = re.compile(r"\bparams\.([A-Za-z_]\w*)")
PROFILES = ("standard", "test", "slurm", "apptainer", "gpu")
LABELS = ("process_single", "process_low", "process_medium", "process_high", "process_gpu")
REPORTS = ("trace", "timeline", "report", "dag")


def copy_pipeline(root: Path, dest: Path, docs: bool = False) -> Path:
    """Copy the pipeline files (main.nf, nextflow.config, workflows/, conf/, bin/; with ``docs``
    also docs/pipeline.md) from ``root`` into ``dest``, to plant faults in."""
    for name in ("main.nf", "nextflow.config"):
        shutil.copy(root / name, dest / name)
    for name in ("workflows", "conf", "bin"):
        shutil.copytree(root / name, dest / name)
    if docs:
        (dest / "docs").mkdir()
        shutil.copy(root / "docs" / "pipeline.md", dest / "docs" / "pipeline.md")
    return dest


def groovy_available() -> bool:
    """True when Debian's ``groovy`` and the JDK it needs are installed."""
    return shutil.which("groovy") is not None and Path(JAVA_HOME).is_dir()


def run_groovy(script: Path, args: list[str], cwd: Path | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run one of the Groovy scripts here with the JDK it needs (output captured, 300 s at most)."""
    env = {**os.environ, "JAVA_HOME": JAVA_HOME, **(env or {})}
    return subprocess.run(["groovy", str(script), *args], capture_output=True, text=True, env=env, timeout=300,
                          cwd=cwd)  # fmt: skip


def parse(files: list[Path]) -> tuple[int, dict[Path, list[str]], str]:
    """Run the Groovy parser; return (exit status, facts per file, stderr)."""
    run = run_groovy(NF_AST, [str(f) for f in files])
    facts: dict[Path, list[str]] = {}
    current = None
    for line in run.stdout.splitlines():
        if line.startswith("FILE "):
            current = Path(line[5:])
            facts[current] = []
        elif current is not None:
            facts[current].append(line)
    return run.returncode, facts, run.stderr


def nf_files(root: Path) -> list[Path]:
    """``main.nf`` and every ``.nf`` under ``workflows/``."""
    return [root / "main.nf", *sorted((root / "workflows").rglob("*.nf"))]


def config_files(root: Path) -> list[Path]:
    """``nextflow.config`` and every ``.config`` under ``conf/`` or ``workflows/``."""
    return [root / "nextflow.config", *sorted(root.glob("conf/**/*.config")), *sorted(root.glob("workflows/**/*.config"))]


def _resolve_include(src: Path, target: str) -> Path:
    path = (src.parent / target).resolve()
    return path if path.suffix == ".nf" else path.with_suffix(".nf")


def pipeline_problems(root: Path) -> list[str]:
    """Every static problem of the pipeline under ``root`` (empty list: all good)."""
    files = nf_files(root)
    status, facts, stderr = parse(files + config_files(root))
    problems = [line for line in stderr.splitlines() if line.strip()] if status else []
    defined: dict[Path, set[str]] = {}
    for path, lines in facts.items():
        defined[path.resolve()] = {ln.split()[1] for ln in lines if ln.startswith(("PROCESS ", "WORKFLOW "))}
    for path, lines in facts.items():
        if path.suffix != ".nf":
            continue
        known = set(defined.get(path.resolve(), set()))
        for ln in lines:
            if ln.startswith("INCLUDE "):
                _, name, alias, target = ln.split(" ", 3)
                inc = _resolve_include(path, target)
                if not inc.exists():
                    problems.append(f"{path}: include of {name} from {target}: no file {inc}")
                    continue
                if inc not in defined:
                    problems.append(f"{path}: include of {name} from {target}: {inc} was not parsed")
                elif name not in defined[inc]:
                    problems.append(f"{path}: {inc.name} defines no process or workflow {name}")
                known.add(alias)
        for ln in lines:
            if ln.startswith("GLOBAL_ASSIGN "):
                _, name, line = ln.split()
                problems.append(f"{path}:{line}: a closure assigns {name}, a global (declare it with def, or wire a channel)")
            elif ln.startswith("MERGE "):
                problems.append(f"{path}:{ln.split()[1]}: merge pairs channels by arrival order; join on the key instead")
            elif ln.startswith("CALL ") and ln.split()[1] not in known:
                problems.append(f"{path}: calls {ln.split()[1]}, which is neither defined nor included")
        for tool in sorted(set(BIN_CALL.findall(path.read_text()))):
            script = root / "bin" / tool
            if not script.exists():
                problems.append(f"{path}: calls {tool}, but bin/{tool} does not exist")
            elif not os.access(script, os.X_OK):
                problems.append(f"{path}: bin/{tool} is not executable")
    return problems


def _process_problems(root: Path, proc: dict, labels: set[str]) -> list[str]:
    where = f"{proc['file']}:{proc['line']}: process {proc['name']}"
    problems = []
    expected = Path("workflows/modules") / f"{proc['name'].lower()}.nf"
    if Path(proc["file"]) != expected:
        problems.append(f"{where}: processes live one per file in workflows/modules/ ({expected})")
    directives = {}
    for d in proc["directives"]:
        directives.setdefault(d["name"], []).append(d["source"])
    for name in ("tag", "label", "container"):
        if name not in directives:
            problems.append(f"{where}: no {name} directive")
    for source in directives.get("label", []):
        label = source.strip("'\"")
        if label not in labels:
            problems.append(f"{where}: label {label} has no withLabel resources in any config")
    for section in ("output", "script", "stub"):
        if section not in proc["sections"]:
            problems.append(f"{where}: no {section}: block")
    for out in proc["outputs"]:
        if not out.get("emit"):
            problems.append(f"{where}: output '{out['source']}' has no emit: name")
    if proc["script"] is not None and not BIN_CALL.search(proc["script"]):
        problems.append(f"{where}: script calls no bin/pixer-* entry point")
    return problems


def structure_problems(root: Path) -> list[str]:
    """Convention problems of the pipeline under ``root`` (empty list: all good)."""
    from nf.processes import describe

    try:
        facts = describe(root)
    except RuntimeError as err:
        return [str(err)]
    configs = facts["configs"]
    main = configs.get("nextflow.config", {})
    params, docs = main.get("params", {}), main.get("docs", {})
    labels = {label for c in configs.values() for label in c["labels"]}
    problems = []
    counts: dict[str, int] = {}
    for proc in facts["processes"]:
        counts[proc["file"]] = counts.get(proc["file"], 0) + 1
        problems += _process_problems(root, proc, labels)
    problems += [f"{f}: defines {n} processes (one per module file)" for f, n in counts.items() if n > 1]
    names = {p["name"] for p in facts["processes"]}
    for path, c in configs.items():
        problems += [f"{path}: withName {n} matches no process" for n in c["names"] if n.strip("'\"") not in names]
        for inc in c["includes"]:
            if not (root / inc.strip("'\"")).is_file():
                problems.append(f"{path}: includeConfig {inc}: no such file")
    problems += [f"conf/base.config: no resources for label {label}" for label in LABELS if label not in labels]
    profiles = set(main.get("profiles", []))
    problems += [f"nextflow.config: no profile {p}" for p in PROFILES if p not in profiles]
    for path in nf_files(root) + config_files(root):
        for name in sorted(set(PARAM_USE.findall(path.read_text()))):
            if name not in params:
                problems.append(f"{path.relative_to(root)}: params.{name} is not declared in nextflow.config")
    guide = root / "docs" / "pipeline.md"
    guide_text = guide.read_text() if guide.is_file() else ""
    for name in params:
        if not docs.get(name):
            problems.append(f"nextflow.config: params.{name} has no comment saying what it is")
        if f"--{name}" not in guide_text:
            problems.append(f"docs/pipeline.md: params.{name} is not documented (--{name})")
    text = (root / "nextflow.config").read_text()
    for report in REPORTS:
        block = re.search(rf"^{report}\s*\{{(.*?)^\}}", text, re.M | re.S)
        if not block or not re.search(r"enabled\s*=\s*true", block[1]) or "${params.outdir}/pipeline_info/" not in block[1]:
            problems.append(f"nextflow.config: no {report} report under params.outdir/pipeline_info")
    if "'lenient'" not in text:
        problems.append("nextflow.config: no switch to cache 'lenient'")
    return problems
