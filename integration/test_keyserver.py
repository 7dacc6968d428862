"""Key server scenarios: pairkeyd serves every bridge of topo.KEYSERVER,
five clients in one ovs-vswitchd, all uplinks on one wire with an
eavesdropper:

    h1 --- [br1] --+
    h2 --- [br2] --+-- wire (tcpdump)    pairkeyd: OpenFlow 1.3 on a unix
    h3 --- [br3] --+                     socket (SSL in test_ssl), marks
    h4 -+- [br4] --+                     from OVSDB, store pairkey.db
    h5 -+

Nothing is installed by hand: the ports are marked (client id = host
name), the clients enrolled with pairkeyctl, and every key and flow comes
from pairkeyd, on a key request (a table miss) or at connection.  ARP
travels under the group key (SA 0), unicast under the pair key (SA id =
pair id); h4 and h5 talk through br4 alone.

Every test fails on WARN/ERR lines of ovs-vswitchd or pairkeyd that it does
not expect (conftest.py; allow_log lists the provoked ones).
"""

import hashlib
import itertools
import os
import re
import secrets
import shutil
import stat
import time

import pytest

import harness
import pairkey
from harness import run, wait_until
from pairkey import assert_wire_sealed, between, parse_frame
from pairkey import host_mac as mac
from topo import KEYSERVER, KEYSERVER_TWO_OVS, ovs_paths

BINDIR, _ = ovs_paths()

PORT = 5555
MARKER = b"PAIRKEY-KS-MARKER-"
BROADCAST = b"\xff" * 6
CLIENTS = [h.name for h in KEYSERVER.hosts]
PAIRS = list(itertools.combinations(CLIENTS, 2))

# The key server refuses a request, as the test provokes: a frame to a
# client that was just revoked.
REFUSED_REVOKED = (r"pairkeyd\.log: .*\|keyserver\|WARN\|br\d: refused key "
                   r"request from 02:00:00:00:01:01 to 02:00:00:00:02:02 on "
                   r"port 1: destination is not enrolled$")
# ovs-vswitchd loses pairkeyd to kill -9 and retries while it is down.
CONTROLLER_DOWN = (
    r"ovs-vswitchd\.log: .*\|rconn\|WARN\|br\d<->unix:\S+/pairkeyd\.sock: "
    r"connection failed \(Connection refused\)$",
    r"ovs-vswitchd\.log: .*\|rconn\|WARN\|br\d<->unix:\S+/pairkeyd\.sock: "
    r"connection dropped \((Broken pipe|Connection reset by peer)\)$",
)
# pairkeyd refuses a switch whose certificate it cannot verify (and each
# side then reports the broken connection).
SSL_REFUSED = (
    r"pairkeyd\.log: .*\|stream_ssl\|WARN\|SSL_accept: .*certificate "
    r"verify failed$",
    r"pairkeyd\.log: .*\|vconn_stream\|ERR\|send: Protocol error$",
    r"pairkeyd\.log: .*\|rconn\|WARN\|ssl:127\.0\.0\.1:\d+: connection "
    r"dropped \(Protocol error\)$",
    r"ovs-vswitchd\.log: .*\|stream_ssl\|WARN\|SSL_(connect|read): .*tlsv1 "
    r"alert unknown ca$",
    r"ovs-vswitchd\.log: .*\|stream_ssl\|WARN\|SSL_write: system error "
    r"\((Broken pipe|Connection reset by peer)\)$",
    r"ovs-vswitchd\.log: .*\|rconn\|WARN\|br\d<->ssl:127\.0\.0\.1:\d+: "
    r"connection (dropped|failed) \(.*\)$",
)


def marker():
    """A unique plaintext that must never be seen on the wire."""
    return MARKER + secrets.token_hex(8).encode()


def bridge_of(net, host):
    return net.topo.host(host).bridge


def remote(net, a, b):
    return bridge_of(net, a) != bridge_of(net, b)


def versions(frames):
    """{(source MAC, destination MAC): set of key versions} of the
    encrypted frames."""
    out = {}
    for f in frames:
        s = parse_frame(f)
        out.setdefault((s.src, s.dst), set()).add(s.version)
    return out


def expected_sas(net, dump):
    """{bridge: SA ids it should hold}: the group key, and the key of each
    pair with a client on it (and only those)."""
    sas = {b.name: {0} for b in net.topo.bridges}
    for pair, (pair_id, _) in dump["pairs"].items():
        for host in pair:
            sas[bridge_of(net, host)].add(pair_id)
    return sas


def key_requests(pk):
    """(key requests, refused) from 'pairkeyctl show'."""
    m = re.search(r"^key requests: (\d+) \((\d+) refused\)$",
                  pk.ctl("show").stdout, re.M)
    return int(m.group(1)), int(m.group(2))


def repeated_requests(pk):
    """Requests answered from memory, from 'pairkeyctl show'."""
    m = re.search(r"^repeated requests answered from memory: (\d+)$",
                  pk.ctl("show").stdout, re.M)
    return int(m.group(1))


def flow_packets(net, bridge, table, match):
    """n_packets of the flow in 'table' of 'bridge' whose match is exactly
    'match' (as dump-flows prints it, e.g. 'priority=90,in_port=1')."""
    out = net.ofctl("dump-flows", bridge, "table=%d" % table).stdout
    for line in out.splitlines():
        fields = line.strip().split(" actions=")[0].split(", ")
        if fields[-1] == match:
            return int(re.search(r"n_packets=(\d+)", line).group(1))
    raise AssertionError("no flow '%s' in table %d of %s:\n%s"
                         % (match, table, bridge, out))


def settle_tcp(net):
    wait_until(lambda: all(net.tcp_idle(h.name) for h in net.topo.hosts),
               10, "TCP connections to finish")


@pytest.fixture
def ks(needs_pairkeyd, make_net):
    """KEYSERVER with pairkeyd (miss policy hold) controlling every bridge,
    ports marked, all five clients enrolled, every bridge holding the group
    key.  Returns (net, Pairkeyd)."""
    net = make_net(KEYSERVER)
    return net, net.start_keyserver()


# ---------------------------------------------------------------- traffic

