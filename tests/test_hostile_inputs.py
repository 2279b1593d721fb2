"""Hostile and degenerate inputs, as tables: each row is one thing a user (or an attacker) may send.

To add a case, add a row. CLI rows run ``eagle`` in-process on a real (lite0, 64 px) model and check
the one-line error and that the working model in ``--out`` is byte-identical afterwards: a command
that cannot produce a usable result must never replace one that works. Service rows walk every route
of the app with out-of-range integers and 300-character path segments (never a 500), and every write
route with the disk full (507; needs a private tmpfs, else skipped with the reason).
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import LiveServer
from expert_fakes import noise_pngs
from PIL import Image
from test_service import ServeProcess, call, inspect_request, multipart, png

from eagle_iad.cli import main
from eagle_iad.naming import CATEGORY_NAME_RULE, MAX_STEM_BYTES

#: The fit every CLI row starts from: real backbone, small input, quick.
FIT = ["--layout", "folder", "--category", "part", "--size", "64", "--quiet"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Datasets (varied, identical, three images), one working model, and a test image."""
    root = tmp_path_factory.mktemp("hostile")
    noise_pngs(root / "varied" / "part" / "train" / "good", 12, seed=1)
    one = noise_pngs(root / "single", 1, seed=2)[0]
    identical = root / "identical" / "part" / "train" / "good"
    identical.mkdir(parents=True)
    for index in range(12):
        shutil.copyfile(one, identical / f"{index:03d}.png")
    noise_pngs(root / "three" / "part" / "train" / "good", 3, seed=3)
    bad = root / "bad" / "part" / "train" / "good"
    whole = noise_pngs(bad, 3, seed=5)[0].read_bytes()
    (bad / "t1.png").write_bytes(whole[: len(whole) // 2])  # truncated
    (bad / "t2.png").write_bytes(b"")
    (bad / "t3.png").write_text("not an image")
    onebad = root / "onebad" / "part" / "train" / "good"
    noise_pngs(onebad, 3, seed=5)
    (onebad / "t1.png").write_bytes(whole[: len(whole) // 2])
    model = root / "model"
    assert main(["fit", "--data", str(root / "varied"), *FIT, "--out", str(model)]) == 0
    image = noise_pngs(root / "query", 1, seed=4)[0]
    return {"root": root, "model": model, "image": image}


@dataclass(frozen=True)
class CliCase:
    """``argv`` with ``{root}``, ``{victim}``, ``{image}``, ``{tmp}`` filled in; ``error``: the exact message."""

    id: str
    argv: str
    error: str


FIT_ON = "fit --data {root}/%s --layout folder --category part --size 64 --quiet --out {victim}"
CLI_CASES = [
    CliCase("fixed-threshold-below-zero", FIT_ON % "varied" + " --rule fixed --value -1",
            "fit option value must be > 0, got -1.0"),
    CliCase("fixed-threshold-old-name", FIT_ON % "varied" + " --rule fixed --tau 0",
            "fit option value must be > 0, got 0.0"),
    CliCase("negative-k", FIT_ON % "varied" + " --k -5", "fit option k must be in [0, 100], got -5.0"),
    CliCase("negative-seed", FIT_ON % "varied" + " --seed -1", "fit option seed must be in [0, 4294967295], got -1"),
    CliCase("seed-of-400-digits", FIT_ON % "varied" + " --seed " + "9" * 400,
            "fit option seed must be in [0, 4294967295], got 99999999999999999999... (400 characters)"),
    CliCase("zero-coreset", FIT_ON % "varied" + " --coreset-ratio 0",
            "fit option coreset_ratio must be in (0, 1], got 0.0"),
    CliCase("negative-coreset-points", FIT_ON % "varied" + " --coreset-points -1",
            "fit option coreset_points must be in [0, 1099511627776], got -1"),
    CliCase("quantile-one", FIT_ON % "varied" + " --rule quantile --q 1", "fit option q must be in (0, 1), got 1.0"),
    CliCase("huge-batch", FIT_ON % "varied" + " --batch-size 100000",
            "fit option batch_size must be in [1, 1024], got 100000"),
    CliCase("coreset-of-one-patch", FIT_ON % "varied" + " --coreset-ratio 1e-9",
            "the coreset keeps 1 of 768 training patches, all from training image 6, so that image cannot be scored "
            "against the others (the threshold needs that): the training images may be identical, or the coreset "
            "is too small (coreset_ratio 1e-09, coreset_points 400000); give varied normal images or a larger "
            "coreset_ratio"),
    CliCase("three-images-tiny-coreset", FIT_ON % "three" + " --coreset-ratio 0.01",
            "the coreset keeps 1 of 192 training patches, all from training image 1, so that image cannot be scored "
            "against the others (the threshold needs that): the training images may be identical, or the coreset "
            "is too small (coreset_ratio 0.01, coreset_points 400000); give varied normal images or a larger "
            "coreset_ratio"),
    CliCase("identical-images", FIT_ON % "identical" + " --sampler all",
            "the 12 training images all score 0 against each other (rule ksigma gives tau 0.0), so every image would "
            "be called anomalous: the images are identical or show no variation; give varied normal images"),
    CliCase("category-with-underscore", FIT_ON.replace("part", "_part") % "varied",
            f"invalid category name '_part': use {CATEGORY_NAME_RULE}"),
    CliCase("inspect-out-inside-model", "inspect {image} --model {victim} --out {victim}/pictures --quiet",
            "{victim}/pictures: is inside the model folder {victim}, which must hold only the model; give a folder "
            "outside it"),
    CliCase("export-out-inside-model", "export --model {victim} --format onnx --out {victim}/onnx",
            "{victim}/onnx: is inside the model folder {victim}, which must hold only the model; give a folder "
            "outside it"),
    CliCase("eval-out-inside-model",
            "eval-expert --data {root}/varied --layout folder --category part --model {victim} --out {victim}/r",
            "{victim}/r: is inside the model folder {victim}, which must hold only the model; give a folder "
            "outside it"),
    CliCase("eval-negative-limit", "eval --layout elpv --models {tmp}/m --conditions expert --limit -3 --out {tmp}/r",
            "--limit must be >= 1, got -3"),
    CliCase("inspect-nan-alpha", "inspect {image} --model {victim} --mllm hf:/none --alpha nan",
            "--alpha must be in [0, 1000], got nan"),
    CliCase("eval-expert-negative-seed",
            "eval-expert --data {root}/varied --layout folder --category part --model {victim} --out {tmp}/r --seed -2",
            "--seed must be in [0, 4294967295], got -2"),
    CliCase("every-bad-training-image-named-at-once", FIT_ON % "bad",
            "3 of the 6 training images cannot be used: {root}/bad/part/train/good/t1.png: image data is truncated or "
            "corrupt (image file is truncated); {root}/bad/part/train/good/t2.png: file is empty (0 bytes); "
            "{root}/bad/part/train/good/t3.png: not a recognised image format; fix or remove them (nothing was "
            "fitted)"),
    CliCase("a-truncated-training-image-reads-as-in-inspect", FIT_ON % "onebad",
            "training image rejected: {root}/onebad/part/train/good/t1.png: image data is truncated or corrupt (image "
            "file is truncated)"),
    CliCase("every-bad-image-named-at-once",
            "inspect {root}/bad/part/train/good/t2.png {image} {root}/bad/part/train/good/t1.png --model {victim}",
            "2 of the 3 images cannot be used: {root}/bad/part/train/good/t2.png: file is empty (0 bytes); "
            "{root}/bad/part/train/good/t1.png: image data is truncated or corrupt (image file is truncated); fix "
            "or remove them (nothing was inspected)"),
    CliCase("threshold-zero", "threshold --model {victim} --tau 0 --why test",
            "--tau 0 would call every image anomalous, its training images too; give a tau above 0"),
    CliCase("threshold-below-zero", "threshold --model {victim} --tau -1 --why test",
            "--tau must be a finite number >= 0, got -1.0"),
]  # fmt: skip


@pytest.mark.parametrize("case", CLI_CASES, ids=[case.id for case in CLI_CASES])
def test_cli_refuses_with_one_line_and_the_model_is_untouched(
    case: CliCase, world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim"
    shutil.copytree(world["model"], victim)
    before = _snapshot(victim)
    fill = {"root": str(world["root"]), "victim": str(victim), "image": str(world["image"]), "tmp": str(tmp_path)}
    capsys.readouterr()
    assert main(case.argv.format(**fill).split()) == 2
    err = capsys.readouterr().err  # a fit may say what it starts on the line before
    assert err.splitlines()[-1] == f"eagle: error: {case.error.format(**fill)}" and "Traceback" not in err
    assert _snapshot(victim) == before  # byte-identical: nothing replaced, nothing added
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]


def test_a_fit_that_would_not_load_never_replaces_a_working_model(world: dict[str, Path], tmp_path: Path) -> None:
    """Even past the option checks (the Python API, a plugin rule): save() validates with load() first."""
    import dataclasses

    from eagle_iad.errors import ModelFormatError
    from eagle_iad.expert import load, save
    from eagle_iad.tgps.thresholds import Thresholds

    victim = tmp_path / "victim"
    shutil.copytree(world["model"], victim)
    before = _snapshot(victim)
    model = load(victim)
    broken = dataclasses.replace(model, thresholds=Thresholds("fixed", -1.0, model.thresholds.s_max, {"value": -1.0}))
    with pytest.raises(ModelFormatError) as info:
        save(broken, victim)
    assert str(info.value) == (
        f"{victim}: the new model fails the checks every load makes, so it was not saved and the previous model is "
        f"unchanged ({victim}/model.json: thresholds.tau is -1.0; it must be a finite number >= 0 (refit the model))"
    )
    assert _snapshot(victim) == before and sorted(p.name for p in tmp_path.iterdir()) == ["victim"]


def test_few_images_give_a_usable_model_with_a_warning(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "few"
    assert main(["fit", "--data", str(world["root"] / "three"), *FIT, "--sampler", "all", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    warning = ("only 3 training images: tau rests on 3 leave-own-out scores, so expect false alarms until the model is "
               "fitted on more normal images (at least 10)")  # fmt: skip
    assert f"eagle: warning: {warning}\n" in captured.err
    # Three leave-own-out scores put tau above the largest of them (an empty band), which the
    # few-images warning covers: no second warning about the band.
    thresholds = json.loads((out / "model.json").read_text())["thresholds"]
    assert thresholds["tau"] >= thresholds["s_max"]
    assert json.loads(captured.out)["warnings"] == [warning]
    assert json.loads((out / "model.json").read_text())["warnings"] == [warning]
    train = sorted((world["root"] / "three" / "part" / "train" / "good").iterdir())
    assert main(["inspect", *map(str, train), "--model", str(out), "--json", "--quiet"]) == 0
    verdicts = json.loads(capsys.readouterr().out)
    assert [v["decision"] for v in verdicts] == ["normal"] * 3  # its own training images are normal


def test_a_fit_takes_every_image_suffix_and_says_which_files_it_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A camera's PGM was silently left out of a fit (``eagle inspect`` reads it), and so were a hidden PNG and a
    text file, without a word: the PGM is now taken, and the others are said in one line (how many, which kinds)."""
    good = tmp_path / "data" / "part" / "train" / "good"
    noise_pngs(good, 3, seed=6)
    Image.open(noise_pngs(tmp_path / "grey", 1, seed=7)[0]).convert("L").save(good / "x.pgm")
    (good / "notes.txt").write_text("lot 7")
    shutil.copyfile(good / "noise_6_0.png", good / ".hidden.png")
    out = tmp_path / "model"
    assert main(["fit", "--data", str(tmp_path / "data"), *FIT, "--sampler", "all", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    said = ("skipped 2 files that are not taken as images in the training folder (1 .txt, 1 hidden): .hidden.png, "
            "notes.txt; a folder's images are its visible files ending .png .jpg .jpeg .jpe .jfif .bmp .tif .tiff .gif "
            ".webp .pgm .ppm .pbm .pnm .jp2 .j2k (docs/USAGE.md, 'Images')")  # fmt: skip
    assert f"fitting 'part' on 4 normal images with efficientnet_lite0\neagle: warning: {said}\n" in captured.err
    summary = json.loads(captured.out)
    assert summary["train_images"] == 4 and summary["warnings"][0] == said
    assert said not in json.loads((out / "model.json").read_text())["warnings"]  # the folder's, not the model's


def test_inspect_never_writes_over_an_input_or_a_file_it_did_not_write(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    out.mkdir()
    a = tmp_path / "a.png"
    shutil.copyfile(world["image"], a)
    user = out / "a_box.png"
    shutil.copyfile(world["image"], user)
    precious = user.read_bytes()
    model = str(world["model"])
    assert main(["inspect", str(a), str(user), "--model", model, "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"eagle: error: {user}: is one of this command's inputs; refusing to write over it (choose another --out)\n"
    )
    assert main(["inspect", str(a), "--model", model, "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"eagle: error: {user}: exists and was not written by eagle; refusing to replace it (move it or choose "
        "another --out)\n"
    )
    assert user.read_bytes() == precious and sorted(p.name for p in out.iterdir()) == ["a_box.png"]
    user.unlink()
    for _ in range(2):  # a second run refreshes the pictures the first one wrote
        assert main(["inspect", str(a), "--model", model, "--out", str(out), "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [".eagle-outputs.json", "a_box.png", "a_heatmap.png", "a_reference.jpg"]
    # a listed name is not enough: the user's own file put in place of eagle's picture is kept too
    shutil.copyfile(world["image"], user)
    assert main(["inspect", str(a), "--model", model, "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"eagle: error: {user}: was changed since eagle wrote it (its size or SHA-256 differs from "
        f"{out / '.eagle-outputs.json'}); refusing to replace it (move it, delete it to let eagle write it again, "
        "or choose another --out)\n"
    )
    assert user.read_bytes() == precious
    # a ledger of names only (written before digests) still lets a run refresh its pictures, as before
    (out / ".eagle-outputs.json").write_text(json.dumps({"format": "eagle-iad/outputs", "files": names[1:]}))
    assert main(["inspect", str(a), "--model", model, "--out", str(out), "--quiet"]) == 0
    assert user.read_bytes() != precious
    assert sorted(json.loads((out / ".eagle-outputs.json").read_text())["written"]) == names[1:]


def test_a_report_file_the_user_replaced_is_not_overwritten(tmp_path: Path) -> None:
    """``eval-expert``'s report goes through outputs.staged_folder: its rerun kept a user's histogram.png by name
    only, and so replaced it."""
    from eagle_iad.errors import OutputError
    from eagle_iad.outputs import staged_folder

    out = tmp_path / "runs"
    for _ in range(2):  # a rerun refreshes its own report
        with staged_folder(out) as staging:
            (staging / "histogram.png").write_bytes(b"eagle's figure")
            (staging / "report.md").write_text("report")
    (out / "histogram.png").write_bytes(b"the user's own figure")
    with pytest.raises(OutputError) as info, staged_folder(out) as staging:
        (staging / "histogram.png").write_bytes(b"eagle's figure again")
    assert str(info.value).startswith(f"{out / 'histogram.png'}: was changed since eagle wrote it")
    assert (out / "histogram.png").read_bytes() == b"the user's own figure"
    assert sorted(p.name for p in out.iterdir()) == [".eagle-outputs.json", "histogram.png", "report.md"]


@pytest.mark.parametrize("stem", ["a" * 248, "é" * 120, "Zelle 7 (Charge B) ä"])
def test_long_and_non_ascii_names_get_short_unique_pictures(
    stem: str, world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = []
    for folder in ("x", "y"):  # the same long name twice: the pictures must still not collide
        (tmp_path / folder).mkdir()
        images.append(tmp_path / folder / f"{stem[: 250 - 4]}.png")
        shutil.copyfile(world["image"], images[-1])
    out = tmp_path / "out"
    assert main(["inspect", *map(str, images), "--model", str(world["model"]), "--out", str(out), "--json"]) == 0
    verdicts = json.loads(capsys.readouterr().out)
    pictures = [Path(p) for v in verdicts for p in v["pictures"].values()]
    assert len(set(pictures)) == 6 and all(p.is_file() for p in pictures)
    assert all(len(p.name.encode()) <= MAX_STEM_BYTES + len("-12345678_reference.jpg") for p in pictures)


def test_text_output_escapes_control_characters_in_names(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = tmp_path / "evil\x1b[2J\nname\u202e.png"
    shutil.copyfile(world["image"], hostile)
    assert main(["inspect", str(hostile), "--model", str(world["model"]), "--quiet"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{tmp_path}/evil\\x1b[2J\\nname\\u202e.png: ") and "\x1b" not in first


def test_degenerate_inputs_to_the_python_api_are_refused_too() -> None:
    from eagle_iad.errors import ConfigError
    from eagle_iad.expert import ExpertConfig

    cases: list[tuple[dict[str, Any], str]] = [
        ({"seed": -1}, "seed must be in [0, 4294967295], got -1"),
        ({"coreset_ratio": 2.0}, "coreset_ratio must be in (0, 1], got 2.0"),
        ({"rule": "mad", "rule_params": {"k": -1.0}}, "k must be in [0, 100], got -1.0"),
    ]
    for settings, message in cases:
        with pytest.raises(ConfigError) as info:
            ExpertConfig(**settings).validate()
        assert str(info.value) == message


# ------------------------------------------------------------------------------------------ service


@pytest.fixture(scope="module")
def live(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    from eagle_iad.service import ServiceSettings, create_app

    root = tmp_path_factory.mktemp("service")
    (root / "models").mkdir()
    shutil.copytree(world["model"], root / "models" / "part")
    runs = root / "runs" / "r1"
    runs.mkdir(parents=True)
    (runs / "metrics.json").write_text("{}")
    settings = ServiceSettings(models_dir=root / "models", state_dir=root / "state", runs_dir=root / "runs",
                               data_root=root)  # fmt: skip
    from eagle_iad.station.routes import install as stations

    app = create_app(settings, extensions=[stations])  # as `eagle serve` builds it: /v1/stations walked too
    with LiveServer(app) as server:
        server.app = app
        yield server


LONG = "x" * 300


def _routes(app: Any) -> list[tuple[str, list[str]]]:
    from fastapi.routing import APIRoute
    from test_service_faults import _every_route

    return [(path, methods) for path, methods, route in _every_route(app) if isinstance(route, APIRoute)]


def test_every_route_answers_bad_input_with_its_documented_status(live: Any) -> None:
    """300-character path segments and ids, out-of-range integers, wrongly typed JSON: never a 500."""
    answered: list[tuple[str, str, int]] = []
    bodies = [
        b"{}", b'{"tau": true, "why": "x"}', b'{"tau": "5", "why": "x"}', b'{"folder": 5}',
        b'{"folder": "a", "options": [1]}', b'{"folder": "a", "options": {"seed": 1e300}}', b"[]", b"\xff",
    ]  # fmt: skip
    for path, methods in _routes(live.app):
        url = live.base + path.replace("{path:path}", f"{LONG}/{LONG}.png")
        for name in ("name", "inspection_id", "job_id"):
            url = url.replace("{" + name + "}", LONG)
        if path == "/v1/inspections/events":
            url += f"?category={LONG}"  # hostile, and a 400: the feed itself never ends (tested in test_service.py)
        for method in methods:
            for body in bodies if method in ("POST", "PUT") else [None]:
                status = call(method, url, body=body, content_type="application/json")[0]
                answered.append((method, path, status))
    queries = ["offset=9223372036854775808", "offset=-1", "limit=0", "limit=100000000000000000000",
               f"category={LONG}", "decision=%00", "label=" + urllib.parse.quote("\u202e")]  # fmt: skip
    for query in queries:
        answered.append(("GET", f"/v1/inspections?{query}", call("GET", f"{live.base}/v1/inspections?{query}")[0]))
    fit = f"{live.base}/v1/categories/part/fit"
    huge = "10000000000000000000... (401 characters)"
    for options, message in (({"seed": 10**400}, f"fit option seed must be in [0, 4294967295], got {huge}"),
                             ({"k": 10**400}, f"fit option k: {huge} is not a float"),
                             ({"tau": True}, "fit option tau: True is not a float"),
                             ({"size": "640"}, "fit option size: '640' is not a int"),
                             ({"seed": -1}, "fit option seed must be in [0, 4294967295], got -1")):  # fmt: skip
        body = json.dumps({"folder": "runs", "options": options}).encode()
        status, _, answer = call("POST", fit, body=body, content_type="application/json")
        assert (status, answer["error"]["message"]) == (400, message)
    threshold = f"{live.base}/v1/categories/part/threshold"
    for change in ({"tau": True, "why": "x"}, {"tau": "5", "why": "x"}):
        assert call("POST", threshold, body=json.dumps(change).encode(), content_type="application/json")[0] == 400

    def expected(method: str, path: str, status: int) -> bool:
        plain = method == "GET" and "{" not in path and "?" not in path  # nothing hostile was sent: 200 is right
        return status in (400, 404, 405, 409, 413) or (plain and status == 200)

    unexpected = [entry for entry in answered if not expected(*entry)]
    assert unexpected == [], unexpected
    assert len({(m, p) for m, p, _ in answered}) > 20  # the walk saw the routes


def test_every_write_route_answers_507_on_a_full_disk(world: dict[str, Path], tmp_path: Path) -> None:
    """Models and state on one 24 MiB tmpfs (a private mount): fill it, then every write route says 507.

    The write routes: inspect, label, threshold change, fit and teach (a rollback saves as they do).
    """
    from test_service_faults import _user_namespace_tmpfs

    reason = _user_namespace_tmpfs()
    if reason is not None:
        pytest.skip(f"cannot simulate a full disk: {reason}")
    disk = tmp_path / "disk"
    disk.mkdir()
    source = tmp_path / "source"
    shutil.copytree(world["model"], source / "part")
    script = 'mount -t tmpfs -o size=24m tmpfs "$0" && cp -r "$1" "$0/models" && shift && exec "$@"'
    mount = ["unshare", "-rm", "sh", "-c", script, str(disk), str(source)]
    args = ["--models", str(disk / "models"), "--state-dir", str(disk / "state"), "--log-level", "warning",
            "--min-free-mb", "0"]  # fmt: skip
    server = ServeProcess(args, prefix=mount)
    try:
        inside = Path(f"/proc/{server.process.pid}/root") / disk.relative_to("/")
        image = png(np.asarray(Image.open(world["image"]).convert("RGB")))
        status, _, record = inspect_request(server.base, image, category="part")
        assert status == 200, record
        model_before = _snapshot(inside / "models" / "part")
        # Unbuffered: a write the full disk cut short leaves nothing in a buffer for close() to fail on.
        with (inside / "filler").open("wb", buffering=0) as handle:
            try:
                while handle.write(b"\0" * 65536):
                    pass
            except OSError:
                pass
        base = server.base
        writes = [
            ("POST /v1/inspect", inspect_request(base, image, category="part")),
            ("PUT label", call("PUT", f"{base}/v1/inspections/{record['id']}/label",
                               body=json.dumps({"label": "normal"}).encode(), content_type="application/json")),
            ("POST threshold", call("POST", f"{base}/v1/categories/part/threshold",
                                    body=json.dumps({"tau": 1.0, "why": "disk test"}).encode(),
                                    content_type="application/json")),
        ]  # fmt: skip
        body, ctype = multipart({}, [("files", f"{i}.png", image, "image/png") for i in range(2)])
        writes.append(("POST fit", call("POST", f"{base}/v1/categories/other/fit", body=body, content_type=ctype)))
        teach = {"inspections": [record["id"]], "why": "disk test", "force": True}
        writes.append(("POST teach", call("POST", f"{base}/v1/categories/part/teach", body=json.dumps(teach).encode(),
                                          content_type="application/json")))  # fmt: skip
        for what, (status, _, answer) in writes:
            assert (what, status, answer["error"]["code"]) == (what, 507, "insufficient_storage"), answer
        assert _snapshot(inside / "models" / "part") == model_before
        (inside / "filler").unlink()
        label = json.dumps({"label": "normal"}).encode()
        url = f"{base}/v1/inspections/{record['id']}/label"
        status, _, labelled = call("PUT", url, body=label, content_type="application/json")
        assert status == 200 and labelled["label"] == "normal"
    finally:
        server.stop()


def test_pictures_an_older_version_wrote_are_refreshed_and_a_failed_run_leaves_no_ledger(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = tmp_path / "a.png"
    shutil.copyfile(world["image"], a)
    old = tmp_path / "old"  # as an older eagle left it: its pictures, no ledger
    old.mkdir()
    for name in ("a_heatmap.png", "a_box.png"):
        shutil.copyfile(world["image"], old / name)
    assert main(["inspect", str(a), "--model", str(world["model"]), "--out", str(old), "--quiet"]) == 0
    assert json.loads((old / ".eagle-outputs.json").read_text())["files"] == [
        "a_box.png", "a_heatmap.png", "a_reference.jpg",
    ]  # fmt: skip
    assert (old / "a_heatmap.png").read_bytes() != world["image"].read_bytes()  # refreshed
    fresh = tmp_path / "fresh"
    assert main(["inspect", str(a), "--model", str(tmp_path / "no-model"), "--out", str(fresh), "--quiet"]) == 2
    capsys.readouterr()
    assert not fresh.exists()  # refused before anything was written: no folder, no ledger
