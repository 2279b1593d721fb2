"""The SHA-256 of a file, streamed: one helper for every hash a model, an export or a backbone records.

Why one: a model's tensor file, an export's graph files and a backbone's weights are each checked
against a recorded hash, and the records are compared across those places (a manifest's
``tensors.sha256``, a sidecar's ``graph.sha256``, a backbone id); one reader guarantees they are the
same hex digest of the same bytes. Read in 1 MiB blocks, so a multi-gigabyte file costs no memory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

#: Bytes read per block while hashing.
BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike[str], progress: Callable[[int], None] | None = None) -> str:
    """Lower-case hex SHA-256 of the file at ``path`` (an ``OSError`` if it cannot be read).

    ``progress``: called with each block's size as it is read (a progress bar over a multi-gigabyte file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
            if progress is not None:
                progress(len(block))
    return digest.hexdigest()