def test_every_pair_talks_sealed(ks):
    """1. Every pair pings and runs a short TCP transfer carrying a marker.
    The wire holds only 0x88b5 frames of clients and never the marker;
    each remote pair is on the wire in both directions, h4 and h5 never
    are; each remote pair got one key, the local pair none; each bridge
    holds exactly the group key and the keys of its own clients' pairs."""
    net, pk = ks
    m = marker()
    with net.capture() as cap:
        for a, b in PAIRS:
            net.wait_ping(a, b)                  # ARP, then the pair key
            assert net.ping(b, a, count=2)
            data = m + (b" %s>%s " % (b.encode(), a.encode())) * 300
            assert net.tcp_transfer(b, a, data) == data, (b, a)
        settle_tcp(net)
    assert_wire_sealed(net, cap.frames, (MARKER, m))
    for a, b in PAIRS:
        if remote(net, a, b):
            assert between(cap.frames, mac(net, a), mac(net, b)), (a, b)
            assert between(cap.frames, mac(net, b), mac(net, a)), (b, a)
        else:
            assert not between(cap.frames, mac(net, a), mac(net, b))
            assert not between(cap.frames, mac(net, b), mac(net, a))

    dump = pk.dump()
    assert dump["group"] == 1, "the group key of a new store is version 1"
    assert set(dump["pairs"]) == {frozenset(p) for p in PAIRS
                                  if remote(net, *p)}
    assert len({pid for pid, _ in dump["pairs"].values()}) == 9
    assert net.sa_ids() == expected_sas(net, dump)

    # The two bridges of each pair hold the key server's key bytes (the
    # same key check value), and no other bridge holds them.
    kcvs = pk.key_kcvs()
    for pair, (pair_id, _) in dump["pairs"].items():
        assert net.kcv_holders(kcvs[pair_id]) == {
            bridge_of(net, h) for h in pair}, pair
    assert len(set(kcvs.values())) == len(kcvs)

    # Between h4 and h5 (neighbours known by now) br4 sends nothing at all
    # to the wire, yet the data arrives.
    before = net.wire_rx_from("br4")
    data = m * 500
    assert net.ping("h4", "h5", count=3)
    assert net.tcp_transfer("h5", "h4", data) == data
    settle_tcp(net)
    assert net.wire_rx_from("br4") == before


def test_silent_client_holds_only_group_key(ks):
    """2. h3 talks to nobody while every other pair does: br3 holds the
    group key alone (with which it did decrypt the others' ARP
    broadcasts), no key of any pair."""
    net, pk = ks
    talkers = [p for p in PAIRS if "h3" not in p]
    for a, b in talkers:
        net.wait_ping(a, b)
    sas = net.sa_ids()
    assert sas["br3"] == {0}
    st = pairkey.show(net)
    assert pairkey.counter(st, "br3", 0, "decrypted", "packets") > 0
    dump = pk.dump()
    assert set(dump["pairs"]) == {frozenset(p) for p in talkers
                                  if remote(net, *p)}
    assert sas == expected_sas(net, dump)


def test_spoofed_mac_gets_nothing_through(ks):
    """3. h3 takes h1's MAC: its frames die in br3's table 0 (no key
    request, nothing from br3 on the wire, nothing delivered), it receives
    nothing of h1's, and h1's own traffic with h2 goes on undisturbed."""
    net, pk = ks
    net.static_arp()
    net.wait_ping("h1", "h2")
    victim = net.topo.host("h1")
    net.host_run("h3", "ip", "link", "set", "eth0", "address", victim.mac,
                 check=True)
    net.static_arp()                    # a new MAC flushes the neighbours
    h3_port = net.topo.host_ofport("h3")
    port_drop = "priority=90,in_port=%d" % h3_port
    drops = flow_packets(net, "br3", 0, port_drop)
    passed = flow_packets(net, "br3", 0, "priority=100,in_port=%d,"
                          "dl_src=%s" % (h3_port, net.topo.host("h3").mac))
    requests = key_requests(pk)
    from_br3 = net.wire_rx_from("br3")
    rx = net.udp_socket("h2", PORT)
    spy = net.sniffer("h3")
    m = marker()
    with net.capture() as cap, net.pinger("h1", "h2") as victim_ping:
        for _ in range(5):
            net.udp_send("h3", "h2", PORT, m)
        assert not net.ping("h3", "h2")
        assert not net.ping("h3", "h1")
        wait_until(lambda: flow_packets(net, "br3", 0, port_drop)
                   >= drops + 7, 10, "br3 table 0 to drop h3's 7 frames")
        wait_until(lambda: len(victim_ping.replies) >= 10, 10,
                   "h1's pings to h2")
    assert victim_ping.sent and not victim_ping.lost()
    assert net.udp_recv(rx) is None
    assert net.wire_rx_from("br3") == from_br3
    assert key_requests(pk) == requests
    assert flow_packets(net, "br3", 0, "priority=100,in_port=%d,dl_src=%s"
                        % (h3_port, net.topo.host("h3").mac)) == passed
    assert_wire_sealed(net, cap.frames, (MARKER, m))
    assert not [f for f in spy.received() if f[0:6] == mac(net, "h1")], \
        "h3 got frames meant for h1"


# A second port claims h4's id: refused (and, after the takeover and a
# restart, the other way round), one ERR line each time.
DUPLICATE_ID = (
    r"pairkeyd\.log: .*\|marks\|ERR\|interface (h5|h4) on bridge br4 "
    r"\(port [12]\): pairkey-id 'h4' is already taken by interface (h4|h5) "
    r"on bridge br4 \(port [12]\); mark refused$")


def refused_marks(pk):
    """The lines of the 'refused marks' section of 'pairkeyctl show'."""
    out = pk.ctl("show").stdout
    m = re.search(r"^refused marks: (\d+)\n((?:  .*\n)*)", out, re.M)
    lines = m.group(2).splitlines()
    assert int(m.group(1)) == len(lines), out
    return [ln.strip() for ln in lines]


def port_flows(net, bridge, port):
    """The flows of 'bridge' that match on or output to OpenFlow 'port'."""
    return [ln for ln in net.ofctl("dump-flows", bridge).stdout.splitlines()
            if re.search(r"(in_port=|output:)%d(\D|$)" % port, ln)]


