"""An MQTT command is one spec plus one registry line: a toy command, registered here and
nowhere else, goes through the real verification path (Ed25519 signature, expiry, nonce claimed
in SQLite, replay) of a device built from a config, and its argument model is enforced."""

from __future__ import annotations

import json
import time
from typing import Annotated

import pytest
from pydantic import Field

from gatectl.runtime.app import App, simulated_boards
from gatectl.config import parse_config
from gatectl.sync.commands import COMMANDS, CommandContext, CommandSpec
from gatectl.sync.inbound import InboundModel, Token
from gatectl.sync.signing import generate_private_key, public_key_b64, sign_command


class LampArgs(InboundModel):
    output: Token
    seconds: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]


def lamp_test(ctx: CommandContext, args: LampArgs) -> str:
    """A technician checks the lobby lamp from the centre."""
    ctx.controls.outputs.pulse(args.output, args.seconds)
    return f"{args.output} on for {args.seconds:g} s"


@pytest.fixture
def device(tmp_path, monkeypatch):
    spec = CommandSpec("lamp.test", LampArgs, lamp_test, "actuates")
    monkeypatch.setitem(COMMANDS, spec.name, spec)  # the one registration a new command needs
    key = generate_private_key()
    cfg = parse_config({"sync": {"enabled": True, "command_keys": {"k1": public_key_b64(key)}},
                        "outputs": [{"name": "lamp", "channel": 3}]})
    app = App(cfg, tmp_path / "state", boards=simulated_boards(cfg))
    client = app.sync_client(dict, lambda: "no reload")  # not started: commands fed as they arrive

    def send(body: dict) -> dict:
        return client.on_command(json.dumps(body).encode())

    def signed(args: dict, **kw) -> dict:
        opts = {"now": time.time()} | kw
        return sign_command(opts.pop("key", key), "k1", cfg.device.id, "lamp.test", args, **opts)

    yield app, send, signed
    app.close()


def lamp_pulses(app: App) -> list[float]:
    return [p.seconds for p in app.boards["main"].history if p.channel == 3]


def test_a_registered_command_runs_once_after_verification(device):
    app, send, signed = device
    body = signed({"output": "lamp", "seconds": 2})
    assert send(body) == {"id": body["id"], "ok": True, "result": "lamp on for 2 s"}
    assert lamp_pulses(app) == [2.0]
    again = send(body)  # a broker re-delivery
    assert again["ok"] is False and again["error"].startswith("rejected: replayed")
    assert lamp_pulses(app) == [2.0]
    decisions = [e.decision for e in app.store.events(kind="command")]
    assert sorted(decisions) == ["denied", "granted"]


@pytest.mark.parametrize("case, error", [
    ("bad_signature", "rejected: bad_signature"),
    ("unsigned", "rejected: unsigned"),
    ("expired", "rejected: expired"),
    ("too_long", "args.seconds: "),
    ("extra_key", "args.colour: "),
])
def test_a_registered_command_is_refused_like_any_other(device, case, error):
    app, send, signed = device
    if case == "bad_signature":
        body = signed({"output": "lamp", "seconds": 1}, key=generate_private_key())
    elif case == "unsigned":
        body = signed({"output": "lamp", "seconds": 1})
        del body["sig"]
    elif case == "expired":
        body = signed({"output": "lamp", "seconds": 1}, now=time.time() - 120, ttl_s=30)
    elif case == "too_long":
        body = signed({"output": "lamp", "seconds": 60})
    else:
        body = signed({"output": "lamp", "seconds": 1, "colour": "red"})
    resp = send(body)
    assert resp["ok"] is False and resp["error"].startswith(error), resp
    assert lamp_pulses(app) == []
