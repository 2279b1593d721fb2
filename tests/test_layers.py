"""The package's layers import only downward, and no modules import each other in a cycle.

Read from the source with ``ast`` (nothing is imported), so imports inside functions and under
``TYPE_CHECKING`` count too: a lazy upward import is still an upward dependency, it only hides
until the code path runs. ``LAYERS`` is the architecture docs/ARCHITECTURE.md draws;
a new module belongs to the layer of its package, or, at the top level, must be placed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "eagle_iad"

#: Lowest first. A module may import its own layer and the layers below it, never one above.
#: Keys are module names relative to ``eagle_iad``; a package's name covers all of its modules.
LAYERS: list[tuple[str, ...]] = [
    # "" is eagle_iad/__init__.py
    (
        "",
        "errors",
        "ranges",
        "stops",
        "atomic",
        "naming",
        "choices",
        "images",
        "outputs",
        "scratch",
        "record",
        "review",
        "file_hash",
        "folder_swap",
        "signal_stack",
    ),
    ("registry",),
    ("history",),
    ("data",),
    ("tgps",),
    ("fit_options",),
    ("expert",),
    ("mllm",),
    ("verdict",),
    ("pipeline",),
    ("eval",),
    ("demo",),
    ("service",),
    ("station",),
    ("cli",),
    ("testing",),  # test-model builders: the top, so no product module may import them
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST, *, typing_only: bool) -> list[ast.AST]:
    """Every node of ``tree``; without ``typing_only``, none under ``if TYPE_CHECKING:``."""
    found: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        found.append(node)
        if not typing_only and isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))
    return found


def imports_of(name: str, path: Path, known: set[str], *, typing_only: bool = True) -> set[str]:
    """Every ``eagle_iad`` module ``name`` imports, wherever the import statement is.

    ``typing_only=False`` leaves out the imports under ``if TYPE_CHECKING:``, which never run.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8")), typing_only=typing_only):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one.
            subs = {f"{source}.{alias.name}" for alias in node.names} & known
            found.update(subs or {source})
    return {m for m in found if m == "eagle_iad" or m.startswith("eagle_iad.")} - {name}


def graph(*, typing_only: bool = True) -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, set(modules), typing_only=typing_only) for name, path in modules.items()}


def layer_of(module: str) -> int:
    relative = module.removeprefix("eagle_iad").removeprefix(".")
    for index, layer in enumerate(LAYERS):
        for key in layer:
            if relative == key or (key and relative.startswith(key + ".")):
                return index
    raise AssertionError(f"module {module} is in no layer; add it to LAYERS in tests/test_layers.py")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    for module in graph():
        layer_of(module)


def test_no_upward_import() -> None:
    upward = [
        f"{source} (layer {LAYERS[layer_of(source)][0] or 'eagle_iad'}) imports {target} "
        f"(layer {LAYERS[layer_of(target)][0] or 'eagle_iad'})"
        for source, targets in graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(source)
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    """No cycle between modules at run time.

    Two loops are not cycles: a package's ``__init__`` re-exporting its own modules (``eagle_iad.expert``
    re-exports ``fit`` from ``expert.patchcore``; ignoring the edge to one's own package still finds
    every real cycle between two modules), and an annotation-only import under ``if TYPE_CHECKING:``
    (it never runs; the layer check above still counts it).
    """
    edges = {
        source: {t for t in targets if not source.startswith(t + ".")}
        for source, targets in graph(typing_only=False).items()
    }
    assert cycles(edges) == []


@pytest.mark.parametrize(
    ("source", "text", "expected"),
    [
        ("eagle_iad.tgps.thresholds", "from eagle_iad.expert.search import X", {"eagle_iad.expert.search"}),
        ("eagle_iad.tgps.thresholds", "def f():\n    from ..expert import search", {"eagle_iad.expert.search"}),
        ("eagle_iad.tgps.thresholds", "from . import regions", {"eagle_iad.tgps.regions"}),
        ("eagle_iad.tgps.thresholds", "import eagle_iad.cli as c", {"eagle_iad.cli"}),
    ],
)
def test_the_check_sees_every_import_form(tmp_path: Path, source: str, text: str, expected: set[str]) -> None:
    """The checker itself: absolute, relative, function-local and aliased imports are all found."""
    path = tmp_path / "thresholds.py"
    path.write_text(text, encoding="utf-8")
    assert imports_of(source, path, set(all_modules())) == expected
    assert any(layer_of(t) > layer_of(source) for t in expected) == ("expert" in text or "cli" in text)


def test_a_cycle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_annotation_only_imports_count_for_layers_but_not_for_cycles(tmp_path: Path) -> None:
    path = tmp_path / "preprocess.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from eagle_iad.cli import main\n")
    known = set(all_modules())
    assert imports_of("eagle_iad.expert.preprocess", path, known) == {"eagle_iad.cli"}
    assert imports_of("eagle_iad.expert.preprocess", path, known, typing_only=False) == set()


def test_the_product_never_imports_the_testing_package() -> None:
    """``eagle_iad.testing`` (random-weight test models) is for tests and benchmarks only."""
    importers = sorted(
        source
        for source, targets in graph().items()
        if not source.startswith("eagle_iad.testing")
        and any(t == "eagle_iad.testing" or t.startswith("eagle_iad.testing.") for t in targets)
    )
    assert importers == []