@pytest.mark.allow_log(DUPLICATE_ID)
def test_second_port_with_an_id_is_refused(ks):
    """3b. h5 turns impostor: it takes h4's MAC and address and its port
    is marked with h4's id too.  The later mark is refused: one ERR line
    naming both ports, listed under 'refused marks' in 'pairkeyctl show',
    no flow for h5's port.  h4 keeps talking to h1 (50 ms pings, none
    lost), h5 receives nothing at all, its datagrams as h4 reach no one,
    and the wire carries only ciphertext.  Once h4's mark goes, h5's port
    takes the id over (and h1 reaches it), and keeps it when h4's mark
    comes back, which is refused in turn; after a restart of pairkeyd with
    both marks present, the lower port (h4's, 1) holds the id again."""
    net, pk = ks
    h4 = net.topo.host("h4")
    p4, p5 = net.topo.host_ofport("h4"), net.topo.host_ofport("h5")
    net.wait_ping("h1", "h4")
    net.host_run("h5", "ip", "link", "set", "eth0", "address", h4.mac,
                 check=True)
    net.host_run("h5", "ip", "addr", "flush", "dev", "eth0", check=True)
    net.host_run("h5", "ip", "addr", "add", h4.ip, "dev", "eth0",
                 check=True)
    net.static_arp()                    # a new MAC flushes the neighbours
    refusal = ("h5 (bridge br4, port %d): pairkey-id 'h4' is already taken "
               "by interface h4 on bridge br4 (port %d)" % (p5, p4))

    def errors():
        return [ln for ln in pk.log_lines(("ERR",)) if "|marks|" in ln]
    spy = net.sniffer("h5")
    net.vsctl("set", "Interface", "h5", "external_ids:pairkey-id=h4")
    wait_until(lambda: refused_marks(pk) == [refusal], 5,
               "h5's mark to be refused")
    wait_until(lambda: not port_flows(net, "br4", p5), 5,
               "h5's flows to go: %s" % port_flows(net, "br4", p5))
    assert len(errors()) == 1 and errors()[0].endswith(
        "|marks|ERR|interface h5 on bridge br4 (port %d): pairkey-id 'h4' "
        "is already taken by interface h4 on bridge br4 (port %d); mark "
        "refused" % (p5, p4)), errors()

    rx = net.udp_socket("h1", PORT)
    m = marker()
    with net.capture() as cap, net.pinger("h1", "h4") as victim:
        for _ in range(5):
            net.udp_send("h5", "h1", PORT, m)
        wait_until(lambda: len(victim.replies) >= 20, 10, "h1's pings")
    assert victim.sent and not victim.lost()
    assert net.udp_recv(rx) is None, "h5's datagram as h4 reached h1"
    assert_wire_sealed(net, cap.frames, (MARKER, m))
    assert not spy.received(), "h5 received %d frames" % len(spy.received())
    assert not port_flows(net, "br4", p5)
    assert len(errors()) == 1

    # h4's mark goes: h5's port takes the id over.
    net.vsctl("remove", "Interface", "h4", "external_ids", "pairkey-role",
              "pairkey-id")
    wait_until(lambda: refused_marks(pk) == [], 5, "h5 to take over")
    net.wait_ping("h1", "h4")           # answered by h5 now
    assert [f for f in spy.received() if f[0:6] == mac(net, "h4")]

    # ...and keeps it when h4's mark is back.
    net.vsctl("set", "Interface", "h4", "external_ids:pairkey-role=client",
              "external_ids:pairkey-id=h4")
    wait_until(lambda: refused_marks(pk) == [
        "h4 (bridge br4, port %d): pairkey-id 'h4' is already taken by "
        "interface h5 on bridge br4 (port %d)" % (p4, p5)], 5,
        "h4's mark to be refused")
    wait_until(lambda: not port_flows(net, "br4", p4), 5, "h4's flows to go")
    assert len(errors()) == 2

    # A new pairkeyd sees both at once: the lower port holds the id.
    pk.stop()
    pk.start()
    net.wait_keyserver()
    wait_until(lambda: refused_marks(pk) == [refusal], 5,
               "h5's mark to be refused after the restart")
    wait_until(lambda: not port_flows(net, "br4", p5), 5,
               "h5's flows to go after the restart")
    spy = net.sniffer("h5")
    net.wait_ping("h1", "h4")
    assert net.ping("h1", "h4", count=5)
    assert not spy.received()
    assert len(errors()) == 3


# ------------------------------------------------------- first packet

def udp_drain(net, sock):
    """Every datagram waiting on a non-blocking socket."""
    out = []
    while (data := net.udp_recv(sock)) is not None:
        out.append(data)
    return out


def arrives_soon(predicate, timeout=0.3):
    """True if predicate() becomes true within 'timeout' seconds."""
    try:
        return wait_until(predicate, timeout)
    except TimeoutError:
        return False


@pytest.mark.parametrize("policy", ["hold", "drop"])
def test_first_packet_of_a_new_pair(needs_pairkeyd, make_net, policy):
    """4. With --miss-policy=hold, the packet that caused a key request is
    delivered once the key is installed: the very first UDP datagram of
    new pairs (h1 to h2 across the wire, h4 to h5 on br4) and the very
    first echo request (h3 to h1) arrive.  With --miss-policy=drop (the
    patent's behaviour) each is lost, and the following ones pass."""
    net = make_net(KEYSERVER)
    pk = net.start_keyserver(miss_policy=policy)
    assert "miss policy: %s" % policy in pk.ctl("show").stdout
    net.static_arp()                      # the first packet is the datagram
    assert not pk.dump()["pairs"]
    m = marker()
    socks = {h: net.udp_socket(h, PORT) for h in ("h2", "h5")}
    got = {h: [] for h in socks}

    def arrived(dst, payload):
        got[dst] += udp_drain(net, socks[dst])
        return payload in got[dst]

    for src, dst in (("h1", "h2"), ("h4", "h5")):
        first = m + b" first %s>%s" % (src.encode(), dst.encode())
        net.udp_send(src, dst, PORT, first)
        if policy == "hold":
            wait_until(lambda: arrived(dst, first), 10,
                       "first datagram %s -> %s" % (src, dst))
            continue
        later = itertools.count(1)

        def next_passes():
            payload = m + b" later %d" % next(later)
            net.udp_send(src, dst, PORT, payload)
            return arrives_soon(lambda: arrived(dst, payload))
        wait_until(next_passes, 10, "later datagrams %s -> %s" % (src, dst))
        assert net.ping(src, dst)         # a round trip after the first
        assert not arrived(dst, first), \
            "drop: the first datagram %s -> %s was delivered" % (src, dst)
    first_echo = net.ping("h3", "h1")
    if policy == "hold":
        assert first_echo, "hold: the first echo request h3 -> h1 was lost"
    else:
        assert not first_echo, "drop: the first echo request was answered"
        net.wait_ping("h3", "h1")
    assert net.ping("h3", "h1", count=3)
    assert set(pk.dump()["pairs"]) == {frozenset(("h1", "h2")),
                                       frozenset(("h1", "h3"))}


