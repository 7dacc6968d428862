"""Gateway scenarios: topo.GATEWAY, where br3's port to the plain host p1
is a fully decrypted port (pairkey-role=clear).  br3 is then the gateway:
a virtual client (id "gw-" + br3's datapath id) that holds one pair key
with each client that talks to hosts behind it.  h3 is a client on the
gateway bridge itself.

    h1 --- [br1] --+
    h2 --- [br2] --+-- wire (tcpdump)      pairkeyd: every bridge
    h3 -+- [br3] --+
    p1 -+ (clear)

A client's frames to p1 cross the wire under the pair key (client,
gateway); br3 decrypts them onto the plain side, and encrypts p1's
frames on the way in.  Broadcasts cross under the group key inside and in
the clear outside.

Every test fails on WARN/ERR lines of ovs-vswitchd or pairkeyd that it does
not expect (conftest.py; allow_log lists the provoked ones).
"""

import re
import secrets

import pytest

import harness
from harness import wait_until
from pairkey import ETH_P_PAIRKEY, ethertype, mac_bytes
from topo import GATEWAY, GATEWAYS

MARKER = b"PAIRKEY-GW-MARKER-"
CLIENTS = ("h1", "h2", "h3")
REMOTE_CLIENTS = ("h1", "h2")           # not on the gateway bridge

# p1 takes h1's MAC and talks to h2: refused at the gateway.
REFUSED_SPOOF = (r"pairkeyd\.log: .*\|keyserver\|WARN\|br3: refused key "
                 r"request from 02:00:00:00:01:01 to "
                 r"(02:00:00:00:02:02|ff:ff:ff:ff:ff:ff) on "
                 r"port 2: source is an enrolled client's MAC$")


def marker():
    """A unique plaintext that must never be seen on the wire."""
    return MARKER + secrets.token_hex(8).encode()


def mac(net, host):
    return mac_bytes(net.topo.host(host).mac)


def settle_tcp(net):
    wait_until(lambda: all(net.tcp_idle(h.name) for h in net.topo.hosts),
               10, "TCP connections to finish")


def assert_wire_sealed(frames, markers):
    for f in frames:
        assert ethertype(f) == ETH_P_PAIRKEY, \
            "clear frame on the wire: %s > %s %04x" % (
                f[6:12].hex(":"), f[0:6].hex(":"), ethertype(f))
        for m in markers:
            assert m not in f, "plaintext marker on the wire"


def between(frames, src, dst):
    return [f for f in frames if f[6:12] == src and f[0:6] == dst]


@pytest.fixture
def gw(needs_pairkeyd, make_net):
    """GATEWAY with pairkeyd controlling every bridge, the clients enrolled
    and p1's port marked clear.  Returns (net, Pairkeyd, gateway id)."""
    net = make_net(GATEWAY)
    pk = net.start_keyserver()
    wait_until(lambda: pk.dump()["gateways"], 10, "br3 to become a gateway")
    gateway, = pk.dump()["gateways"]
    return net, pk, gateway


