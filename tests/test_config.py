"""Config: the examples validate, and every mistake is one line naming its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatectl.config import default_config, load_config, parse_config
from gatectl.config.base import ConfigError
from tests.conftest import REPO, run_cli

EXAMPLES = sorted((REPO / "config").glob("*.toml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_validate(path: Path):
    cfg = load_config(path)
    assert cfg.gates or cfg.elevators or cfg.barriers, "every example drives something"
    for g in cfg.gates:
        assert cfg.camera(g.camera)
        if g.kind == "face":
            assert cfg.door(g.door)
        elif g.kind == "plate":
            assert any(b.name == g.barrier for b in cfg.barriers)
        else:
            assert any(e.name == g.elevator for e in cfg.elevators)


def test_defaults_are_one_face_gate_with_simulated_relay():
    cfg = default_config()
    assert [g.kind for g in cfg.gates] == ["face"]
    assert [b.driver for b in cfg.boards] == ["simulated"]
    assert cfg.door("door").output == "door" and cfg.output("door").channel == 0
    assert cfg.policy.reenroll_after_days == 15
    assert cfg.cameras[0].kind == "v4l2"


def errors_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    return exc.value.lines


BASE = {
    "cameras": [{"name": "lobby", "source": "0"}],
    "outputs": [{"name": "d", "channel": 0}],
    "doors": [{"name": "d", "output": "d"}],
    "gates": [{"kind": "face", "name": "g", "camera": "lobby", "door": "d"}],
}


def test_unknown_camera_is_named_with_its_key_path():
    data = {**BASE, "gates": [{"kind": "face", "name": "g", "camera": "lobby2", "door": "d"}]}
    assert errors_of(data) == ["gates[0].camera: unknown camera 'lobby2'"]


def test_every_error_is_reported_at_once():
    data = {
        "cameras": [{"name": "lobby", "source": "0", "fps": -1, "colour": "red"}],
        "outputs": [{"name": "d"}],
        "doors": [{"name": "d", "output": "d", "unlock_seconds": 500}],
        "gates": [{"kind": "face", "name": "g", "camera": "lobby", "door": "d",
                   "thresholds": {"matc": 0.4}}],
        "storage": {"retention_days": 0},
    }
    lines = errors_of(data)
    assert "cameras[0].fps: Input should be greater than 0 (got -1)" in lines
    assert "cameras[0].colour: unknown key" in lines
    assert any(l.startswith("doors[0].unlock_seconds: ") and "500" in l for l in lines)
    assert "gates[0].thresholds.matc: unknown key" in lines
    assert any(l.startswith("storage.retention_days: ") for l in lines)
    assert len(lines) == 5


def test_cross_references_and_duplicates():
    data = {
        "cameras": [{"name": "a", "source": "0"}, {"name": "a", "source": "1"}],
        "outputs": [{"name": "o1", "channel": 1}, {"name": "o2", "channel": 1}, {"name": "o3", "channel": 9}],
        "doors": [{"name": "d", "output": "o1"}, {"name": "e", "output": "nope"}],
        "inputs": [{"name": "c", "role": "door_contact", "door": "x"}, {"name": "f", "index": 8, "role": "fire_alarm"}],
        "gates": [{"kind": "face", "name": "g", "camera": "a", "door": "nope"},
                  {"kind": "face", "name": "h", "camera": "a", "door": "d"}],
    }
    lines = errors_of(data)
    assert "cameras[1].name: duplicate name 'a'" in lines
    assert "outputs[1].channel: channel 1 of board 'main' already drives output 'o1'" in lines
    assert "outputs[2].channel: board 'main' has channels 0..7" in lines
    assert "doors[1].output: unknown output 'nope'" in lines
    assert "inputs[0].door: a door_contact needs a known door (got 'x')" in lines
    assert "inputs[1].index: board 'main' has 8 input(s)" in lines
    assert "gates[0].door: unknown door 'nope'" in lines
    assert not any(line.startswith("gates[1].camera") for line in lines)  # gates may share a camera


def test_unknown_gate_kind_and_top_level_typo():
    data = {**BASE, "gates": [{"kind": "iris", "name": "g", "camera": "lobby", "door": "d"}], "polcy": {}}
    lines = errors_of(data)
    assert "polcy: unknown key" in lines
    assert any(l.startswith("gates[0]: ") and "iris" in l for l in lines)


def test_confirm_window_rule():
    data = {**BASE, "gates": [{"kind": "face", "name": "g", "camera": "lobby", "door": "d",
                               "confirm_frames": 4, "confirm_window": 3}]}
    assert errors_of(data) == ["gates[0]: confirm_frames must not exceed confirm_window"]


def test_camera_kind_is_inferred(tmp_path):
    cfg = parse_config({"cameras": [
        {"name": "a", "source": "2"}, {"name": "b", "source": "/dev/video1"},
        {"name": "c", "source": "rtsp://10.0.0.5/stream"}, {"name": "d", "source": "clip.mp4"},
        {"name": "e", "source": str(tmp_path)},
    ]})
    assert [c.kind for c in cfg.cameras] == ["v4l2", "v4l2", "url", "video", "images"]


def test_cli_config_check_prints_one_line_per_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[cameras]]\nname = "lobby"\nsource = "0"\n[[outputs]]\nname = "d"\n[[doors]]\nname = "d"\noutput = "d"\n'
                   '[[gates]]\nkind = "face"\nname = "g"\ncamera = "lobby2"\ndoor = "d"\n')
    r = run_cli("config", "check", str(bad))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["gatectl: gates[0].camera: unknown camera 'lobby2'"]
    assert "Traceback" not in r.stderr


def test_cli_config_check_syntax_error_and_missing_file(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("[device\nid = 1\n")
    r = run_cli("config", "check", str(bad))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"{bad}: TOML syntax error" in r.stderr
    r = run_cli("config", "check", str(tmp_path / "absent.toml"))
    assert r.stderr.strip() == f"gatectl: {tmp_path / 'absent.toml'}: config file not found"


def test_cli_config_check_ok_on_example():
    r = run_cli("config", "check", str(EXAMPLES[0]))
    assert r.returncode == 0 and "OK" in r.stdout


def test_barrier_and_elevator_references_are_checked():
    lines = errors_of({
        "outputs": [{"name": "o"}],
        "inputs": [{"name": "fire", "role": "fire_alarm"}],
        "barriers": [{"name": "lane", "open_output": "o", "close_output": "nope", "guard_input": "fire"},
                     {"name": "lane2", "open_output": "o", "guard_input": "ghost"}],
        "elevators": [{"name": "car", "hold_output": "hold", "alarm_output": "o"}],
    })
    assert "barriers[0].close_output: unknown output 'nope'" in lines
    assert 'barriers[0].guard_input: input \'fire\' needs role = "vehicle_guard"' in lines
    assert "barriers[1].guard_input: unknown input 'ghost'" in lines
    assert "elevators[0].hold_output: unknown output 'hold'" in lines
    lines = errors_of({"elevators": [{"name": "car", "hold_output": "o", "pulse_s": 1, "renew_s": 1}]})
    assert lines == ["elevators[0]: renew_s must be shorter than pulse_s, or the hold would drop between renewals"]


def test_sync_settings_are_checked():
    lines = errors_of({"sync": {"enabled": True, "command_keys": {"k1": "not-a-key"}, "password_file": "/x",
                                "tls": {"ca": "/ca.pem", "cert": "/c.pem"}, "outbox_max": 1000, "prefix": "a/#"}})
    assert any(l.startswith("sync.command_keys: key 'k1': not an Ed25519 public key") for l in lines), lines
    assert "sync.tls: cert and key go together" in lines
    assert any(l.startswith("sync.outbox_max: ") for l in lines)
    assert any(l.startswith("sync.prefix: ") for l in lines)


def _models():
    """Every schema of every config module (the package's own and its submodules)."""
    import importlib
    import pkgutil

    import gatectl.config as c

    modules = [c] + [importlib.import_module(f"{c.__name__}.{m.name}") for m in pkgutil.iter_modules(c.__path__)]
    base = next(m.Strict for m in modules if hasattr(m, "Strict"))
    found = {m for mod in modules for m in vars(mod).values()
             if isinstance(m, type) and issubclass(m, base) and m is not base}
    assert len(found) > 20  # the walk sees the schemas wherever they live
    return sorted(found, key=lambda m: m.__name__)


def test_every_setting_is_described_and_every_number_bounded():
    """Review aid that cannot rot: a new field without a description or a number without both
    bounds fails here, naming it."""
    from annotated_types import Ge, Gt, Le, Lt, MaxLen

    missing = []
    for model in _models():
        for name, field in model.model_fields.items():
            key = f"{model.__name__}.{name}"
            if not field.description:
                missing.append(f"{key}: no description")
            ann = str(field.annotation)
            kinds = {type(m) for m in field.metadata}
            number = ("int" in ann or "float" in ann) and not any(x in ann for x in ("Literal", "dict", "list"))
            if number and (not kinds & {Ge, Gt} or not kinds & {Le, Lt}):
                missing.append(f"{key}: number without a lower and an upper bound")
            if ann.startswith(("list", "dict", "typing.List", "typing.Dict")) and MaxLen not in kinds:
                missing.append(f"{key}: collection without a maximum length")
    assert missing == []


@pytest.mark.parametrize("data, key", [
    ({"gates": [{"kind": "face", "name": "g", "camera": "c", "door": "d", "thresholds": {"match": 0, "margin": 0}}]},
     "gates[0].thresholds.match"),
    ({"gates": [{"kind": "face", "name": "g", "camera": "c", "door": "d", "thresholds": {"margin": 0}}]}, "gates[0].thresholds.margin"),
    ({"cameras": [{"name": "c", "source": "0", "stall_timeout_s": float("inf")}]}, "cameras[0].stall_timeout_s"),
    ({"cameras": [{"name": "c", "source": "0", "stall_timeout_s": 1e12}]}, "cameras[0].stall_timeout_s"),
    ({"cameras": [{"name": "c", "source": "0", "max_frame_age_ms": 999999999}]}, "cameras[0].max_frame_age_ms"),
    ({"storage": {"snapshots": "../../etc/cron.d"}}, "storage.snapshots"),
    ({"storage": {"snapshots": "/etc/cron.d"}}, "storage.snapshots"),
    ({"storage": {"database": "/dev/null"}}, "storage.database"),
    ({"storage": {"state_dir": "relative/state"}}, "storage.state_dir"),
    ({"doors": [{"name": "d", "output": "o", "held_open_s": float("nan")}]}, "doors[0].held_open_s"),
    ({"policy": {"reenroll_after_days": 1e9}}, "policy.reenroll_after_days"),
    ({"enrollment": {"duplicate_threshold": 0}}, "enrollment.duplicate_threshold"),
])
def test_values_that_disable_security_or_break_the_daemon_are_refused(data, key):
    lines = errors_of(data)
    assert any(line.startswith(f"{key}: ") for line in lines), lines
