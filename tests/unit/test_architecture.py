"""The import rules of docs/architecture.md, checked on the source (ast), so the shape holds.

Each rule names who may not import what; a failure names the module and the import."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "controller"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every ``controller...`` module the file imports (at any depth, TYPE_CHECKING too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("controller"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            mod = node.module
            if node.level:  # relative: resolve against the file's package
                parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
                base = ".".join(parts[:-node.level])
                mod = f"{base}.{mod}"
            if mod.startswith("controller"):
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names
                             if f"{mod}.{a.name}" in MODULES)
    return found


def _violations(importer: str, forbidden: str) -> list[str]:
    bad = []
    for name, path in MODULES.items():
        if not re.fullmatch(importer, name):
            continue
        for imp in sorted(_imports(path)):
            if re.fullmatch(forbidden, imp):
                bad.append(f"{name} imports {imp}")
    return bad


RULES = [
    # (who, may not import, why)
    (r"controller\.network\..*",
     r"controller\.(api|compute|lab|store|operations|main|cluster)(\..*)?",
     "the network core knows nothing of the layers above it"),
    (r"controller\.network\.(flows|explain)", r"controller(\..*)?",
     "the leaves of the core import nothing of the project"),
    (r"controller\.network\.openflow", r"controller\.network\.(?!flows$).*",
     "the message layer knows flows, not the planner"),
    (r"controller\.network\.(?!app$).*", r"controller\.network\.app",
     "only the composition root starts the os-ken app"),
    (r"controller\.lab(\..*)?", r"controller\.(network|compute|api|store|operations)(\..*)?",
     "the lab builds networks from topology files; it never imports the controller"),
    (r"controller\.topology(\..*)?",
     r"controller\.(network|compute|api|store|lab|operations|main)(\..*)?",
     "topology files are the bottom layer"),
    (r"controller\.cluster\.(etcd|etcdproc|assign|view|metrics)", r"controller\.(api|compute|"
     r"store|operations|main|lab)(\..*)?|controller\.cluster\.(member|replica)",
     "the cluster's building blocks (etcd client, assignment, view) know nothing of who uses "
     "them"),
    (r"controller\.(api|compute|store|operations|main|cluster)(\..*)?",
     r"controller\.network\.(core|router|tunnels|destinations|protection|plan|state|sender)",
     "outer layers use the service's operations and views (and the records they hand out: "
     "intents, flows, views), not the core's machinery"),
    (r"controller\.pce\.(?!main$).*",
     r"controller\.(network|compute|api|store|lab|operations|main|cluster)(\..*)?",
     "the PCE computes on routers' topology files; it knows nothing of the OpenFlow controller"),
    (r"controller\.pce\.codec", r"controller(\..*)?", "PCEP on the wire is a leaf"),
]


@pytest.mark.parametrize(("importer", "forbidden", "why"), RULES,
                         ids=[r[2] for r in RULES])
def test_import_rules(importer: str, forbidden: str, why: str) -> None:
    assert _violations(importer, forbidden) == [], why


def test_nothing_outside_the_core_reaches_into_the_service() -> None:
    """The boundary: ``service.core`` and ``service.lock`` are the network package's own."""
    reach = re.compile(r"\bservice\.(core|lock)\b|\._service\.(core|lock)\b")
    bad = [f"{name}:{i}: {line.strip()}"
           for name, path in MODULES.items() if not name.startswith("controller.network")
           for i, line in enumerate(path.read_text().splitlines(), start=1)
           if reach.search(line)]
    assert bad == []


def test_the_rules_see_imports() -> None:
    """The checker itself: the core does import the flows leaf, and the app os-ken."""
    assert "controller.network.flows" in _imports(MODULES["controller.network.core"])
    assert "controller.network.service" in _imports(MODULES["controller.network.app"])
    assert _violations(r"controller\.network\.core", r"controller\.network\.flows")
