"""Modbus RTU and LCUS framing against the frames published in the board documentation
(/work/shared/docs/hardware-and-protocols.md, section 1), and the reply validator's refusals."""

from __future__ import annotations

import pytest

from gatectl.hw.serial import modbus
from gatectl.hw.serial.dialect import FrameError, frame_gap_s, wire_time_s
from gatectl.hw.serial.lcus import LcusFrameError, lcus_frame, parse_lcus_frame
from gatectl.hw.serial.modbus import ModbusException, parse_response


def h(s: str) -> bytes:
    return bytes.fromhex(s)


# (builder call, bytes exactly as printed in the Waveshare table, address 1)
DOC_FRAMES = [
    (lambda: modbus.write_coil(1, 0, True), "01 05 00 00 FF 00 8C 3A"),  # relay 1 on
    (lambda: modbus.write_coil(1, 0, False), "01 05 00 00 00 00 CD CA"),  # relay 1 off
    (lambda: modbus.write_all(1, True), "01 05 00 FF FF 00 BC 0A"),
    (lambda: modbus.write_all(1, False), "01 05 00 FF 00 00 FD FA"),
    (lambda: modbus.flash_on(1, 0, 0.7), "01 05 02 00 00 07 8D B0"),  # relay 1 flash-on 700 ms
    (lambda: modbus.flash_on(1, 0, 3), "01 05 02 00 00 1E 4C 7A"),  # relay 1 flash-on 3 s
    (lambda: modbus.flash_on(1, 1, 3.0), "01 05 02 01 00 1E 1D BA"),  # relay 2 flash-on 3 s
    (lambda: modbus.flash_off(1, 0, 0.7), "01 05 04 00 00 07 8D 38"),  # relay 1 flash-off 700 ms
    (lambda: modbus.read_coils(1, 0, 8), "01 01 00 00 00 08 3D CC"),
    (lambda: modbus.read_inputs(1, 0, 8), "01 02 00 00 00 08 79 CC"),
    (lambda: modbus.write_coil(255, 0, True), "FF 05 00 00 FF 00 99 E4"),  # LCTech, address 255
    (lambda: modbus.read_inputs(255, 0, 8), "FF 02 00 00 00 08 6C 12"),  # LCTech opto inputs
]


@pytest.mark.parametrize("build,doc", DOC_FRAMES, ids=[d for _, d in DOC_FRAMES])
def test_builders_produce_the_documented_frames(build, doc):
    assert build() == h(doc)


@pytest.mark.parametrize("doc", [
    "01 05 00 00 55 00 F2 9A",  # relay 1 toggle
    "01 0F 00 00 00 08 01 01 3F 55",  # write 8 coils, relay 1 on
    "FF 0F 00 00 00 08 01 FF 30 1D",  # LCTech all on
    "01 05 00 01 01 00 9D 9A",  # older 4-channel boards
    "00 06 40 00 00 01 5C 1B",  # set address by broadcast
    "01 06 00 01 06 05 1B A9",  # R4Dxx delay mode
])
def test_crc_of_other_documented_frames(doc):
    frame = h(doc)
    assert modbus.crc16_modbus(frame[:-2]) == frame[-2] | frame[-1] << 8
    assert modbus.crc_ok(frame)
    assert not modbus.crc_ok(frame[:-1] + bytes([frame[-1] ^ 0x01]))


def test_crc_check_value():
    assert modbus.crc16_modbus(b"123456789") == 0x4B37  # the CRC-16/MODBUS catalogue check value


def test_flash_units_round_and_clamp():
    assert modbus.flash_units(0.7) == 7
    assert modbus.flash_units(3) == 30
    assert modbus.flash_units(0.01) == 1  # the board cannot time less than 100 ms
    assert modbus.flash_units(10_000) == 65535
    assert modbus.flash_on(1, 0, 10_000)[4:6] == b"\xff\xff"


def test_builders_refuse_out_of_range_values():
    with pytest.raises(ValueError):
        modbus.write_coil(256, 0, True)
    with pytest.raises(ValueError):
        modbus.read_coils(1, 0, 0)
    with pytest.raises(ValueError):
        modbus.read_inputs(1, 0, 2001)


def test_expected_length():
    assert modbus.expected_length(modbus.read_coils(1, 0, 8)) == 6
    assert modbus.expected_length(modbus.read_coils(1, 0, 9)) == 7
    assert modbus.expected_length(modbus.read_inputs(1, 0, 16)) == 7
    assert modbus.expected_length(modbus.flash_on(1, 0, 3)) == 8
    with pytest.raises(ValueError):
        modbus.expected_length(h("01 0F 00 00 00 08 01 01 3F 55"))


def test_request_length_frames_what_a_board_receives():
    assert modbus.request_length(h("01 05")) == 8
    assert modbus.request_length(h("01 0F 00 00 00 08")) is None  # byte count not yet seen
    assert modbus.request_length(h("01 0F 00 00 00 08 01")) == 10
    assert modbus.request_length(h("01 03 00")) is None  # unknown: framed by silence
    assert modbus.request_length(h("01")) is None


