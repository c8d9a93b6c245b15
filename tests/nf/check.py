"""Static checks of the Nextflow pipeline (Nextflow itself cannot run on our machines).

The Groovy compiler parses every ``.nf`` and ``.config`` file up to its CONVERSION
phase (syntax errors fail there); ``nf_ast.groovy`` prints the processes,
workflows, includes and calls it finds, and :func:`pipeline_problems` checks that
includes resolve to files that define what they import, that every called
process/workflow exists, and that every ``bin/`` entry point a script uses
exists and is executable.
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


def groovy_available() -> bool:
    """True when Debian's ``groovy`` and the JDK it needs are installed."""
    return shutil.which("groovy") is not None and Path(JAVA_HOME).is_dir()


def parse(files: list[Path]) -> tuple[int, dict[Path, list[str]], str]:
    """Run the Groovy parser; return (exit status, facts per file, stderr)."""
    env = {**os.environ, "JAVA_HOME": JAVA_HOME}
    run = subprocess.run(["groovy", str(NF_AST), *map(str, files)], capture_output=True, text=True, env=env,
                         timeout=300)  # fmt: skip
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
            if ln.startswith("CALL ") and ln.split()[1] not in known:
                problems.append(f"{path}: calls {ln.split()[1]}, which is neither defined nor included")
        for tool in sorted(set(BIN_CALL.findall(path.read_text()))):
            script = root / "bin" / tool
            if not script.exists():
                problems.append(f"{path}: calls {tool}, but bin/{tool} does not exist")
            elif not os.access(script, os.X_OK):
                problems.append(f"{path}: bin/{tool} is not executable")
    return problems
