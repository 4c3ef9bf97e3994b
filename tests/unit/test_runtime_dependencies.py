"""solana-py is a test dependency only: the run-manager, the client and the local chain never import it."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from tests.support.paths import PROJECT_ROOT

SRC = PROJECT_ROOT / "src" / "psyche"


def _imported_top_level_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f():\n    from solana.rpc.async_api import AsyncClient\n    import solders.pubkey\n"
    )
    assert _imported_top_level_modules(sample) == {"solana", "solders"}


def test_nothing_under_src_imports_solana_py() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 100
    solana_users = [p for p in files if "solana" in _imported_top_level_modules(p)]
    offenders = [str(p.relative_to(PROJECT_ROOT)) for p in solana_users]
    assert offenders == []


def test_solana_py_is_a_dev_dependency_not_a_runtime_one() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {r.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip() for r in requirements}

    assert "solana" not in names(project["dependencies"])
    assert "solana" in names(project["optional-dependencies"]["dev"])
