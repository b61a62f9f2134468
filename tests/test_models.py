"""Model registry: hashes verified at load, licences recorded, the core path stays light."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from gatectl.config.site import ModelsConfig
from gatectl.core.paths import bundled_models_dir
from gatectl.vision.face.embedder import make_embedder
from gatectl.vision.models import ModelError, ModelStore, load_registry

MODELS = bundled_models_dir()


def test_every_registered_model_verifies():
    store = ModelStore()
    results = store.check_all()
    assert {s.name for s, _ in results} == {"yunet_n", "minifasnet_v2", "minifasnet_v1se", "mobilefacenet",
                                            "plate_det_320", "plate_det_640", "plate_color", "plate_text",
                                            "plate_text_keys", "yolox_nano", "yolox_nano_ebike",
                                            "yolox_nano_person"}
    assert [err for _, err in results if err] == []


def test_defaults_are_licence_clean_and_documented():
    manifest = (MODELS / "MANIFEST.md").read_text()
    for spec in load_registry(MODELS).values():
        assert spec.sha256 in manifest, f"{spec.name}: sha256 not in MANIFEST.md"
        assert spec.file in manifest, f"{spec.name}: file not in MANIFEST.md"
        if spec.default:
            assert spec.licence in ("Apache-2.0", "MIT"), f"{spec.name} is a default with {spec.licence}"


def _copy_models(tmp_path):
    dst = tmp_path / "models"
    shutil.copytree(MODELS, dst)
    dst.chmod(0o755)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_corrupt_model_fails_with_one_line(tmp_path):
    dst = _copy_models(tmp_path)
    target = dst / "mobilefacenet" / "mobilefacenet.onnx"
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelError) as exc:
        ModelStore(dst).session("mobilefacenet")
    msg = str(exc.value)
    assert "\n" not in msg and "sha256 mismatch" in msg and "mobilefacenet.onnx" in msg


def test_missing_model_and_missing_registry(tmp_path):
    dst = _copy_models(tmp_path)
    (dst / "yunet" / "yunet_n_dynamic.onnx").unlink()
    with pytest.raises(ModelError, match="model 'yunet_n' is missing"):
        ModelStore(dst).session("yunet_n")
    with pytest.raises(ModelError, match="model registry not found"):
        ModelStore(tmp_path / "empty")


def test_default_path_does_not_import_insightface():
    code = ("import sys; from gatectl.runtime.app import App; from gatectl.config import default_config; "
            "import tempfile; a = App(default_config(), tempfile.mkdtemp()); a.embedder; a.liveness; "
            "print('insightface' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_insightface_backend_without_the_extra_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "insightface", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "insightface.model_zoo", None)
    cfg = ModelsConfig(embedding_backend="insightface", insightface_pack=tmp_path)
    with pytest.raises(ModelError, match=r"pip install 'gatectl\[insightface\]'"):
        make_embedder(cfg, ModelStore())


def test_insightface_backend_needs_a_pack():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs insightface_pack"):
        ModelsConfig(embedding_backend="insightface")
