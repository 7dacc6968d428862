#!/usr/bin/python3
"""pairkey demo: two hosts, each behind its own OVS bridge, talk across an
untrusted wire with an eavesdropper on it (topo.TWO_HOSTS).

    sudo /usr/bin/python3 integration/demo.py            # with pairkey
    sudo /usr/bin/python3 integration/demo.py --plain    # contrast: no crypto

Installs one random key as SA 1 on both bridges and the encrypt/decrypt
flows, sends a ping, a UDP datagram and a TCP message carrying a visible
marker from h1 to h2, and prints side by side what the wire carried and
what h2 received, then pairkey/show.  Tears everything down.  Exit status 0
when traffic flowed and (with pairkey) the marker never showed on the wire.
OVS binaries: $PAIRKEY_BIN (default <repo>/build/bin), see README.md.
"""

import argparse
import itertools
import os
import secrets
import signal
import sys

import harness
import pairkey
from harness import wait_until
from topo import TWO_HOSTS, Net, ovs_paths

WIDTH = 62
PORT = 5555


def wire_line(frame):
    s = pairkey.parse_frame(frame)
    head = "%s>%s %04x" % (frame[6:12].hex(":")[9:], frame[0:6].hex(":")[9:],
                           pairkey.ethertype(frame))
    if s:
        return "%s v%d pn=..%06x %s" % (head, s.version, s.pn & 0xFFFFFF,
                                   s.body[:8].hex())
    return "%s %s" % (head, frame[14:26].hex())


def side_by_side(left, right):
    for a, b in itertools.zip_longest(left, right, fillvalue=""):
        print("%-*s | %s" % (WIDTH, a[:WIDTH], b))


def demo(net, plain):
    m = b"PAIRKEY-DEMO-MARKER-" + secrets.token_hex(4).encode()
    if plain:
        for h in net.topo.hosts:
            br, port = net.host_port(h.name)
            up = net.uplink(br)
            net.add_flow(br, "in_port=%d,actions=output:%d" % (port, up))
            net.add_flow(br, "in_port=%d,actions=output:%d" % (up, port))
    else:
        key = net.key()                   # random, in the run directory
        for br in ("br1", "br2"):
            pairkey.add_sa(net, br, key)
        pairkey.crypto_flows(net)

    rx = net.udp_socket("h2", PORT)
    with net.capture() as cap:
        ping = bool(net.wait_ping("h1", "h2"))
        net.udp_send("h1", "h2", PORT, m + b" via UDP")
        udp = wait_until(lambda: net.udp_recv(rx), 10, "UDP at h2")
        tcp = net.tcp_transfer("h1", "h2", m + b" via TCP")

    frames = cap.frames
    on_wire = [f for f in frames if m in f]
    sealed = all(pairkey.ethertype(f) == pairkey.ETH_P_PAIRKEY for f in frames)

    left = ["WIRE (eavesdropper): %d frames" % len(frames),
            "src>dst (last 3 MAC bytes), type, header, first bytes"]
    left += [wire_line(f) for f in frames[:14]]
    if len(frames) > 14:
        left.append("... %d more" % (len(frames) - 14))
    left += ["",
             "all frames EtherType 0x88b5: %s" % ("yes" if sealed else "NO"),
             "marker %s found on the wire: %s" % (
                 m.decode(), "YES, %d frames" % len(on_wire) if on_wire
                 else "no")]
    right = ["h2 RECEIVED", "",
             "ping h1 -> h2: %s" % ("ok" if ping else "FAILED"),
             "UDP: %s" % (udp or b"(nothing)").decode(errors="replace"),
             "TCP: %s" % (tcp or b"(nothing)").decode(errors="replace")]
    print()
    side_by_side(left, right)
    if not plain:
        print("\novs-appctl pairkey/show")
        print(net.appctl("pairkey/show").stdout)

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
    print("demo %s" % ("succeeded" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
