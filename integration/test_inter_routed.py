"""Two encrypted subnets joined through a Linux router (topo.INTER_L3,
topo.INTER_NAT).  As in test_inter.py, ks-a serves subnet A (bra, bra2,
bga), ks-b subnet B (bgb, brb), and they peer over SSL and agree on a
NETKEY; but the gateways' inter ports are on two wires, iwa and iwb, with
the router rt between them, and are marked pairkey-mode=l3 or nat:

  l3   what leaves an inter port is the client's IPv4 packet with its IP
       header as it was (addresses, TTL) and its payload sealed under the
       NETKEY, as IP protocol 253: | IP | header 20 | sealed (protocol,
       flags, payload) | tag 16 |, 38 bytes more than the packet.
  nat  the same inside UDP, | IP | UDP | header 20 | ... | tag 16 |, 46
       bytes more, with UDP ports that mirror the client's flow (TCP and
       UDP ports; an echo request id -> 4820, a reply 4820 -> id) so that
       a masquerading router maps each flow on its own; the receiving
       gateway writes the ports the NAT chose back into the packet.

The 20-byte header is format (2), cipher, key version (4), PN (8), sender
id (6).  Sealed packets have DF set and are never fragments.  ARP crosses
an inter port unchanged, anything else is dropped; inside each subnet only
0x88b5 frames are on the wire.
"""

import collections
import concurrent.futures
import contextlib
import os
import re
import secrets
import select
import socket
import struct

import pytest

import harness
import pairkey
from harness import wait_until
from pairkey import ethertype, mac_bytes
from test_inter import (EARLY_PEER, NETKEY_SA, assert_sealed, exchange,
                        from_bga, start_subnets)
from topo import INTER_L3, INTER_NAT

MARKER = b"PAIRKEY-ROUTED-MARKER-"

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
IPPROTO_ICMP = 1
IPPROTO_UDP = 17
IPPROTO_PAIRKEY = 253           # l3: the IP protocol of a sealed packet
NAT_PORT = 4820                 # nat: the UDP port of what has no ports
# format, cipher, key version, PN, sender id
SEALED_HEADER = struct.Struct("!BBIQ6s")
Sealed = collections.namedtuple("Sealed", "format cipher version pn sender")
FORMAT_V2 = 2
OVERHEAD = {"l3": 38, "nat": 46}
ECHO_LEN = 84                   # IPv4 length of Net.ping's 56-byte echo
# A source port both clients of INTER_NAT use at once (below Linux's
# ephemeral range, so no other connection holds it).
SHARED_SPORT = 30000

Packet = collections.namedtuple(
    "Packet", "src dst proto ttl length df fragment payload")


def parse_ipv4(frame):
    """The IPv4 packet of an untagged frame as a Packet (df: the DF bit;
    fragment: MF or an offset; payload: what follows the IP header, up to
    the IP length), or None."""
    if ethertype(frame) != ETH_P_IP or len(frame) < 34:
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    length, frag, ttl, proto = struct.unpack_from("!2xH2xHBB", ip)
    return Packet(socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]),
                  proto, ttl, length, bool(frag & 0x4000),
                  bool(frag & 0x3FFF), ip[ihl:length])


def udp_ports(p):
    return struct.unpack_from("!HH", p.payload)


def sealed_header(p, mode):
    """The sealed header of a packet of an inter port in 'mode', or None
    if it is too short to hold one."""
    off = 8 if mode == "nat" else 0
    if len(p.payload) < off + SEALED_HEADER.size:
        return None
    return Sealed(*SEALED_HEADER.unpack_from(p.payload, off))


def assert_routed(frames, mode, markers, where):
    """Checks that every frame a routed wire carried is ARP or a sealed
    IPv4 packet of 'mode' (IP protocol 253 for l3, UDP for nat; DF set,
    never a fragment) with a format 2 header, that no frame holds a
    marker, and that no (sender, key version, PN) is used twice.  Returns
    the IPv4 packets."""
    assert frames, "nothing on " + where
    want = IPPROTO_PAIRKEY if mode == "l3" else IPPROTO_UDP
    packets, nonces = [], collections.Counter()
    for f in frames:
        for m in markers:
            assert m not in f, "plaintext marker on " + where
        if ethertype(f) == ETH_P_ARP:
            continue
        p = parse_ipv4(f)
        assert p is not None, "neither ARP nor IPv4 on %s: %s > %s %04x" % (
            where, f[6:12].hex(":"), f[0:6].hex(":"), ethertype(f))
        assert p.proto == want, "IP protocol %d on %s: %s > %s" % (
            p.proto, where, p.src, p.dst)
        assert p.df and not p.fragment, \
            "fragmentable or a fragment on %s: %s > %s" % (where, p.src, p.dst)
        s = sealed_header(p, mode)
        assert s and s.format == FORMAT_V2, \
            "not a format 2 header on %s: %s > %s" % (where, p.src, p.dst)
        nonces[(s.sender, s.version, s.pn)] += 1
        packets.append(p)
    assert not [n for n, k in nonces.items() if k > 1], \
        "a nonce used twice on " + where
    return packets


