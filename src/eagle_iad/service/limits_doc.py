"""docs/SERVICE.md's Limits table, rendered from the settings table so the doc cannot drift from the code.

The rows for the service's settings take their default and their flag from
:data:`eagle_iad.service.limits.SETTINGS`; the other rows (limits fixed in code, the CLI's
environment variables, ``eagle serve-mllm``) are written here as text, in the doc's order.
tests/test_docs.py checks that the doc holds :func:`render`'s table;
``python -m eagle_iad.service.limits_doc docs/SERVICE.md`` rewrites it after a setting changes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from eagle_iad.choices import DEFAULT_MAX_PIXELS
from eagle_iad.service.limits import SETTINGS_BY_NAME

HEADER = "| limit | default | change it with | when exceeded |\n|---|---|---|---|\n"


@dataclass(frozen=True)
class Row:
    """One line of the table, as written."""

    limit: str
    default: str
    change: str
    exceeded: str

    def markdown(self) -> str:
        return f"| {self.limit} | {self.default} | {self.change} | {self.exceeded} |\n"


def _setting(name: str, limit: str, exceeded: str, *, default_note: str = "", change_note: str = "") -> Row:
    """The row of a service setting: its default (in the flag's unit) and its flag from the settings table."""
    setting = SETTINGS_BY_NAME[name]
    return Row(limit, setting.shown_default + default_note, f"`{setting.flag}`{change_note}", exceeded)


def rows() -> list[Row]:
    """Every row of the Limits table, in the doc's order."""
    pixels = f"{DEFAULT_MAX_PIXELS / 1_000_000:g} megapixels"
    return [
        Row("image size (CLI: `fit`, `inspect`, `eval-expert`, `eval`, `attention`)", pixels, "`EAGLE_MAX_PIXELS`",
            "one-line error naming the file, before decoding"),
        Row("image aspect ratio (longer / shorter side), CLI and service", "32:1", "`EAGLE_MAX_ASPECT`",
            "one-line error / 413 `image_too_elongated`"),
        Row("smallest image side", "16 px", "fixed", "one-line error / 400 `invalid_image`"),
        Row("any image, whatever the limits above", "about 179 megapixels (Pillow's decompression-bomb guard)",
            "fixed", "one-line error / 413"),
        Row("whole-frame input side (`--size`, fit option `size`)", "4096 px", "fixed",
            "one-line error / 400 `invalid_option`"),
        Row("training images per fit", "at least 2", "fixed", "one-line error / 400 `too_few_images`"),
        _setting("max_upload_bytes", "**service** (`eagle serve`) request body, uploads and chat included",
                 "413 `payload_too_large`"),
        _setting("max_pixels", "uploaded image size", "413 `too_many_pixels`",
                 change_note=" (the service's own; `EAGLE_MAX_PIXELS` does not apply to uploads, but a fit job "
                 "loads its training images with the CLI's limit, so raise both for larger pictures)"),
        Row("files per `/v1/inspect` request", "1 image, 8 form fields", "fixed",
            '400 `invalid_request` "Too many files. Maximum number of files is 1."'),
        _setting("max_zip_files", "files per fit request (multipart `files`)",
                 '400 `invalid_request` "Too many files. Maximum number of files is N."'),
        _setting("max_zip_files", "members of a fit zip", "413 `zip_too_many_files`"),
        _setting("max_zip_bytes", "uncompressed bytes of a fit zip (counted while inflating)", "413 `zip_too_large`"),
        _setting("max_zip_ratio", "inflation ratio of one zip member over 1 MiB (zip bomb)", "413 `zip_too_large`"),
        Row("zip members with `..` or absolute paths, symbolic links", "refused", "fixed", "400 `zip_unsafe_path`"),
        _setting("min_free_bytes", "free space kept on the state folder's disk",
                 "507 `insufficient_storage`; a full disk also answers 507", change_note=" (0: no floor)"),
        _setting("max_inspections", "inspections in progress at once (MLLM wait included)",
                 "429 `too_many_inspections` + `Retry-After`"),
        _setting("mllm_queue", "MLLM requests waiting for the model (inspections and chat share it)",
                 "429 `queue_full` + `Retry-After`"),
        _setting("max_fit_jobs", "fit jobs queued or running", "429 `too_many_fit_jobs` + `Retry-After: 30`",
                 default_note=" (one runs at a time)"),
        Row("category name", "1-64 of `A-Z a-z 0-9 _ . -`, starting with a letter or digit, no `..` (`eagle fit "
            "--category` and the service: one rule, `eagle_iad/naming.py`)", "fixed",
            "400 `invalid_name`; `eagle fit`: exit 2 (a `/` in a URL path addresses no route: 404)"),
        Row("`question` on `/v1/inspect`", "1000 characters", "fixed", "400 `invalid_request`"),
        Row("history page (`limit` on `/v1/inspections`)", "1-500 rows (50 if not given)", "per request",
            "400 `invalid_request`"),
        Row("figures listed per evaluation run", "64", "fixed", "not listed"),
        Row("chat `max_tokens` (`eagle serve --mllm`) / images per chat request", "4096 / 8", "fixed",
            "400 `invalid_request`"),
        Row("**`eagle serve-mllm`** requests waiting for the model", "8", "`--queue`", "429 + `Retry-After`"),
        Row("`eagle serve-mllm` request body", "64 MiB", "fixed", "413 `payload_too_large`"),
        Row("`eagle serve-mllm` `max_tokens` / images per request", "4096 / 8", "`--max-tokens-limit` / fixed",
            "400 `invalid_request`"),
    ]  # fmt: skip


def render() -> str:
    """The table's markdown, header included, each line ending in a newline."""
    return HEADER + "".join(row.markdown() for row in rows())


def current(doc: str) -> str:
    """The Limits table docs/SERVICE.md holds now: the first run of ``|`` lines under ``## Limits``."""
    section = doc.split("\n## Limits\n", 1)[1]
    lines = section.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "".join(lines[start:end])


def rewrite(path: Path) -> bool:
    """Put :func:`render`'s table in place of the doc's; True when the file changed."""
    doc = path.read_text(encoding="utf-8")
    old, new = current(doc), render()
    if old == new:
        return False
    head, tail = doc.split("\n## Limits\n", 1)
    path.write_text(f"{head}\n## Limits\n{tail.replace(old, new, 1)}", encoding="utf-8")
    return True


def main(argv: list[str]) -> int:
    """``python -m eagle_iad.service.limits_doc [docs/SERVICE.md]``: rewrite the doc, or print the table."""
    if not argv:
        sys.stdout.write(render())
        return 0
    changed = rewrite(Path(argv[0]))
    print(f"{argv[0]}: Limits table {'rewritten' if changed else 'already current'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
