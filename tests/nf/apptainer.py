"""Lint of an Apptainer definition file, and its pins against the lock file CI installs.

Apptainer cannot run on the development machines, so :func:`def_problems` checks what can be
checked without it: a ``Bootstrap:`` line first and a ``From:``; only known ``%sections``;
``{{ ARG }}`` templates all have a default in ``%arguments``; every ``%files`` source exists
(relative to the repository root, where the image is built); the shell sections pass
``bash -n``; the base image's Python is the lock's; every ``name==version`` the file pins and
the torch it installs equal ``requirements.lock`` and CI's torch pin; and the lock itself is
installed (``%files`` copies it, ``%post`` runs ``pip install -r`` on it).
:func:`host_test_script` turns ``%test`` into a script that runs on the host (``%files``
destinations mapped back to their sources).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

KNOWN_SECTIONS = {"setup", "files", "environment", "post", "runscript", "startscript", "test", "labels", "help",
                  "arguments", "appinstall", "apphelp", "apprun", "applabels", "appenv", "appfiles", "apptest",
                  "appstart"}  # fmt: skip
SHELL_SECTIONS = ("setup", "environment", "post", "runscript", "startscript", "test")
HEADER_KEYS = {"Bootstrap", "From", "Stage", "Registry", "Namespace", "IncludeCmd", "MirrorURL", "OSVersion",
               "Include", "Library", "Fingerprints"}  # fmt: skip
PIN = re.compile(r"(?<![\w.-])([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)")
TEMPLATE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class DefFile:
    """A parsed definition file: header ``key: value`` lines and ``%section`` bodies."""

    header: list[tuple[str, str]] = field(default_factory=list)
    sections: dict[str, str] = field(default_factory=dict)
    arguments: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse_def(path: Path) -> DefFile:
    """Split ``path`` into header and sections; ``{{ ARG }}`` replaced by the ``%arguments`` defaults."""
    d = DefFile()
    current = None
    bodies: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = re.match(r"^%(\w+)\b", line)
        if m:
            current = m[1]
            if current not in KNOWN_SECTIONS:
                d.problems.append(f"{path.name}:{n}: unknown section %{current}")
            if current in bodies and not current.startswith("app"):
                d.problems.append(f"{path.name}:{n}: section %{current} appears twice")
            bodies.setdefault(current, [])
        elif current is None:
            if line.strip() and not line.lstrip().startswith("#"):
                key, sep, value = line.partition(":")
                if not sep or key.strip() not in HEADER_KEYS:
                    d.problems.append(f"{path.name}:{n}: not a header line: {line.strip()}")
                else:
                    d.header.append((key.strip(), value.strip()))
        else:
            bodies[current].append(line)
    for line in bodies.get("arguments", []):
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition("=")
            d.arguments[key.strip()] = value.strip()
    for name, lines in bodies.items():
        text = "\n".join(lines)
        for arg in sorted(set(TEMPLATE.findall(text)) - set(d.arguments)):
            d.problems.append(f"{path.name}: %{name} uses {{{{ {arg} }}}} with no default in %arguments")
        d.sections[name] = TEMPLATE.sub(lambda m: d.arguments.get(m[1], m[0]), text)
    return d


def files_entries(d: DefFile) -> list[tuple[str, str]]:
    """``(source, destination)`` of each ``%files`` line."""
    out = []
    for line in d.sections.get("files", "").splitlines():
        parts = line.split("#")[0].split()
        if parts:
            out.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
    return out


def read_lock(path: Path) -> tuple[dict[str, str], str | None, str | None]:
    """``({normalised name: version}, torch version from the header comment, Python 'X.Y')``."""
    pins, torch, python = {}, None, None
    for line in path.read_text().splitlines():
        body, _, comment = line.partition("#")
        if "==" in body:
            name, version = body.strip().split("==")
            pins[_norm(name)] = version.strip()
        for name, version in PIN.findall(comment):
            if _norm(name) == "torch":
                torch = version
        m = re.search(r"Python (\d+\.\d+)", comment)
        python = python or (m[1] if m else None)
    return pins, torch, python


def ci_torch_pin(root: Path) -> str | None:
    """The torch version the Makefile (CI's ``make test``) installs."""
    m = re.search(r"pip install[^\n]*\btorch==([0-9][\w.+-]*)", (root / "Makefile").read_text())
    return m[1] if m else None


def _bash_n(text: str) -> str | None:
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        f.write(text)
    try:
        run = subprocess.run(["bash", "-n", f.name], capture_output=True, text=True)
    finally:
        Path(f.name).unlink()
    return None if run.returncode == 0 else run.stderr.strip().replace(f.name, "line")


def def_problems(def_path: Path, root: Path, lock_path: Path | None = None) -> list[str]:
    """Every problem of the definition file (empty list: all good)."""
    lock_path = lock_path or root / "requirements.lock"
    d = parse_def(def_path)
    problems = list(d.problems)
    name = def_path.name
    if not d.header or d.header[0][0] != "Bootstrap":
        problems.append(f"{name}: the first line (after comments) must be 'Bootstrap: ...'")
    header = dict(d.header)
    if "From" not in header:
        problems.append(f"{name}: no 'From:' base image")
    for section in ("post", "test"):
        if section not in d.sections:
            problems.append(f"{name}: no %{section} section")
    for section in SHELL_SECTIONS:
        if section in d.sections:
            err = _bash_n(d.sections[section])
            if err:
                problems.append(f"{name}: %{section} fails bash -n: {err}")
    entries = files_entries(d)
    for src, _ in entries:
        if not list(root.glob(src)):
            problems.append(f"{name}: %files source {src} does not exist under {root}")
    pins, lock_torch, lock_python = read_lock(lock_path)
    torch = ci_torch_pin(root)
    if lock_torch != torch:
        problems.append(f"requirements.lock says torch=={lock_torch}, the Makefile installs torch=={torch}")
    text = "\n".join(d.sections.values())
    pinned = {}
    for pkg, version in PIN.findall(text):
        pinned[_norm(pkg)] = version
        want = torch if _norm(pkg) == "torch" else pins.get(_norm(pkg))
        if want is None:
            problems.append(f"{name}: pins {pkg}=={version}, which requirements.lock does not list")
        elif version != want:
            problems.append(f"{name}: pins {pkg}=={version}, requirements.lock/CI have {want}")
    if "torch" not in pinned:
        problems.append(f"{name}: installs no pinned torch (torch=={torch})")
    lock_dest = [dest for src, dest in entries if Path(src).name == lock_path.name]
    if not lock_dest:
        problems.append(f"{name}: %files does not copy {lock_path.name}")
    elif not re.search(r"pip\"?\s+install[^\n]*-r\s+" + re.escape(lock_dest[0]), d.sections.get("post", "")):
        problems.append(f"{name}: %post does not pip install -r {lock_dest[0]}")
    m = re.search(r"python:(\d+\.\d+)", header.get("From", ""))
    if lock_python and (not m or m[1] != lock_python):
        problems.append(f"{name}: base image {header.get('From')} is not Python {lock_python} (the lock's)")
    return problems


def host_test_script(def_path: Path, root: Path) -> str:
    """``%test`` with each ``%files`` destination replaced by its source under ``root``."""
    d = parse_def(def_path)
    script = d.sections.get("test", "")
    for src, dest in sorted(files_entries(d), key=lambda e: -len(e[1])):
        script = script.replace(dest, str(root / src))
    return script
