"""`gatectl residents add|card|pin|totp|face`: a resident's other credentials from the command
line, on a real store; the PIN never appears anywhere but as its hash."""

from __future__ import annotations

import subprocess
import sys

import cv2
import pyotp

from gatectl.store import Store
from gatectl.vision.qr import QrReader
from tests.conftest import REPO, ok, one_line_error, run_cli


def gatectl(data, *args, stdin: str = ""):
    return subprocess.run([sys.executable, "-m", "gatectl", "--data", str(data), *args],
                          input=stdin, capture_output=True, text=True, timeout=120, cwd=REPO,
                          check=False)


def test_cards_pins_codes_and_face_refusal_from_the_cli(tmp_path):
    data = tmp_path / "state"
    assert "resident #1 added without a face" in ok(
        run_cli("residents", "add", "--name", "Wang Fang", "--unit", "B2-1201", data=data))
    assert "card 1A2B3C/26 added" in ok(
        run_cli("residents", "card", "add", "1", "--card", "0x01a2b3c", "--bits", "26", data=data))
    assert ok(run_cli("residents", "card", "list", "1", data=data)).split() == ["1A2B3C/26"]
    line = one_line_error(run_cli("residents", "card", "add", "1", "--card", "ZZ", "--bits", "26",
                                  data=data))
    assert line == "gatectl: --card: 'ZZ' is not a 26-bit number in hex"
    line = one_line_error(run_cli("residents", "card", "add", "1", "--card", "1A2B3C", "--bits",
                                  "26", data=data))
    assert "already belongs to resident #1" in line
    assert "needs" not in one_line_error(run_cli("residents", "card", "add", "1", data=data))

    r = gatectl(data, "residents", "pin", "set", "1", stdin="739105\n")
    assert r.returncode == 0 and "739105" not in r.stdout + r.stderr, r.stderr
    assert one_line_error(gatectl(data, "residents", "pin", "set", "1", stdin="12\n")) == \
        "gatectl: PIN: 4-12 digits (0-9) required"

    png = tmp_path / "totp.png"
    uri = ok(run_cli("residents", "totp", "add", "1", "--out", str(png), data=data)).strip()
    assert uri.startswith("otpauth://totp/") and "secret=" in uri
    assert QrReader().read(cv2.imread(str(png))) == [uri]

    assert "templates and photos erased" in ok(
        run_cli("residents", "face", "refuse", "Wang Fang", data=data))
    assert one_line_error(run_cli("residents", "face", "maybe", "1", data=data)).startswith(
        "gatectl: residents face: action 'maybe'")

    store = Store(data / "gatectl.db")
    try:
        [(hashed,)] = store.db.execute("SELECT hash FROM pins").fetchall()
        assert "739105" not in hashed and hashed.startswith("scrypt$")
        secret = store.totp_secret(1)
        assert secret and pyotp.parse_uri(uri).secret == secret
        assert store.refuses_face(1) and store.template_count(("resident", 1)) == 0
    finally:
        store.close()