def between(packets, src, dst):
    return [p for p in packets if (p.src, p.dst) == (src, dst)]


def start_routed(net, mode):
    """test_inter.start_subnets() with the gateways' inter ports marked
    pairkey-mode=MODE as well: the whole inter mark is there before either
    key server starts, so no gateway ever runs its inter port in another
    mode.  The bridges and clients start_subnets() does not know (bra2,
    ha2) join ks-a.  Returns (ks-a, ks-b)."""
    for gw, other in (("bga", "ks-b"), ("bgb", "ks-a")):
        net.vsctl("set", "Interface", gw + "-in",
                  "external_ids:pairkey-role=inter",
                  "external_ids:pairkey-peer=" + other,
                  "external_ids:pairkey-mode=" + mode)
    ka, kb = start_subnets(net)
    extra = [b.name for b in net.topo.bridges
             if b.name not in ("bra", "bga", "bgb", "brb")]
    for br in extra:
        assert net.topo.bridge(br).wire == "wirea"
        net.set_controller(ka.listen[1:], [br])
    if extra:
        wait_until(lambda: set(extra) <= ka.connected(), 10,
                   "%s to connect to ks-a" % ", ".join(extra))
    for h in net.topo.hosts:
        if h.name not in ("ha", "hb"):
            assert h.bridge in extra
            ka.ctl("add-client", h.name, h.mac)
    if extra:
        wait_until(lambda: all(0 in net.sa_ids()[br] for br in extra), 10,
                   "%s to hold the group key" % ", ".join(extra))
    return ka, kb


def tcp_to(net, dst, payloads, port=5001, sport=None, timeout=10):
    """Each host of 'payloads' ({host: bytes}) connects to host dst at the
    same time, from source port 'sport' if given, and sends its bytes.
    Returns {peer (address, port) as dst's accept() saw it: bytes read}."""
    addr = (net.topo.host(dst).addr, port)
    received = {}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(harness.ns_socket(
            net.ns(dst), socket.AF_INET, socket.SOCK_STREAM))
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(addr)
        server.listen(len(payloads))
        server.settimeout(timeout)
        clients = {h: stack.enter_context(harness.ns_socket(
            net.ns(h), socket.AF_INET, socket.SOCK_STREAM)) for h in payloads}

        def send(host):
            c = clients[host]
            if sport:
                c.bind((net.topo.host(host).addr, sport))
            c.settimeout(timeout)
            c.connect(addr)
            c.sendall(payloads[host])
            c.shutdown(socket.SHUT_WR)

        def serve():
            conns = [server.accept() for _ in payloads]
            for conn, peer in conns:
                with conn:
                    conn.settimeout(timeout)
                    chunks = []
                    while chunk := conn.recv(65536):
                        chunks.append(chunk)
                    received[peer] = b"".join(chunks)

        with concurrent.futures.ThreadPoolExecutor(len(payloads) + 1) as pool:
            served = pool.submit(serve)
            for f in [pool.submit(send, h) for h in payloads]:
                f.result()
            served.result()
    return received


def echo_same_id(net, hosts, dst, ident, seq):
    """Sends one ICMP echo request with the same id and sequence number
    from each host to host dst at once; returns the hosts that got their
    reply (id and sequence number as sent) within a second."""
    payload = b"pairkey-same-id " * 4
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    csum = harness.inet_checksum(head + payload)
    request = struct.pack("!BBHHH", 8, 0, csum, ident, seq) + payload
    answered = set()
    with contextlib.ExitStack() as stack:
        socks = {stack.enter_context(harness.ns_socket(
            net.ns(h), socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)):
            h for h in hosts}
        for s in socks:
            s.sendto(request, (net.topo.host(dst).addr, 0))
        waiting = set(socks)

        def poll():
            for s in select.select(list(waiting), [], [], 0.1)[0]:
                data = s.recv(65535)
                ihl = (data[0] & 0x0F) * 4
                kind, _, _, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
                if (kind, rid, rseq) == (0, ident, seq):
                    answered.add(socks[s])
                    waiting.discard(s)
            return not waiting
        with contextlib.suppress(TimeoutError):
            wait_until(poll, 1, "echo replies")
    return answered


