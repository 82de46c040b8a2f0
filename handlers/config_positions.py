"""Where each problem of a `k8s-ee.yaml` is written: line and column, from PyYAML's node marks.

`check` applies exactly the worker's rules (`handlers.config.load_config`) and places each problem:
a key's problem at the key, a list item's at the item; a missing field at the mapping that should
hold it. Paths are built by the same function the problems are (`config.field_path`), so a
problem and its place always meet.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from handlers.config import ConfigError, field_path, key_text, load_config

Position = tuple[int, int]  # 1-based line and column


class LocatedProblem(BaseModel):
    model_config = ConfigDict(frozen=True)

    line: int
    column: int
    path: str  # "" for the file as a whole
    message: str

    def text(self, file: str) -> str:
        where = f"{file}:{self.line}:{self.column}"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where} {self.message}"


def _mark(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def positions(text: str) -> dict[str, Position]:
    """The position of every field and list item, by path; "" is the top of the document."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    found: dict[str, Position] = {}
    if root is None:
        return found
    found[""] = _mark(root)
    constructor = yaml.SafeLoader("")

    def walk(node: yaml.Node, loc: tuple[int | str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                try:
                    key: Any = constructor.construct_object(key_node, deep=True)
                except yaml.YAMLError:
                    continue
                if isinstance(key, list | dict):
                    continue
                here = (*loc, key_text(key))
                found[field_path(here)] = _mark(key_node)
                walk(value_node, here)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                here = (*loc, index)
                found[field_path(here)] = _mark(item)
                walk(item, here)

    walk(root, ())
    return found


def _parent(path: str) -> str:
    if path.endswith("]"):
        return path[: path.rindex("[")]
    return path.rpartition(".")[0] if "." in path else ""


def place(path: str, found: dict[str, Position]) -> Position:
    """Where `path` is written, or the nearest enclosing field that is (a missing field's parent)."""
    while path not in found and path:
        path = _parent(path)
    return found.get(path, (1, 1))


def check(text: str) -> list[LocatedProblem]:
    """Every problem of the file, placed; none when the worker would take it."""
    try:
        found = positions(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "could not be parsed"
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return [LocatedProblem(line=line, column=column, path="", message=f"is not valid YAML: {problem}")]
    try:
        load_config(text)
    except ConfigError as exc:
        problems = []
        for problem in exc.problems:
            line, column = place(problem.path, found)
            problems.append(
                LocatedProblem(line=line, column=column, path=problem.path, message=problem.message)
            )
        return sorted(problems, key=lambda p: (p.line, p.column, p.path))
    return []
