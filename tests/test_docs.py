"""The documentation matches the repository: the code layout names real modules, and links resolve.

docs/ARCHITECTURE.md's "Layout of the code" is where a newcomer looks for a module, so it must
list every module of the package and nothing that is gone; it drifted once when nothing checked it.
The README and docs/ link to each other by file and section; a moved section must not leave a dead link.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "eagle_iad"
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"
#: The Markdown files that link to each other (the README and everything in docs/).
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def layout_block() -> list[str]:
    """The lines of the code block under "## Layout of the code"."""
    section = ARCHITECTURE.read_text(encoding="utf-8").split("\n## Layout of the code\n", 1)[1]
    return section.split("```\n", 2)[1].split("\n")


def listed_modules() -> set[str]:
    """Module paths (relative to ``src/eagle_iad``) the layout names, from its indented tree.

    An entry is a ``name.py`` or ``name/`` at the start of a line, indented two spaces per level below
    ``src/eagle_iad/``; a package's line stands for its ``__init__.py``. Continuation lines (deeper
    indentation, no such name) are descriptions.
    """
    listed: set[str] = set()
    stack: list[str] = []  # the folders above the current line, by level
    inside = False
    for line in layout_block():
        if line == "src/eagle_iad/":
            stack, inside = [], True
            continue
        match = re.match(r"^( *)([A-Za-z0-9_]+(?:\.py|/))(?:\s|$)", line)
        if not match or not line.startswith(" "):
            if line and not line.startswith(" "):
                stack = []  # a top-level entry (benchmarks/, tests/, ...) ends the package's tree
            continue
        indent, name = len(match.group(1)), match.group(2)
        if indent % 2 or indent == 0:
            continue
        level = indent // 2 - 1
        if level > len(stack):
            continue  # a description that happens to start with a name
        del stack[level:]
        if name.endswith("/"):
            stack.append(name[:-1])
            listed.add("/".join([*stack, "__init__.py"]))
        else:
            listed.add("/".join([*stack, name]))
    assert inside, "docs/ARCHITECTURE.md: no src/eagle_iad/ tree under 'Layout of the code'"
    return listed


def test_layout_names_every_module_and_only_real_ones() -> None:
    real = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}
    listed = listed_modules()
    assert sorted(listed - real) == [], "docs/ARCHITECTURE.md lists modules that do not exist"
    assert sorted(real - listed) == [], "modules missing from docs/ARCHITECTURE.md's 'Layout of the code'"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    fence = False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith("```"):
            fence = not fence
        elif not fence and (match := re.match(r"^#{1,6} (.*)$", line)):
            found.add(slug(match.group(1)))
    return found


def test_links_between_docs_resolve() -> None:
    dead: list[str] = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s):, mailto: — outside the repository
            file, _, anchor = target.partition("#")
            resolved = (doc.parent / file).resolve() if file else doc
            if not resolved.exists():
                dead.append(f"{doc.relative_to(REPO)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                dead.append(f"{doc.relative_to(REPO)}: {target} (no such section)")
    assert dead == []


def test_readme_is_a_first_screen_not_a_manual() -> None:
    # The README is what a newcomer reads first; subjects live in docs/ (issue 22).
    assert len((REPO / "README.md").read_text(encoding="utf-8").split("\n")) <= 200


def test_service_limits_table_is_rendered_from_the_settings_table(tmp_path: Path) -> None:
    # docs/SERVICE.md's Limits table takes each service setting's default and flag from
    # eagle_iad/service/limits.py; after a change, `python -m eagle_iad.service.limits_doc docs/SERVICE.md`.
    from eagle_iad.service.limits import flagged
    from eagle_iad.service.limits_doc import current, render, rewrite

    service = REPO / "docs" / "SERVICE.md"
    assert current(service.read_text(encoding="utf-8")) == render(), "run the command above to rewrite it"
    assert all(f"`{flag}`" in render() for flag, _ in flagged()), "a setting of eagle serve has no row"
    stale = tmp_path / "SERVICE.md"
    stale.write_text(service.read_text(encoding="utf-8").replace("| 32 MiB |", "| 31 MiB |"), encoding="utf-8")
    assert rewrite(stale) and stale.read_text(encoding="utf-8") == service.read_text(encoding="utf-8")
    assert not rewrite(stale)


def test_usage_command_list_names_every_command() -> None:
    """docs/USAGE.md's command list names every ``eagle`` command (``export`` was once only in DEPLOY.md)."""
    from eagle_iad.cli import COMMAND_ORDER

    usage = (REPO / "docs" / "USAGE.md").read_text(encoding="utf-8")
    block = usage.split("\n## The commands\n", 1)[1].split("```", 2)[1]
    missing = [c for c in COMMAND_ORDER if not re.search(rf"`?eagle {re.escape(c)}(?=[\s`]|$)", block, re.M)]
    assert missing == [], f"docs/USAGE.md's command list does not name: {', '.join(missing)}"