def test_plain_host_talks_to_every_client(gw):
    """1. p1, a host of the plain network, pings every client and runs TCP
    both ways with each (ARP included: no static entries).  The wire
    carries only 0x88b5 frames and no marker; p1's frames with h1 and h2
    cross it in both directions, those with h3 (on the gateway bridge)
    never.  The store records p1 behind the gateway, one pair key per
    remote client with the gateway, none with p1 itself.  Meanwhile h1
    and h2 talk, and p1 receives nothing of theirs but broadcasts."""
    net, pk, gateway = gw
    m = marker()
    secret = m + b" h1>h2 only "
    spy = net.sniffer("p1")
    with net.capture() as cap:
        for c in CLIENTS:
            net.wait_ping("p1", c)
            assert net.ping(c, "p1", count=2)
            data = m + (b" p1<>%s " % c.encode()) * 200
            assert net.tcp_transfer(c, "p1", data) == data, c
            assert net.tcp_transfer("p1", c, data) == data, c
        net.wait_ping("h1", "h2")
        assert net.tcp_transfer("h1", "h2", secret * 100) == secret * 100
        settle_tcp(net)
    assert_wire_sealed(cap.frames, (MARKER, m))
    p1 = mac(net, "p1")
    for c in REMOTE_CLIENTS:
        assert between(cap.frames, mac(net, c), p1), c
        assert between(cap.frames, p1, mac(net, c)), c
    assert not between(cap.frames, mac(net, "h3"), p1)
    assert not between(cap.frames, p1, mac(net, "h3"))
    # The gateway seals p1's frames under a sender id of its own (format
    # 2), the clients under their MACs (format 1): a plain host's MAC never
    # selects a subkey.
    for c in REMOTE_CLIENTS:
        assert {f[14] for f in between(cap.frames, p1, mac(net, c))} == {2}
        assert {f[14] for f in between(cap.frames, mac(net, c), p1)} == {1}

    seen = spy.received()
    assert seen, "p1's sniffer saw nothing"
    for f in seen:
        assert f[0:6] == p1 or f[0] & 1 or f[6:12] == p1, \
            "p1 received a frame for %s" % f[0:6].hex(":")
        assert secret not in f, "h1's data to h2 reached the plain side"

    dump = pk.dump()
    assert dump["outside"] == {net.topo.host("p1").mac: gateway}
    assert "p1" not in dump["clients"]
    pairs = set(dump["pairs"])
    for c in REMOTE_CLIENTS:
        assert frozenset((c, gateway)) in pairs, c
    assert frozenset(("h3", gateway)) not in pairs
    sas = net.sa_ids()
    for c in REMOTE_CLIENTS:
        pair_id = dump["pairs"][frozenset((c, gateway))][0]
        assert pair_id in sas["br3"] and pair_id in sas[
            net.topo.host(c).bridge], c


@pytest.mark.allow_log(REFUSED_SPOOF)
def test_plain_host_cannot_speak_as_a_client(gw):
    """2. p1 takes h1's MAC and sends to h2: the gateway's key request is
    refused (a plain host may not use an enrolled client's MAC) and br3
    drops every frame from that MAC at p1's port for a while, broadcasts
    included; nothing reaches h2 or the wire, and h1's own traffic with h2
    goes on."""
    net, pk, gateway = gw
    net.static_arp()
    net.wait_ping("h1", "h2")
    net.host_run("p1", "ip", "link", "set", "eth0", "address",
                 net.topo.host("h1").mac, check=True)
    net.static_arp()
    port = 5555
    rx = net.udp_socket("h2", port)
    m = marker()
    with net.capture() as cap, net.pinger("h1", "h2") as victim:
        for _ in range(5):
            net.udp_send("p1", "h2", port, m)
        # Nor do p1's broadcasts under h1's MAC cross (under the group key,
        # which h1's own switch seals with too).
        net.host_run("p1", "ping", "-b", "-c", "2", "-i", "0.2", "-W", "1",
                     "10.0.0.255")
        wait_until(lambda: len(victim.replies) >= 10, 10, "h1's pings")
    assert victim.sent and not victim.lost()
    assert net.udp_recv(rx) is None
    assert_wire_sealed(cap.frames, (MARKER, m))
    h1 = mac(net, "h1")
    assert not [f for f in cap.frames if f[6:12] == h1 and f[0] & 1]
    drop = net.ofctl("dump-flows", "br3", "table=0,in_port=%d,dl_src=%s"
                     % (net.topo.host_ofport("p1"), net.topo.host("h1").mac))
    assert re.search(r"priority=150,.* actions=drop", drop.stdout), \
        drop.stdout
    assert int(re.search(r"n_packets=(\d+)", drop.stdout).group(1)) >= 4
    assert "02:00:00:00:01:01" not in pk.dump()["outside"]


