#!/usr/bin/python3
# Copyright (c) 2026 The pairkey authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at:
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Writes unit/vectors.h, the known-answer vectors for lib/crypt-frame.c.

The frame format of docs/frame-format.md is implemented here a second time,
from the document and not from the C code, with hashlib's BLAKE2b and the
AEADs of the 'cryptography' package (OpenSSL), so that the C test compares
libsodium's output with an independent implementation.  The same goes for
the modes that carry a sender id in the header (l2, l3 and nat), which are
implemented from their description in the format and not from the C code;
unit/test-crypt-modes.c uses their vectors.

Usage: /usr/bin/python3 unit/gen-vectors.py > unit/vectors.h
"""

import hashlib
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

ETH_TYPE = 0x88b5
FORMAT_VERSION = 1
FORMAT_SENDER = 2
ETH_TYPE_IPV4 = 0x0800
IP_PROTO = 253
UDP_PORT = 4820
CIPHERS = {
    1: ("CRYPT_CIPHER_AES256GCM", AESGCM),
    2: ("CRYPT_CIPHER_CHACHA20POLY1305", ChaCha20Poly1305),
}
LABEL = b"pairkey-v1 sender"
PN_SHIFT = 12
PN_EPOCH_USEC = 1767225600000000    # 2026-01-01T00:00:00Z


def subkey(key, sender_mac):
    return hashlib.blake2b(LABEL + sender_mac, key=key,
                           digest_size=32).digest()


def nonce(pn):
    return bytes(4) + struct.pack(">Q", pn)


def seal(cipher, key, key_version, pn, plain):
    """Returns the encrypted frame for the plain Ethernet frame 'plain'."""
    dst, src, rest = plain[:6], plain[6:12], plain[12:]
    aad = (dst + src + struct.pack(">HBBIQ", ETH_TYPE, FORMAT_VERSION,
                                   cipher, key_version, pn))
    assert len(aad) == 28
    aead = CIPHERS[cipher][1](subkey(key, src))
    return aad + aead.encrypt(nonce(pn), rest, aad)


def header2(cipher, key_version, pn, sender):
    assert len(sender) == 6
    return struct.pack(">BBIQ", FORMAT_SENDER, cipher, key_version,
                       pn) + sender


def csum(data):
    """The Internet checksum (RFC 1071) of 'data'."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(">%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def nat_ports(proto, payload):
    """The UDP ports that nat mode gives an IP payload of 'proto'."""
    if proto == 6 and len(payload) >= 20 or proto == 17 and len(payload) >= 8:
        return struct.unpack(">HH", payload[:4])
    if proto == 1 and len(payload) >= 8:
        ident = struct.unpack(">H", payload[4:6])[0]
        if payload[0] == 8:
            return ident, UDP_PORT
        if payload[0] == 0:
            return UDP_PORT, ident
    return UDP_PORT, UDP_PORT


def seal_sender(mode, cipher, key, key_version, pn, sender, plain):
    """Returns the frame that 'sender' sends for the plain Ethernet frame
    'plain' in 'mode' ("l2", "l3" or "nat")."""
    hdr2 = header2(cipher, key_version, pn, sender)
    aead = CIPHERS[cipher][1](subkey(key, sender))
    if mode == "l2":
        aad = plain[:12] + struct.pack(">H", ETH_TYPE) + hdr2
        assert len(aad) == 34
        return aad + aead.encrypt(nonce(pn), plain[12:], aad)

    eth, ip = plain[:14], plain[14:]
    assert struct.unpack(">H", eth[12:14])[0] == ETH_TYPE_IPV4
    assert ip[0] >> 4 == 4
    ihl = (ip[0] & 0xf) * 4
    tot_len, frag = struct.unpack(">H2xH", ip[2:8])
    assert ihl >= 20 and tot_len == len(ip) and not frag & 0x3fff
    proto, payload = ip[9], ip[ihl:]
    text = bytes([proto, 1 if frag & 0x4000 else 0]) + payload

    overhead = 38 if mode == "l3" else 46
    hdr = bytearray(ip[:ihl])
    hdr[2:4] = struct.pack(">H", tot_len + overhead)
    hdr[6:8] = struct.pack(">H", 0x4000)
    hdr[9] = IP_PROTO if mode == "l3" else 17
    hdr[10:12] = bytes(2)
    hdr[10:12] = struct.pack(">H", csum(bytes(hdr)))
    hdr = bytes(hdr)
    if mode == "l3":
        aad = hdr[12:20] + hdr2
        assert len(aad) == 28
        sealed = eth + hdr + hdr2 + aead.encrypt(nonce(pn), text, aad)
    else:
        assert mode == "nat"
        sport, dport = nat_ports(proto, payload)
        udp = struct.pack(">HHHH", sport, dport,
                          8 + 20 + 2 + len(payload) + 16, 0)
        sealed = (eth + hdr + udp + hdr2
                  + aead.encrypt(nonce(pn), text, hdr2))
    assert len(sealed) == len(plain) + overhead
    return sealed


