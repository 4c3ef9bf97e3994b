"""The import rules of docs/architecture.md, enforced: an AST walk over every module under src/psyche.

Every import counts, at module level, inside a function (the lazy ones) or under TYPE_CHECKING: each is a
dependency a reader has to follow. A forbidden import fails here with the module, the line and the rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# The parts of the distribution: its subpackages and the small torch-free modules beside them.
SHARED = frozenset(
    {
        "psyche.errors",
        "psyche.base58",
        "psyche.backoff",
        "psyche.boundedread",
        "psyche.env_contract",
        "psyche.hosts",
        "psyche.parallelism_table",
        "psyche._build_info",
    }
)
BUILD_ONLY = frozenset({"psyche._build_info"})  # scripts/build-binary writes it for the build's duration
PACKAGES = frozenset({"psyche.chain", "psyche.manager", "psyche.client", "psyche.localnet", "psyche.p2p"})
ROOT = "psyche"  # the package itself: __version__

# Part -> the parts it may import (itself and the package root always). Nothing lists psyche.manager, so
# nothing outside it imports it; the chain is pure codecs + the RPC edge and reaches no other part.
MAY_IMPORT: Mapping[str, frozenset[str]] = {
    "psyche.chain": frozenset({"psyche.errors", "psyche.base58", "psyche.backoff", "psyche.boundedread"}),
    "psyche.manager": frozenset({"psyche.chain"}) | SHARED,
    "psyche.client": frozenset({"psyche.chain", "psyche.p2p"}) | SHARED,
    "psyche.localnet": frozenset({"psyche.chain"}) | SHARED,
    "psyche.p2p": SHARED,
    "psyche.errors": frozenset(),
    "psyche.base58": frozenset(),
    "psyche.backoff": frozenset(),
    "psyche.boundedread": frozenset(),
    "psyche.env_contract": frozenset(),
    "psyche.hosts": frozenset(),
    "psyche._build_info": frozenset(),
    "psyche.parallelism_table": frozenset({"psyche.chain", "psyche.errors"}),
    ROOT: frozenset(),
}

# Third-party distribution -> the only module or part that may import it (solana-py: none at all, in
# test_runtime_dependencies.py).
ONLY_IN: Mapping[str, str] = {
    "torch": "psyche.client",  # the `client` extra: `run-manager --help` never loads it
    "safetensors": "psyche.client",
    "numpy": "psyche.client",
    "docker": "psyche.manager.runtime",  # the one Docker SDK module (DockerRuntime)
    "requests": "psyche.manager.runtime",  # docker-py's transport: its exceptions are translated there
}


def part_of(name: str) -> str:
    """The part a dotted module name belongs to (the longest listed prefix), else the package root."""
    for part in sorted(SHARED | PACKAGES, key=len, reverse=True):
        if name == part or name.startswith(part + "."):
            return part
    return ROOT


def _within(name: str, scope: str) -> bool:
    return name == scope or name.startswith(scope + ".")


def imported_names(module: str, source: str, *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute dotted name) of every import in ``source``, relative ones resolved against ``module``.

    ``from psyche import errors`` yields ``psyche.errors`` (a submodule named by the import list).
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target == ROOT or node.module is None:
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"
            else:
                yield node.lineno, target


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """Each import of ``module`` that breaks a rule above, as 'module:line imports name (why)'."""
    found: list[str] = []
    mine = part_of(module)
    if mine == ROOT and module != ROOT:
        return [f"{module}: a module outside every part; add it to the import rules (and architecture.md)"]
    for line, name in imported_names(module, source, is_package=is_package):
        top = name.split(".")[0]
        if top == ROOT:
            theirs = part_of(name)
            if theirs not in (mine, ROOT) and theirs not in MAY_IMPORT[mine]:
                found.append(f"{module}:{line} imports {name} ({mine} may not import {theirs})")
        elif top in ONLY_IN and not _within(module, ONLY_IN[top]):
            found.append(f"{module}:{line} imports {name} (only {ONLY_IN[top]} may import {top})")
    return found


def source_modules() -> Iterator[tuple[str, str, bool]]:
    """(dotted name, source, is a package) of every module under src/psyche."""
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        yield ".".join(parts[:-1] if is_package else parts), path.read_text(), is_package


def test_src_keeps_the_import_rules() -> None:
    modules = list(source_modules())
    assert len(modules) > 100  # the walk found the tree
    broken = [v for name, source, pkg in modules for v in violations(name, source, is_package=pkg)]
    assert broken == []


def test_the_rules_name_every_part() -> None:
    assert set(MAY_IMPORT) == SHARED | PACKAGES | {ROOT}
    assert {part_of(name) for name, _, _ in source_modules()} | BUILD_ONLY == set(MAY_IMPORT)


def test_the_chain_operations_do_not_reach_back_into_the_commands() -> None:
    # manager/operations is the core the click commands call: commands -> operations, never back.
    back = [
        f"{name}:{line} imports {imported}"
        for name, source, pkg in source_modules()
        if _within(name, "psyche.manager.operations")
        for line, imported in imported_names(name, source, is_package=pkg)
        if _within(imported, "psyche.manager.commands")
    ]
    assert back == []


# --- the checker itself can fail -----------------------------------------------------------------


def test_a_chain_module_importing_the_manager_is_refused() -> None:
    assert violations("psyche.chain.rpc", "from psyche.manager.settings import Settings\n") == [
        "psyche.chain.rpc:1 imports psyche.manager.settings (psyche.chain may not import psyche.manager)"
    ]


def test_nothing_outside_the_manager_imports_it_even_lazily_or_relatively() -> None:
    lazy = "def f():\n    from psyche.manager import cli\n"
    assert violations("psyche.client.runner", lazy) == [
        "psyche.client.runner:2 imports psyche.manager (psyche.client may not import psyche.manager)"
    ]
    assert violations("psyche.localnet.cli", "from ..manager.app import App\n") == [
        "psyche.localnet.cli:1 imports psyche.manager.app (psyche.localnet may not import psyche.manager)"
    ]
    assert (
        violations("psyche.manager.mainjob", "from .settings import Settings\nimport psyche.chain.rpc\n")
        == []
    )


def test_torch_outside_the_client_and_docker_outside_runtime_are_refused() -> None:
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
    assert violations("psyche.manager.doctor", typing_only) == [
        "psyche.manager.doctor:3 imports torch (only psyche.client may import torch)"
    ]
    assert violations("psyche.client.train", "import torch.distributed as dist\n") == []
    assert violations("psyche.manager.engines", "from docker.errors import APIError\n") == [
        "psyche.manager.engines:1 imports docker.errors (only psyche.manager.runtime may import docker)"
    ]
    assert violations("psyche.manager.runtime", "import docker\n") == []


def test_a_shared_module_stays_below_the_parts_and_a_new_module_must_be_placed() -> None:
    assert violations("psyche.errors", "from psyche import chain\n") == [
        "psyche.errors:1 imports psyche.chain (psyche.errors may not import psyche.chain)"
    ]
    assert violations("psyche.env_contract", "from psyche.client import env\n") == [
        "psyche.env_contract:1 imports psyche.client (psyche.env_contract may not import psyche.client)"
    ]
    assert violations("psyche.manager.cli", "from psyche import __version__\n") == []
    assert violations("psyche.newthing", "") == [
        "psyche.newthing: a module outside every part; add it to the import rules (and architecture.md)"
    ]


def test_relative_imports_resolve_against_the_package() -> None:
    source = "from . import work\nfrom .. import rpc\nfrom .errors import fail\n"
    in_package = [n for _, n in imported_names("psyche.chain.logic", source, is_package=True)]
    assert in_package == ["psyche.chain.logic.work", "psyche.chain.rpc", "psyche.chain.logic.errors"]
    in_module = [n for _, n in imported_names("psyche.chain.logic.machine", source)]
    assert in_module == ["psyche.chain.logic.work", "psyche.chain.rpc", "psyche.chain.logic.errors"]
