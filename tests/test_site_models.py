"""A site's own detector: `gatectl models install` checks it before any gate uses it, records its
sha256 in the site registry (in the state folder), and every load verifies it; the doctor and
`models list` say which detector each e-bike gate runs. Real files, real onnxruntime, the CLI as
a subprocess."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from gatectl.core.paths import bundled_models_dir
from tests.conftest import DATA, REPO, ok, one_line_error, run_cli
from tests.test_ebike import car_config as ebike_car_config

MODELS = bundled_models_dir()
EBIKE_MODEL = MODELS / "yolox_nano_ebike" / "yolox_nano_ebike.onnx"


def car_config(tmp_path: Path, detector: str = "") -> Path:
    """test_ebike's car (one camera on the shared e-bike frames, its e-bike gate); ``detector``:
    the lines of its [gates.detector] table."""
    return ebike_car_config(tmp_path, f"\n[gates.detector]\n{detector}\n")


def test_an_installed_detector_is_recorded_selected_by_name_and_loaded(tmp_path):
    data = tmp_path / "state"
    out = ok(run_cli("models", "install", str(EBIKE_MODEL), "--name", "site_moped",
                     config=car_config(tmp_path), data=data))
    assert out.startswith("installed site_moped (yolox, 416 px input, 80 classes, sha256 cac0d1fb348a)")
    assert len(out.strip().splitlines()) == 1
    assert (data / "models" / "site_moped.onnx").read_bytes() == EBIKE_MODEL.read_bytes()
    assert "cac0d1fb348a3b2e6e2635838e469839922110a3a9149bf67c5a0efa2cd64cbd" in \
        (data / "models" / "models.toml").read_text()

    selecting = car_config(tmp_path, 'model = "site_moped"')
    r = run_cli("doctor", "--camera-timeout", "5", config=selecting, data=data)
    assert r.returncode == 0, r.stdout
    lines = r.stdout.splitlines()
    assert "[ok] gate cam (ebike): pipeline ready" in lines
    assert "[ok] gate cam detector: site_moped (site, sha256 cac0d1fb348a)" in lines
    listed = [ln.split() for ln in ok(run_cli("models", "list", config=selecting, data=data)).splitlines()]
    assert ["site_moped", "site", "cac0d1fb348a", "cam"] == listed[-1][:4]
    bundled = next(row for row in listed if row[0] == "yolox_nano_ebike")
    assert bundled[1:4] == ["bundled", "cac0d1fb348a", "-"]
    # replay runs on a scratch copy of the store, but with the site's models
    frame = DATA / "ebike" / "we0091234_moto.png"
    assert ok(run_cli("replay", str(frame), config=selecting, data=data)).startswith(
        "we0091234_moto.png: ebike")


def test_the_doctor_names_the_bundled_default_detector(tmp_path):
    r = run_cli("doctor", "--camera-timeout", "5", config=car_config(tmp_path), data=tmp_path / "s")
    assert "[ok] gate cam detector: yolox_nano_ebike (bundled, sha256 cac0d1fb348a)" in r.stdout.splitlines()


def test_a_truncated_file_is_refused_with_one_line(tmp_path):
    bad = tmp_path / "half.onnx"
    bad.write_bytes(EBIKE_MODEL.read_bytes()[: EBIKE_MODEL.stat().st_size // 2])
    line = one_line_error(run_cli("models", "install", str(bad), config=car_config(tmp_path),
                                  data=tmp_path / "s"))
    assert line.startswith(f"gatectl: {bad}: onnxruntime cannot load model"), line
    assert not (tmp_path / "s" / "models" / "models.toml").exists()


def test_a_face_model_is_refused_naming_its_input(tmp_path):
    face = MODELS / "mobilefacenet" / "mobilefacenet.onnx"
    line = one_line_error(run_cli("models", "install", str(face), "--name", "face",
                                  config=car_config(tmp_path), data=tmp_path / "s"))
    assert line == (f"gatectl: {face}: input input ['batch', 3, 112, 112] tensor(float): a detector "
                    "takes one [1, 3, S, S] float image")
    assert not (tmp_path / "s" / "models" / "face.onnx").exists()


def test_a_detector_with_too_few_classes_for_the_config_is_refused(tmp_path):
    cfg = car_config(tmp_path, 'classes = { motorcycle = 80 }\nebike_classes = ["motorcycle"]')
    line = one_line_error(run_cli("models", "install", str(EBIKE_MODEL), "--name", "few",
                                  config=cfg, data=tmp_path / "s"))
    assert line == (f"gatectl: {EBIKE_MODEL}: 80 classes (0..79), but gates[0].detector.classes "
                    "needs index 80")
    assert not (tmp_path / "s" / "models" / "few.onnx").exists()


def test_a_bundled_name_is_refused(tmp_path):
    line = one_line_error(run_cli("models", "install", str(EBIKE_MODEL), "--name", "yolox_nano",
                                  config=car_config(tmp_path), data=tmp_path / "s"))
    assert line == "gatectl: --name yolox_nano: a bundled model has this name; choose another"


def test_a_site_model_changed_after_install_is_refused_at_load(tmp_path):
    data = tmp_path / "state"
    ok(run_cli("models", "install", str(EBIKE_MODEL), "--name", "site_moped",
               config=car_config(tmp_path), data=data))
    installed = data / "models" / "site_moped.onnx"
    blob = bytearray(installed.read_bytes())
    blob[-1] ^= 0xFF  # one flipped byte: still loadable, no longer what was checked
    installed.write_bytes(bytes(blob))
    r = run_cli("doctor", "--camera-timeout", "5", config=car_config(tmp_path, 'model = "site_moped"'),
                data=data)
    assert r.returncode == 1
    assert (f"[FAIL] gate cam (ebike): {installed}: sha256 mismatch for model 'site_moped' "
            "(expected cac0d1fb348a…") in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_a_site_registry_entry_may_not_shadow_a_bundled_model(tmp_path):
    data = tmp_path / "state"
    (data / "models").mkdir(parents=True)
    shutil.copy(EBIKE_MODEL, data / "models" / "x.onnx")
    (data / "models" / "models.toml").write_text(
        '[yolox_nano_ebike]\nfile = "x.onnx"\nsha256 = "00"\ntask = "t"\nlicence = "l"\ndefault = false\n')
    line = one_line_error(run_cli("models", "list", config=car_config(tmp_path), data=data))
    assert line == (f"gatectl: {data / 'models'}/models.toml: site model 'yolox_nano_ebike' has the "
                    "name of a bundled model; reinstall it under another name")


def yolov8_layout_model(path: Path, size: int = 160, classes: int = 2) -> Path:
    """A real ONNX graph with a yolov8 head's I/O ([1, 3, S, S] -> [1, 4 + C, A]); its scores are
    near 0, so it detects nothing - the test is about what install and the gate accept."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    bias = numpy_helper.from_array(np.zeros((1, 4 + classes, anchors), np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),
         helper.make_node("Mul", ["m", "zero"], ["z"]),
         helper.make_node("Add", ["bias", "z"], ["output0"])],
        "yolov8_layout",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + classes, anchors])],
        [bias, numpy_helper.from_array(np.zeros((1,), np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_a_yolov8_model_installs_for_a_yolov8_gate_and_is_refused_for_a_yolox_one(tmp_path):
    model = yolov8_layout_model(tmp_path / "v8.onnx")
    data = tmp_path / "state"
    line = one_line_error(run_cli("models", "install", str(model), config=car_config(tmp_path),
                                  data=data))
    assert line == f"gatectl: {model}: a yolov8 output, but gates[0].detector.family = 'yolox'"
    v8 = 'family = "yolov8"\ninput_size = 160\nclasses = { bicycle = 1, motorcycle = 0 }'
    out = ok(run_cli("models", "install", str(model), config=car_config(tmp_path, v8), data=data))
    assert out.startswith("installed v8 (yolov8, 160 px input, 2 classes, sha256 ")
    r = run_cli("doctor", "--camera-timeout", "5",
                config=car_config(tmp_path, f'model = "v8"\n{v8}'), data=data)
    assert "[ok] gate cam (ebike): pipeline ready" in r.stdout.splitlines(), r.stdout


def test_a_yolox_output_whose_anchors_do_not_match_its_input_is_refused(tmp_path):
    # 525 rows are a 160 px head: read on a 192 px input, every box would land on the wrong cell
    model = yolov8_layout_model(tmp_path / "odd.onnx", size=160, classes=2)
    import onnx

    m = onnx.load(model)
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 192
    m.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 192
    onnx.save(m, model)
    line = one_line_error(run_cli("models", "install", str(model), config=car_config(tmp_path),
                                  data=tmp_path / "s"))
    assert line == (f"gatectl: {model}: output [1, 6, 525] fits neither yolox [1, 756, 5 + C] nor "
                    "yolov8 [1, 4 + C, 756] (A = 756 anchors for a 192 px input)")


def test_a_person_detector_installed_for_the_tailgate_watch_is_listed_and_checked_by_the_doctor(tmp_path):
    example = (REPO / "config" / "lobby-face-gate.toml").read_text()
    watch = 'model = "yolox_nano_person"'
    assert example.count(watch) == 1
    config = tmp_path / "door.toml"  # the example lobby, its tailgate watch on a site model
    config.write_text(example.replace(watch, 'model = "site_person"'))
    data = tmp_path / "state"
    person = bundled_models_dir() / "yolox_nano_person" / "yolox_nano_person.onnx"
    out = ok(run_cli("models", "install", str(person), "--name", "site_person", config=config, data=data))
    assert "analysis.tailgate.model = 'site_person'" in out and len(out.strip().splitlines()) == 1
    listed = {ln.split()[0]: ln.split() for ln in ok(run_cli("models", "list", config=config, data=data)).splitlines()}
    sha = hashlib.sha256(person.read_bytes()).hexdigest()
    assert listed["site_person"][1:4] == ["site", sha[:12], "tailgate-lobby_door"]
    assert listed["yolox_nano_person"][3] == "-"  # the bundled default, not selected here
    doctor = run_cli("doctor", "--camera-timeout", "1", config=config, data=data).stdout.splitlines()
    assert f"[ok] tailgate watch lobby_door: detector site_person (site, sha256 {sha[:12]})" in doctor
    config.write_text(example.replace(watch, 'model = "nope"'))
    doctor = run_cli("doctor", "--camera-timeout", "1", config=config, data=data).stdout.splitlines()
    failed = [ln for ln in doctor if ln.startswith("[FAIL] tailgate watch lobby_door: ")]
    assert len(failed) == 1 and "analysis.tailgate[0].model = 'nope'" in failed[0]
    assert "no model named 'nope'" in failed[0]


def test_run_with_a_tailgate_model_it_cannot_open_stops_with_one_line(tmp_path):
    """The model of a tailgate watch is opened as `run` starts its gates: a wrong one must stop
    the start with the line naming the key, every output off - not an internal error from
    shutting down gate workers that never started."""
    config = tmp_path / "bench.toml"
    config.write_text((REPO / "config" / "replay-folder.toml").read_text().replace(
        'source = "tests/data/faces"', f'source = "{REPO / "tests/data/faces"}"')
        + '\n[[analysis.tailgate]]\ndoor = "door"\ncamera = "folder"\nmodel = "nope"\n')
    r = run_cli("run", config=config, data=tmp_path / "state")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("gatectl: analysis.tailgate[0].model = 'nope': ") and \
        last.endswith("no model named 'nope'"), last
    assert "stopped; outputs off" in r.stderr