def test_outside_host_enrolls(gw):
    """3. p1, known behind the gateway, becomes a client: its port is
    marked pairkey-role=client and it is enrolled.  It leaves the outside
    table, the flows that led to it through the gateway go, and its
    traffic with h1 now crosses the wire under the pair key (h1, p1); the
    gateway's key with h1 stays for other outside hosts."""
    net, pk, gateway = gw
    net.wait_ping("p1", "h1")
    before = pk.dump()
    assert net.topo.host("p1").mac in before["outside"]
    gw_pair = before["pairs"][frozenset(("h1", gateway))][0]

    net.vsctl("set", "Interface", "p1", "external_ids:pairkey-role=client",
              "external_ids:pairkey-id=p1")
    pk.ctl("add-client", "p1", net.topo.host("p1").mac)
    m = marker()
    with net.capture() as cap:
        net.wait_ping("p1", "h1")
        data = m * 300
        assert net.tcp_transfer("p1", "h1", data) == data
        settle_tcp(net)
    after = pk.dump()
    assert after["outside"] == {}
    assert after["clients"]["p1"] == net.topo.host("p1").mac
    new_pair = after["pairs"][frozenset(("h1", "p1"))][0]
    assert after["pairs"][frozenset(("h1", gateway))][0] == gw_pair
    assert_wire_sealed(cap.frames, (MARKER, m))
    assert between(cap.frames, mac(net, "h1"), mac(net, "p1"))
    assert between(cap.frames, mac(net, "p1"), mac(net, "h1"))
    flows = net.ofctl("dump-flows", "br1", "table=1,dl_dst=%s"
                      % net.topo.host("p1").mac).stdout
    assert "encrypt:%d," % new_pair in flows, flows
    assert "encrypt:%d," % gw_pair not in flows, flows


def test_broadcast_crosses_the_gateway(gw):
    """4. A broadcast from h1 reaches p1 in the clear (the gateway decrypts
    it with the group key); one from p1 reaches h1 and h2 (the gateway
    encrypts it); on the wire both are 0x88b5 under SA 0."""
    net, pk, gateway = gw
    port = 5556
    m = marker()
    bcast = "10.0.0.255"
    got = {}
    spies = {h: net.sniffer(h) for h in ("p1", "h1", "h2")}
    with net.capture() as cap:
        for src in ("h1", "p1"):
            payload = m + b" from " + src.encode()
            net.host_run(src, "/usr/bin/python3", "-c",
                         "import socket; s = socket.socket(socket.AF_INET, "
                         "socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET,"
                         " socket.SO_BROADCAST, 1); s.sendto(%r, (%r, %d))"
                         % (payload, bcast, port), check=True)
            got[src] = payload

        def arrived(host, payload):
            return any(payload in f for f in spies[host].received())
        wait_until(lambda: arrived("p1", got["h1"]), 5, "h1's broadcast at p1")
        wait_until(lambda: arrived("h1", got["p1"])
                   and arrived("h2", got["p1"]), 5,
                   "p1's broadcast at h1 and h2")
    assert_wire_sealed(cap.frames, (MARKER, m))
    from_p1 = [f for f in cap.frames if f[0:6] == b"\xff" * 6
               and f[6:12] == mac(net, "p1")]
    assert from_p1, "p1's broadcast not on the wire"
    # The gateway seals them under its own sender id (format 2): a plain
    # host's MAC never selects a subkey, so one that takes a client's MAC
    # could not reuse the client's nonces under the group key.
    assert {f[14] for f in from_p1} == {2}


# h1 asks for a MAC that no gateway has seen, with two gateways: refused.
# The plain hosts behind different gateways do not reach each other.
REFUSED_UNSEEN = (
    r"pairkeyd\.log: .*\|keyserver\|WARN\|br[123]: refused key request "
    r"from 02:00:00:00:0[1a]:0[12] to 02:00:00:00:0a:(99|01|02) on port 1: "
    r"destination is not enrolled$")


