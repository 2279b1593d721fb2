"""The service answers the engine's errors through one mapping: the engine's message, never a bare 500.

A real ``openai:`` backend pointed at a port nobody listens on fails inside ``/v1/inspect`` exactly
as an MLLM server that went down would; the answer must be 502 with the backend's own message (what
the chat route already answers), and the failed inspection must leave neither a history row nor
pictures behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import LiveServer
from expert_fakes import noise_pngs
from test_service import call, free_port, multipart

from eagle_iad.errors import (
    BackboneUnavailableError,
    BackendError,
    ConfigError,
    DataError,
    EagleError,
    FolderFinishingError,
    FolderInUseError,
    ImageError,
    ImageTooElongatedError,
    ImageTooLargeError,
    ModelFormatError,
    OutputError,
)
from eagle_iad.expert import ExpertConfig, fit, save
from eagle_iad.service import ServiceSettings, create_app
from eagle_iad.service.errors import api_error


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BackendError("up: cannot reach the server"), 502, "backend_error"),
        (BackboneUnavailableError("no weights"), 503, "backbone_unavailable"),
        (ImageTooElongatedError("x.png: 1000x20 is too elongated"), 413, "image_too_elongated"),
        (ImageTooLargeError("x.png: too large"), 413, "too_many_pixels"),
        (ImageError("x.png: corrupt"), 400, "invalid_image"),
        (FolderFinishingError("a station deleted finishes its image"), 409, "folder_finishing"),
        (FolderInUseError("taken by another station"), 409, "folder_in_use"),
        (ConfigError("bad option"), 400, "invalid_option"),
        (DataError("no images"), 422, "invalid_data"),
        (ModelFormatError("tampered"), 409, "model_invalid"),
        (OutputError("not ours"), 409, "output_conflict"),
        (EagleError("something else"), 400, "invalid_request"),
    ],
)
def test_every_engine_error_has_its_status_and_keeps_its_message(error: EagleError, status: int, code: str) -> None:
    answer = api_error(error)
    assert (answer.status, answer.code, answer.message) == (status, code, str(error))
    assert answer.type == ("server_error" if status >= 500 else "invalid_request_error")
    # an error that passes by itself says when to try again; the others do not
    assert answer.headers == ({"Retry-After": "2"} if code == "folder_finishing" else {})


def test_backend_failure_during_inspect_is_502_with_the_backend_message(tmp_path: Path) -> None:
    models = tmp_path / "models"
    config = ExpertConfig(resize=72, crop=64, pretrain_dim=48, target_dim=32, batch_size=4)
    save(fit(noise_pngs(tmp_path / "train", 3, seed=1), "cat", config).model, models / "cat")
    dead = f"openai:http://127.0.0.1:{free_port()}/v1#nobody"  # bound then closed: connections are refused
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "state", mllm=dead)
    image = noise_pngs(tmp_path / "query", 1, seed=2)[0].read_bytes()
    body, ctype = multipart({"category": "cat"}, [("image", "q.png", image, "image/png")])
    with LiveServer(create_app(settings)) as live:
        status, _, answer = call("POST", f"{live.base}/v1/inspect", body=body, content_type=ctype)
        assert status == 502, answer
        error = answer["error"]
        assert (error["type"], error["code"]) == ("server_error", "backend_error")
        assert error["message"].startswith(f"{dead}: cannot reach the server: ") and "Traceback" not in str(answer)
        assert call("GET", f"{live.base}/v1/inspections")[2]["items"] == []
        metrics = call("GET", f"{live.base}/metrics", raw=True)[2].decode()
        assert 'eagle_http_requests_total{method="POST",route="/v1/inspect",status="502"} 1' in metrics
    assert list((tmp_path / "state" / "files").iterdir()) == []
