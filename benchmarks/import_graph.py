"""Draw the package's import graph by layer: ``python benchmarks/import_graph.py [--out docs/img/import-graph.svg]``.

One box per unit (a subpackage, or a top-level module), one row per layer of ``tests/test_layers.py``
(lowest at the bottom), one arrow per unit that imports another. Every arrow should point down or
sideways; one that points up (into a higher layer) is drawn red, which is what the test refuses.
The graph and the layer order are read from ``tests/test_layers.py``, so the picture and the check
cannot disagree. ``--package`` draws another checkout's sources (e.g. an older commit unpacked with
``git archive``) for a before/after comparison. Renders with graphviz's ``dot`` when it is installed,
otherwise with matplotlib (a dependency of the package).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_checker() -> ModuleType:
    """``tests/test_layers.py`` as a module (it holds ``LAYERS`` and the ast-based graph)."""
    spec = importlib.util.spec_from_file_location("test_layers", REPO / "tests" / "test_layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unit_of(module: str) -> str:
    """``eagle_iad.expert.store`` -> ``expert``; the package's own ``__init__`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def unit_graph(checker: ModuleType, package: Path) -> tuple[dict[str, int], set[tuple[str, str]]]:
    """Each unit's layer index, and the edges between distinct units."""
    setattr(checker, "PACKAGE", package)  # noqa: B010 - the checker reads its module-level PACKAGE
    layers: dict[str, int] = {}
    edges: set[tuple[str, str]] = set()
    for source, targets in checker.graph().items():
        layers[unit_of(source)] = checker.layer_of(source)
        for target in sorted(targets):
            layers[unit_of(target)] = checker.layer_of(target)
            if unit_of(source) != unit_of(target):
                edges.add((unit_of(source), unit_of(target)))
    return layers, edges


def to_dot(layers: dict[str, int], edges: set[tuple[str, str]]) -> str:
    rows: dict[int, list[str]] = defaultdict(list)
    for unit, layer in layers.items():
        rows[layer].append(unit)
    lines = ["digraph eagle_iad {", "  rankdir=TB; node [shape=box, style=rounded, fontname=Helvetica];"]
    for layer in sorted(rows, reverse=True):
        names = " ".join(f'"{u}"' for u in sorted(rows[layer]))
        lines.append(f"  {{ rank=same; {names} }}")
    for source, target in sorted(edges):
        colour = "red" if layers[target] > layers[source] else "gray40"
        lines.append(f'  "{source}" -> "{target}" [color={colour}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_matplotlib(layers: dict[str, int], edges: set[tuple[str, str]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "eagle-iad"  # the same graph gives the same file
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    rows: dict[int, list[str]] = defaultdict(list)
    for unit, layer in layers.items():
        rows[layer].append(unit)
    width = max(len(units) for units in rows.values())
    top = max(layers.values())
    position: dict[str, tuple[float, float]] = {}
    for layer, units in rows.items():
        if len(units) == 1:  # a staircase: arrows that skip layers stay apart from the ones that do not
            position[units[0]] = (0.5 + (width - 1) * layer / top, float(layer))
            continue
        for index, unit in enumerate(sorted(units)):
            position[unit] = ((index + 0.5) * width / len(units), float(layer))
    figure = Figure(figsize=(1.7 * width + 1, 0.75 * (max(layers.values()) + 1) + 1))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    upward = 0
    for source, target in sorted(edges):
        up = layers[target] > layers[source]
        upward += up
        axes.add_patch(
            FancyArrowPatch(
                position[source], position[target], arrowstyle="-|>", mutation_scale=10,
                connectionstyle="arc3,rad=0.12", shrinkA=13, shrinkB=13,
                color="#d62728" if up else "#7f7f7f", alpha=0.9 if up else 0.45, linewidth=2.0 if up else 0.8,
            )
        )  # fmt: skip
    for unit, (x, y) in sorted(position.items()):
        axes.text(x, y, unit, ha="center", va="center", fontsize=9,
                  bbox={"boxstyle": "round,pad=0.35", "facecolor": "#eef3fb", "edgecolor": "#4a6fa5"})  # fmt: skip
    axes.set_xlim(-0.2, width + 0.2)
    axes.set_ylim(-0.6, top + 0.6)
    axes.axis("off")
    axes.set_title(f"{title}: {len(edges)} unit imports, {upward} upward (red)", fontsize=10)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, metadata={"Date": None} if out.suffix == ".svg" else {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=REPO / "src" / "eagle_iad", help="the eagle_iad folder to read")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "import-graph.svg", help=".svg or .png")
    parser.add_argument("--title", default="eagle_iad import graph (layers bottom to top)")
    parser.add_argument("--matplotlib", action="store_true", help="use matplotlib even when dot is installed")
    args = parser.parse_args(argv)
    layers, edges = unit_graph(load_checker(), args.package.resolve())
    dot = shutil.which("dot")
    if dot is not None and not args.matplotlib:
        fmt = args.out.suffix.lstrip(".") or "svg"
        source = to_dot(layers, edges).encode()
        rendered = subprocess.run([dot, f"-T{fmt}"], input=source, capture_output=True, check=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(rendered.stdout)
    else:
        draw_matplotlib(layers, edges, args.out, args.title)
    upward = sorted(f"{s} -> {t}" for s, t in edges if layers[t] > layers[s])
    print(f"{args.out}: {len(layers)} units, {len(edges)} imports between them, {len(upward)} upward")
    for edge in upward:
        print(f"  upward: {edge}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