@pytest.mark.allow_log(REFUSED_UNSEEN)
def test_two_gateways_each_serve_their_own_hosts(needs_pairkeyd, make_net):
    """5. Two gateways (topo.GATEWAYS): p1 behind br2, p2 behind br3.  Each
    plain host is learned from its first broadcast (its ARP request) at
    the gateway where it was seen, and h1's traffic with it goes through
    that gateway under the pair key (h1, that gateway), sealed on the
    wire; neither plain host receives the other's traffic with h1.  The
    choice does not change while the hosts stay, nor across a restart of
    pairkeyd.  A MAC that no gateway has seen is refused (with two
    gateways the key server cannot tell which one serves it), and the two
    plain networks do not reach each other through the subnet."""
    net = make_net(GATEWAYS)
    pk = net.start_keyserver()
    wait_until(lambda: len(pk.dump()["gateways"]) == 2, 10,
               "two gateways")
    m = marker()
    spies = {p: net.sniffer(p) for p in ("p1", "p2")}
    with net.capture() as cap:
        for p in ("p1", "p2"):
            net.wait_ping(p, "h1")
            data = m + (b" h1<>%s " % p.encode()) * 200
            assert net.tcp_transfer("h1", p, data) == data, p
            assert net.tcp_transfer(p, "h1", data) == data, p
        settle_tcp(net)
    assert_wire_sealed(cap.frames, (MARKER, m))
    dump = pk.dump()
    gateway = {br: "gw-%016x" % int(net.vsctl(
        "get", "Bridge", br, "datapath_id").stdout.strip().strip('"'), 16)
        for br in ("br2", "br3")}
    assert dump["outside"] == {net.topo.host("p1").mac: gateway["br2"],
                               net.topo.host("p2").mac: gateway["br3"]}
    for br in ("br2", "br3"):
        assert frozenset(("h1", gateway[br])) in dump["pairs"], br
    for p, other in (("p1", "p2"), ("p2", "p1")):
        for f in spies[p].received():
            assert (b" h1<>%s " % other.encode()) not in f, \
                "%s received %s's traffic" % (p, other)

    # Deterministic: the same again, and after a restart of pairkeyd.
    for _ in range(2):
        for p in ("p1", "p2"):
            assert net.ping("h1", p, count=2)
        assert pk.dump()["outside"] == dump["outside"]
        pk.stop()
        pk.start()
        net.wait_keyserver()

    # Unseen MAC: refused, nothing on the wire toward it.
    unseen = "02:00:00:00:0a:99"
    net.host_run("h1", "ip", "neigh", "replace", "10.0.0.99", "lladdr",
                 unseen, "dev", "eth0", "nud", "permanent", check=True)
    with net.capture() as cap:
        assert not harness.icmp_echo(net.ns("h1"), "10.0.0.99", 1, 56,
                                     False)
    assert not [f for f in cap.frames if f[0:6] == mac_bytes(unseen)]
    assert unseen not in pk.dump()["outside"]

    # Plain to plain: nothing gets through, nothing in the clear.
    with net.capture() as cap:
        assert not net.ping("p1", "p2")
    assert_wire_sealed(cap.frames, (MARKER,))


def gateway_ids(net, bridges):
    """{bridge: its gateway id} ("gw-" and its datapath id)."""
    return {br: "gw-%016x" % int(net.vsctl(
        "get", "Bridge", br, "datapath_id").stdout.strip().strip('"'), 16)
        for br in bridges}


def udp_broadcast(net, host, port, payload):
    net.host_run(host, "/usr/bin/python3", "-c",
                 "import socket; s = socket.socket(socket.AF_INET, "
                 "socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, "
                 "socket.SO_BROADCAST, 1); s.sendto(%r, ('10.0.0.255', %d))"
                 % (payload, port), check=True)


def outside_conflicts(pk):
    m = re.search(r"^outside conflicts: (\d+)$", pk.ctl("show").stdout,
                  re.M)
    return int(m.group(1))


def impersonate(net, host, victim):
    """'host' takes the MAC and address of 'victim', and knows h1's MAC."""
    v = net.topo.host(victim)
    net.host_run(host, "ip", "link", "set", "eth0", "address", v.mac,
                 check=True)
    net.host_run(host, "ip", "addr", "flush", "dev", "eth0", check=True)
    net.host_run(host, "ip", "addr", "add", v.ip, "dev", "eth0", check=True)
    net.host_run(host, "ip", "neigh", "replace", net.topo.host("h1").addr,
                 "lladdr", net.topo.host("h1").mac, "dev", "eth0", "nud",
                 "permanent", check=True)


# p1's MAC at the other gateway (p2's port), refused there; after the move,
# at p1's own.
CONFLICT = (r"pairkeyd\.log: .*\|keyserver\|WARN\|br[23]: outside host "
            r"02:00:00:00:0a:01 is behind gateway gw-[0-9a-f]{16} but sends "
            r"at gateway gw-[0-9a-f]{16} \(port p[12]\); dropping its frames "
            r"there$")


