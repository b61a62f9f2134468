"""`gatectl models install` and `models list`: a site's own detector, checked before any gate
uses it, and which detector each e-bike gate runs."""

from __future__ import annotations

import argparse

from pydantic import TypeAdapter, ValidationError

from gatectl.cli.common import AppFactory, print_table
from gatectl.config.base import Name
from gatectl.config.gates import EbikeDetectorConfig, EbikeGateConfig
from gatectl.core.errors import UsageError
from gatectl.core.safe_text import shown
from gatectl.vision.models import ModelError, install_site_model
from gatectl.vision.objects import detector_layout

MAX_MODEL_BYTES = 512 << 20  # far above any small detector; bounds the copy and the hashing


def _ebike_detectors(gates: list) -> list[tuple[str, EbikeDetectorConfig]]:
    """(config key, detector settings) of every e-bike gate; the defaults when there is none, so a
    model is checked against what a new e-bike gate would look for."""
    found = [(f"gates[{i}].detector", g.detector) for i, g in enumerate(gates)
             if isinstance(g, EbikeGateConfig)]
    return found or [("gates.detector (default)", EbikeDetectorConfig())]


def cmd_models(args: argparse.Namespace, app_factory: AppFactory) -> int:
    app = app_factory()
    store = app.models
    if args.action == "list":
        active: dict[str, list[str]] = {}
        for gate in app.cfg.gates:
            if isinstance(gate, EbikeGateConfig) and gate.detector.file is None:
                active.setdefault(gate.detector.model, []).append(gate.name)
        for watch in app.cfg.analysis.tailgate:
            active.setdefault(watch.model, []).append(f"tailgate-{watch.door}")
        print_table(
            [[s.name, s.origin, s.sha256[:12], ", ".join(active.get(s.name, [])) or "-", s.task]
             for s in store.registry.values()],
            ["name", "origin", "sha256", "used by", "task"],
        )
        return 0
    if args.file is None:
        raise UsageError("gatectl models install: FILE is required")
    src = args.file
    name = args.name or src.stem
    try:
        TypeAdapter(Name).validate_python(name)
    except ValidationError:
        raise UsageError(
            f"--name '{shown(name, 64)}': use 1-64 characters of A-Z a-z 0-9 _ . -"
        ) from None
    if name in store.registry and not store.registry[name].site:
        raise UsageError(f"--name {name}: a bundled model has this name; choose another")
    if not src.is_file():
        raise UsageError(f"{shown(str(src), 200)}: no such file")
    if src.stat().st_size > MAX_MODEL_BYTES:
        raise ModelError(f"{src}: {src.stat().st_size >> 20} MB, more than a detector's "
                         f"{MAX_MODEL_BYTES >> 20} MB")
    layout = detector_layout(store.session_for_file(src), src)
    for key, det in _ebike_detectors(app.cfg.gates):
        if layout.family != det.family:
            raise ModelError(f"{src}: a {layout.family} output, but {key}.family = '{det.family}'")
        top = max(det.classes.values())
        if top >= layout.n_classes:
            raise ModelError(
                f"{src}: {layout.n_classes} classes (0..{layout.n_classes - 1}), but "
                f"{key}.classes needs index {top}"
            )
    spec = install_site_model(
        store.site_dir or app.site_models, name, src,
        f"site detector: {layout.family}, {layout.input_size} px, {layout.n_classes} classes "
        f"(from {src.name})",
    )
    print(f"installed {name} ({layout.family}, {layout.input_size} px input, "
          f"{layout.n_classes} classes, sha256 {spec.sha256[:12]}) in "
          f"{store.site_dir or app.site_models}: select it with gates.detector.model = '{name}'"
          f" (and input_size = {layout.input_size}), or for a person detector with"
          f" analysis.tailgate.model = '{name}'")
    return 0
