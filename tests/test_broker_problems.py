"""TLS, login and reachability problems (issue 12): each is one clear error line naming the
setting or file, not repeated per retry, and `gatectl doctor` shows it as one [FAIL] line
(or [ok] when the broker takes us). Real Mosquitto, real certificates, real `gatectl run`
machinery in this process (App.sync_client) and the real CLI for the doctor."""

from __future__ import annotations

import logging
import subprocess

import pytest

from gatectl.runtime.app import App
from gatectl.config import parse_config
from tests.broker import Broker, free_port, issue, make_pki
from tests.conftest import run_cli, wait_for
from tests.test_sync import SITE, toml


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    pki = make_pki(folder, client_cn="dev-t")
    extra = {"misnamed": issue(pki, "broker.example", folder, server_names=["broker.example"]),
             "expired_server": issue(pki, "localhost-old", folder, server_names=["localhost"], expired=True),
             "expired_client": issue(pki, "dev-t-old", folder, expired=True)}
    return pki, extra


def case_setup(case: str, pki, extra, tmp_path) -> tuple[Broker | None, dict, str]:
    """(broker to start, sync config, what the one error line must contain)."""
    tls = {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)}
    host = "localhost"
    if case == "wrong_ca":
        b = Broker(tmp_path / "b", tls=pki)
        return b, {"host": host, "port": b.port, "tls": {**tls, "ca": str(pki.other_ca)}}, \
            f"certificate not trusted by sync.tls.ca {pki.other_ca}"
    if case == "hostname_mismatch":
        b = Broker(tmp_path / "b", tls=pki, server_cert=extra["misnamed"])
        return b, {"host": host, "port": b.port, "tls": tls}, "not valid for the name in sync.host 'localhost'"
    if case == "expired_server_certificate":
        b = Broker(tmp_path / "b", tls=pki, server_cert=extra["expired_server"])
        return b, {"host": host, "port": b.port, "tls": tls}, "its certificate has expired"
    if case == "expired_client_certificate":
        b = Broker(tmp_path / "b", tls=pki, require_certificate=True)
        cert, key = extra["expired_client"]
        return b, {"host": host, "port": b.port, "tls": {**tls, "cert": str(cert), "key": str(key)}}, \
            f"refused our client certificate sync.tls.cert {cert}"
    if case == "tls_against_plaintext":
        b = Broker(tmp_path / "b")
        return b, {"host": "127.0.0.1", "port": b.port, "tls": tls}, "a plaintext listener? (sync.tls is set)"
    if case == "plaintext_against_tls":
        b = Broker(tmp_path / "b", tls=pki)
        return b, {"host": "127.0.0.1", "port": b.port}, "a TLS listener? (sync.tls is not set)"
    if case == "bad_password":
        pw = tmp_path / "passwd"
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "dev-t", "right"], check=True, capture_output=True)
        mine = tmp_path / "mine"
        mine.write_text("wrong\n")
        b = Broker(tmp_path / "b", password_file=pw)
        return b, {"host": "127.0.0.1", "port": b.port, "username": "dev-t", "password_file": str(mine)}, \
            f"refused the login as sync.username 'dev-t' (password from sync.password_file {mine})"
    assert case == "unreachable"
    return None, {"host": "127.0.0.1", "port": free_port()}, "unreachable: connection refused"


CASES = ["wrong_ca", "hostname_mismatch", "expired_server_certificate", "expired_client_certificate",
         "tls_against_plaintext", "plaintext_against_tls", "bad_password", "unreachable"]


@pytest.mark.parametrize("case", CASES)
def test_connection_problem_is_one_clear_line_not_one_per_retry(case, pki, tmp_path, caplog):
    broker, sync, expect = case_setup(case, *pki, tmp_path)
    if broker is not None:
        broker.start()
    cfg = parse_config({"device": {"id": "dev-t", "site": SITE}, "sync": {"enabled": True, **sync}})
    app = App(cfg, tmp_path / "d")
    client = app.sync_client(dict, lambda: "")
    try:
        with caplog.at_level(logging.INFO, "gatectl.sync"):
            client.start()
            wait_for(lambda: client.counters["connect_failures"] >= 3, 30, "three failed attempts")
            assert not client.connected.is_set()
    finally:
        client.stop(timeout=2)
        app.close()
        if broker is not None:
            broker.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "gatectl.sync" and r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines
    assert expect in lines[0], lines[0]


def test_doctor_reports_the_broker_connection(pki, tmp_path):
    pki, _ = pki
    good = Broker(tmp_path / "good", tls=pki, require_certificate=True)
    good.start()
    try:
        tls = {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)}
        for name, sync, expect in (
                ("ok", {"host": "localhost", "port": good.port, "tls": tls},
                 f"[ok] sync: MQTT broker localhost:{good.port}: connected (TLS)"),
                ("bad", {"host": "localhost", "port": good.port, "tls": {**tls, "ca": str(pki.other_ca)}},
                 f"[FAIL] sync: MQTT broker localhost:{good.port}: certificate not trusted by sync.tls.ca")):
            cfg = tmp_path / f"{name}.toml"
            cfg.write_text(toml({"device": {"id": "dev-t", "site": SITE}, "sync": {"enabled": True, **sync}}))
            r = run_cli("doctor", config=cfg, data=tmp_path / name)
            lines = [line for line in r.stdout.splitlines() if "sync: MQTT broker" in line]
            assert len(lines) == 1 and lines[0].startswith(expect), r.stdout + r.stderr
    finally:
        good.stop()


def test_the_same_problem_is_repeated_only_with_backoff(caplog):
    from gatectl.sync.diagnose import ProblemLog

    t = [0.0]
    p = ProblemLog(first_repeat_s=60, max_repeat_s=240, clock=lambda: t[0])
    with caplog.at_level(logging.ERROR, "gatectl.sync"):
        for _ in range(2000):  # a retry a second for 2,000 s
            p.report("MQTT broker x:1 unreachable: connection refused")
            t[0] += 1
        p.report("MQTT broker x:1: certificate not trusted")  # a new problem: at once
        assert p.solved() == "MQTT broker x:1: certificate not trusted"
        p.report("MQTT broker x:1: certificate not trusted")  # after a success: at once again
    at = [r.getMessage() for r in caplog.records]
    # first line, then after 60, 120, 240, 240... s: 1 + 1 + 1 + 7 for 2,000 s, and the two others
    assert 9 <= len(at) <= 12, at
    assert "still failing after 61 attempts" in at[1] and len(set(at)) == len(at) - 1


def test_a_refused_client_certificate_reads_the_same_at_connect_and_at_the_drop():
    """Under load, TLS 1.3's alert for an expired client certificate arrives either in the
    handshake (an SSLError) or as the socket error of the drop before the CONNACK: one problem,
    so one line, not a new one each time the path flips (seen failing the test above)."""
    import ssl

    from gatectl.sync.diagnose import explain

    cfg = parse_config({"device": {"id": "dev-t", "site": SITE}, "sync": {
        "enabled": True, "host": "localhost", "port": 8883,
        "tls": {"ca": "/etc/ca.pem", "cert": "/etc/dev.pem", "key": "/etc/dev.key"}}}).sync
    text = "[SSL: TLSV13_ALERT_CERTIFICATE_EXPIRED] tlsv13 alert certificate expired (_ssl.c:2580)"
    at_connect = ssl.SSLError(1, text)
    at_connect.reason = "TLSV13_ALERT_CERTIFICATE_EXPIRED"
    line = explain(cfg, at_connect)
    assert line == explain(cfg, dropped=text)
    assert "refused our client certificate sync.tls.cert /etc/dev.pem" in line