@pytest.mark.allow_log(REFUSED_REVOKED)
def test_repeated_request_answered_from_memory(ks):
    """4b. br1 loses its h1 -> h2 flow behind pairkeyd's back: h1's next
    frame is a repeated request, answered from memory: the same flow comes
    back, the held echo request is delivered, and no key is created or
    rotated.  Once h2 is revoked, h1's frames to h2 get no flow back, only
    the refusal."""
    net, pk = ks
    net.static_arp()
    net.wait_ping("h1", "h2")
    dump = pk.dump()
    h1, h2 = net.topo.host("h1").mac, net.topo.host("h2").mac
    match = "table=1,dl_src=%s,dl_dst=%s" % (h1, h2)

    def pair_flow_actions():
        out = net.ofctl("dump-flows", "br1", match).stdout
        return [line.split(" actions=")[1] for line in out.splitlines()
                if "priority=100," in line]

    actions = pair_flow_actions()
    assert len(actions) == 1 and actions[0].startswith("encrypt:"), actions
    shown = repeated_requests(pk)
    net.ofctl("del-flows", "br1", match)
    assert not pair_flow_actions()
    assert net.ping("h1", "h2"), "the held echo request was lost"
    assert pair_flow_actions() == actions
    assert repeated_requests(pk) > shown
    assert pk.dump() == dump, "a repeated request changed the store"

    pk.ctl("del-client", "h2")
    wait_until(lambda: not pair_flow_actions(), 1, "h1 -> h2 flow to go")
    assert not net.ping("h1", "h2")
    flows = net.ofctl("dump-flows", "br1", "table=1,dl_dst=%s" % h2).stdout
    assert "encrypt" not in flows, flows
    assert "priority=50,dl_src=%s,dl_dst=%s actions=drop" % (h1, h2) \
        in flows, flows


# ------------------------------------------------------------ restarts

@pytest.mark.allow_log(*CONTROLLER_DOWN)
def test_keyserver_kill9(ks):
    """5. kill -9 pairkeyd while h1 pings h2 every 50 ms: no echo is lost;
    a new pair (h1, h3) gets nothing through while it is down, not even in
    the clear.  Restarted on the same store, pairkeyd lists every client,
    old pairs keep their pair ids, and the new pair works."""
    net, pk = ks
    net.static_arp()
    net.wait_ping("h1", "h2")
    net.wait_ping("h4", "h1")
    before = pk.dump()
    assert set(before["pairs"]) == {frozenset(("h1", "h2")),
                                    frozenset(("h1", "h4"))}
    m = marker()
    rx = net.udp_socket("h3", PORT)
    with net.capture() as cap, net.pinger("h1", "h2") as old_pair:
        wait_until(lambda: len(old_pair.replies) >= 5, 10, "pings h1 -> h2")
        pk.kill()
        assert not pk.alive()
        down = len(old_pair.sent)
        assert not net.ping("h1", "h3")
        net.udp_send("h1", "h3", PORT, m)
        assert not net.ping("h3", "h1")
        assert net.ping("h4", "h1"), "an old pair stopped while pairkeyd " \
            "is down"
        assert net.udp_recv(rx) is None
        wait_until(lambda: len(old_pair.replies) >= down + 10, 10,
                   "pings h1 -> h2 while pairkeyd is down")
        pk.start()
        net.wait_keyserver()
        net.wait_ping("h1", "h3")
    assert old_pair.sent and not old_pair.lost(), \
        "lost echo requests: %s" % old_pair.lost()
    assert_wire_sealed(net, cap.frames, (MARKER, m))

    after = pk.dump()
    assert after["clients"] == before["clients"]
    assert after["group"] == before["group"] + 1, \
        "the group key is rotated once per start of pairkeyd"
    listed = pk.ctl("list-clients").stdout
    for h in net.topo.hosts:
        assert re.search(r"^%s +%s " % (h.name, h.mac), listed, re.M), \
            "%s missing from list-clients:\n%s" % (h.name, listed)
    for pair, (pair_id, _) in before["pairs"].items():
        assert pair in after["pairs"], "pair %s lost" % sorted(pair)
        assert after["pairs"][pair][0] == pair_id, sorted(pair)
    new_id = after["pairs"][frozenset(("h1", "h3"))][0]
    assert new_id not in {pid for pid, _ in before["pairs"].values()}
    assert net.ping("h1", "h2", count=2) and net.ping("h4", "h1")


@pytest.mark.allow_log(*CONTROLLER_DOWN)
def test_mark_removed_while_keyserver_down(ks):
    """5b. h3 talks to h1; pairkeyd is killed; h3's port loses its client
    mark; pairkeyd starts again.  It finds the flows the previous process
    left that no longer fit the marks (h3's pass flow, the pair flows that
    output to h3's port) and deletes them: h3 gets nothing through, while
    h1 and h2 go on talking."""
    net, pk = ks
    net.static_arp()
    net.wait_ping("h3", "h1")
    net.wait_ping("h1", "h2")
    port = net.topo.host_ofport("h3")
    pk.kill()
    net.vsctl("remove", "Interface", "h3", "external_ids", "pairkey-role",
              "pairkey-id")
    pk.start()
    net.wait_keyserver()

    def h3_flows():
        flows = net.ofctl("dump-flows", "br3").stdout
        return [ln for ln in flows.splitlines()
                if re.search(r"(in_port=|output:)%d(\D|$)" % port, ln)]
    wait_until(lambda: not h3_flows(), 5, "h3's flows to go: %s"
               % h3_flows())
    assert not net.ping("h3", "h1", count=2)
    assert net.ping("h1", "h2", count=2)


def test_vswitchd_restart_rolls_keys_forward(ks):
    """6. ovs-vswitchd exits (--cleanup) and starts again on the same
    OVSDB: every SA is gone, pairkeyd reprograms the bridges, traffic
    resumes, and every key version on the wire, pair keys and group key
    alike, is above every version used before the restart."""
    net, pk = ks
    talk = (("h1", "h2"), ("h1", "h4"), ("h3", "h5"))
    with net.capture() as old:
        for a, b in talk:
            net.wait_ping(a, b)
    dump = pk.dump()
    net.restart_vswitchd()
    net.wait_keyserver()
    for h in net.topo.hosts:                  # ARP again, under SA 0
        net.host_run(h.name, "ip", "neigh", "flush", "dev", "eth0",
                     check=True)
    m = marker()
    with net.capture() as new:
        for a, b in talk:
            net.wait_ping(a, b)
            data = m * 300
            assert net.tcp_transfer(b, a, data) == data
        settle_tcp(net)
    assert_wire_sealed(net, old.frames, (MARKER,))
    assert_wire_sealed(net, new.frames, (MARKER, m))
    before, after = versions(old.frames), versions(new.frames)
    assert set(before) <= set(after)
    for (src, dst), used in before.items():
        assert min(after[(src, dst)]) > max(used), \
            "%s > %s: versions %s before, %s after the restart" % (
                src.hex(":"), dst.hex(":"), sorted(used),
                sorted(after[(src, dst)]))
    assert any(dst == BROADCAST for _, dst in before)
    rolled = pk.dump()
    assert rolled["group"] > dump["group"]
    for pair, (pair_id, version) in dump["pairs"].items():
        assert rolled["pairs"][pair][0] == pair_id
        assert rolled["pairs"][pair][1] > version


