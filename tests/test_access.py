"""Named keys with roles: every route declares the least role it needs, and every change says who made it.

The route walk builds the app as ``eagle serve`` does (stations and the MLLM's routes included) and reads
each route's declared role: a route added without one, or with another than this file's table, fails
here. Then each route is called over real HTTP with a key of each role: below the route's role 403,
at or above it anything but 401/403. The rest follows one shift: an operator labels, an engineer moves a
threshold, a viewer is refused, an admin adds and revokes a key, and the audit log lists exactly the
changes that succeeded, by name.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from conftest import BlockingBackend, LiveServer, wait_s
from test_service import Feed, call, inspect_request, multipart
from test_service_faults import _every_route

from eagle_iad.data import get_layout
from eagle_iad.service.access import Role, route_role

#: What each route needs; changing a route's role, or adding a route, means changing this table on purpose.
ROLES: dict[tuple[str, str], str] = {
    ("GET", "/metrics"): "viewer",
    ("GET", "/v1/categories"): "viewer",
    ("GET", "/v1/categories/{name}"): "viewer",
    ("POST", "/v1/categories/{name}/threshold"): "engineer",
    ("POST", "/v1/categories/{name}/teach"): "engineer",
    ("GET", "/v1/categories/{name}/versions"): "viewer",
    ("POST", "/v1/categories/{name}/rollback"): "engineer",
    ("POST", "/v1/categories/{name}/fit"): "engineer",
    ("GET", "/v1/jobs/{job_id}"): "viewer",
    ("GET", "/v1/jobs/{job_id}/events"): "viewer",
    ("POST", "/v1/inspect"): "operator",
    ("GET", "/v1/inspections"): "viewer",
    ("GET", "/v1/inspections/{inspection_id}"): "viewer",
    ("GET", "/v1/inspections/events"): "viewer",
    ("GET", "/v1/review"): "viewer",
    ("PUT", "/v1/inspections/{inspection_id}/label"): "operator",
    ("GET", "/v1/inspections/{inspection_id}/reference"): "viewer",
    ("GET", "/v1/evaluations"): "viewer",
    ("GET", "/v1/evaluations/{name}/files/{path:path}"): "viewer",
    ("GET", "/v1/files/{path:path}"): "viewer",
    ("GET", "/v1/categories/{name}/evidence"): "viewer",
    ("GET", "/v1/categories/{name}/dashboard"): "viewer",
    ("GET", "/v1/me"): "viewer",
    ("GET", "/v1/keys"): "admin",
    ("POST", "/v1/keys"): "admin",
    ("DELETE", "/v1/keys/{name}"): "admin",
    ("DELETE", "/v1/categories/{name}"): "admin",
    ("DELETE", "/v1/inspections/{inspection_id}"): "admin",
    ("GET", "/v1/audit"): "engineer",
    ("GET", "/v1/audit.csv"): "engineer",
    ("GET", "/v1/stations"): "viewer",
    ("POST", "/v1/stations"): "engineer",
    ("GET", "/v1/stations/{name}"): "viewer",
    ("POST", "/v1/stations/{name}/pause"): "operator",
    ("POST", "/v1/stations/{name}/resume"): "operator",
    ("POST", "/v1/stations/{name}/retry"): "operator",
    ("POST", "/v1/stations/{name}/trigger"): "operator",
    ("DELETE", "/v1/stations/{name}"): "engineer",
    ("PATCH", "/v1/stations/{name}"): "engineer",
    ("POST", "/v1/chat/completions"): "operator",
    ("GET", "/v1/models"): "viewer",
}

#: One person per role (the names the audit log and the labels will show).
PEOPLE = {"viewer": "vic", "operator": "anna", "engineer": "eve", "admin": "ada"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/mono fitted on 8 real elpv cells."""
    import torch

    from eagle_iad.expert import fit, save

    layout = get_layout("elpv")
    train = sorted(s.path for s in layout.samples(None, "mono", "train"))
    root = tmp_path_factory.mktemp("access")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        save(fit(train[:8], "mono").model, root / "models" / "mono")
    finally:
        torch.set_num_threads(before)
    return root / "models"


def _app(models: Path, state: Path, api_key: str | None = None, mllm: bool = False) -> Any:
    """The app as `eagle serve` builds it; ``mllm``: with the MLLM's routes (a backend that never answers)."""
    from eagle_iad.service import ServiceSettings, create_app
    from eagle_iad.station.routes import install as stations

    settings = ServiceSettings(models_dir=models, state_dir=state, api_key=api_key)
    return create_app(settings, backend=BlockingBackend() if mllm else None, extensions=[stations])


def _keys(state: Path) -> dict[str, str]:
    """A key for each person, added as ``eagle keys add`` does (before the service starts)."""
    from eagle_iad.cli import main

    keys = {}
    for role, name in PEOPLE.items():
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["keys", "add", name, "--role", role, "--state-dir", str(state), "--create"]) == 0
        keys[role] = out.getvalue().strip()
    return keys


#: Each role as a message says what someone is: "is an operator", never "is a operator".
ARTICLED = {"viewer": "a viewer", "operator": "an operator", "engineer": "an engineer", "admin": "an admin"}


