"""pairkey-specific knowledge for the tests: the encrypted frame format,
the 'ovs-appctl pairkey/show' output, key files, and whether the OVS
binaries under test have pairkey at all.  Standard library only.

Encrypted frame (docs: DESIGN.md section 2, ovs-patch/):

    | dst 6 | src 6 | 0x88b5 | format 1 | cipher 1 | key version be32 |
    | PN be64 | ciphertext of (original EtherType + payload) | tag 16 |
"""

import collections
import os
import re
import struct
from dataclasses import dataclass

ETH_P_PAIRKEY = 0x88B5
ETH_HLEN = 14
HEADER = struct.Struct("!BBIQ")     # format, cipher, key version, PN
TAG_LEN = 16
# Bytes encryption adds to a frame: EtherType 2, header 14, tag 16.
OVERHEAD = 2 + HEADER.size + TAG_LEN
FORMAT_V1 = 1
CIPHERS = {1: "aes-256-gcm", 2: "chacha20-poly1305"}
DROP_REASONS = ("bad_tag", "truncated", "bad_header", "unknown_version",
                "replay", "too_old", "too_big", "not_ethernet",
                "pn_exhausted")


def mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


def ethertype(frame):
    return int.from_bytes(frame[12:14], "big")


@dataclass(frozen=True)
class Sealed:
    """The cleartext fields of one encrypted frame."""
    dst: bytes
    src: bytes
    format: int
    cipher: int
    version: int
    pn: int
    body: bytes                     # ciphertext + tag


def host_mac(net, host):
    """The MAC address of a host of a Net, as bytes."""
    return mac_bytes(net.topo.host(host).mac)


def describe(frame):
    """A frame's addresses, EtherType and length, for failure messages."""
    return "%s > %s %04x (%d bytes)" % (frame[6:12].hex(":"),
                                        frame[0:6].hex(":"),
                                        ethertype(frame), len(frame))


def between(frames, src, dst):
    """The frames from MAC 'src' to MAC 'dst' (bytes)."""
    return [f for f in frames if f[6:12] == src and f[0:6] == dst]


def assert_wire_sealed(net, frames, markers):
    """Every frame on the wire is 0x88b5 from a client, to a client or
    broadcast, and shows none of 'markers'."""
    clients = {mac_bytes(h.mac) for h in net.topo.hosts}
    for f in frames:
        assert ethertype(f) == ETH_P_PAIRKEY, "clear frame on the wire: " \
            + describe(f)
        assert f[6:12] in clients, "unknown sender: " + describe(f)
        assert f[0:6] in clients | {b"\xff" * 6}, "unknown dest: " \
            + describe(f)
        for m in markers:
            assert m not in f, "plaintext marker on the wire: " + describe(f)


def parse_frame(frame):
    """Returns a Sealed for an encrypted frame, None for anything else."""
    if (len(frame) < ETH_HLEN + HEADER.size
            or ethertype(frame) != ETH_P_PAIRKEY):
        return None
    fmt, cipher, version, pn = HEADER.unpack_from(frame, ETH_HLEN)
    return Sealed(frame[0:6], frame[6:12], fmt, cipher, version, pn,
                  frame[ETH_HLEN + HEADER.size:])


def nonce_repeats(sealed):
    """The (source MAC, key version, PN) triples that occur more than once
    among Sealed frames: each is a nonce used twice."""
    nonces = collections.Counter((s.src, s.version, s.pn) for s in sealed)
    return [k for k, n in nonces.items() if n > 1]


def rewrite(frame, version=None, pn=None):
    """Returns a copy of an encrypted frame with header fields replaced."""
    s = parse_frame(frame)
    hdr = HEADER.pack(s.format, s.cipher,
                      s.version if version is None else version,
                      s.pn if pn is None else pn)
    return frame[:ETH_HLEN] + hdr + frame[ETH_HLEN + HEADER.size:]


def flip_bit(frame, offset, bit=0):
    """Returns a copy of frame with one bit flipped (negative offsets count
    from the end)."""
    b = bytearray(frame)
    b[offset] ^= 1 << bit
    return bytes(b)


# ----------------------------------------------------------- pairkey/show

def _value(text):
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"\d+(,\d+)+", text):
        return [int(x) for x in text.split(",")]
    return text


def _pairs(text):
    """'a=1 b=x,y' -> {'a': 1, 'b': ...}; tokens without '=' are ignored."""
    out = {}
    for token in text.split():
        if "=" in token:
            k, v = token.split("=", 1)
            out[k] = _value(v)
    return out