# ---------------------------------------------------------- revocation

def wait_pings_after(cut, start, command):
    """Waits until Pinger 'cut' sent 10 pings a second after 'command' ran
    at 'start'."""
    wait_until(lambda: sum(1 for t in cut.sent.values()
                           if t > start + 1) >= 10, 10,
               "10 pings a second after %s" % command)


def assert_cut_off(cut, other, start, command):
    """Checks (once the pingers stopped) that the last reply of Pinger 'cut'
    came within a second of 'command' run at 'start' and that none came
    after, and that Pinger 'other' lost nothing.  Returns the time of the
    last reply after 'start'."""
    last = cut.last_reply() - start
    assert last < 1.0, "still answered %.3f s after %s" % (last, command)
    assert cut.lost(since=start + 1.0) == sorted(
        s for s, t in cut.sent.items() if t >= start + 1.0)
    assert not other.lost(), "the other pair lost %s" % other.lost()
    return last


@pytest.mark.allow_log(REFUSED_REVOKED)
def test_del_client_cuts_off_within_a_second(ks):
    """7. While h1 pings h2 and h3 every 50 ms, 'pairkeyctl del-client
    h2': h2's last reply comes less than a second after the command, the
    SAs of h2's pairs leave every bridge within that second, h1 and h3 go
    on without a loss, and a new pair still gets its key."""
    net, pk = ks
    for a, b in (("h1", "h2"), ("h1", "h3"), ("h2", "h4"), ("h2", "h3")):
        net.wait_ping(a, b)
    dump = pk.dump()
    revoked = {pid for pair, (pid, _) in dump["pairs"].items()
               if "h2" in pair}
    kept = {pid for pair, (pid, _) in dump["pairs"].items()
            if "h2" not in pair}
    assert len(revoked) == 3 and len(kept) == 1
    with net.pinger("h1", "h2") as cut, net.pinger("h1", "h3") as other:
        wait_until(lambda: len(cut.replies) >= 5, 10, "pings h1 -> h2")
        start = time.monotonic()
        pk.ctl("del-client", "h2")
        wait_until(lambda: not any(revoked & sas
                                   for sas in net.sa_ids().values()),
                   1, "the SAs of h2's pairs to leave every bridge")
        gone = time.monotonic() - start
        wait_pings_after(cut, start, "del-client")
    last = assert_cut_off(cut, other, start, "del-client")
    print("h2's last reply %.3f s, its SAs gone %.3f s after del-client"
          % (last, gone))

    sas = net.sa_ids()
    for br, ids in sas.items():
        assert not revoked & ids, br
    assert kept <= sas["br1"] and kept <= sas["br3"]
    assert "h2" not in pk.dump()["clients"]
    assert not re.search(r"^h2 ", pk.ctl("list-clients").stdout, re.M)
    assert not net.ping("h2", "h4")
    net.wait_ping("h3", "h4")               # a new pair after the revocation


def test_enroll_while_connected(needs_pairkeyd, make_net):
    """12b. Clients enrolled after their bridges connected (the usual order
    on a running network) get their whole pipeline: ARP broadcasts and key
    requests work at once, without any other event reprogramming the
    bridges."""
    net = make_net(KEYSERVER)
    net.start_keyserver(enroll=False)
    net.enroll("h1", "h2")
    wait_until(lambda: all(0 in net.sa_ids()[b] for b in ("br1", "br2")),
               10, "br1 and br2 to hold the group key")
    net.wait_ping("h2", "h1")
    assert net.ping("h1", "h2", count=2)


def test_no_core_dumps(ks):
    """13. pairkeyd holds every key: it runs with core dumps disabled
    (RLIMIT_CORE 0, soft and hard, so it cannot raise it again)."""
    net, pk = ks
    limits = harness.run(["prlimit", "--pid", str(pk.daemon.pid), "--core",
                          "--output", "SOFT,HARD", "--noheadings", "--raw"],
                         check=True).stdout.split()
    assert limits == ["0", "0"], limits


# --------------------------------------------------------------- audit

def test_audit(ks):
    """12. 'pairkeyctl audit' lists, oldest first, the enrollment of each
    client and the key issued for a new pair (ids, version 1, the switch
    that asked, the reason), as tab-separated lines with '-' for empty
    fields; '--since' (milliseconds or UTC time) keeps only what came at
    or after it; a revocation is listed; no line holds key bytes."""
    net, pk = ks
    lines = [ln.split("\t") for ln in pk.ctl("audit").stdout.splitlines()]
    assert all(len(f) == 8 for f in lines), lines
    enrolled = {f[2] for f in lines if f[1] == "enroll"}
    assert enrolled == {h.name for h in net.topo.hosts}
    assert [f for f in lines if f[1] == "issue" and f[2] == "-"
            and f[6] == "group key"]

    cut = lines[-1][0]                  # time of the last entry so far
    time.sleep(0.01)
    mark = int(time.time() * 1000)
    net.wait_ping("h1", "h2")
    pk.ctl("del-client", "h2")
    new = [ln.split("\t") for ln in
           pk.ctl("audit", "--since", str(mark)).stdout.splitlines()]
    events = [(f[1], f[2], f[3]) for f in new]
    assert ("issue", "h1", "h2") in events, new
    issue = next(f for f in new if f[1] == "issue")
    assert issue[4] == "1" and issue[5] in ("br1", "br2") and \
        issue[6] == "send request", issue
    assert ("unenroll", "h2", "-") in events
    assert ("revoke", "h1", "h2") in events
    assert all(f[0] >= cut for f in new)
    iso = pk.ctl("audit", "--since", new[0][0][:19] + "Z").stdout
    assert iso.splitlines()[-1].split("\t") == new[-1]
    assert not re.search(r"[0-9a-fA-F]{32}", pk.ctl("audit").stdout), \
        "something like key bytes in the audit log"


# A request for a pair revoked with revoke-key, refused.
REFUSED_REVOKED_PAIR = (r"pairkeyd\.log: .*\|keyserver\|WARN\|br[12]: the "
                        r"pair of 'h1' and 'h2' was revoked: enroll both "
                        r"again first$")


