"""The tree drawn at the top of psyche/errors.py is the class tree in it: every class, under its parent."""

from __future__ import annotations

import inspect
import re

import psyche.errors as errors

_ROW = re.compile(r"^    [ │├└─]*?(?P<name>[A-Z]\w+)\b")  # a tree row: 4 spaces, the branch drawing, a class


def drawn_tree(doc: str) -> dict[str, str | None]:
    """Class name -> the name drawn as its parent (None for the root), from the docstring's tree rows."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        row = _ROW.match(line)
        if row is None:
            continue
        depth = (row.start("name") - 4) // 4  # each level of the drawing is 4 columns wide
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[row["name"]] = stack[-1][1] if stack else None
        stack.append((depth, row["name"]))
    return parents


def real_tree() -> dict[str, str | None]:
    """Class name -> parent class name for every exception class psyche.errors defines."""
    out: dict[str, str | None] = {}
    for name, cls in vars(errors).items():
        if (
            inspect.isclass(cls)
            and issubclass(cls, errors.RunManagerError)
            and cls.__module__ == errors.__name__
        ):
            out[name] = None if cls is errors.RunManagerError else cls.__bases__[0].__name__
    return out


def test_the_docstring_draws_every_error_class_under_its_parent() -> None:
    assert errors.__doc__ is not None
    assert drawn_tree(errors.__doc__) == real_tree()


def test_the_tree_reader_sees_a_misplaced_class() -> None:
    doc = """Errors.

    Root                  the root
    ├── Child             a child
    │   └── Grandchild    under Child
    └── Other             beside Child
"""
    assert drawn_tree(doc) == {"Root": None, "Child": "Root", "Grandchild": "Child", "Other": "Root"}