def netkey_version(ks):
    m = re.search(r"\tnetkey (\d+) (\w+)$", ks.ctl("list-peers").stdout, re.M)
    assert m, "no NETKEY at " + ks.name
    return int(m.group(1))


def forged_l3(net, version):
    """Frames as rt would send them to ha on iwa, IPv4 from hb of protocol
    253 with a plausible header (format 2, the current NETKEY version) and
    garbage for the sealed part and tag; and one with a truncated
    header."""
    ha, hb = net.topo.host("ha"), net.topo.host("hb")
    eth = (mac_bytes(ha.mac) + mac_bytes(net.topo.router_mac("rt", "iwa"))
           + struct.pack("!H", ETH_P_IP))
    frames = []
    for body in (SEALED_HEADER.pack(FORMAT_V2, 1, version, 1 << 40,
                                    os.urandom(6)) + os.urandom(64 + 16),
                 bytes([FORMAT_V2, 1, 0, 0, 0])):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0x4000,
                         63, IPPROTO_PAIRKEY, 0,
                         socket.inet_aton(hb.addr), socket.inet_aton(ha.addr))
        ip = ip[:10] + struct.pack("!H", harness.inet_checksum(ip)) + ip[12:]
        frames.append(eth + ip + body)
    return frames


def warned(ks, pattern):
    """True once ks has logged a WARN line matching regex 'pattern'."""
    return any(re.search(pattern, line) for line in ks.log_lines(("WARN",)))


@pytest.mark.allow_log(EARLY_PEER)
def test_l3_clients_talk_through_a_router(needs_pairkeyd, make_net):
    """1. pairkey-mode=l3: ha and hb ping and run TCP both ways through
    rt.  wirea and wireb hold only 0x88b5 frames and no marker.  iwa and
    iwb hold only ARP and IPv4 protocol 253 (DF, no fragment) with a
    format 2 header, no marker and no nonce twice; ha's and hb's addresses
    are in the clear both ways on both wires (the IP header is kept, so rt
    can route it), rt takes one off the TTL and the gateways none, and a
    56-byte echo crosses 38 bytes longer.  Both gateways encrypted and
    decrypted under the NETKEY SA."""
    net = make_net(INTER_L3)
    start_routed(net, "l3")
    ha, hb = net.topo.host("ha").addr, net.topo.host("hb").addr
    m = MARKER + secrets.token_hex(8).encode()
    with net.capture("wirea") as ca, net.capture("wireb") as cb, \
            net.capture("iwa") as cia, net.capture("iwb") as cib:
        exchange(net, m)
    assert_sealed(ca.frames, (MARKER, m), "wirea")
    assert_sealed(cb.frames, (MARKER, m), "wireb")
    on = {"iwa": assert_routed(cia.frames, "l3", (MARKER, m), "iwa"),
          "iwb": assert_routed(cib.frames, "l3", (MARKER, m), "iwb")}
    for where, packets in on.items():
        for src, dst in ((ha, hb), (hb, ha)):
            assert between(packets, src, dst), \
                "no %s > %s on %s" % (src, dst, where)

    def ttls(where, src, dst):
        return {p.ttl for p in between(on[where], src, dst)}
    assert ttls("iwb", ha, hb) == {t - 1 for t in ttls("iwa", ha, hb)}
    assert ttls("iwa", hb, ha) == {t - 1 for t in ttls("iwb", hb, ha)}
    assert ECHO_LEN + OVERHEAD["l3"] in {
        p.length for p in between(on["iwa"], ha, hb)}
    st = pairkey.show(net)
    for gw in ("bga", "bgb"):
        for what in ("encrypted", "decrypted"):
            assert pairkey.counter(st, gw, NETKEY_SA, what, "packets") > 0, \
                (gw, what)