@pytest.mark.allow_log(REFUSED_REVOKED_PAIR, REFUSED_REVOKED)
def test_revoke_key_cuts_one_pair(ks):
    """7c. While h1 pings h2 and h3 every 50 ms, 'pairkeyctl revoke-key h1
    h2': the pair's SA leaves br1 and br2 within a second, h2's last reply
    comes less than a second after the command and no later request gets
    a key (refused), while h1 -> h3 loses nothing.  Once both clients are
    enrolled again, the pair gets a new key."""
    net, pk = ks
    net.wait_ping("h1", "h2")
    net.wait_ping("h1", "h3")
    revoked = pk.pair_id("h1", "h2")
    with net.pinger("h1", "h2") as cut, net.pinger("h1", "h3") as other:
        wait_until(lambda: len(cut.replies) >= 5, 10, "pings h1 -> h2")
        start = time.monotonic()
        pk.ctl("revoke-key", "h1", "h2")
        wait_until(lambda: not any(revoked in ids
                                   for ids in net.sa_ids().values()),
                   1, "the pair's SA to leave every bridge")
        wait_pings_after(cut, start, "revoke-key")
    assert_cut_off(cut, other, start, "revoke-key")
    assert frozenset(("h1", "h2")) not in pk.dump()["pairs"]
    assert re.search(r"\trevoke\th1\th2\t\d+\t-\trevoke-key\t[0-9a-f]{8}$",
                     pk.ctl("audit").stdout, re.M)

    for h in ("h1", "h2"):
        pk.ctl("del-client", h)
        pk.ctl("add-client", h, net.topo.host(h).mac)
    net.wait_ping("h1", "h2")
    assert pk.pair_id("h1", "h2") != revoked


# ---------------------------------------------------------- bad input

def _bad_input_cases(net):
    """(what, pairkeyctl arguments, text the error must name)."""
    h1 = net.topo.host("h1")
    return [
        ("malformed MAC: five octets",
         ["add-client", "newbie", "02:00:00:00:00"], "02:00:00:00:00"),
        ("malformed MAC: not hex", ["add-client", "newbie",
                                    "02:00:00:00:00:0g"], "02:00:00:00:00:0g"),
        ("malformed MAC: seven octets", ["add-client", "newbie",
                                         "02:00:00:00:00:01:02"],
         "02:00:00:00:00:01:02"),
        ("malformed MAC: dashes", ["add-client", "newbie",
                                   "02-00-00-00-00-01"], "02-00-00-00-00-01"),
        ("malformed MAC: trailing junk", ["add-client", "newbie",
                                          "02:00:00:00:00:01x"],
         "02:00:00:00:00:01x"),
        ("malformed MAC: empty", ["add-client", "newbie", ""], "newbie"),
        ("multicast MAC", ["add-client", "newbie", "01:00:5e:00:00:01"],
         "01:00:5e:00:00:01"),
        ("broadcast MAC", ["add-client", "newbie", "ff:ff:ff:ff:ff:ff"],
         "ff:ff:ff:ff:ff:ff"),
        ("zero MAC", ["add-client", "newbie", "00:00:00:00:00:00"],
         "00:00:00:00:00:00"),
        ("invalid id: space", ["add-client", "bad id", "02:00:00:00:00:99"],
         "bad id"),
        ("invalid id: slash", ["add-client", "a/b", "02:00:00:00:00:99"],
         "a/b"),
        ("invalid id: empty", ["add-client", "", "02:00:00:00:00:99"],
         "''"),
        ("invalid id: 65 characters", ["add-client", "a" * 65,
                                       "02:00:00:00:00:99"], "a" * 65),
        ("duplicate id", ["add-client", "h1", "02:00:00:00:00:99"], "h1"),
        ("MAC enrolled to another id", ["add-client", "newbie", h1.mac],
         h1.mac),
        ("MAC enrolled to another id, upper case",
         ["add-client", "newbie", h1.mac.upper()], "newbie"),
        ("del-client: unknown id", ["del-client", "nosuch"], "nosuch"),
        ("revoke-key: no key", ["revoke-key", "h1", "nosuch"], "nosuch"),
        ("revoke-key: same id twice", ["revoke-key", "h1", "h1"], "h1"),
        ("revoke-key: invalid id", ["revoke-key", "bad id", "h1"], "bad id"),
        ("revoke-key: one argument", ["revoke-key", "h1"], "revoke-key"),
        ("del-client: invalid id", ["del-client", "bad id"], "bad id"),
        ("add-client: one argument", ["add-client", "newbie"], "add-client"),
        ("add-client: three arguments", ["add-client", "newbie",
                                         "02:00:00:00:00:99", "x"],
         "add-client"),
        ("del-client: no argument", ["del-client"], "del-client"),
        ("del-client: two arguments", ["del-client", "h1", "h2"],
         "del-client"),
        ("list-clients: an argument", ["list-clients", "h1"], "list-clients"),
        ("audit: --since without a time", ["audit", "--since"], "--since"),
        ("audit: unknown option", ["audit", "--after", "0"], "--after"),
        ("audit: a lone argument", ["audit", "0"], "'0'"),
        ("audit: malformed time", ["audit", "--since", "yesterday"],
         "yesterday"),
        ("audit: time without Z", ["audit", "--since",
                                   "2026-11-25T10:00:00"],
         "2026-11-25T10:00:00"),
        ("audit: month 13", ["audit", "--since", "2026-13-01T00:00:00Z"],
         "2026-13-01T00:00:00Z"),
        ("audit: February 30", ["audit", "--since", "2026-02-30T00:00:00Z"],
         "2026-02-30T00:00:00Z"),
        ("audit: three arguments", ["audit", "--since", "0", "x"], "audit"),
        ("unknown command", ["enroll", "h1"], "enroll"),
        ("no command", [], "command"),
    ]


def refusal_problems(proc, names):
    """What is wrong with how pairkeyctl refused bad input: exit status 0,
    output on stdout, not exactly one line on stderr, the input not
    named."""
    err = proc.stderr
    problems = []
    if proc.returncode == 0:
        problems.append("exit status 0")
    if proc.stdout:
        problems.append("stdout: %r" % proc.stdout[:200])
    if err.count("\n") != 1 or not err.endswith("\n"):
        problems.append("stderr is not one line: %r" % err[:300])
    elif names.lower() not in err.lower():
        problems.append("error does not name %r: %r" % (names, err))
    return problems


def refusals(pk, cases):
    """Runs pairkeyctl with each of 'cases', (what, arguments, text the error
    must name): the problems with how each was refused (see
    refusal_problems()), and whether it changed the store ('pairkeyctl
    dump')."""
    before = pk.ctl("dump").stdout
    problems = []
    for what, argv, names in cases:
        proc = pk.ctl(*argv, check=False)
        problems += ["%s: %s" % (what, p)
                     for p in refusal_problems(proc, names)]
        if pk.ctl("dump").stdout != before:
            problems.append("%s: the store changed" % what)
            before = pk.ctl("dump").stdout
    return problems