@pytest.mark.allow_log(CONFLICT)
def test_outside_host_stays_behind_its_gateway(needs_pairkeyd, make_net):
    """6. Two gateways (topo.GATEWAYS): p1 is learned behind br2.  p2,
    behind br3, takes p1's MAC and address and sends to h1, unicast and
    broadcasts, while p1 pings h1 every 50 ms and h1 sends datagrams to p1.
    p1 stays behind br2 (the store, no 'learn' audited); br3 drops every
    forged frame (the key server sees the first and counts it under
    'outside conflicts', with one WARN naming the MAC and both gateways;
    br3's table 0 source drop the rest) and puts nothing on the wire;
    neither h1 nor p1's side receives any of them; p1 loses no ping; p2
    receives nothing unicast from h1, none of h1's data for p1.  Then the
    admin moves p1's MAC behind br3 (audited): p2 reaches h1 and p1's
    frames are the ones dropped; forgotten (audited), the MAC is learned
    where it is seen next.  Bad forget-outside and move-outside input is
    refused with one line and changes nothing."""
    from test_keyserver import refusals
    net = make_net(GATEWAYS)
    pk = net.start_keyserver()
    wait_until(lambda: len(pk.dump()["gateways"]) == 2, 10, "two gateways")
    gw = gateway_ids(net, ("br2", "br3"))
    p1 = net.topo.host("p1")
    net.wait_ping("p1", "h1")
    assert pk.dump()["outside"] == {p1.mac: gw["br2"]}
    learned = pk.ctl("audit").stdout.count("\tlearn\t")

    impersonate(net, "p2", "p1")
    port = 5557
    forged, for_p1 = marker(), marker()
    rx_h1 = net.udp_socket("h1", port)
    rx_p1 = net.udp_socket("p1", port)
    spies = {h: net.sniffer(h) for h in ("h1", "p1", "p2")}
    from_br3 = net.wire_rx_from("br3")
    with net.capture() as cap, net.pinger("p1", "h1") as victim:
        for _ in range(5):
            net.udp_send("p2", "h1", port, forged)
            net.udp_send("h1", "p1", port, for_p1)
        udp_broadcast(net, "p2", port, forged)
        net.host_run("p2", "ping", "-b", "-c", "2", "-i", "0.2", "-W", "1",
                     "10.0.0.255")
        wait_until(lambda: len(victim.replies) >= 20, 10, "p1's pings")
    assert victim.sent and not victim.lost()
    assert pk.dump()["outside"] == {p1.mac: gw["br2"]}
    assert pk.ctl("audit").stdout.count("\tlearn\t") == learned
    assert net.udp_recv(rx_h1) is None, "p2's datagram reached h1"
    got = []
    while (d := net.udp_recv(rx_p1)) is not None:
        got.append(d)
    assert got == [for_p1] * 5, "p1 got %r" % got
    for h in ("h1", "p1"):
        assert not [f for f in spies[h].received() if forged in f], \
            "a forged frame reached " + h
    h1 = mac(net, "h1")
    for f in spies["p2"].received():
        assert f[0] & 1 or f[6:12] != h1, "h1's unicast frame reached p2"
        assert for_p1 not in f, "h1's data for p1 reached p2"
    assert_wire_sealed(cap.frames, (MARKER, forged, for_p1))
    assert net.wire_rx_from("br3") == from_br3, "br3 put frames on the wire"
    conflicts = outside_conflicts(pk)
    assert conflicts >= 1
    drop = net.ofctl("dump-flows", "br3", "table=0,in_port=%d,dl_src=%s"
                     % (net.topo.host_ofport("p2"), p1.mac)).stdout
    assert re.search(r"priority=150,.* actions=drop", drop), drop
    dropped = int(re.search(r"n_packets=(\d+)", drop).group(1))
    assert conflicts + dropped >= 8, (conflicts, dropped)
    warns = [ln for ln in pk.log_lines(("WARN",)) if "outside host" in ln]
    assert len(warns) == 1 and warns[0].endswith(
        "br3: outside host %s is behind gateway %s but sends at gateway %s "
        "(port p2); dropping its frames there" % (p1.mac, gw["br2"],
                                                  gw["br3"])), warns

    # Bad input: one line naming it, nothing changes.
    bad = [(["forget-outside", "02:00:00:00:0a"], "02:00:00:00:0a"),
           (["forget-outside", "ff:ff:ff:ff:ff:ff"], "ff:ff:ff:ff:ff:ff"),
           (["forget-outside", "00:00:00:00:00:00"], "00:00:00:00:00:00"),
           (["forget-outside", "02:00:00:00:0a:99"], "02:00:00:00:0a:99"),
           (["forget-outside", "02:00:00:00:01:01"], "02:00:00:00:01:01"),
           (["forget-outside"], "forget-outside"),
           (["forget-outside", p1.mac, "x"], "forget-outside"),
           (["move-outside", p1.mac, "gw-nosuch"], "gw-nosuch"),
           (["move-outside", p1.mac, gw["br2"]], "already"),
           (["move-outside", p1.mac, "h1"], "'h1'"),
           (["move-outside", p1.mac, "bad id"], "bad id"),
           (["move-outside", "02:00:00:00:0a:99", gw["br3"]],
            "02:00:00:00:0a:99"),
           (["move-outside", "02:00:00:00:0a:01x", gw["br3"]],
            "02:00:00:00:0a:01x"),
           (["move-outside", p1.mac], "move-outside")]
    problems = refusals(pk, [(" ".join(argv), argv, names)
                             for argv, names in bad])
    assert not problems, "\n".join(problems)

    # The admin moves p1's MAC behind br3: p2 reaches h1 now.
    pk.ctl("move-outside", p1.mac, gw["br3"])
    assert pk.dump()["outside"] == {p1.mac: gw["br3"]}
    assert re.search(r"\tlearn\t%s\t-\t-\t-\tmac %s moved from gateway %s\t-$"
                     % (gw["br3"], p1.mac, gw["br2"]),
                     pk.ctl("audit").stdout, re.M)
    net.wait_ping("p2", "h1")
    assert not net.ping("p1", "h1")
    assert outside_conflicts(pk) > conflicts

    # Forgotten: learned wherever it is seen next.
    pk.ctl("forget-outside", p1.mac)
    assert pk.dump()["outside"] == {}
    assert re.search(r"\tunlearn\t%s\t-\t-\t-\tmac %s forgotten by "
                     r"pairkeyctl forget-outside\t-$" % (gw["br3"], p1.mac),
                     pk.ctl("audit").stdout, re.M)
    net.wait_ping("p2", "h1")
    assert pk.dump()["outside"] == {p1.mac: gw["br3"]}


