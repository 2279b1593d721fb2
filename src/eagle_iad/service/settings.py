"""Service settings: where models, data, evaluation runs and the service's own state live, and limits.

One frozen object built by the CLI (or a test) and handed to :func:`create_app`, so every limit the
service enforces is visible in one place. The defaults of the limits a user can change come from
their table (:mod:`eagle_iad.service.limits`), which also makes the ``eagle serve`` flags and the doc.
The API key comes from the environment only, so it does not show up in ``ps`` output or shell history.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eagle_iad.history import history_url
from eagle_iad.service.limits import API_KEY_ENV as API_KEY_ENV
from eagle_iad.service.limits import default, from_env

#: How long ``eagle serve`` may take to stop after SIGTERM or SIGINT: requests in progress get this
#: long to be answered (then they are cut), and fit jobs, told to stop at once, get until this long
#: after the signal to reach their next progress step and remove their scratch. Then the history is
#: closed and the process exits (docs/OPERATIONS.md, "Stopping and scratch space").
SHUTDOWN_GRACE_S = 10


@dataclass(frozen=True)
class ServiceSettings:
    """Everything :func:`eagle_iad.service.create_app` needs; paths are resolved at construction."""

    models_dir: Path
    #: Service state: the SQLite file (unless ``db_path``), pictures and uploaded training images.
    state_dir: Path
    #: Server folders a fit may read from must lie inside this root (None: server folders are refused).
    data_root: Path | None = None
    #: Evaluation run directories (``eagle eval`` / ``eagle eval-expert`` outputs) listed by ``/v1/evaluations``.
    runs_dir: Path | None = None
    db_path: Path | None = None
    #: The history as a URL (``postgresql://...`` for replicas sharing one; docs/PLANT.md); it takes the
    #: place of ``db_path``. None: the SQLite file ``database``.
    history: str | None = None
    #: Pictures (and each inspection's kept image) served at ``/v1/files/...``; replicas sharing a history
    #: share this folder too (a shared mount). None: ``<state_dir>/files``.
    files: Path | None = None
    #: A built web console to serve at ``/`` (None: the one packaged with eagle_iad, when built).
    web_dir: Path | None = None
    mllm: str | None = None
    #: Where inspections run (``eagle serve --runtime``): ``torch`` loads fitted models; ``onnx`` and
    #: ``openvino`` load each ``<models>/<category>`` as an export folder (docs/DEPLOY.md).
    runtime: str = "torch"
    api_key: str | None = default("api_key")
    #: Largest request body (uploads included), in bytes.
    max_upload_bytes: int = default("max_upload_bytes")
    #: Largest decoded image, in pixels (checked from the header before decoding).
    max_pixels: int = default("max_pixels")
    #: Zip uploads: most members and most total uncompressed bytes (zip-bomb guard).
    max_zip_files: int = default("max_zip_files")
    max_zip_bytes: int = default("max_zip_bytes")
    #: Zip uploads: largest inflation ratio of one member (uncompressed / compressed bytes, counted while
    #: inflating); members under 1 MiB are exempt, so only a member that could do harm is judged.
    max_zip_ratio: int = default("max_zip_ratio")
    #: Free bytes the state folder's disk must keep: an upload or inspection that would leave less is
    #: refused with 507 before anything is written, so the history's database never hits a full disk.
    min_free_bytes: int = default("min_free_bytes")
    #: MLLM requests that may wait for the model; more get 429 with Retry-After.
    mllm_queue: int = default("mllm_queue")
    #: Inspections in progress at once (expert and MLLM stages, waiting included); more get 429 with
    #: Retry-After, so a flood of uploads is refused instead of piling up bodies and threads.
    max_inspections: int = default("max_inspections")
    #: Fit jobs that may run at once (the rest wait in the pool).
    fit_workers: int = 1
    #: Fit jobs queued or running at once; more get 429 with Retry-After (each holds its uploaded images).
    max_fit_jobs: int = default("max_fit_jobs")
    #: Seconds a stop (SIGTERM, SIGINT) may take: see :data:`SHUTDOWN_GRACE_S`.
    shutdown_grace_s: int = SHUTDOWN_GRACE_S

    def __post_init__(self) -> None:
        for name in ("models_dir", "state_dir", "data_root", "runs_dir", "db_path", "web_dir", "files"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value).expanduser().resolve())

    @property
    def database(self) -> Path:
        """The SQLite file holding the inspection history."""
        return self.db_path or self.state_dir / "eagle.sqlite3"

    @property
    def history_url(self) -> str:
        """Where the history is, as a URL (:mod:`eagle_iad.history`)."""
        return history_url(self.history or self.database)

    @property
    def files_dir(self) -> Path:
        """Pictures served at ``/v1/files/...``."""
        return self.files or self.state_dir / "files"

    @property
    def uploads_dir(self) -> Path:
        """Uploaded training images, one folder per fit job."""
        return self.state_dir / "uploads"

    @staticmethod
    def api_key_from_env() -> str | None:
        """The key from ``EAGLE_API_KEY`` (unset: no authentication); an empty, blank-padded or short one is
        refused (:func:`~eagle_iad.service.limits.check_api_key`)."""
        key: Any = from_env("api_key")
        return None if key is None else str(key)
