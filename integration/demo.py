#!/usr/bin/python3
"""pairkey demo: two hosts, each behind its own OVS bridge, talk across an
untrusted wire with an eavesdropper on it (topo.TWO_HOSTS).

    sudo /usr/bin/python3 integration/demo.py            # with pairkey
    sudo /usr/bin/python3 integration/demo.py --plain    # contrast: no crypto

Installs one random key as SA 1 on both bridges and the encrypt/decrypt
flows, sends a ping, a UDP datagram and a TCP message from h1 to h2 (the
last two carry a visible marker), and prints, frame by frame, what the
eavesdropper captured on the wire next to what h2 received, then
pairkey/show.  Tears everything down.  Exit status 0 when traffic flowed
and (with pairkey) the wire carried only encrypted frames and never the
marker.  OVS binaries: $PAIRKEY_BIN (default <repo>/build/bin), see
README.md.
"""

import argparse
import itertools
import os
import secrets
import signal
import socket
import struct
import sys

import harness
import pairkey
from harness import wait_until
from topo import TWO_HOSTS, Net, ovs_paths

PORT = 5555
COLUMN = 36             # width of each of the two columns
GROWTH = 16             # plain offset i is at i + 16 in an encrypted frame

PICTURE = """\
  h1 {h1} -- br1 [{enc}] ==== wire ==== [{dec}] br2 -- {h2} h2
                                     |
                              eavesdropper (tcpdump)"""

TCP_FLAGS = "FSRPAU"


def printable(data):
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)


def l4_payload(frame):
    """(offset, length) of the ICMP/UDP/TCP payload of a plain IPv4
    frame, or None."""
    if pairkey.ethertype(frame) != 0x0800 or len(frame) < 34:
        return None
    ihl = (frame[14] & 0x0F) * 4
    total = int.from_bytes(frame[16:18], "big")
    l4 = 14 + ihl
    proto = frame[23]
    if proto in (1, 17):                    # ICMP echo, UDP: 8 bytes
        start = l4 + 8
    elif proto == 6 and len(frame) >= l4 + 13:
        start = l4 + (frame[l4 + 12] >> 4) * 4
    else:
        return None
    return start, max(0, 14 + total - start)


def describe(frame):
    """One line about a plain frame: ARP, ICMP, UDP or TCP."""
    kind = pairkey.ethertype(frame)
    if kind == 0x0806 and len(frame) >= 42:
        op = int.from_bytes(frame[20:22], "big")
        if op == 1:
            return "ARP who-has %s" % socket.inet_ntoa(frame[38:42])
        return "ARP %s is-at ..%s" % (socket.inet_ntoa(frame[28:32]),
                                      frame[22:28].hex(":")[9:])
    if kind != 0x0800 or len(frame) < 34:
        return "EtherType %04x" % kind
    l4 = 14 + (frame[14] & 0x0F) * 4
    proto = frame[23]
    if proto == 1:
        return {8: "ICMP echo request", 0: "ICMP echo reply"}.get(
            frame[l4], "ICMP type %d" % frame[l4])
    sport, dport = struct.unpack_from("!HH", frame, l4)
    if proto == 17:
        return "UDP %d > %d" % (sport, dport)
    if proto == 6:
        flags = "".join(f for i, f in enumerate(TCP_FLAGS)
                        if frame[l4 + 13] & (1 << i))
        return "TCP %d > %d [%s]" % (sport, dport, flags)
    return "IPv4 protocol %d" % proto


def wire_head(frame):
    s = pairkey.parse_frame(frame)
    if s is None:
        return describe(frame)
    return "88b5 key v%d PN ..%06x" % (s.version, s.pn & 0xFFFFFF)


def cell(text, length):
    tail = "%4d B" % length
    return "%-*s%s" % (COLUMN - len(tail), text[:COLUMN - len(tail) - 1],
                       tail)


def rows(wire, got):
    """Two columns per frame h1 sent: its header line on the wire and at
    h2, then, if it carries data, the same bytes of it on both sides."""
    yield "%-3s %-*s | %s" % ("#", COLUMN, "ON THE WIRE (eavesdropper)",
                              "RECEIVED BY h2")
    for n, (w, g) in enumerate(itertools.zip_longest(wire, got), 1):
        left = cell(wire_head(w), len(w)) if w else "(not on the wire)"
        right = cell(describe(g), len(g)) if g else "(not delivered)"
        yield "%-3d %-*s | %s" % (n, COLUMN, left, right)
        span = l4_payload(g) if g else None
        if w and span and span[1]:
            start, length = span
            shift = GROWTH if pairkey.parse_frame(w) else 0
            width = COLUMN - 4
            seen = w[start + shift:start + shift + min(length, width)]
            yield '%-3s   "%-*s | "%s"' % (
                "", COLUMN - 3, printable(seen) + '"',
                printable(g[start:start + min(length, width)]))