def test_silent_outside_host_is_forgotten(needs_pairkeyd, make_net):
    """7. With --outside-idle-timeout=2: p1, learned behind br2, stays
    there while it pings h1 every 50 ms for 5 s; once it is silent, the
    key server forgets it within a few seconds (br2's presence flow for
    p1 expired; audited 'unlearn', 'idle for 2 s'), and the MAC is then
    learned where it shows up next: behind br3, where p2 now uses it."""
    net = make_net(GATEWAYS)
    pk = net.start_keyserver(extra=["--outside-idle-timeout=2"])
    wait_until(lambda: len(pk.dump()["gateways"]) == 2, 10, "two gateways")
    gw = gateway_ids(net, ("br2", "br3"))
    p1 = net.topo.host("p1")
    net.wait_ping("p1", "h1")
    presence = net.ofctl("dump-flows", "br2", "table=0,in_port=%d,dl_src=%s"
                         % (net.topo.host_ofport("p1"), p1.mac)).stdout
    assert re.search(r"idle_timeout=2, .*priority=110,.* "
                     r"actions=goto_table:1", presence), presence
    with net.pinger("p1", "h1") as active:
        wait_until(lambda: len(active.replies) >= 100, 20, "5 s of pings")
    assert not active.lost()
    assert pk.dump()["outside"] == {p1.mac: gw["br2"]}
    assert "\tunlearn\t" not in pk.ctl("audit").stdout

    wait_until(lambda: not pk.dump()["outside"], 10, "p1 to be forgotten")
    assert re.search(r"\tunlearn\t%s\t-\t-\t-\tmac %s idle for 2 s\t-$"
                     % (gw["br2"], p1.mac), pk.ctl("audit").stdout, re.M)
    impersonate(net, "p2", "p1")
    net.wait_ping("p2", "h1")
    assert pk.dump()["outside"] == {p1.mac: gw["br3"]}