def pn_floor(usec):
    delta = max(usec - PN_EPOCH_USEC, 0)
    if delta > (2**64 - 1 >> PN_SHIFT) - 1:
        return 2**64 - 1
    return (delta + 1) << PN_SHIFT


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def pattern(n, seed):
    """'n' deterministic bytes that look nothing like a key."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"%s/%d" % (seed, counter)).digest()
        counter += 1
    return out[:n]


# 2026-03-01T12:00:00Z.
MARCH = PN_EPOCH_USEC + (31 + 28) * 86400 * 1000000 + 12 * 3600 * 1000000

KEY_A = bytes(range(32))
KEY_B = pattern(32, b"key-b")
MAC_1 = mac("02:00:00:00:00:01")
MAC_2 = mac("02:00:00:00:00:02")

IPV4_ICMP = (MAC_2 + MAC_1 + b"\x08\x00"
             + bytes.fromhex("45000054 1a2b4000 4001 0000 0a000001 0a000002"
                             .replace(" ", ""))
             + bytes.fromhex("0800 0000 0001 0001") + b"pairkey plaintext!"
             + pattern(22, b"icmp"))
VLAN = (mac("ff:ff:ff:ff:ff:ff") + MAC_1 + b"\x81\x00" + b"\x00\x64"
        + b"\x08\x06"
        + bytes.fromhex("0001 0800 06 04 0001".replace(" ", ""))
        + MAC_1 + bytes([10, 0, 0, 1]) + bytes(6) + bytes([10, 0, 0, 2])
        + bytes(18))
MINIMAL = MAC_1 + MAC_2 + b"\x88\xcc"
FULL = MAC_2 + MAC_1 + b"\x86\xdd" + pattern(1500, b"full")

# (name, plain frame, key, key version, PN).
FRAMES = [
    ("ipv4", IPV4_ICMP, KEY_A, 1, pn_floor(MARCH) + 7),
    ("vlan", VLAN, KEY_B, 0xdeadbeef, 0x0102030405060708),
    ("minimal", MINIMAL, KEY_A, 0x80000000, pn_floor(MARCH)),
    ("full", FULL, KEY_B, 7, 2**64 - 2),
]

# Frames for the modes that carry a sender id.

IP_A = bytes([10, 1, 0, 5])
IP_B = bytes([10, 2, 0, 9])
SENDER_1 = mac("5e:00:00:00:01:01")
SENDER_2 = mac("5e:00:00:00:02:02")
ROUTER_ALERT = bytes.fromhex("94040000")


def ipv4(src, dst, proto, payload, ident, df=True, ttl=64, tos=0,
         options=b""):
    """An IPv4 packet with a correct header checksum."""
    assert len(options) % 4 == 0
    ihl = 5 + len(options) // 4
    hdr = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, tos,
                      ihl * 4 + len(payload), ident, 0x4000 if df else 0,
                      ttl, proto, 0, src, dst) + options
    hdr = hdr[:10] + struct.pack(">H", csum(hdr)) + hdr[12:]
    return hdr + payload


def l4_csum(src, dst, proto, segment):
    return csum(src + dst + struct.pack(">BBH", 0, proto, len(segment))
                + segment)


def tcp(src, dst, sport, dport, seq, flags, data):
    seg = struct.pack(">HHIIBBHHH", sport, dport, seq, 0x5a5a0001,
                      5 << 4, flags, 64240, 0, 0) + data
    c = l4_csum(src, dst, 6, seg)
    return seg[:16] + struct.pack(">H", c) + seg[18:]


def udp(src, dst, sport, dport, data, checksum=True):
    seg = struct.pack(">HHHH", sport, dport, 8 + len(data), 0) + data
    if checksum:
        c = l4_csum(src, dst, 17, seg) or 0xffff
        seg = seg[:6] + struct.pack(">H", c) + seg[8:]
    return seg


def icmp(icmp_type, code, rest, data):
    msg = struct.pack(">BBH", icmp_type, code, 0) + rest + data
    return msg[:2] + struct.pack(">H", csum(msg)) + msg[4:]


def icmp_echo(icmp_type, ident, seq, data):
    return icmp(icmp_type, 0, struct.pack(">HH", ident, seq), data)


def ip_frame(dst_mac, src_mac, packet):
    return dst_mac + src_mac + struct.pack(">H", ETH_TYPE_IPV4) + packet


L3_ICMP = ip_frame(MAC_2, MAC_1, ipv4(
    IP_A, IP_B, 1, icmp_echo(8, 0x1c2d, 1, pattern(48, b"l3-icmp")),
    0x0101))
L3_TCP_OPTS = ip_frame(MAC_2, MAC_1, ipv4(
    IP_A, IP_B, 6,
    tcp(IP_A, IP_B, 40022, 22, 0x01020304, 0x18,
        b"SSH-2.0-pairkey\r\n" + pattern(37, b"l3-tcp")),
    0x0202, df=False, ttl=63, tos=0x10, options=ROUTER_ALERT))
NAT_TCP = ip_frame(MAC_2, MAC_1, ipv4(
    IP_A, IP_B, 6,
    tcp(IP_A, IP_B, 51234, 443, 0xfffffff0, 0x18, pattern(100, b"nat-tcp")),
    0x0303))
NAT_TCP_OPTS = ip_frame(MAC_2, MAC_1, ipv4(
    IP_A, IP_B, 6,
    tcp(IP_A, IP_B, 33000, 8080, 7, 0x10, pattern(9, b"nat-tcp-opts")),
    0x0304, options=ROUTER_ALERT + bytes([1, 1, 1, 0])))
NAT_TCP_SHORT = ip_frame(MAC_2, MAC_1, ipv4(
    IP_A, IP_B, 6, pattern(19, b"nat-tcp-short"), 0x0305))
NAT_UDP = ip_frame(MAC_2, MAC_1, ipv4(
    IP_A, IP_B, 17,
    udp(IP_A, IP_B, 53001, 53, pattern(33, b"nat-udp")), 0x0404,
    df=False))
NAT_UDP_NOCSUM = ip_frame(MAC_2, MAC_1, ipv4(
    IP_A, IP_B, 17,
    udp(IP_A, IP_B, 5001, 5002, pattern(64, b"nat-udp-nocsum"),
        checksum=False), 0x0505))
NAT_ICMP_REQUEST = ip_frame(MAC_2, MAC_1, ipv4(
    IP_A, IP_B, 1, icmp_echo(8, 1234, 7, pattern(56, b"nat-ping")),
    0x0606))
NAT_ICMP_REPLY = ip_frame(MAC_1, MAC_2, ipv4(
    IP_B, IP_A, 1, icmp_echo(0, 1234, 7, pattern(56, b"nat-ping")),
    0x0707, ttl=255))
NAT_ICMP_UNREACH = ip_frame(MAC_1, MAC_2, ipv4(
    IP_B, IP_A, 1, icmp(3, 3, bytes(4), NAT_UDP[14:14 + 28]), 0x0808,
    df=False))
NAT_GRE = ip_frame(MAC_2, MAC_1, ipv4(
    IP_A, IP_B, 47,
    bytes.fromhex("00006558") + MAC_2 + MAC_1 + b"\x88\xcc"
    + pattern(40, b"nat-gre"), 0x0909))

# (name, mode, plain frame, key, key version, PN, sender id).
MODE_FRAMES = [
    ("l2_vlan", "l2", VLAN, KEY_B, 0xdeadbeef, 0x0102030405060708,
     SENDER_1),
    ("l2_minimal", "l2", MINIMAL, KEY_A, 0x80000000, pn_floor(MARCH),
     SENDER_2),
    ("l2_full", "l2", FULL, KEY_B, 7, 2**64 - 2, SENDER_1),
    ("l3_icmp", "l3", L3_ICMP, KEY_A, 1, pn_floor(MARCH) + 11, SENDER_1),
    ("l3_tcp_opts", "l3", L3_TCP_OPTS, KEY_B, 2, pn_floor(MARCH) + 12,
     SENDER_2),
    ("nat_tcp", "nat", NAT_TCP, KEY_A, 3, pn_floor(MARCH) + 13, SENDER_1),
    ("nat_tcp_opts", "nat", NAT_TCP_OPTS, KEY_B, 3, pn_floor(MARCH) + 14,
     SENDER_2),
    ("nat_tcp_short", "nat", NAT_TCP_SHORT, KEY_A, 3, pn_floor(MARCH) + 15,
     SENDER_1),
    ("nat_udp", "nat", NAT_UDP, KEY_B, 0x10000, pn_floor(MARCH) + 16,
     SENDER_2),
    ("nat_udp_nocsum", "nat", NAT_UDP_NOCSUM, KEY_A, 4,
     pn_floor(MARCH) + 17, SENDER_1),
    ("nat_icmp_request", "nat", NAT_ICMP_REQUEST, KEY_A, 5,
     pn_floor(MARCH) + 18, SENDER_1),
    ("nat_icmp_reply", "nat", NAT_ICMP_REPLY, KEY_A, 5,
     pn_floor(MARCH) + 19, SENDER_2),
    ("nat_icmp_unreach", "nat", NAT_ICMP_UNREACH, KEY_B, 6,
     pn_floor(MARCH) + 20, SENDER_2),
    ("nat_gre", "nat", NAT_GRE, KEY_B, 0xffffffff, pn_floor(MARCH) + 21,
     SENDER_1),
]
MODES = {
    "l2": "CRYPT_MODE_L2",
    "l3": "CRYPT_MODE_L3",
    "nat": "CRYPT_MODE_NAT",
}

# Wall-clock times and their PN floors.
FLOORS = [
    0,
    PN_EPOCH_USEC - 1,
    PN_EPOCH_USEC,
    PN_EPOCH_USEC + 1,
    MARCH,
    PN_EPOCH_USEC + (2**64 - 1 >> PN_SHIFT) - 1,
    PN_EPOCH_USEC + (2**64 - 1 >> PN_SHIFT),
    2**63 - 1,
]


def c_bytes(data, indent="    ", per_line=12):
    lines = []
    for i in range(0, len(data), per_line):
        chunk = data[i:i + per_line]
        lines.append(indent + " ".join("0x%02x," % b for b in chunk))
    return "\n".join(lines)


def write_array(w, name, data):
    w("static const uint8_t %s[%d] = {" % (name, len(data)))
    w(c_bytes(data))
    w("};")
    w("")


def main():
    out = []
    w = out.append
    w("/* Generated by unit/gen-vectors.py; do not edit.")
    w(" *")
    w(" * Regenerate with:")
    w(" *     /usr/bin/python3 unit/gen-vectors.py > unit/vectors.h")
    w(" *")
    w(" * Known answers for lib/crypt-frame.c, computed independently of it")
    w(" * with Python's hashlib.blake2b and the AESGCM and ChaCha20Poly1305")
    w(" * classes of the 'cryptography' package.  The keys are test keys. */")
    w("")
    w("#ifndef VECTORS_H")
    w("#define VECTORS_H 1")
    w("")
    w("#include <stddef.h>")
    w("#include <stdint.h>")
    w("")
    w("struct frame_vector {")
    w("    const char *name;")
    w("    enum crypt_cipher cipher;")
    w("    uint8_t key[32];")
    w("    uint32_t key_version;")
    w("    uint64_t pn;")
    w("    const uint8_t *plain;")
    w("    size_t plain_len;")
    w("    const uint8_t *sealed;")
    w("    size_t sealed_len;")
    w("};")
    w("")
    entries = []
    for name, plain, key, key_version, pn in FRAMES:
        for cipher in sorted(CIPHERS):
            cname = CIPHERS[cipher][0]
            tag = "%s_%d" % (name, cipher)
            sealed = seal(cipher, key, key_version, pn, plain)
            assert len(sealed) == len(plain) + 32
            if cipher == min(CIPHERS):
                write_array(w, "%s_plain" % name, plain)
            write_array(w, "%s_sealed" % tag, sealed)
            entries.append((name, cname, key, key_version, pn,
                            "%s_plain" % name, "%s_sealed" % tag))
    w("static const struct frame_vector frame_vectors[] = {")
    for name, cname, key, key_version, pn, plain, sealed in entries:
        w("    {")
        w('        "%s", %s,' % (name, cname))
        w("        {")
        w(c_bytes(key, " " * 12, 8))
        w("        },")
        w("        UINT32_C(0x%08x), UINT64_C(0x%016x)," % (key_version, pn))
        w("        %s, sizeof %s," % (plain, plain))
        w("        %s, sizeof %s," % (sealed, sealed))
        w("    },")
    w("};")
    w("")
    w("struct floor_vector {")
    w("    long long int usec;")
    w("    uint64_t floor;")
    w("};")
    w("")
    w("static const struct floor_vector floor_vectors[] = {")
    for usec in FLOORS:
        w("    { %dLL, UINT64_C(0x%016x) }," % (usec, pn_floor(usec)))
    w("};")
    w("")
    w("struct mode_vector {")
    w("    const char *name;")
    w("    enum crypt_mode mode;")
    w("    enum crypt_cipher cipher;")
    w("    uint8_t key[32];")
    w("    uint32_t key_version;")
    w("    uint64_t pn;")
    w("    uint8_t sender[6];")
    w("    const uint8_t *plain;")
    w("    size_t plain_len;")
    w("    const uint8_t *sealed;")
    w("    size_t sealed_len;")
    w("};")
    w("")
    entries = []
    for name, mode, plain, key, key_version, pn, sender in MODE_FRAMES:
        for cipher in sorted(CIPHERS):
            cname = CIPHERS[cipher][0]
            tag = "%s_%d" % (name, cipher)
            sealed = seal_sender(mode, cipher, key, key_version, pn, sender,
                                 plain)
            if cipher == min(CIPHERS):
                write_array(w, "%s_plain" % name, plain)
            write_array(w, "%s_sealed" % tag, sealed)
            entries.append((name, MODES[mode], cname, key, key_version, pn,
                            sender, "%s_plain" % name, "%s_sealed" % tag))
    w("static const struct mode_vector mode_vectors[] = {")
    for (name, mode, cname, key, key_version, pn, sender, plain,
         sealed) in entries:
        w("    {")
        w('        "%s", %s, %s,' % (name, mode, cname))
        w("        {")
        w(c_bytes(key, " " * 12, 8))
        w("        },")
        w("        UINT32_C(0x%08x), UINT64_C(0x%016x)," % (key_version, pn))
        w("        { %s }," % ", ".join("0x%02x" % b for b in sender))
        w("        %s, sizeof %s," % (plain, plain))
        w("        %s, sizeof %s," % (sealed, sealed))
        w("    },")
    w("};")
    w("")
    w("#endif /* vectors.h */")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