def test_every_route_declares_its_role_and_refuses_the_roles_below(models: Path, tmp_path: Path) -> None:
    from fastapi.routing import APIRoute

    from eagle_iad.service.app import PUBLIC_PATHS

    keys = _keys(tmp_path / "state")
    app = _app(models, tmp_path / "state", mllm=True)
    declared: dict[tuple[str, str], str] = {}
    for path, methods, route in _every_route(app):
        if not isinstance(route, APIRoute) or path in PUBLIC_PATHS:
            continue
        role = route_role(route.dependant.dependencies)
        assert role is not None, f"{methods} {path} declares no role: add dependencies=VIEWER (or another)"
        for method in methods:
            declared[(method, path)] = role.name
    assert declared == ROLES
    with LiveServer(app) as live:
        for (method, path), needed in ROLES.items():
            url = live.base + path.replace("{path:path}", "x/y.png").replace("{", "").replace("}", "")
            if path == "/v1/inspections/events":
                url += "?category=.."  # past the role check, a 400 instead of a feed that never ends
            body = b"{}" if method in ("POST", "PUT", "PATCH") else None
            for role, key in keys.items():
                status, _, answer = call(method, url, body=body, content_type="application/json", key=key)
                if Role[role] < Role[needed]:
                    assert status == 403, (method, path, role, status)
                    assert answer["error"]["code"] == "forbidden"
                    assert answer["error"]["message"] == (
                        f"{PEOPLE[role]} is {ARTICLED[role]}; this needs the {needed} role or above"
                    )
                else:
                    assert status not in (401, 403), (method, path, role, status, answer)
            assert call(method, url, body=body, content_type="application/json")[0] == 401  # no key
        # Every write above was refused or failed (no such station, an empty body): none is in the log, only the
        # four keys eagle keys added before the service started.
        rows = call("GET", f"{live.base}/v1/audit", key=keys["admin"])[2]["items"]
        assert [row["detail"] for row in rows[::-1]] == [f"added {n} ({r}) (eagle keys add)" for r, n in PEOPLE.items()]