def demo(net, plain):
    m = b"PAIRKEY-DEMO-MARKER-" + secrets.token_hex(4).encode()
    h1, h2 = net.topo.host("h1"), net.topo.host("h2")
    print("pairkey demo: h1 talks to h2 through OVS; an eavesdropper "
          "captures the wire.\n")
    print(PICTURE.format(h1=h1.addr, h2=h2.addr,
                         enc="forward" if plain else "encrypt",
                         dec="forward" if plain else "decrypt"))
    print()
    if plain:
        pairkey.plain_flows(net)
        print("No keys (--plain): both bridges just forward.")
    else:
        pairkey.seal_pair(net)
        print("Key: one random 256-bit key (a file in the run directory, "
              "never printed),\n     installed as SA 1, key version 1, "
              "on br1 and br2 with ovs-ofctl add-sa.")
    print("Flows on br1 (br2 alike):")
    for line in net.dump_flows("br1").splitlines():
        if line.startswith(" "):
            print("    " + line.strip())
    print('\nh1 sends h2 a ping, then a UDP datagram and a TCP message, '
          'both carrying\n"%s".\n' % m.decode())

    rx = net.udp_socket("h2", PORT)
    sniffer = net.sniffer("h2")
    with net.capture() as cap:
        ping = bool(net.wait_ping("h1", "h2"))
        net.udp_send("h1", "h2", PORT, m + b" via UDP")
        udp = wait_until(lambda: net.udp_recv(rx), 10, "UDP at h2")
        tcp = net.tcp_transfer("h1", "h2", m + b" via TCP")

    src = pairkey.mac_bytes(h1.mac)
    frames = cap.frames
    wire = [f for f in frames if f[6:12] == src]
    got = [f for f in sniffer.received() if f[6:12] == src]
    print("Every frame h1 sent, as captured on the wire and as h2 received "
          "it.  For frames\nwith data, the second line shows the same bytes "
          "of the frame on both sides.")
    if not plain:
        print("An encrypted frame is 32 bytes longer (16 of header, 16 of "
              "tag); PN: its packet\nnumber (low 24 bits), never used "
              "twice.")
    print()
    for line in rows(wire, got):
        print(line)

    n_sealed = sum(1 for f in frames
                   if pairkey.ethertype(f) == pairkey.ETH_P_PAIRKEY)
    sealed = n_sealed == len(frames)
    on_wire = [f for f in frames if m in f]
    print("\nThe eavesdropper saw %d frames (%d from h1, %d from h2 back):"
          % (len(frames), len(wire), len(frames) - len(wire)))
    print("  encrypted (EtherType 0x88b5): %s" % (
        "all" if sealed else "none" if not n_sealed
        else "only %d" % n_sealed))
    print("  marker visible:               %s" % (
        "in %d frames" % len(on_wire) if on_wire else "no"))
    print("h2 received:")
    print("  ping: %s" % ("answered" if ping else "FAILED"))
    for proto, data in (("UDP", udp), ("TCP", tcp)):
        print("  %s:  %s" % (proto, (data or b"").decode(errors="replace")
                             or "(nothing)"))
    if not plain:
        text = net.appctl("pairkey/show").stdout
        st = pairkey.parse_show(text)
        print("\nCounters: br1 encrypted %d frames, br2 decrypted %d "
              "(h1 sent %d):" % (
                  pairkey.counter(st, "br1", 1, "encrypted", "packets"),
                  pairkey.counter(st, "br2", 1, "decrypted", "packets"),
                  len(wire)))
        print("$ ovs-appctl pairkey/show")
        print(text.rstrip())

    traffic = ping and udp == m + b" via UDP" and tcp == m + b" via TCP"
    return traffic and (plain or (sealed and not on_wire))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", action="store_true",
                        help="plain forwarding, to see what pairkey hides")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("demo: run as root (it creates network namespaces)")
    bindir, schema = ovs_paths()
    for prog in ("ovs-vswitchd", "ovsdb-server", "ovs-ofctl", "ovs-appctl"):
        if not os.access(os.path.join(bindir, prog), os.X_OK):
            sys.exit("demo: %s not found in %s (set PAIRKEY_BIN)"
                     % (prog, bindir))
    if not args.plain:
        why = pairkey.missing_support(lambda *a: harness.run(
            [os.path.join(bindir, "ovs-ofctl")] + list(a), check=False))
        if why:
            sys.exit("demo: %s" % why)

    def terminate(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, terminate)  # tear down on kill too

    net = Net(TWO_HOSTS, bindir, schema, "pkdemo%s-" % secrets.token_hex(2))
    net.start()
    try:
        ok = demo(net, args.plain)
    finally:
        net.stop()
    print("\ndemo %s" % ("succeeded" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
