"""The layering rules of docs/architecture.md, checked on the source and on a real import.

Domain packages (the service client, persistence, generation and training jobs) import
nothing from discord.py, neither directly nor through the bot modules they import; the
Discord side joins them through Protocols. Cogs stay thin: they never call the service
client (`bot.v1b`) themselves.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = ("bot.v1b", "bot.store", "bot.jobs", "bot.training")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    """Every module of the bot and the cogs, by dotted name."""
    files = [*(ROOT / "bot").rglob("*.py"), *(ROOT / "cogs").rglob("*.py")]
    return {module_name(path): path for path in files}


def imported_names(path: Path, name: str) -> Iterator[str]:
    """Every module an import statement of the file names (type-checking-only ones too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base
            # `from bot import v1b` imports the module bot.v1b.
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules its imports load: each named one and the packages above it."""
    modules = source_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for imported in imported_names(path, name):
            parts = imported.split(".")
            for depth in range(1, len(parts) + 1):
                prefix = ".".join(parts[:depth])
                if prefix in modules or depth == 1:
                    edges.add(prefix)
        # Importing a module runs its packages' __init__ first.
        parents = name.split(".")[:-1]
        edges.update(".".join(parents[:depth]) for depth in range(1, len(parents) + 1))
        edges.discard(name)
        graph[name] = edges
    return graph


def in_package(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def chain_to(graph: dict[str, set[str]], start: str, target: str) -> list[str] | None:
    """The shortest import chain from `start` to `target` (a top-level name), if any."""
    paths: dict[str, list[str]] = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for edge in sorted(graph.get(module, ())):
                if edge == target:
                    return [*paths[module], edge]
                if edge not in paths and edge in graph:
                    paths[edge] = [*paths[module], edge]
                    following.append(edge)
        frontier = following
    return None


def test_domain_packages_import_no_discord_directly_or_through_bot_modules() -> None:
    graph = import_graph()
    domain = sorted(m for m in graph if in_package(m, DOMAIN))
    assert "bot.training.service" in domain and "bot.jobs.poller" in domain
    chains = {m: chain for m in domain if (chain := chain_to(graph, m, "discord"))}
    assert not chains, "\n".join(" -> ".join(chain) for chain in chains.values())


def test_cogs_import_nothing_from_the_service_client() -> None:
    graph = import_graph()
    cogs = [m for m in graph if in_package(m, ("cogs",))]
    assert "cogs.generate" in cogs
    offending = {
        cog: sorted(e for e in edges if in_package(e, ("bot.v1b",)))
        for cog, edges in graph.items()
        if cog in cogs
    }
    assert not {cog: e for cog, e in offending.items() if e}


# Every import statement goes through builtins.__import__, even of a module already loaded:
# record which bot module asks for discord while the domain packages are imported.
_PROBE = """
import builtins, importlib, json, sys
importers = set()
original = builtins.__import__
def watching(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__", "")
    if level == 0 and name.split(".")[0] == "discord":
        if importer == "bot" or importer.startswith("bot."):
            importers.add(importer)
    return original(name, globals, locals, fromlist, level)
builtins.__import__ = watching
for package in sys.argv[1:]:
    importlib.import_module(package)
print(json.dumps(sorted(importers)))
"""


def test_importing_the_domain_packages_loads_no_discord() -> None:
    # The real interpreter: catches imports the source scan cannot see (importlib, __all__).
    answer = subprocess.run(
        [sys.executable, "-c", _PROBE, *DOMAIN],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    importers = set(json.loads(answer.stdout))
    assert not importers, sorted(importers)