def test_a_shift_named_labels_thresholds_keys_and_the_audit_log(models: Path, tmp_path: Path) -> None:
    from eagle_iad.cli import main
    from eagle_iad.cli.db import os_user

    state = tmp_path / "state"
    keys = _keys(state)
    cell = sorted(s.path for s in get_layout("elpv").samples(None, "mono", "test"))[0].read_bytes()
    with LiveServer(_app(models, state)) as live:
        for role, name in PEOPLE.items():
            status, _, me = call("GET", f"{live.base}/v1/me", key=keys[role])
            assert status == 200 and (me["name"], me["role"], me["open"]) == (name, role, False)
            assert me["may"] == [r.name for r in Role if r <= Role[role]]
        status, _, record = inspect_request(live.base, cell, key=keys["operator"])
        assert status == 200, record
        label = json.dumps({"label": "normal"}).encode()
        url = f"{live.base}/v1/inspections/{record['id']}/label"
        refused = call("PUT", url, body=label, content_type="application/json", key=keys["viewer"])
        assert refused[0] == 403
        assert refused[2]["error"]["message"] == "vic is a viewer; this needs the operator role or above"
        status, _, labelled = call("PUT", url, body=label, content_type="application/json", key=keys["operator"])
        assert status == 200 and (labelled["label"], labelled["label_by"]) == ("normal", "anna")
        change = json.dumps({"tau": 123.0, "why": "new batch of glass", "by": "someone else"}).encode()
        status, _, category = call("POST", f"{live.base}/v1/categories/mono/threshold", body=change,
                                   content_type="application/json", key=keys["engineer"])  # fmt: skip
        assert status == 200 and category["tau"] == 123.0
        assert category["history"][-1]["by"] == "eve"  # a keyed caller cannot record another name
        new = json.dumps({"name": "line-2", "role": "operator"}).encode()
        status, _, created = call("POST", f"{live.base}/v1/keys", body=new, content_type="application/json",
                                  key=keys["admin"])  # fmt: skip
        assert status == 201 and created["name"] == "line-2" and created["key"].startswith("eagle_")
        assert call("GET", f"{live.base}/v1/me", key=created["key"])[2]["name"] == "line-2"
        again = call("POST", f"{live.base}/v1/keys", body=json.dumps({"name": "line-2", "role": "admin"}).encode(),
                     content_type="application/json", key=keys["admin"])  # fmt: skip
        assert again[0] == 409 and again[2]["error"]["code"] == "key_exists"
        listed = call("GET", f"{live.base}/v1/keys", key=keys["admin"])[2]["keys"]
        assert [k["name"] for k in listed] == ["vic", "anna", "eve", "ada", "line-2"]
        assert all("key" not in k and "digest" not in k for k in listed)  # never the key, nor its digest
        for bad, why in (("anna\n", "invalid key name"), ("local", "is reserved"), ("EAGLE_API_KEY", "is reserved")):
            refused = call("POST", f"{live.base}/v1/keys", body=json.dumps({"name": bad, "role": "admin"}).encode(),
                           content_type="application/json", key=keys["admin"])  # fmt: skip
            assert refused[0] == 400 and why in refused[2]["error"]["message"], (bad, refused)
        status, _, revoked = call("DELETE", f"{live.base}/v1/keys/line-2", key=keys["admin"])
        assert status == 200 and revoked["revoked"] is not None
        twice = call("DELETE", f"{live.base}/v1/keys/line-2", key=keys["admin"])
        assert twice[0] == 409 and twice[2]["error"]["code"] == "already_revoked"  # not a second change
        last = call("DELETE", f"{live.base}/v1/keys/ada", key=keys["admin"])
        assert last[0] == 409 and last[2]["error"]["message"] == "'ada' is the last admin key: add another admin first"
        status, _, gone = call("GET", f"{live.base}/v1/me", key=created["key"])  # refused from its next request
        # Saying it was revoked, and when, tells its holder nothing new; not whose it was (a revoked key may
        # have leaked). An unknown key is told nothing more than before (a guess learns nothing).
        assert (status, gone["error"]["code"]) == (401, "revoked_api_key"), gone
        assert gone["error"]["message"] == f"this key was revoked at {revoked['revoked']}; ask an admin for a new key"
        assert "line-2" not in json.dumps(gone)
        status, _, unknown = call("GET", f"{live.base}/v1/me", key=created["key"][:-2] + "xx")
        assert (status, unknown["error"]["code"]) == (401, "invalid_api_key"), unknown
        assert unknown["error"]["message"] == "missing or wrong API key (send Authorization: Bearer <key>)"
        # `eagle keys` on the service's machine, while it runs: seen at the next request, no restart.
        with redirect_stdout(io.StringIO()):
            assert main(["keys", "revoke", "vic", "--state-dir", str(state)]) == 0
        assert call("GET", f"{live.base}/v1/me", key=keys["viewer"])[0] == 401
        status, _, log = call("GET", f"{live.base}/v1/audit", key=keys["admin"])
        rows = [(r["actor"], r["role"], r["method"], r["route"], r["status"], r["detail"])
                for r in reversed(log["items"])]  # fmt: skip
        cli = f"cli:{os_user()}"  # the keys added and revoked with eagle keys, on the service's machine
        assert rows == [  # the refused label, the 409s, the inspection and every read are not changes
            *[(cli, "admin", "POST", "/v1/keys", 201, f"added {name} ({role}) (eagle keys add)")
              for role, name in PEOPLE.items()],
            ("anna", "operator", "PUT", "/v1/inspections/{inspection_id}/label", 200,
             "label normal (normal) of cell.png (mono)"),
            ("eve", "engineer", "POST", "/v1/categories/{name}/threshold", 200, "tau 123.0: new batch of glass"),
            ("ada", "admin", "POST", "/v1/keys", 201, "added line-2 (operator)"),
            ("ada", "admin", "DELETE", "/v1/keys/{name}", 200, "revoked line-2 (operator)"),
            (cli, "admin", "DELETE", "/v1/keys/{name}", 200, "revoked vic (viewer) (eagle keys revoke)"),
        ]  # fmt: skip
        assert log["items"][-5]["path"] == f"/v1/inspections/{record['id']}/label"
        status, head, text = call("GET", f"{live.base}/v1/audit.csv?actor=eve", key=keys["admin"], raw=True)
        assert status == 200 and head["content-type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(text.decode())))
        assert table[0] == ["seq", "time", "actor", "role", "method", "route", "path", "status", "detail"]
        assert [row[2:] for row in table[1:]] == [
            ["eve", "engineer", "POST", "/v1/categories/{name}/threshold", "/v1/categories/mono/threshold", "200",
             "tau 123.0: new batch of glass"]
        ]  # fmt: skip
        # The supervisor (engineer) reads the audit, one category's rows or one person's; keys stay the admin's.
        # A category's rows are its own routes' and the labels of its inspections (whose path names the inspection).
        status, _, mono = call("GET", f"{live.base}/v1/audit?category=mono", key=keys["engineer"])
        assert status == 200, mono
        assert [(r["actor"], r["path"]) for r in mono["items"]] == [
            ("eve", "/v1/categories/mono/threshold"), ("anna", f"/v1/inspections/{record['id']}/label")]  # fmt: skip
        # a name that is only the start of another is not it
        assert call("GET", f"{live.base}/v1/audit?category=mon", key=keys["engineer"])[2]["total"] == 0
        assert call("GET", f"{live.base}/v1/audit?actor=anna", key=keys["engineer"])[2]["total"] == 1
        status, _, text = call("GET", f"{live.base}/v1/audit.csv?category=mono", key=keys["engineer"], raw=True)
        assert status == 200 and len(list(csv.reader(io.StringIO(text.decode())))) == 3
        assert call("GET", f"{live.base}/v1/audit?category=..", key=keys["engineer"])[0] == 400
        assert call("GET", f"{live.base}/v1/keys", key=keys["engineer"])[0] == 403
        assert call("GET", f"{live.base}/v1/audit", key=keys["operator"])[0] == 403
        # Every key revoked: the door locks, it does not open (the open mode is only for a service that never had keys).
        with redirect_stdout(io.StringIO()):
            for name in ("anna", "eve"):
                assert main(["keys", "revoke", name, "--state-dir", str(state)]) == 0
            assert main(["keys", "revoke", "ada", "--state-dir", str(state)]) == 2  # the last admin, as the API
            assert main(["keys", "revoke", "ada", "--last-admin", "--state-dir", str(state)]) == 0
        assert call("GET", f"{live.base}/v1/me")[0] == 401
        assert call("GET", f"{live.base}/v1/me", key=keys["admin"])[0] == 401


def test_open_mode_and_the_single_environment_key(models: Path, tmp_path: Path) -> None:
    """No keys at all: one local user with every role, as before. EAGLE_API_KEY alone: an admin by that name."""
    with LiveServer(_app(models, tmp_path / "open")) as live:
        status, _, me = call("GET", f"{live.base}/v1/me")
        assert status == 200 and (me["name"], me["role"], me["open"]) == ("local", "admin", True)
        change = json.dumps({"tau": 50.0, "why": "try", "by": "kim"}).encode()
        status, _, category = call("POST", f"{live.base}/v1/categories/mono/threshold", body=change,
                                   content_type="application/json")  # fmt: skip
        assert status == 200 and category["history"][-1]["by"] == "kim"  # one user: the name given is kept
        assert call("GET", f"{live.base}/v1/audit")[2]["items"][0]["actor"] == "local"
    with LiveServer(_app(models, tmp_path / "env", api_key="s3cret")) as live:
        assert call("GET", f"{live.base}/v1/me")[0] == 401
        me = call("GET", f"{live.base}/v1/me", key="s3cret")[2]
        assert (me["name"], me["role"], me["open"]) == ("EAGLE_API_KEY", "admin", False)


@contextmanager
def blocking_backbone() -> Iterator[threading.Event]:
    """A fit backbone ``blocking-test`` (weight-free) whose first pass waits until the event it yields is set:
    a fit job that stays running while the test does something else."""
    import torch
    from expert_fakes import FakeExtractor

    from eagle_iad.expert import backbones

    release = threading.Event()

    class Blocking(FakeExtractor):
        def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            assert release.wait(wait_s(60))
            return super().__call__(images)

    backbones.register_backbone("blocking-test", lambda _size, _weights: Blocking())
    try:
        yield release
    finally:
        release.set()
        backbones._BACKBONES.remove("blocking-test")


def _fit(base: str, category: str, key: str | None) -> tuple[int, Any]:
    """``POST /v1/categories/{category}/fit`` of two elpv cells with the ``blocking-test`` backbone."""
    cells = sorted(s.path for s in get_layout("elpv").samples(None, "mono", "train"))[:2]
    files = [("files", path.name, path.read_bytes(), "image/png") for path in cells]
    body, ctype = multipart({"backbone": "blocking-test"}, files)
    status, _, answer = call("POST", f"{base}/v1/categories/{category}/fit", body=body, content_type=ctype, key=key)
    return status, answer


def _finished(base: str, job_id: str, key: str | None) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s(120)
    while True:
        job = call("GET", f"{base}/v1/jobs/{job_id}", key=key)[2]
        if job["state"] in ("succeeded", "failed"):
            return dict(job)
        assert time.monotonic() < deadline, f"the fit did not finish: {job}"
        time.sleep(0.05)


def test_a_revoked_key_loses_its_live_feeds(models: Path, tmp_path: Path) -> None:
    """A feed is checked once when it opens, and again as it streams: revoking the key ends it."""
    state = tmp_path / "state"
    keys = _keys(state)
    with blocking_backbone() as release, LiveServer(_app(models, state)) as live:
        history = Feed(live.base, key=keys["viewer"])
        assert history.response.status == 200 and history.frame()[":"] == "feed open"
        status, started = _fit(live.base, "drawer", keys["engineer"])
        assert status == 202, started
        job = Feed(live.base, key=keys["viewer"], path=f"/v1/jobs/{started['job']['id']}/events")
        assert job.response.status == 200 and job.event()["event"] == "state"
        assert call("DELETE", f"{live.base}/v1/keys/vic", key=keys["admin"])[0] == 200
        cell = sorted(s.path for s in get_layout("elpv").samples(None, "mono", "test"))[0].read_bytes()
        assert inspect_request(live.base, cell, key=keys["operator"])[0] == 200
        for feed, what in ((history, "feed"), (job, "stream")):
            feed.connection.sock.settimeout(wait_s(15))  # type: ignore[union-attr]
            rest = feed.response.read().decode()  # the stream ends: no event after the revocation
            assert "event: inspection" not in rest, rest
            assert rest.endswith(f": access ended: the key was revoked or its role no longer allows this {what}\n\n")
            feed.close()
        assert call("GET", f"{live.base}/v1/jobs/{started['job']['id']}", key=keys["viewer"])[0] == 401
        release.set()
        assert _finished(live.base, started["job"]["id"], keys["engineer"])["state"] == "succeeded"


def test_a_fit_does_not_overwrite_a_change_saved_while_it_ran(models: Path, tmp_path: Path) -> None:
    """A fit replaces the model it was submitted over, or none: a threshold change saved meanwhile (or a
    model appearing where there was none) fails the fit with ``model_changed`` and is kept."""
    import shutil

    here = tmp_path / "models"
    shutil.copytree(models / "mono", here / "mono")
    with blocking_backbone() as release, LiveServer(_app(here, tmp_path / "state")) as live:
        jobs = []
        for category in ("mono", "fresh"):
            status, started = _fit(live.base, category, None)
            assert status == 202, started
            jobs.append(started["job"]["id"])
        change = json.dumps({"tau": 77.0, "why": "saved while the fit ran"}).encode()
        status, _, changed = call("POST", f"{live.base}/v1/categories/mono/threshold", body=change,
                                  content_type="application/json")  # fmt: skip
        assert status == 200 and changed["tau"] == 77.0, changed
        shutil.copytree(here / "mono", here / "fresh")  # a model where the fit found none (another process's)
        fresh = json.loads((here / "fresh" / "model.json").read_text())
        release.set()
        for job_id in jobs:
            job = _finished(live.base, job_id, None)
            assert (job["state"], job["error_code"]) == ("failed", "model_changed"), job
            assert job["error"].startswith("the model changed while fitting"), job
        assert call("GET", f"{live.base}/v1/categories/mono")[2]["tau"] == 77.0  # the change is kept
        assert json.loads((here / "fresh" / "model.json").read_text()) == fresh
        # Fitted again over it, the fit says what the model it replaces held that the new one does not. The
        # session's model may carry versions of earlier tests: the threshold change is the newest, whatever its number.
        kept = max(int(p.name) for p in (here / "mono" / "versions").iterdir() if p.name.isdigit())
        status, started = _fit(live.base, "mono", None)
        assert status == 202, started
        job = _finished(live.base, started["job"]["id"], None)
        notice = (f"this fit replaces version {kept}, which had a fixed tau 77; it stays in version {kept} "
                  f"(eagle rollback --to {kept})")  # fmt: skip
        assert job["state"] == "succeeded" and job["result"]["warnings"][0] == notice, job
        fitted = here / "mono" / "versions" / str(kept + 1) / "model.json"
        assert json.loads(fitted.read_text())["warnings"][0] == notice


def _add_key(base: str, name: str, role: str, key: str | None = None) -> tuple[int, Any]:
    body = json.dumps({"name": name, "role": role}).encode()
    status, _, answer = call("POST", f"{base}/v1/keys", body=body, content_type="application/json", key=key)
    return status, answer


def test_an_open_services_first_key_is_an_admin(models: Path, tmp_path: Path) -> None:
    """An open service's first key must be an admin: from then on every call needs a key, and without an
    admin nobody could add or revoke keys through the API again (as ``last_admin`` keeps for revoking)."""
    with LiveServer(_app(models, tmp_path / "state")) as live:
        status, refused = _add_key(live.base, "anna", "operator")
        assert (status, refused["error"]["code"]) == (409, "first_key_not_admin"), refused
        assert refused["error"]["message"] == (
            "the first key must be an admin: once it exists every call needs a key, and an operator could not add "
            "or revoke keys; add an admin key first"
        )
        assert call("GET", f"{live.base}/v1/me")[2]["open"] is True  # still open: nothing was added
        # /healthz (no key needed) says which kind of key to ask for: the console's key screen words it so.
        assert call("GET", f"{live.base}/healthz")[2]["auth"] == "open"
        status, ada = _add_key(live.base, "ada", "admin")
        assert status == 201, ada
        status, anna = _add_key(live.base, "anna", "operator", key=ada["key"])  # no longer the first: any role
        assert status == 201 and anna["role"] == "operator", anna
        assert call("GET", f"{live.base}/v1/me")[0] == 401
        assert call("GET", f"{live.base}/healthz")[2]["auth"] == "keys"
    # With EAGLE_API_KEY the service is not open: an admin exists, so a first named key may be anything.
    with LiveServer(_app(models, tmp_path / "env", api_key="s3cret")) as live:
        health = call("GET", f"{live.base}/healthz")[2]
        assert (health["auth"], health["max_upload_bytes"]) == ("api_key", 32 * 1024 * 1024)
        assert _add_key(live.base, "line-2", "viewer", key="s3cret")[0] == 201
        assert call("GET", f"{live.base}/healthz")[2]["auth"] == "keys"  # named keys from now on


@contextmanager
def keys_checked_together(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two key additions held at their name check (after the open-mode caller was let in, before anything is
    stored) until both are there: the interleaving a race of two first keys may take, every time."""
    from eagle_iad.service import keys

    both = threading.Barrier(2, timeout=wait_s(10))
    check = keys.check_key_name

    def held(name: str) -> str:
        both.wait()
        return check(name)

    monkeypatch.setattr(keys, "check_key_name", held)
    yield


def test_two_first_keys_at_once_add_one(models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two callers of an open service each add "the first key" at once: both were let in by the open mode,
    and a check before the insert would let both add one; checked in the insert's transaction, exactly one is
    added and the other is told the service is no longer open (401)."""
    with LiveServer(_app(models, tmp_path / "state")) as live, keys_checked_together(monkeypatch):
        answers: dict[str, tuple[int, Any]] = {}
        threads = [threading.Thread(target=lambda n=name: answers.update({n: _add_key(live.base, n, "admin")}))
                   for name in ("ada", "bob")]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(wait_s(30))
        statuses = sorted(status for status, _ in answers.values())
        assert statuses == [201, 401], answers
        (winner,) = [name for name, (status, _) in answers.items() if status == 201]
        (loser,) = [answer for status, answer in answers.values() if status == 401]
        assert loser["error"]["code"] == "service_not_open", loser
        assert loser["error"]["message"].startswith("another key was added first, so the service is no longer open")
        listed = call("GET", f"{live.base}/v1/keys", key=answers[winner][1]["key"])[2]["keys"]
        assert [(k["name"], k["role"]) for k in listed] == [(winner, "admin")]


@contextmanager
def first_holder_waits_for_a_waiter(monkeypatch: pytest.MonkeyPatch, url: str) -> Iterator[None]:
    """On PostgreSQL: the first transaction to hold a :meth:`serialize` lock keeps it until the server shows
    another transaction waiting for it (``pg_locks``), so the other has begun and sent its lock statement
    before the first commits: the interleaving that tells a snapshot taken at that statement, every time."""
    import psycopg

    from eagle_iad.history.postgresql import PostgresHistory

    serialize = PostgresHistory.serialize
    first = threading.Lock()

    def held(self: PostgresHistory, db: Any, what: str) -> None:
        serialize(self, db, what)
        if not first.acquire(blocking=False):
            return
        deadline = time.monotonic() + wait_s(10)
        with psycopg.connect(url, autocommit=True) as watcher:
            while time.monotonic() < deadline:
                # this test's database only: the cluster is shared with other tests' databases (parallel runs)
                row = watcher.execute(
                    "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
                if row.fetchone()[0]:
                    return
                time.sleep(0.01)
        raise AssertionError("no second transaction waited for the lock")

    monkeypatch.setattr(PostgresHistory, "serialize", held)
    try:
        yield
    finally:
        monkeypatch.setattr(PostgresHistory, "serialize", serialize)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "postgresql-repeatable-read"])
def test_the_first_key_rule_holds_in_each_history(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The same race on the key table itself, on both histories (PostgreSQL: two replicas sharing one, each
    with its own store and connection, so only the database keeps them apart): of an admin and an operator
    added at once by open-mode callers, at most the admin is added, and never both. Also where the plant's
    DBA made ``repeatable read`` the database's default isolation: a snapshot taken when the transaction
    began, before the wait for the other, would show neither the other's key."""
    from eagle_iad.errors import ConfigError
    from eagle_iad.service.keys import KeyTable
    from eagle_iad.service.store import InspectionStore

    url = str(tmp_path / "history.sqlite3")
    if kind == "sqlite":
        stores = [InspectionStore(url)]
    else:
        settings = {"default_transaction_isolation": "repeatable read"} if kind.endswith("read") else {}
        url = request.getfixturevalue("postgres").new_database(**settings)
        stores = [InspectionStore(url), InspectionStore(url)]  # two replicas
    store = stores[0]
    table = KeyTable(store)
    outcomes: dict[str, str] = {}

    def add(index: int, name: str, role: Role) -> None:
        try:
            KeyTable(stores[index % len(stores)]).add(name, role, open_mode=True)
            outcomes[name] = "added"
        except ConfigError as exc:
            outcomes[name] = getattr(exc, "code", str(exc))

    try:
        for round_, roles in enumerate(((Role.admin, Role.admin), (Role.admin, Role.operator))):
            if round_:  # a fresh, open table
                with store.transaction() as db:
                    db.execute("DELETE FROM api_keys")
            outcomes.clear()
            together: AbstractContextManager[None] = (
                nullcontext() if kind == "sqlite" else first_holder_waits_for_a_waiter(monkeypatch, url)
            )
            with keys_checked_together(monkeypatch), together:
                threads = [
                    threading.Thread(target=add, args=(i, f"{role.name}-{i}", role)) for i, role in enumerate(roles)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(wait_s(30))
            added = [info.name for info in table.list()]
            assert len(added) == 1 and added[0].startswith("admin"), (outcomes, added)
            assert sorted(outcomes.values()) in (
                ["added", "service_not_open"], ["added", "first_key_not_admin"]
            ), outcomes  # fmt: skip
    finally:
        for each in stores:
            each.close()


def test_reserved_key_names_ignore_case(models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``local``, ``EAGLE_API_KEY``, ``api`` (what an open-mode change that names no one records) and every
    role's name (``Admin``: an audit row would read "Admin (viewer)") are no key's name, whatever their case,
    through the API and through ``eagle keys add``."""
    from eagle_iad.cli import main

    state = tmp_path / "state"
    roles = [name for role in Role for name in (role.name, role.name.upper(), role.name.capitalize())]
    with LiveServer(_app(models, state)) as live:
        for name in ("LOCAL", "Local", "eagle_api_key", "api", "API", *roles):
            status, refused = _add_key(live.base, name, "admin")
            assert status == 400 and f"key name {name!r} is reserved" in refused["error"]["message"], refused
            assert main(["keys", "add", name, "--role", "admin", "--state-dir", str(state)]) != 0
            assert f"key name {name!r} is reserved" in capsys.readouterr().err
        assert _add_key(live.base, "ada", "admin")[0] == 201


def test_a_fit_records_who_started_it(models: Path, tmp_path: Path) -> None:
    """A fit through the API names its caller: in the model (its first version's ``by``) and its audit row."""
    state = tmp_path / "state"
    keys = _keys(state)
    with blocking_backbone() as release, LiveServer(_app(tmp_path / "models", state)) as live:
        release.set()
        status, started = _fit(live.base, "drawer", keys["engineer"])
        assert status == 202, started
        assert _finished(live.base, started["job"]["id"], keys["viewer"])["state"] == "succeeded"
        status, _, listed = call("GET", f"{live.base}/v1/categories/drawer/versions", key=keys["viewer"])
        assert status == 200 and [(v["action"], v["by"]) for v in listed["versions"]] == [("fit", "eve")], listed
        rows = call("GET", f"{live.base}/v1/audit", key=keys["admin"])[2]["items"]
        assert [(r["actor"], r["route"], r["detail"]) for r in rows[:1]] == [  # after the keys eagle keys added
            ("eve", "/v1/categories/{name}/fit", f"fit drawer: 2 images (uploaded), job {started['job']['id']}")
        ]
        assert len(rows) == 1 + len(PEOPLE)
    assert json.loads((tmp_path / "models" / "drawer" / "model.json").read_text())["fitted_by"] == "eve"


def test_eagle_keys_refuses_a_history_that_is_not_there_unless_told_to_start_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped or defaulted state folder gets no key the running service would never accept: ``eagle keys``
    refuses a missing history as ``eagle review`` does; ``keys add --create`` starts a new service's history."""
    from eagle_iad.cli import main

    typo = tmp_path / "typo-state"
    assert main(["keys", "add", "zed", "--role", "admin", "--state-dir", str(typo)]) == 2
    missing = f"eagle: error: no history at {typo / 'eagle.sqlite3'}: has eagle serve run with these flags?"
    assert capsys.readouterr() == ("", f"{missing} (a new service's first key: eagle keys add ... --create)\n")
    assert not typo.exists()
    for action in (["list"], ["revoke", "zed"]):
        assert main(["keys", *action, "--state-dir", str(typo)]) == 2
        assert capsys.readouterr().err == (f"eagle: error: no history at {typo / 'eagle.sqlite3'}: has eagle serve "
                                           "run with these flags?\n")  # fmt: skip
    assert not typo.exists()
    assert main(["keys", "add", "zed", "--role", "admin", "--state-dir", str(typo), "--create"]) == 0
    capsys.readouterr()
    assert (typo / "eagle.sqlite3").is_file()
    assert main(["keys", "add", "ann", "--role", "viewer", "--state-dir", str(typo)]) == 0  # now it is there


def _audit_rows(state: Path) -> list[tuple[Any, ...]]:
    """The audit log of the history in ``state``, oldest first: actor, role, method, route, path, status, detail."""
    from eagle_iad.service.audit import AuditLog
    from eagle_iad.service.store import InspectionStore

    store = InspectionStore(str(state / "eagle.sqlite3"))
    try:
        _, rows = AuditLog(store).page(500, 0)
    finally:
        store.close()
    return [(r["actor"], r["role"], r["method"], r["route"], r["path"], r["status"], r["detail"]) for r in rows][::-1]


def test_eagle_keys_changes_are_audited_and_the_last_admin_key_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eagle keys add|revoke`` leave the audit rows the API's key routes leave (by ``cli:<login>``), and
    ``eagle keys revoke`` refuses the last admin key in the API's words unless ``--last-admin`` says to."""
    from eagle_iad.cli import main
    from eagle_iad.cli.db import os_user

    state = tmp_path / "state"
    assert main(["keys", "add", "ada", "--role", "admin", "--state-dir", str(state), "--create"]) == 0
    assert main(["keys", "add", "bob", "--role", "operator", "--state-dir", str(state)]) == 0
    assert main(["keys", "revoke", "bob", "--state-dir", str(state)]) == 0
    capsys.readouterr()
    assert main(["keys", "revoke", "ada", "--state-dir", str(state)]) == 2
    assert capsys.readouterr() == ("", (
        "eagle: error: 'ada' is the last admin key: add another admin first (eagle keys add NAME --role admin), or "
        "give --last-admin to revoke it anyway: nobody can then add or revoke keys through the API until eagle keys "
        "add adds an admin here\n"))  # fmt: skip
    listed = {}
    with redirect_stdout(io.StringIO()) as out:
        assert main(["keys", "list", "--state-dir", str(state)]) == 0
    listed = {k["name"]: k["revoked"] for k in json.loads(out.getvalue())}
    assert listed["ada"] is None  # still there
    assert main(["keys", "revoke", "ada", "--last-admin", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().err == (
        "eagle keys: warning: 'ada' was the last admin key: nobody can add or revoke keys through the API until "
        "'eagle keys add NAME --role admin' here adds one\n"
    )
    who = f"cli:{os_user()}"
    assert _audit_rows(state) == [  # the refused revoke is not a change
        (who, "admin", "POST", "/v1/keys", "/v1/keys", 201, "added ada (admin) (eagle keys add)"),
        (who, "admin", "POST", "/v1/keys", "/v1/keys", 201, "added bob (operator) (eagle keys add)"),
        (who, "admin", "DELETE", "/v1/keys/{name}", "/v1/keys/bob", 200, "revoked bob (operator) (eagle keys revoke)"),
        (who, "admin", "DELETE", "/v1/keys/{name}", "/v1/keys/ada", 200,
         "revoked ada (admin) (eagle keys revoke --last-admin)"),
    ]  # fmt: skip


def test_key_names_are_unique_ignoring_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A revoked ``op`` is not given out again as ``Op``, nor a key's name in use as ``ANNA``: through ``eagle keys
    add`` and ``POST /v1/keys`` alike (the audit log and ``?actor=`` would show two names for one person)."""
    from eagle_iad.cli import main

    state, models = tmp_path / "state", tmp_path / "models"
    models.mkdir()
    added = {}
    for name, role in (("ada", "admin"), ("op", "operator"), ("anna", "viewer")):
        with redirect_stdout(io.StringIO()) as out:
            assert main(["keys", "add", name, "--role", role, "--state-dir", str(state), "--create"]) == 0
        added[name] = out.getvalue().strip()
    admin = added["ada"]
    assert main(["keys", "revoke", "op", "--state-dir", str(state)]) == 0
    capsys.readouterr()
    revoked = next(k.revoked for k in _key_list(state) if k.name == "op")
    assert main(["keys", "add", "Op", "--role", "operator", "--state-dir", str(state)]) == 2
    assert capsys.readouterr().err == (f"eagle: error: key 'Op': a key named 'op' was revoked on {revoked}; names "
                                       "are not reused, in any case (choose another name)\n")  # fmt: skip
    assert main(["keys", "add", "ANNA", "--role", "admin", "--state-dir", str(state)]) == 2
    assert capsys.readouterr().err == ("eagle: error: key 'ANNA': a key named 'anna' exists; names are compared "
                                       "ignoring case (choose another name)\n")  # fmt: skip
    with LiveServer(_app(models, state)) as live:
        for name, held in (("OP", "op"), ("Anna", "anna")):
            status, refused = _add_key(live.base, name, "operator", key=admin)
            assert (status, refused["error"]["code"]) == (409, "key_exists"), refused
            assert f"key {name!r}: a key named {held!r}" in refused["error"]["message"]
        assert _add_key(live.base, "op2", "operator", key=admin)[0] == 201
    assert [k.name for k in _key_list(state)] == ["ada", "op", "anna", "op2"]


def _key_list(state: Path) -> list[Any]:
    from eagle_iad.service.keys import KeyTable
    from eagle_iad.service.store import InspectionStore

    store = InspectionStore(str(state / "eagle.sqlite3"))
    try:
        return KeyTable(store).list()
    finally:
        store.close()


def test_eagle_keys_add_prints_the_key_when_its_audit_row_cannot_be_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is added before its audit row is written: a row the log cannot take (a database URL alone has no
    journal to keep it in) is a warning, and the key is still printed; an error would lose it (its name can never
    be given again)."""
    from eagle_iad.cli import main
    from eagle_iad.service.audit import AuditLog

    state = tmp_path / "state"
    assert main(["keys", "add", "ada", "--role", "admin", "--state-dir", str(state), "--create"]) == 0
    capsys.readouterr()

    def refused(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("history postgresql://db/eagle: cannot connect (refused)")

    monkeypatch.setattr(AuditLog, "write", refused)
    assert main(["keys", "add", "bob", "--role", "viewer", "--state-dir", str(state)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("eagle_") and [k.name for k in _key_list(state)] == ["ada", "bob"]
    assert err.splitlines()[0] == ("eagle: warning: the change was made, but its audit row (added bob (viewer) (eagle "
                                   "keys add)) could not be written: history postgresql://db/eagle: cannot connect "
                                   "(refused)")  # fmt: skip


def test_metrics_answers_a_caller_it_knew_during_a_history_outage_and_no_one_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key table lives in the history, so an outage made /metrics 503 too, and the scrape that had to see
    ``eagle_history_up 0`` never came. /metrics (only it) still answers a key it checked before the outage, for
    METRICS_GRACE_S; a key it never checked, no key (the service has keys), and every other route get the 503."""
    from fastapi.testclient import TestClient

    from eagle_iad.errors import HistoryUnavailableError
    from eagle_iad.service import ServiceSettings, access, create_app

    (tmp_path / "models").mkdir()
    app = create_app(ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state"))
    state = app.state.service
    known = state.keys.add("scraper", Role.viewer)
    other = state.keys.add("someone", Role.admin)
    with TestClient(app) as client:
        assert client.get("/metrics", headers={"Authorization": f"Bearer {known}"}).status_code == 200

        def away(*args: Any, **kwargs: Any) -> Any:
            raise HistoryUnavailableError("history postgresql://db/eagle: cannot connect (refused)")

        monkeypatch.setattr(state.keys, "lookup", away)
        monkeypatch.setattr(state.keys, "any_ever", away)
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {known}"})
        assert answer.status_code == 200, answer.text
        assert "eagle_http_requests_total" in answer.text
        for headers in ({"Authorization": f"Bearer {other}"}, {}):
            answer = client.get("/metrics", headers=headers)
            assert (answer.status_code, answer.json()["error"]["code"]) == (503, "history_unavailable")
        answer = client.get("/v1/inspections", headers={"Authorization": f"Bearer {known}"})
        assert answer.status_code == 503
        monkeypatch.setattr(access, "METRICS_GRACE_S", 0.0)  # checked too long ago
        assert client.get("/metrics", headers={"Authorization": f"Bearer {known}"}).status_code == 503


def test_metrics_forgets_a_key_refused_before_a_history_outage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key /metrics answered, then revoked (its next scrape 401), is not answered again when the history goes
    away within METRICS_GRACE_S: the refusal drops it from what /metrics remembers (review finding)."""
    from fastapi.testclient import TestClient

    from eagle_iad.errors import HistoryUnavailableError
    from eagle_iad.service import ServiceSettings, create_app

    (tmp_path / "models").mkdir()
    app = create_app(ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state"))
    state = app.state.service
    state.keys.add("ada", Role.admin)
    scraper = state.keys.add("scraper", Role.viewer)
    bearer = {"Authorization": f"Bearer {scraper}"}
    with TestClient(app) as client:
        assert client.get("/metrics", headers=bearer).status_code == 200
        state.keys.revoke("scraper")
        assert client.get("/metrics", headers=bearer).status_code == 401

        def away(*args: Any, **kwargs: Any) -> Any:
            raise HistoryUnavailableError("history postgresql://db/eagle: cannot connect (refused)")

        monkeypatch.setattr(state.keys, "lookup", away)
        monkeypatch.setattr(state.keys, "any_ever", away)
        answer = client.get("/metrics", headers=bearer)
        assert (answer.status_code, answer.json()["error"]["code"]) == (503, "history_unavailable"), answer.text


def test_eagle_keys_add_role_help_is_the_roles_table() -> None:
    """``eagle keys add --role``'s help says what each role may do as ROLE_HELP does (rev1 finding 17: it said
    "admin: also keys" after deleting an inspection and retiring a category became the admin's too)."""
    from eagle_iad.cli.keys import ROLE_FLAG_HELP
    from eagle_iad.service.access import ROLE_HELP

    assert "; ".join(f"{role.name}: {text}" for role, text in ROLE_HELP.items()) == ROLE_FLAG_HELP
