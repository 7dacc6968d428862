"""Tests of the harness's own parsers (no root, no OVS needed)."""

import struct

from harness import read_pcap
from pairkey import (ETH_HLEN, ETH_P_PAIRKEY, HEADER, OVERHEAD, Key, counter,
                     flip_bit, nonce_repeats, parse_frame, parse_show,
                     rewrite)

SHOW = """\
br1:
  unknown_sa=0
  sa 1: cipher=aes-256-gcm versions=2,1 kcv=0a1b2c3d,12345678
    encrypted: packets=10 bytes=1500
    decrypted: packets=9 bytes=1400
    drops: bad_tag=1 truncated=0 bad_header=0 unknown_version=0 replay=3 \
too_old=0 too_big=0 not_ethernet=0 pn_exhausted=0
  sa 7: cipher=chacha20-poly1305 versions=4 future_field=x
    encrypted: packets=0 bytes=0
    drops: bad_tag=0 new_reason=5
br2:
  unknown_sa=2 something=else
"""


def test_parse_show():
    st = parse_show(SHOW)
    assert set(st) == {"br1", "br2"}
    assert st["br1"]["unknown_sa"] == 0
    sa1 = st["br1"]["sa"][1]
    assert sa1["cipher"] == "aes-256-gcm"
    assert sa1["versions"] == [2, 1]
    assert sa1["kcv"] == ["0a1b2c3d", "12345678"]
    assert sa1["encrypted"] == {"packets": 10, "bytes": 1500}
    assert sa1["decrypted"]["packets"] == 9
    assert sa1["drops"]["replay"] == 3
    sa7 = st["br1"]["sa"][7]
    assert sa7["versions"] == [4]
    assert sa7["kcv"] == []
    assert sa7["future_field"] == "x"
    assert sa7["drops"]["new_reason"] == 5
    assert st["br2"] == {"sa": {}, "unknown_sa": 2, "something": "else"}
    assert counter(st, "br1", 1, "drops", "bad_tag") == 1
    assert counter(st, "br1", 7, "decrypted", "packets") == 0
    assert counter(st, "br9", 1, "drops", "bad_tag") == 0


def test_parse_show_empty_bridge():
    assert parse_show("br1:\n  unknown_sa=0\n") == {
        "br1": {"sa": {}, "unknown_sa": 0}}


def sealed_frame(version=1, pn=5, body=b"\xaa" * 30):
    eth = bytes.fromhex("020000000202" "020000000101") \
        + struct.pack("!H", ETH_P_PAIRKEY)
    return eth + HEADER.pack(1, 1, version, pn) + body


def test_frame_helpers():
    f = sealed_frame()
    s = parse_frame(f)
    assert (s.format, s.cipher, s.version, s.pn) == (1, 1, 1, 5)
    assert s.src == bytes.fromhex("020000000101")
    assert HEADER.size == 14 and ETH_HLEN + HEADER.size == 28
    g = rewrite(f, version=9, pn=2 ** 40)
    assert (parse_frame(g).version, parse_frame(g).pn) == (9, 2 ** 40)
    assert g[28:] == f[28:] and g[:14] == f[:14]
    assert flip_bit(f, -1)[-1] == f[-1] ^ 1
    assert parse_frame(bytes(60)) is None
    assert parse_frame(f[:20]) is None
    assert OVERHEAD == 32                   # docs/frame-format.md


def test_nonce_repeats():
    a = sealed_frame(pn=5)
    b = a[:6] + bytes.fromhex("020000000303") + a[12:]     # other sender
    frames = [parse_frame(f) for f in (
        a, b, rewrite(a, version=2), rewrite(a, pn=6), rewrite(a, pn=6))]
    assert nonce_repeats(frames[:4]) == []
    assert nonce_repeats(frames) == [(a[6:12], 1, 6)]


def test_read_pcap(tmp_path):
    path = tmp_path / "x.pcap"
    frames = [b"\x01" * 60, b"\x02" * 70]
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for fr in frames:
        data += struct.pack("<IIII", 0, 0, len(fr), len(fr)) + fr
    path.write_bytes(data + b"\x00\x00\x00")        # torn last record
    assert read_pcap(str(path)) == frames


def test_key_never_in_repr(tmp_path):
    k = Key(tmp_path / "k.hex")
    text = (tmp_path / "k.hex").read_text()
    assert len(text) == 65 and text.endswith("\n")
    assert text.strip() not in repr(k)
    assert k.found_in("xx" + text.strip().upper() + "yy")
    assert k.found_in(bytes.fromhex(text.strip()))
    assert not k.found_in("nothing here")
    assert (tmp_path / "k.hex").stat().st_mode & 0o777 == 0o600