def parse_show(text):
    """Turns 'ovs-appctl pairkey/show' output into

        {'br1': {'unknown_sa': 0,
                 'sa': {1: {'cipher': 'aes-256-gcm', 'versions': [2, 1],
                            'kcv': ['0a1b2c3d', '12345678'],
                            'encrypted': {'packets': 10, 'bytes': 1500},
                            'decrypted': {...}, 'drops': {...}}}}}

    'versions' is always a list (current first), and 'kcv' a list of
    strings, one key check value per version.  Unknown key=value fields
    are kept; unknown lines are ignored."""
    result = {}
    bridge = sa = None
    sa_indent = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        body = line.strip()
        if indent == 0 and body.endswith(":") and " " not in body:
            bridge = result.setdefault(body[:-1], {"sa": {}})
            sa = None
            continue
        if bridge is None:
            continue
        m = re.fullmatch(r"sa (\d+):\s*(.*)", body)
        if m:
            sa = _pairs(m.group(2))
            v = sa.get("versions")
            sa["versions"] = [v] if isinstance(v, int) else (v or [])
            kcv = re.search(r"(?:^|\s)kcv=(\S+)", m.group(2))
            sa["kcv"] = kcv.group(1).split(",") if kcv else []
            bridge["sa"][int(m.group(1))] = sa
            sa_indent = indent
            continue
        if sa is not None and indent <= sa_indent:
            sa = None
        m = re.fullmatch(r"([A-Za-z_][\w-]*):\s*(.*)", body)
        if m and sa is not None:
            sa.setdefault(m.group(1), {}).update(_pairs(m.group(2)))
        elif m:
            bridge.setdefault(m.group(1), {}).update(_pairs(m.group(2)))
        else:
            bridge.update(_pairs(body))
    return result


def counter(show, bridge, sa_id, group, name):
    """show[bridge]['sa'][sa_id][group][name], 0 when absent."""
    sa = show.get(bridge, {}).get("sa", {}).get(sa_id, {})
    return sa.get(group, {}).get(name, 0)


# ------------------------------------------------- SAs and flows on a Net

def add_sa(net, bridge, key, sa_id=1, version=1):
    """ovs-ofctl add-sa with a Key's file."""
    net.ofctl("add-sa", bridge, "id=%d,version=%d,key-file=%s"
              % (sa_id, version, key.path))


def show(net):
    """Parsed 'ovs-appctl pairkey/show' of a Net."""
    return parse_show(net.appctl("pairkey/show").stdout)


def crypto_flows(net, sa=None):
    """Per host: encrypt what the host sends, decrypt what the uplink
    brings; sa maps bridge -> SA id (default 1)."""
    for h in net.topo.hosts:
        br, port = net.host_port(h.name)
        up = net.uplink(br)
        n = (sa or {}).get(br, 1)
        net.add_flow(br, "in_port=%d,actions=encrypt:%d,output:%d"
                     % (port, n, up))
        net.add_flow(br, "in_port=%d,dl_type=0x%04x,actions=decrypt:%d,"
                     "output:%d" % (up, ETH_P_PAIRKEY, n, port))


def seal_pair(net):
    """One random key as SA 1 (version 1) on every bridge of a Net, and
    crypto_flows().  Returns the Key."""
    key = net.key()
    for br in net.topo.bridges:
        add_sa(net, br.name, key)
    crypto_flows(net)
    return key


def plain_flows(net):
    """The same paths as crypto_flows() without encryption."""
    for h in net.topo.hosts:
        br, port = net.host_port(h.name)
        up = net.uplink(br)
        net.add_flow(br, "in_port=%d,actions=output:%d" % (port, up))
        net.add_flow(br, "in_port=%d,actions=output:%d" % (up, port))


# --------------------------------------------------------------- key files

class Key:
    """A random 256-bit key in a file (64 hex characters and a newline).
    Its bytes are never part of repr() or any message."""

    def __init__(self, path):
        self.path = str(path)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._hex = os.urandom(32).hex()
        with os.fdopen(fd, "w") as f:
            f.write(self._hex + "\n")

    def __repr__(self):
        return "Key(%s)" % os.path.basename(self.path)

    def found_in(self, text):
        """True if the key's bytes (hex, any case) appear in text."""
        if isinstance(text, bytes):
            return (bytes.fromhex(self._hex) in text
                    or self._hex.encode() in text.lower())
        return self._hex in text.lower()


def assert_no_key(key, text, where):
    """Fails, without quoting text, if the key's bytes appear in text."""
    if key.found_in(text):
        raise AssertionError("key bytes of %r appear in %s" % (key, where))


# ------------------------------------------------------- feature detection

def missing_support(ofctl):
    """None when the ovs-ofctl binary knows pairkey, else the reason why
    not.  'ofctl' runs ovs-ofctl with the given arguments and returns the
    CompletedProcess."""
    proc = ofctl("add-sa")
    if "unknown command" in proc.stderr:
        return "ovs-ofctl has no 'add-sa' command (stock OVS binaries?)"
    proc = ofctl("--protocols=OpenFlow10", "parse-flow",
                 "actions=encrypt:1,decrypt:1")
    if proc.returncode != 0:
        return "ovs-ofctl cannot parse encrypt/decrypt actions: %s" % (
            proc.stderr.strip())
    return None
