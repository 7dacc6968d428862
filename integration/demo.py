#!/usr/bin/python3
"""pairkey demo: five clients behind four OVS bridges (topo.KEYSERVER) talk
across an untrusted wire with an eavesdropper on it; pairkeyd, the key
server, issues every key.

    sudo /usr/bin/python3 integration/demo.py                  # key server
    sudo /usr/bin/python3 integration/demo.py --dataplane-only # keys by hand
    sudo /usr/bin/python3 integration/demo.py --plain          # no crypto

By default: starts pairkeyd, marks the OVS ports (client or uplink), points
every bridge at pairkeyd, enrolls the clients with pairkeyctl, then h1
sends h2 a ping, a UDP datagram and a TCP message (the last two carry a
visible marker) and h4 talks to h5 on their shared bridge.  Prints, frame
by frame, what the eavesdropper captured on the wire next to what h2
received, then 'pairkeyctl list-keys' and the SAs of each bridge.

--dataplane-only: two hosts (topo.TWO_HOSTS) and no key server: one random
key installed by hand as SA 1 on both bridges with the encrypt/decrypt
flows; --plain: the same paths without encryption, for contrast.

Tears everything down.  Exit status 0 when traffic flowed and (unless
--plain) the wire carried only encrypted frames and never the marker.
OVS binaries and pairkeyd: $PAIRKEY_BIN (default <repo>/build/bin), see
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
from topo import KEYSERVER, TWO_HOSTS, Net, ovs_paths

PORT = 5555
COLUMN = 36             # width of each of the two columns
GROWTH = 16             # plain offset i is at i + 16 in an encrypted frame

PICTURE = """\
  h1 {h1} -- br1 [{enc}] ==== wire ==== [{dec}] br2 -- {h2} h2
                                     |
                              eavesdropper (tcpdump)"""

KS_PICTURE = """\
  h1 {h1} -- [br1] --+
  h2 {h2} -- [br2] --+== wire ==> eavesdropper (tcpdump)
  h3 {h3} -- [br3] --+
  h4 {h4} --+[br4] --+
  h5 {h5} --+
  every bridge <== OpenFlow 1.3 ==> pairkeyd <== OVSDB (port marks)"""

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


def rows(wire, got, receiver="h2"):
    """Two columns per frame h1 sent: its header line on the wire and at
    the receiver, then, if it carries data, the same bytes of it on both
    sides."""
    yield "%-3s %-*s | %s" % ("#", COLUMN, "ON THE WIRE (eavesdropper)",
                              "RECEIVED BY " + receiver)
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


def dataplane_demo(net, plain):
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


def command(line):
    """Prints a command as an operator would type it."""
    print("  $ " + line)


def indented(text):
    for line in text.rstrip().splitlines():
        print("    " + line)


def h1_to_h2(net, m):
    """h1 sends h2 a ping, a UDP datagram and a TCP message while the wire
    is captured.  Returns (wire frames, frames from h1 on the wire, frames
    from h1 that h2 received, ping ok, UDP payload, TCP payload)."""
    rx = net.udp_socket("h2", PORT)
    sniffer = net.sniffer("h2")
    with net.capture() as cap:
        ping = bool(net.wait_ping("h1", "h2"))
        net.udp_send("h1", "h2", PORT, m + b" via UDP")
        udp = wait_until(lambda: net.udp_recv(rx), 10, "UDP at h2")
        tcp = net.tcp_transfer("h1", "h2", m + b" via TCP")
        wait_until(lambda: net.tcp_idle("h1") and net.tcp_idle("h2"), 10,
                   "TCP to finish")
    src = pairkey.mac_bytes(net.topo.host("h1").mac)
    wire = [f for f in cap.frames if f[6:12] == src]
    got = [f for f in sniffer.received() if f[6:12] == src]
    return cap.frames, wire, got, ping, udp, tcp


def keyserver_demo(net):
    m = b"PAIRKEY-DEMO-MARKER-" + secrets.token_hex(4).encode()
    hosts = {h.name: h for h in net.topo.hosts}
    print("pairkey demo: five clients, four OVS bridges, one wire with an "
          "eavesdropper,\nand pairkeyd, the key server, which gives every "
          "pair of clients its own key.\n")
    print(KS_PICTURE.format(**{n: "%-9s" % h.addr
                               for n, h in hosts.items()}))
    print("\n(Commands run in the demo's run directory, a fresh temporary "
          "directory.)\n")

    print("1. Start the key server (its store: SQLite, pairkey.db):")
    pk = net.start_pairkeyd()
    command("pairkeyd --db=pairkey.db --ovsdb=unix:db.sock "
            "--miss-policy=hold \\\n      --pidfile --log-file "
            "punix:pairkeyd.sock")
    print("\n2. Mark each client's port with its client id, and each "
          "uplink:")
    for h in net.topo.hosts:
        command("ovs-vsctl set Interface %s external_ids:pairkey-role=client"
                " external_ids:pairkey-id=%s" % (h.name, h.name))
    for br in net.topo.bridges:
        command("ovs-vsctl set Interface %s external_ids:pairkey-role=uplink"
                % br.uplink)
    net.mark_ports()
    print("\n3. Make pairkeyd the controller of every bridge (fail_mode="
          "secure: without it\n   nothing passes):")
    for br in net.topo.bridges:
        command("ovs-vsctl set-controller %s unix:pairkeyd.sock" % br.name)
    net.set_controller(pk.listen[1:])
    print("\n4. Enroll the clients (ID-MAC table):")
    for h in net.topo.hosts:
        command("pairkeyctl add-client %s %s" % (h.name, h.mac))
    net.enroll()
    net.wait_keyserver()
    command("pairkeyctl show")
    indented(pk.ctl("show").stdout.replace(net.ovs.rundir + "/", ""))

    print('\n5. h1 sends h2 a ping, then a UDP datagram and a TCP message, '
          'both carrying\n   "%s".\n   No key exists yet: the first frame '
          'is a key request (a table miss), held\n   by the switch until '
          'pairkeyd has installed the pair key on br1 and br2.\n'
          % m.decode())
    frames, wire, got, ping, udp, tcp = h1_to_h2(net, m)
    print("Every frame h1 sent, as captured on the wire and as h2 received "
          "it; ARP goes\nunder the group key, the rest under the key of "
          "the pair (h1, h2).  For frames\nwith data, the second line shows "
          "the same bytes of the frame on both sides.\n")
    for line in rows(wire, got):
        print(line)
    sealed = all(pairkey.ethertype(f) == pairkey.ETH_P_PAIRKEY
                 for f in frames)
    leaked = [f for f in frames if m in f]
    print("\nThe eavesdropper saw %d frames (%d from h1, %d from h2 back):"
          % (len(frames), len(wire), len(frames) - len(wire)))
    print("  encrypted (EtherType 0x88b5): %s" % (
        "all" if sealed else "NOT all"))
    print("  marker visible:               %s" % (
        "in %d frames" % len(leaked) if leaked else "no"))
    print("h2 received: ping %s, UDP %r, TCP %r" % (
        "answered" if ping else "FAILED", (udp or b"").decode(),
        (tcp or b"").decode()))

    print("\n6. h4 and h5 share br4: their frames never leave it.")
    local = {pairkey.mac_bytes(hosts[h].mac) for h in ("h4", "h5")}
    with net.capture() as cap:
        local_ping = bool(net.wait_ping("h4", "h5"))
        local_tcp = net.tcp_transfer("h4", "h5", m + b" h4 to h5")
        wait_until(lambda: net.tcp_idle("h4") and net.tcp_idle("h5"), 10,
                   "TCP to finish")
    between = [f for f in cap.frames if f[6:12] in local
               and f[0:6] in local]
    broadcast = [f for f in cap.frames if f[6:12] in local
                 and f[0:6] == b"\xff" * 6]
    local_sealed = all(pairkey.ethertype(f) == pairkey.ETH_P_PAIRKEY
                       for f in cap.frames) and not [
                           f for f in cap.frames if m in f]
    print("   h4 -> h5: ping %s, TCP %r" % (
        "answered" if local_ping else "FAILED", (local_tcp or b"").decode()))
    print("   frames between h4 and h5 on the wire: %d (and %d ARP "
          "broadcast of h4's, encrypted\n   under the group key, which "
          "every bridge gets)" % (len(between), len(broadcast)))

    print("\n7. The keys: one per pair that talked (versions and times, "
          "never key bytes):")
    command("pairkeyctl list-keys")
    indented(pk.ctl("list-keys").stdout)
    print("   SAs on each bridge (ovs-appctl pairkey/show): SA 0 is the "
          "group key, SA n the\n   key of pair n, held only by the bridges "
          "of its two clients.  h4 and h5 need\n   no key, h3 talked to "
          "nobody:")
    for br, ids in sorted(net.sa_ids().items()):
        print("    %s: %s" % (br, ", ".join("SA %d" % i
                                             for i in sorted(ids))))

    traffic = (ping and udp == m + b" via UDP" and tcp == m + b" via TCP"
               and local_ping and local_tcp == m + b" h4 to h5")
    return traffic and sealed and not leaked and local_sealed \
        and not between


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataplane-only", action="store_true",
                        help="no key server: one key installed by hand")
    parser.add_argument("--plain", action="store_true",
                        help="plain forwarding, to see what pairkey hides "
                        "(implies --dataplane-only)")
    args = parser.parse_args()
    dataplane = args.dataplane_only or args.plain
    if os.geteuid() != 0:
        sys.exit("demo: run as root (it creates network namespaces)")
    bindir, schema = ovs_paths()
    programs = ["ovs-vswitchd", "ovsdb-server", "ovs-ofctl", "ovs-appctl"]
    if not dataplane:
        programs += ["ovs-vsctl", "pairkeyd", "pairkeyctl"]
    for prog in programs:
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

    net = Net(TWO_HOSTS if dataplane else KEYSERVER, bindir, schema,
              "pkdemo%s-" % secrets.token_hex(2))
    net.start()
    try:
        ok = (dataplane_demo(net, args.plain) if dataplane
              else keyserver_demo(net))
    finally:
        net.stop()
    print("\ndemo %s" % ("succeeded" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