def test_bits_unpack_lsb_first_and_round_trip():
    assert modbus.unpack_bits(h("05"), 8) == [True, False, True, False, False, False, False, False]
    assert modbus.unpack_bits(h("00 01"), 9)[8] is True
    bits = [i % 3 == 0 for i in range(13)]
    assert modbus.pack_bits(bits) == h("49 12")
    assert modbus.unpack_bits(modbus.pack_bits(bits), 13) == bits


# ---- reply validation -------------------------------------------------------------------

ON = modbus.write_coil(1, 0, True)
READ8 = modbus.read_coils(1, 0, 8)


def test_valid_replies():
    assert parse_response(ON, ON) is None  # FC 05: the echo
    reply = modbus.with_crc(h("01 01 01 05"))
    assert parse_response(READ8, reply) == [True, False, True, False, False, False, False, False]
    inputs = modbus.read_inputs(1, 0, 3)
    assert parse_response(inputs, modbus.with_crc(h("01 02 01 06"))) == [False, True, True]


@pytest.mark.parametrize("request_,reply,reason", [
    (ON, h("01 05 00 00 FF 00 8C 3B"), "bad CRC"),
    (READ8, h("01 01 01 05 00 00"), "bad CRC"),
    (ON, h("01 05 00"), "short reply: 3 of 8"),
    (ON, b"", "short reply: 0 of 8"),
    (ON, ON[:6], "short reply: 6 of 8"),
    (ON, modbus.with_crc(h("02 05 00 00 FF 00")), "address 2, expected 1"),
    (READ8, modbus.with_crc(h("01 02 01 05")), "function 02 to function 01"),
    (ON, modbus.with_crc(h("01 03 00 00 FF 00")), "function 03 to function 05"),
    (READ8, modbus.with_crc(h("01 01 02 05 00")), "byte count 2, expected 1"),
    (ON, modbus.with_crc(h("01 05 00 00 FF 00 00")), "reply of 9 bytes, expected 8"),
    (ON, h("01 05 00 00 00 00 CD CA"), "echo 01 05 00 00 00 00 CD CA differs"),
    (ON, modbus.with_crc(h("01 85 02 00")), "exception reply of 6 bytes"),
])
def test_parser_rejects_with_a_precise_reason(request_, reply, reason):
    with pytest.raises(FrameError) as err:
        parse_response(request_, reply)
    assert reason in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("code,name", [(1, "illegal function"), (2, "illegal data address"),
                                       (6, "slave device busy")])
def test_exception_reply_raises_modbus_exception(code, name):
    with pytest.raises(ModbusException) as err:
        parse_response(ON, modbus.with_crc(bytes([1, 0x85, code])))
    assert err.value.code == code
    assert err.value.function == 5
    assert name in str(err.value)


def test_exception_from_another_address_is_a_frame_error():
    with pytest.raises(FrameError, match="address 7"):
        parse_response(ON, modbus.with_crc(h("07 85 02")))


def test_wire_timing():
    assert frame_gap_s(9600) == pytest.approx(0.00401, abs=1e-5)
    assert frame_gap_s(115200) == 0.00175
    assert wire_time_s(16, 9600) == pytest.approx(0.016667, abs=1e-6)


# ---- LCUS ------------------------------------------------------------------------------

@pytest.mark.parametrize("channel,on,doc", [
    (1, True, "A0 01 01 A2"), (1, False, "A0 01 00 A1"),
    (2, True, "A0 02 01 A3"), (2, False, "A0 02 00 A2"),
    (0x0F, True, "A0 0F 01 B0"), (0x0F, False, "A0 0F 00 AF"),
])
def test_lcus_frames_match_the_documentation(channel, on, doc):
    assert lcus_frame(channel, on) == h(doc)
    assert parse_lcus_frame(h(doc)) == (channel, on)


def test_lcus_rejects():
    with pytest.raises(ValueError, match="1-based"):
        lcus_frame(0, True)
    with pytest.raises(LcusFrameError, match="checksum"):
        parse_lcus_frame(h("A0 01 01 A3"))
    with pytest.raises(LcusFrameError, match="not an LCUS frame"):
        parse_lcus_frame(h("A1 01 01 A3"))
    with pytest.raises(LcusFrameError, match="op 02"):
        parse_lcus_frame(h("A0 01 02 A3"))  # a query, not a switching frame


def test_parse_flash_on_reads_back_the_builder():
    assert modbus.parse_flash_on(modbus.flash_on(1, 0, 3)) == (0, 3.0)
    assert modbus.parse_flash_on(h("01 05 02 01 00 1E 1D BA")) == (1, 3.0)  # documented frame
    assert modbus.parse_flash_on(modbus.write_coil(1, 0, True)) is None
    assert modbus.parse_flash_on(modbus.flash_off(1, 0, 0.7)) is None
    assert modbus.parse_flash_on(modbus.read_coils(1, 0, 8)) is None