def test_pairkeyctl_refuses_bad_input(ks, tmp_path):
    """8. Malformed, multicast or zero MACs, invalid, duplicate or unknown
    ids, a MAC enrolled to another id, wrong argument counts, unknown
    commands, and a pairkeyd that is not running: pairkeyctl exits
    non-zero with one line on stderr naming the input, and the store
    ('pairkeyctl dump') does not change."""
    net, pk = ks
    net.wait_ping("h1", "h2")                # a pair key to keep, too
    before = pk.ctl("dump").stdout
    assert "\npair\t" in before
    problems = refusals(pk, _bad_input_cases(net))

    # The default target is found through the pidfile in OVS_RUNDIR...
    assert pk.ctl("dump", rundir=net.ovs.rundir).stdout == before
    # ...and a run directory without one is refused.
    empty = str(tmp_path)
    proc = pk.ctl("add-client", "newbie", "02:00:00:00:00:99", check=False,
                  rundir=empty)
    problems += ["no pidfile: " + p for p in refusal_problems(
        proc, os.path.join(empty, "pairkeyd.pid"))]

    # pairkeyd not running: refused, and nothing happens once it is back.
    old_target = pk.target
    pk.stop()
    for argv in (["add-client", "newbie", "02:00:00:00:00:99"],
                 ["del-client", "h1"], ["list-clients"]):
        proc = pk.ctl(*argv, check=False, target=old_target)
        problems += ["pairkeyd stopped, %s: %s" % (argv[0], p)
                     for p in refusal_problems(proc, old_target)]
    pk.start()

    def without_group(dump):          # rotated at every start, by design
        return [ln for ln in dump.splitlines() if not ln.startswith("group")]
    if without_group(pk.ctl("dump").stdout) != without_group(before):
        problems.append("pairkeyd stopped: the store changed")
    assert not problems, "\n".join(problems)