@pytest.mark.allow_log(EARLY_PEER)
def test_l3_router_cannot_speak_in_the_clear(needs_pairkeyd, make_net):
    """2. pairkey-mode=l3, rt hostile.  rt's own echo requests to ha
    (plain ICMP from the inter side; they do reach bga on iwa) are never
    answered, and frames forged as rt could send them into bga's inter
    port deliver nothing: protocol 253 from hb with the current NETKEY
    version and a garbage sealed part and tag, a truncated header, a real
    sealed echo reply for ha with one bit of its tag flipped, and the same
    reply replayed as it was.  Meanwhile wirea carries only 0x88b5 frames,
    and the only IPv4 packet ha receives is the echo reply to its own ping
    of hb afterwards.  ovs-vswitchd and both key servers are still
    running."""
    net = make_net(INTER_L3)
    ka, kb = start_routed(net, "l3")
    ha, hb = net.topo.host("ha").addr, net.topo.host("hb").addr
    with net.capture("iwa") as ci0:
        net.wait_ping("ha", "hb", timeout=15)
    real = [f for f in ci0.frames if (p := parse_ipv4(f))
            and (p.src, p.dst, p.proto) == (hb, ha, IPPROTO_PAIRKEY)]
    assert real, "no sealed packet for ha on iwa"
    end = 14 + parse_ipv4(real[-1]).length        # the tag's last byte + 1
    forged = forged_l3(net, netkey_version(ka)) + [
        pairkey.flip_bit(real[-1], end - 1), real[-1]]
    sniff = net.sniffer("ha")
    with net.capture("wirea") as ca, net.capture("iwa") as ci:
        assert harness.icmp_echo(net.ns("rt"), ha, count=2) == 0
        net.inject("bga", forged, inter=True)
        assert net.ping("ha", "hb")
    assert_sealed(ca.frames, (), "wirea")
    rt = net.topo.router("rt").addr("iwa")
    assert between([p for p in map(parse_ipv4, ci.frames) if p], rt, ha), \
        "rt's echo requests never reached iwa"
    got = [p for p in map(parse_ipv4, sniff.received()) if p]
    assert [(p.src, p.proto, p.payload[:1]) for p in got] == [
        (hb, IPPROTO_ICMP, b"\0")], \
        "ha received %s" % [(p.src, p.dst, p.proto) for p in got]
    assert net.vswitchd.alive()
    assert ka.alive() and kb.alive()


@pytest.mark.allow_log(EARLY_PEER)
def test_nat_clients_behind_a_masquerading_router(needs_pairkeyd,
                                                  make_net):
    """3. pairkey-mode=nat, rt masquerading on iwb.  ha and ha2 each ping
    hb, then each runs TCP to hb on its own, then both at once from the
    same source port, and both send an echo request with the same id at
    once: all of it arrives intact, and hb sees every connection and echo
    from 10.2.0.1, rt's address, the simultaneous ones with distinct
    ports or ids (rt mapped each flow on its own and bgb wrote the new
    ports back), hb's accepted peer ports being the UDP source ports on
    iwb.  iwa and iwb hold only ARP and IPv4/UDP (DF, no fragment) with a
    format 2 header, no marker and no nonce twice; on iwb no address of
    subnet A, only rt's and hb's; the UDP ports mirror the flows (TCP to
    port 5001 as UDP to 5001, echo requests to 4820, replies from 4820); a
    56-byte echo crosses 46 bytes longer.  wirea and wireb hold only 0x88b5
    frames."""
    net = make_net(INTER_NAT)
    start_routed(net, "nat")
    addr = {h.name: h.addr for h in net.topo.hosts}
    nat = net.topo.router("rt").addr("iwb")
    clients = ("ha", "ha2")
    m = MARKER + secrets.token_hex(8).encode()
    data = {c: m + c.encode() + b"-" + m * 200 for c in clients}
    sniff = net.sniffer("hb")
    with net.capture("wirea") as ca, net.capture("wireb") as cb, \
            net.capture("iwa") as cia, net.capture("iwb") as cib:
        for c in clients:
            net.wait_ping(c, "hb", timeout=15)
        peers = {}
        for c in clients:
            got = tcp_to(net, "hb", {c: data[c]})
            assert list(got.values()) == [data[c]], c
            peers.update(got)
        both = tcp_to(net, "hb", data, sport=SHARED_SPORT)
        assert sorted(both.values()) == sorted(data.values())
        assert len({port for _, port in both}) == 2, both
        peers.update(both)
        ident = int.from_bytes(os.urandom(2), "big")
        assert echo_same_id(net, clients, "hb", ident, 1) == set(clients)
        wait_until(lambda: all(net.tcp_idle(h) for h in clients + ("hb",)),
                   10, "TCP to finish")
    assert {ip for ip, _ in peers} == {nat}, peers
    assert len(peers) == 4
    got = [p for p in map(parse_ipv4, sniff.received()) if p]
    assert {p.src for p in got} == {nat}, {p.src for p in got}
    ids = {struct.unpack_from("!H", p.payload, 4)[0] for p in got
           if p.proto == IPPROTO_ICMP and p.payload[0] == 8
           and p.payload.endswith(b"pairkey-same-id ")}
    assert len(ids) == 2, ids

    assert_sealed(ca.frames, (MARKER, m), "wirea")
    assert_sealed(cb.frames, (MARKER, m), "wireb")
    on_a = assert_routed(cia.frames, "nat", (MARKER, m), "iwa")
    on_b = assert_routed(cib.frames, "nat", (MARKER, m), "iwb")
    assert {frozenset((p.src, p.dst)) for p in on_b} == {
        frozenset((nat, addr["hb"]))}
    for c in clients:
        out = {udp_ports(p)[1] for p in between(on_a, addr[c], addr["hb"])}
        back = {udp_ports(p)[0] for p in between(on_a, addr["hb"], addr[c])}
        assert {5001, NAT_PORT} <= out and {5001, NAT_PORT} <= back, \
            (c, out, back)
        assert ECHO_LEN + OVERHEAD["nat"] in {
            p.length for p in between(on_a, addr[c], addr["hb"])}
    to_hb = {udp_ports(p) for p in between(on_b, nat, addr["hb"])}
    for _, port in peers:
        assert (port, 5001) in to_hb, port


