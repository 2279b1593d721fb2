"""A benchmark run's record: the table as Markdown and the rows as JSON, both headed by the command.

Shared by the benchmarks that write one (``evidence.py``, ``score_study.py``) so that every record
says how to rerun it and is written atomically (a run stopped half-way leaves the previous record).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from eagle_iad.atomic import atomic_write_text


def write_run_record(out: Path, stem: str, argv: list[str] | None, document: dict[str, Any], table: str) -> None:
    """Write ``out/stem.json`` (``document`` plus the command) and ``out/stem.md`` (the command, then ``table``)."""
    command = f"python benchmarks/{stem}.py " + " ".join(sys.argv[1:] if argv is None else argv)
    atomic_write_text(out / f"{stem}.json", json.dumps({**document, "command": command}, indent=2) + "\n")
    atomic_write_text(out / f"{stem}.md", f"`{command}`\n\n{table}")
    print(f"wrote {out / f'{stem}.md'} and {out / f'{stem}.json'}", file=sys.stderr)
