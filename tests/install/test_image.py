"""The image's Dockerfile: hadolint finds nothing, it copies exactly what pyproject.toml
packages (and what building the package reads), the build context holds nothing else, and the
final stage runs unprivileged on a read-only root. No Docker engine is here to build it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from setuptools import find_packages

from tests.support.tools import ROOT, run

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of each line, continuations joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            lines.append(pending.strip())
            pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def copied(stage: list[tuple[str, str]]) -> set[str]:
    sources: set[str] = set()
    for name, args in stage:
        if name == "COPY" and not args.startswith("--from"):
            *parts, _destination = args.split()
            sources |= {part.rstrip("/") for part in parts}
    return sources


def packaged() -> tuple[set[str], set[str]]:
    """The top-level packages pyproject.toml packages, and the files building it reads."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = {name.split(".")[0] for name in find_packages(where=str(ROOT), include=include)}
    return tops, {"pyproject.toml", project["project"]["readme"]}


def test_hadolint_finds_nothing() -> None:
    done = run("hadolint", "--no-color", str(DOCKERFILE), check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_build_stage_copies_exactly_what_is_packaged() -> None:
    build, final = stages()
    packages, files = packaged()
    assert packages == {"gateway", "handlers", "providers"}
    assert copied(build) == packages | files
    # The final stage takes only the built virtualenv.
    assert [args for name, args in final if name == "COPY"] == ["--from=build /opt/k8s-ee /opt/k8s-ee"]
    # The context holds nothing else (.dockerignore), so nothing else could be copied.
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert allowed == packages | files


def test_a_wheel_built_from_the_copied_files_is_the_whole_package(tmp_path: Path) -> None:
    """Built from only what the Dockerfile copies, the wheel holds every module and data file
    (deliver.lua) the repository's own build does."""
    context = tmp_path / "context"
    packages, files = packaged()
    for name in packages:
        shutil.copytree(ROOT / name, context / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in files:
        shutil.copy(ROOT / name, context / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(context),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = (tmp_path / "dist").glob("*.whl")
    names = {n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n}
    expected = {
        str(path.relative_to(ROOT))
        for name in packages
        for path in (ROOT / name).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and (path.suffix in (".py", ".lua"))
    }
    assert names == expected


def test_the_final_stage_runs_unprivileged_and_needs_no_writable_root() -> None:
    _, final = stages()
    users = [args for name, args in final if name == "USER"]
    assert users == ["10001:10001"]  # numeric, so runAsNonRoot can verify it
    assert re.findall(r'"([^"]+)"', dict(final)["ENTRYPOINT"]) == ["k8s-ee"]
    assert dict(final)["CMD"] == '["serve"]'
    env = dict(final)["ENV"]
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # bytecode is compiled at build time instead
    assert "compileall" in dict(stages()[0])["RUN"]
    # No compiler, no package build in the final stage: only the user is added.
    run_lines = [args for name, args in final if name == "RUN"]
    assert all("apt-get" not in line and "pip install" not in line for line in run_lines)