def quiet_while_pinging(net, src, dst, sent):
    """True if src's ping of dst is not answered and the count of frames
    sent() returns does not change meanwhile."""
    before = sent()
    return not net.ping(src, dst) and sent() == before


# The key server's WARN about a bad pairkey-mode mark on bga-in or ha (any
# wording that names both), and the same as a log line allowed in a test.
WARN_BGA = r"\|WARN\|.*(bga-in.*pairkey-mode|pairkey-mode.*bga-in)"
WARN_HA = r"\|WARN\|.*(\bha\b.*pairkey-mode|pairkey-mode.*\bha\b)"
BAD_MODE_BGA = r"ks-[ab]\.log: .*" + WARN_BGA
BAD_MODE_HA = r"ks-[ab]\.log: .*" + WARN_HA


@pytest.mark.allow_log(EARLY_PEER, BAD_MODE_BGA)
def test_bad_mode_closes_the_inter_port(needs_pairkeyd, make_net):
    """4. ha and hb talk through rt in l3 mode; then bga's inter port is
    marked pairkey-mode=bogus: ks-a logs a WARN naming the port and
    pairkey-mode, and within seconds not one frame leaves bga for iwa
    while ha tries hb (so nothing of ha crosses).  With pairkey-mode=l3
    again, they talk again."""
    net = make_net(INTER_L3)
    ka, _ = start_routed(net, "l3")
    net.wait_ping("ha", "hb", timeout=15)
    net.vsctl("set", "Interface", "bga-in", "external_ids:pairkey-mode=bogus")
    wait_until(lambda: warned(ka, WARN_BGA), 10, "ks-a to warn about bga-in")
    wait_until(lambda: quiet_while_pinging(net, "ha", "hb",
                                           lambda: from_bga(net)),
               10, "bga-in to carry nothing")
    before = from_bga(net)
    assert not net.ping("ha", "hb", count=2)
    assert from_bga(net) == before
    net.vsctl("set", "Interface", "bga-in", "external_ids:pairkey-mode=l3")
    net.wait_ping("ha", "hb", timeout=15)


@pytest.mark.allow_log(EARLY_PEER, BAD_MODE_HA)
def test_mode_on_a_client_port_closes_it(needs_pairkeyd, make_net):
    """5. ha and hb talk through rt in l3 mode; then ha's client port is
    marked pairkey-mode=l3 as well, which only an inter port may carry:
    ks-a logs a WARN naming ha and pairkey-mode, and within seconds ha's
    port carries nothing: bra puts not one frame on wirea while ha tries
    hb, and ha receives nothing while hb tries ha.  Without the mode mark,
    ha reaches hb again."""
    net = make_net(INTER_L3)
    ka, _ = start_routed(net, "l3")
    net.wait_ping("ha", "hb", timeout=15)
    net.vsctl("set", "Interface", "ha", "external_ids:pairkey-mode=l3")
    wait_until(lambda: warned(ka, WARN_HA), 10, "ks-a to warn about ha")
    wait_until(lambda: quiet_while_pinging(net, "ha", "hb",
                                           lambda: net.wire_rx_from("bra")),
               10, "ha's port to carry nothing")
    before = net.wire_rx_from("bra")
    sniff = net.sniffer("ha")
    assert not net.ping("ha", "hb", count=2)
    assert not net.ping("hb", "ha", count=2)
    assert net.wire_rx_from("bra") == before
    assert not sniff.received(), "ha received %d frames" % len(
        sniff.received())
    net.vsctl("remove", "Interface", "ha", "external_ids", "pairkey-mode")
    net.wait_ping("ha", "hb", timeout=15)