def _file_state(path):
    """(mode, owner, sha256) of 'path', or None if it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return stat.S_IMODE(st.st_mode), st.st_uid, digest


def test_store_is_private(needs_pairkeyd, tmp_path):
    """8c. The store holds raw key bytes.  Under umask 022 pairkeyd
    creates it, its -wal and its -shm with mode 0600.  A store that group
    or others may read or write (or whose -wal they may), or that another
    user owns, is refused: exit status 1, one line on stderr naming the
    file and the problem, and nothing changes (the files keep their bytes,
    modes and owners, no -wal or -shm appears).  Put right, it opens with
    what it held."""
    db = str(tmp_path / "pairkey.db")
    ctl = str(tmp_path / "pairkeyd.ctl")
    argv = [os.path.join(BINDIR, "pairkeyd"), "--db=" + db,
            "--unixctl=" + ctl, "--no-chdir", "-vconsole:off",
            "--log-file=" + str(tmp_path / "pairkeyd.log"),
            "punix:" + str(tmp_path / "pairkeyd.sock")]
    pairkeyctl = [os.path.join(BINDIR, "pairkeyctl"), "-t", ctl]
    appctl = [os.path.join(BINDIR, "ovs-appctl"), "-t", ctl]

    def start():
        d = harness.Daemon("pairkeyd", argv, dict(os.environ),
                           str(tmp_path / "pairkeyd.out"))
        try:
            wait_until(lambda: run(pairkeyctl + ["show"],
                                   check=False).returncode == 0, 10,
                       "pairkeyd to answer")
        except BaseException:
            d.stop()
            raise
        return d

    old_umask = os.umask(0o022)
    try:
        d = start()
    finally:
        os.umask(old_umask)
    try:
        run(pairkeyctl + ["add-client", "h1", "02:00:00:00:01:01"])
        modes = {suffix: _file_state(db + suffix)
                 for suffix in ("", "-wal", "-shm")}
        dump = run(pairkeyctl + ["dump"]).stdout
    finally:
        run(appctl + ["exit"], check=False)
        wait_until(lambda: not d.alive(), 10, "pairkeyd to exit")
        d.stop()
    assert {suffix: m and m[0] for suffix, m in modes.items()} == \
        {"": 0o600, "-wal": 0o600, "-shm": 0o600}, modes

    def store_files():
        return {f: _file_state(str(tmp_path / f))
                for f in os.listdir(tmp_path) if f.startswith("pairkey.db")}

    def refused(path, problem):
        before = store_files()
        proc = run(argv, check=False, timeout=10)
        assert proc.returncode == 1, (path, proc)
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert path + ": " + problem in proc.stderr, proc.stderr
        assert store_files() == before

    for mode in (0o644, 0o640, 0o604, 0o660, 0o602):
        os.chmod(db, mode)
        refused(db, "mode %04o lets group or others access the key store; "
                "refusing to open it (chmod 600 it first)" % mode)
    os.chmod(db, 0o600)
    os.chown(db, 65534, 65534)
    refused(db, "owned by uid 65534, not by this process's uid 0; refusing "
            "to open the key store")
    os.chown(db, 0, 0)
    wal = db + "-wal"
    with open(wal, "wb"):
        pass
    os.chmod(wal, 0o644)
    refused(wal, "mode 0644 lets group or others access the key store; "
            "refusing to open it (chmod 600 it first)")
    os.chmod(wal, 0o600)

    d = start()
    try:
        after = run(pairkeyctl + ["dump"]).stdout
    finally:
        run(appctl + ["exit"], check=False)
        wait_until(lambda: not d.alive(), 10, "pairkeyd to exit")
        d.stop()

    def without_group(text):           # rotated at every start, by design
        return [ln for ln in text.splitlines() if not ln.startswith("group")]
    assert without_group(after) == without_group(dump)


# Input that an earlier pairkeyd got wrong: out-of-range MAC octets were
# enrolled as other MACs, and raw input went into multi-line errors.
MORE_BAD_INPUT = [
    pytest.param(["add-client", "newbie", "02:00:00:00:00:100"],
                 "02:00:00:00:00:100", id="mac-octet-overflow"),
    pytest.param(["add-client", "newbie", "02:00:00:00:00:-1"],
                 "02:00:00:00:00:-1", id="mac-negative-octet"),
    pytest.param(["add-client", "a\nb", "02:00:00:00:00:99"], "a",
                 id="newline-in-id"),
    pytest.param(["add-client", "newbie", "02:00:00\n:00:00:99"], "02:00",
                 id="newline-in-mac"),
    pytest.param(["del-client", "a\nb"], "a", id="newline-in-del-client"),
]


@pytest.mark.parametrize("argv,names", MORE_BAD_INPUT)
def test_pairkeyctl_refuses_more_bad_input(ks, argv, names):
    """8b. More bad input: refused by the same rule."""
    net, pk = ks
    before = pk.ctl("dump").stdout
    problems = refusal_problems(pk.ctl(*argv, check=False), names)
    if pk.ctl("dump").stdout != before:
        problems.append("the store changed: %s" % pk.ctl("dump").stdout)
    assert not problems, "\n".join(problems)


@pytest.mark.allow_log(*CONTROLLER_DOWN, REFUSED_REVOKED)
def test_del_client_after_keyserver_restart(ks):
    """7b. Revocation after pairkeyd restarted: the SAs of the revoked
    client's pairs, installed by the previous pairkeyd, leave every
    bridge too."""
    net, pk = ks
    net.wait_ping("h1", "h2")
    revoked = pk.pair_id("h1", "h2")
    assert {b for b, ids in net.sa_ids().items() if revoked in ids} == \
        {"br1", "br2"}
    pk.kill()
    pk.start()
    net.wait_keyserver()
    pk.ctl("del-client", "h2")
    wait_until(lambda: not any(revoked in ids
                               for ids in net.sa_ids().values()), 1,
               "SA %d to leave every bridge" % revoked)
    wait_until(lambda: not net.ping("h1", "h2"), 5, "h2 to be cut off")


# ------------------------------------------------------------------ SSL

@pytest.mark.allow_log(*SSL_REFUSED)
def test_ssl(needs_pairkeyd, make_net):
    """9. pairkeyd listens for SSL only (pssl:, inside the OVS namespace)
    with a controller certificate; the switch first presents a certificate
    of another CA: pairkeyd refuses every bridge (none connected, no flow
    installed, nothing passes).  With a certificate of the right CA every
    bridge connects over SSL and traffic flows, sealed."""
    if not shutil.which("openssl"):
        pytest.skip("'openssl' is not installed (ovs-pki needs it)")
    net = make_net(KEYSERVER)
    if not os.access(os.path.join(net.ovs.bindir, "ovs-pki"), os.X_OK):
        pytest.skip("ovs-pki not found in PAIRKEY_BIN")
    pki = net.make_pki("pki")
    rogue = net.make_pki("pki-rogue")
    ctl_cert = net.make_cert(pki, "pairkeyd", "controller")
    sw_key, sw_cert, sw_cacert = net.make_cert(pki, "switch", "switch")
    bad_key, bad_cert, _ = net.make_cert(rogue, "switch", "switch")
    port = 6653
    pk = net.start_pairkeyd(listen="pssl:%d:127.0.0.1" % port,
                            ns=net.ns("ovs"), ssl=ctl_cert)
    net.mark_ports()
    net.enroll()
    # The switch trusts the right controller CA but has a rogue cert.
    net.vsctl("set-ssl", bad_key, bad_cert, sw_cacert)
    net.set_controller("ssl:127.0.0.1:%d" % port)

    def refusals():
        return sum(1 for line in pk.log_lines()
                   if "certificate verify failed" in line)
    wait_until(lambda: refusals() >= 2 * len(net.topo.bridges), 15,
               "pairkeyd to refuse each bridge twice")
    assert not [status for status in pk.switches().values()
                if status.startswith("connected")], pk.ctl("show").stdout
    for br in net.topo.bridges:
        flows = [line for line in net.dump_flows(br.name).splitlines()
                 if line.startswith(" ")]
        assert not flows, "%s has flows: %s" % (br.name, flows)
        assert net.sa_ids()[br.name] == set()
    assert not net.ping("h1", "h2")

    net.vsctl("set-ssl", sw_key, sw_cert, sw_cacert)
    net.wait_keyserver(timeout=20)
    refused = len(net.log_lines())
    m = marker()
    with net.capture() as cap:
        net.wait_ping("h1", "h2")
        net.wait_ping("h4", "h3")
        data = m * 300
        assert net.tcp_transfer("h2", "h1", data) == data
        settle_tcp(net)
    assert_wire_sealed(net, cap.frames, (MARKER, m))
    with open(pk.log_path) as f:
        connected = re.findall(r"\|keyserver\|INFO\|(\S+): connected",
                               f.read())
    assert len(connected) == len(net.topo.bridges)
    assert all(c.startswith("ssl:127.0.0.1:") for c in connected), connected
    # The refusals are over: nothing is logged once the bridges connect.
    assert net.log_lines()[refused:] == []


# ------------------------------------------------- two ovs-vswitchd

def test_clients_on_two_vswitchds(needs_pairkeyd, make_net):
    """10. h1 and h2 on bridges of two OVS instances (each its own
    namespace, ovsdb-server and ovs-vswitchd), uplinks on one wire; one
    pairkeyd outside the namespaces reads both OVSDBs (two --ovsdb) and
    listens on one unix socket that both bridges use as controller.  The
    pair pings and runs a TCP transfer with a marker; the wire holds only
    0x88b5 frames of h1 and h2, in both directions, never the marker; each
    bridge's own ovs-vswitchd holds the group key and the pair's key;
    'pairkeyctl show' lists both bridges connected."""
    net = make_net(KEYSERVER_TWO_OVS)
    o1, o2 = net.ovs_of("br1"), net.ovs_of("br2")
    assert o1 is not o2 and net.ns(o1.name) != net.ns(o2.name)
    pk = net.start_keyserver()
    assert pk.ns is None and pk.listen.startswith("punix:")
    assert sorted(pk.ovsdbs) == sorted([o1.db, o2.db])
    for o, br in ((o1, "br1"), (o2, "br2")):
        assert net.vsctl("get-controller", br, ovs=o).stdout.strip() == \
            pk.listen[1:]
    m = marker()
    with net.capture() as cap:
        net.wait_ping("h1", "h2")
        assert net.ping("h2", "h1", count=2)
        for a, b in (("h1", "h2"), ("h2", "h1")):
            data = m + (b" %s>%s " % (a.encode(), b.encode())) * 300
            assert net.tcp_transfer(a, b, data) == data, (a, b)
        settle_tcp(net)
    assert_wire_sealed(net, cap.frames, (MARKER, m))
    assert between(cap.frames, mac(net, "h1"), mac(net, "h2"))
    assert between(cap.frames, mac(net, "h2"), mac(net, "h1"))

    dump = pk.dump()
    assert set(dump["clients"]) == {"h1", "h2"}
    assert set(dump["pairs"]) == {frozenset(("h1", "h2"))}
    pair_id = pk.pair_id("h1", "h2")
    assert pair_id != 0
    for o, br, other in ((o1, "br1", "br2"), (o2, "br2", "br1")):
        st = pairkey.parse_show(net.appctl("pairkey/show", ovs=o).stdout)
        assert set(st.get(br, {}).get("sa", {})) == {0, pair_id}, (br, st)
        assert other not in st, "%s's vswitchd shows %s" % (br, other)
    assert net.sa_ids() == {"br1": {0, pair_id}, "br2": {0, pair_id}}
    switches = pk.switches()
    assert {name for name, status in switches.items()
            if status.startswith("connected, dpid")} == {"br1", "br2"}, \
        pk.ctl("show").stdout
