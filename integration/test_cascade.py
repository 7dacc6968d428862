"""Cascaded key servers: one subnet (topo.KEYSERVER, one wire), two
pairkeyd processes sharing its clients (ID-MAC) and their keys (ID-ID-KEY).

    h1 --- [br1] --+                  ks1, the AUTHORITY: controls br1 and
    h2 --- [br2] --+-- wire (tcpdump)   br2, enrolls every client, issues
    h3 --- [br3] --+                    and rotates every key
    h4 -+- [br4] --+                  ks2, a MEMBER: controls br3 and br4,
    h5 -+                               mirrors ks1's clients, group key
                                        and the pair keys it needs

Both read the same OVSDB (the marks of every port) and act only on the
bridges connected to them.  They run inside the OVS namespace, each with
a certificate from one ovs-pki CA and a peer listener on that namespace's
loopback; ks1 knows ks2 as its 'member', ks2 knows ks1 as its 'authority'
(pairkeyctl add-peer NAME REMOTE KIND).  The member obtains every key
over that mutually authenticated link and never creates one: a frame
between h1 (ks1's) and h3 (ks2's) is sealed under one pair key, with the
same pair id and version in both stores and in both bridges' SAs.

Every test fails on WARN/ERR lines of ovs-vswitchd, ks1 or ks2 that it
does not expect (conftest.py; allow_log lists the provoked ones).
"""

import os
import re
import secrets
import shutil
import socket
import time

import pytest

import harness
import pairkey
from harness import wait_until
from pairkey import assert_wire_sealed, between, parse_frame
from pairkey import host_mac as mac
from topo import KEYSERVER

MARKER = b"PAIRKEY-CASCADE-MARKER-"
BROADCAST = b"\xff" * 6
PORT = 5555
# The subnet's broadcast address (hosts have 10.0.0.x/24).
SUBNET_BROADCAST = "10.0.0.255"

AUTHORITY, MEMBER = "ks1", "ks2"
# The bridges each key server controls.
SERVES = {AUTHORITY: ("br1", "br2"), MEMBER: ("br3", "br4")}
# Peer listeners, on the loopback of the OVS namespace (private to a Net).
PEER_PORTS = {AUTHORITY: 6701, MEMBER: 6702}
CLIENTS = [h.name for h in KEYSERVER.hosts]
# Every pair of clients behind different key servers.
CROSS = [(a, b) for a in ("h1", "h2") for b in ("h3", "h4", "h5")]
# A client that is enrolled only for a moment (test 3); no host has it.
NEWCOMER = ("h9", "02:00:00:00:09:09")

# Until both key servers have added each other, the first one to dial may
# be closed as unknown.
EARLY_PEER = (r"ks[12]\.log: .*\|peers\|WARN\|.*certificate 'ks[12]' is "
              r"not a configured peer; closing$")
pytestmark = pytest.mark.allow_log(EARLY_PEER)

# Refused key requests after del-client h3 and revoke-key h1 h4 at ks1:
# the authority's own bridges ask for the revoked pairs...
REFUSED_AT_AUTHORITY = (
    r"ks1\.log: .*\|keyserver\|WARN\|br[12]: refused key request from "
    r"\S+ to \S+ on port \d+: destination is not enrolled$",
    r"ks1\.log: .*\|keyserver\|WARN\|br[12]: the pair of 'h1' and 'h4' was "
    r"revoked: enroll both again first$",
)
# ...and so may the member's (the member passes them on, the authority
# refuses them; who logs what is the implementation's choice).
REFUSED_FOR_MEMBER = (
    r"ks[12]\.log: .*\|(cascade|keyserver|peers)\|WARN\|.*(not enrolled|"
    r"revoked|refused).*$",
)
# ovs-vswitchd loses a killed or stopped key server and retries.
CONTROLLER_DOWN = (
    r"ovs-vswitchd\.log: .*\|rconn\|WARN\|br\d<->unix:\S+/ks[12]\.sock: "
    r"connection (failed|dropped) \(.*\)$",
)
# The peer link breaks while one of the two is down, and comes back.
PEER_DOWN = (
    r"ks[12]\.log: .*\|(peers|jsonrpc|reconnect|stream_ssl)\|WARN\|.*$",
)
# While the authority is down, the member cannot get a key for a new pair.
NO_AUTHORITY = (
    r"ks2\.log: .*\|(cascade|keyserver|peers)\|WARN\|.*\b(authority|ks1)\b"
    r".*$",
)


# ------------------------------------------------------------- helpers

def marker():
    """A unique plaintext that must never be seen on the wire."""
    return MARKER + secrets.token_hex(8).encode()


def bridge_of(net, host):
    return net.topo.host(host).bridge


def either_way(net, frames, a, b):
    """Frames between hosts a and b, in either direction."""
    return (between(frames, mac(net, a), mac(net, b))
            + between(frames, mac(net, b), mac(net, a)))


def settle_tcp(net):
    wait_until(lambda: all(net.tcp_idle(h.name) for h in net.topo.hosts),
               10, "TCP connections to finish")


def peer_remote(pk):
    """The ssl: remote of pk's peer listener."""
    return "ssl:127.0.0.1:%d" % PEER_PORTS[pk.name]


def peers(pk):
    """'pairkeyctl list-peers' as {name: [remote, state, ...]}."""
    return {f[0]: f[1:] for f in (line.split("\t") for line in
                                  pk.ctl("list-peers").stdout.splitlines())}


def verified(pk, peer):
    return peers(pk).get(peer, [None, None])[1] == "verified"


def sa_version(show, bridge, sa_id):
    """The current version of SA 'sa_id' on 'bridge', or None."""
    sa = show.get(bridge, {}).get("sa", {}).get(sa_id)
    return sa["versions"][0] if sa and sa["versions"] else None


def group_versions(net):
    """{bridge: current version of its group key (SA 0), or None}."""
    st = pairkey.show(net)
    return {b.name: sa_version(st, b.name, 0) for b in net.topo.bridges}


def key_problems(net, ks1, ks2, pairs):
    """What keeps each pair of 'pairs' from being under one key: a pair
    missing from a store, different (pair id, version) in the two stores,
    or one of the pair's bridges without that SA at that version.  [] when
    all is well."""
    d1, d2 = ks1.dump(), ks2.dump()
    st = pairkey.show(net)
    problems = []
    for a, b in pairs:
        pair = frozenset((a, b))
        if pair not in d1["pairs"] or pair not in d2["pairs"]:
            problems.append("%s-%s: in ks1 %s, in ks2 %s" % (
                a, b, d1["pairs"].get(pair), d2["pairs"].get(pair)))
            continue
        if d1["pairs"][pair] != d2["pairs"][pair]:
            problems.append("%s-%s: (id, version) %s in ks1, %s in ks2" % (
                a, b, d1["pairs"][pair], d2["pairs"][pair]))
            continue
        pair_id, version = d1["pairs"][pair]
        for br in {bridge_of(net, a), bridge_of(net, b)}:
            held = sa_version(st, br, pair_id)
            if held != version:
                problems.append("%s-%s: %s holds SA %d at version %s, not "
                                "%d" % (a, b, br, pair_id, held, version))
    return problems


def wait_one_key(net, ks1, ks2, pairs, timeout=10):
    """Waits until key_problems() has nothing to say about 'pairs'."""
    try:
        wait_until(lambda: not key_problems(net, ks1, ks2, pairs), timeout,
                   "one key per pair")
    except TimeoutError:
        raise AssertionError("\n".join(key_problems(net, ks1, ks2, pairs))) \
            from None


def wait_one_group_key(net, ks1, ks2, timeout=10):
    """Waits until every bridge holds ks1's group key version, and ks2's
    store has the same; returns that version."""
    def agreed():
        version = ks1.dump()["group"]
        return (version if set(group_versions(net).values()) == {version}
                and ks2.dump()["group"] == version else None)
    try:
        return wait_until(agreed, timeout, "one group key version")
    except TimeoutError:
        raise AssertionError("group key: ks1 %s, ks2 %s, bridges %s" % (
            ks1.dump()["group"], ks2.dump()["group"],
            group_versions(net))) from None


def wait_serving(net, pk):
    """Waits until pk has exactly its own bridges connected."""
    wait_until(lambda: pk.connected() == set(SERVES[pk.name]), 10,
               "%s to control %s" % (pk.name, ", ".join(SERVES[pk.name])))


def wait_linked(ks1, ks2):
    wait_until(lambda: verified(ks1, MEMBER) and verified(ks2, AUTHORITY),
               15, "the peer link between ks1 and ks2 to be verified")


def audit(pk):
    return [line.split("\t") for line in pk.ctl("audit").stdout.splitlines()]


def pair_events(pk):
    """(event, pair, version) of the audit entries about a pair key (two
    ids; the group key and NETKEY entries name at most one)."""
    return [(f[1], frozenset(f[2:4]), f[4]) for f in audit(pk)
            if len(f) >= 5 and f[2] != "-" and f[3] != "-"]


def assert_member_created_no_key(ks2):
    created = [e for e in pair_events(ks2) if e[0] in ("issue", "rotate")]
    assert not created, "the member created pair keys: %s" % created


def listed(pk, client):
    """True if 'pairkeyctl list-clients' of pk lists 'client'."""
    return bool(re.search(r"^%s +" % re.escape(client),
                          pk.ctl("list-clients").stdout, re.M))


def refusal_problems(proc, names):
    """What is wrong with how pairkeyctl refused: exit status 0, output on
    stdout, not exactly one line on stderr, 'names' not in it."""
    err = proc.stderr
    problems = []
    if proc.returncode == 0:
        problems.append("exit status 0")
    if proc.stdout:
        problems.append("stdout: %r" % proc.stdout[:200])
    if err.count("\n") != 1 or not err.endswith("\n"):
        problems.append("stderr is not one line: %r" % err[:300])
    elif names.lower() not in err.lower():
        problems.append("error does not say %r: %r" % (names, err))
    return problems


def send_broadcast(net, src, payload, port=PORT):
    """A UDP datagram from host src to the subnet's broadcast address."""
    s = harness.ns_socket(net.ns(src), socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.sendto(payload, (SUBNET_BROADCAST, port))


def assert_broadcast_reaches_all(net, src, payload, timeout=5):
    """A UDP broadcast from host src carrying 'payload' reaches every other
    host (seen on its eth0)."""
    spies = {h: net.sniffer(h) for h in CLIENTS if h != src}
    send_broadcast(net, src, payload)
    for host, spy in spies.items():
        wait_until(lambda: any(payload in f for f in spy.received()),
                   timeout, "%s's broadcast at %s" % (src, host))


def udp_drain(net, sock):
    """Every datagram waiting on a non-blocking socket."""
    out = []
    while (data := net.udp_recv(sock)) is not None:
        out.append(data)
    return out


def flush_neighbours(net):
    for h in net.topo.hosts:
        net.host_run(h.name, "ip", "neigh", "flush", "dev", "eth0",
                     check=True)


def wait_pings_after(cut, start, command):
    """Waits until Pinger 'cut' sent 10 pings a second after 'command' ran
    at 'start'."""
    wait_until(lambda: sum(1 for t in cut.sent.values()
                           if t > start + 1) >= 10, 10,
               "10 pings a second after %s" % command)


def assert_cut_off(cut, other, start, command):
    """Checks (once the pingers stopped) that the last reply of Pinger 'cut'
    came within a second of 'command' run at 'start' and none after, and
    that Pinger 'other' lost nothing."""
    last = cut.last_reply() - start
    assert last < 1.0, "still answered %.3f s after %s" % (last, command)
    assert cut.lost(since=start + 1.0) == sorted(
        s for s, t in cut.sent.items() if t >= start + 1.0)
    assert not other.lost(), "the other pair lost %s" % other.lost()


# ------------------------------------------------------------- fixture

@pytest.fixture
def cascade(needs_pairkeyd, make_net):
    """KEYSERVER with two key servers in the OVS namespace, SSL peer
    listeners, certificates from one ovs-pki: ks1 (the authority) controls
    br1 and br2, ks2 (its member) br3 and br4; ports marked; each knows
    the other (add-peer ... member / authority) and the link is verified;
    h1..h5 enrolled at ks1 and listed by ks2; every bridge holds ks1's
    group key at one version.  ks1 is started twice first, so that its
    group key is at version 2 while the one ks2 made for itself at its
    first start, before it knew its authority, is at version 1.  Returns
    (net, ks1, ks2)."""
    if not shutil.which("openssl"):
        pytest.skip("'openssl' is not installed (ovs-pki needs it)")
    net = make_net(KEYSERVER)
    if not os.access(os.path.join(net.ovs.bindir, "ovs-pki"), os.X_OK):
        pytest.skip("ovs-pki not found in PAIRKEY_BIN")
    pki = net.make_pki("pki")
    cacert = os.path.join(pki, "ca", "controllerca", "cacert.pem")
    ks = {}
    for name in (AUTHORITY, MEMBER):
        key, cert, _ = net.make_cert(pki, name, "controller")
        ks[name] = net.start_pairkeyd(
            name=name, ns=net.ns("ovs"), ssl=(key, cert, cacert),
            extra=["--name=" + name,
                   "--peer-listen=pssl:%d:127.0.0.1" % PEER_PORTS[name]])
        if name == AUTHORITY:
            ks[name].stop()
            ks[name].start()
    ks1, ks2 = ks[AUTHORITY], ks[MEMBER]
    net.mark_ports()
    for pk in (ks1, ks2):
        net.set_controller(pk.listen[1:], SERVES[pk.name])
    for pk in (ks1, ks2):
        wait_serving(net, pk)

    ks1.ctl("add-peer", MEMBER, peer_remote(ks2), "member")
    ks2.ctl("add-peer", AUTHORITY, peer_remote(ks1), "authority")
    wait_linked(ks1, ks2)
    for h in net.topo.hosts:
        ks1.ctl("add-client", h.name, h.mac)
    wait_until(lambda: ks2.dump()["clients"] == ks1.dump()["clients"], 10,
               "ks2 to list every client enrolled at ks1")
    assert set(ks2.dump()["clients"]) == set(CLIENTS)
    wait_one_group_key(net, ks1, ks2)
    return net, ks1, ks2


# ------------------------------------------------------------ traffic

def test_cross_pairs_share_one_key(cascade):
    """1. Every pair across the two key servers (h1, h2 with h3, h4, h5)
    pings both ways and runs TCP carrying a marker.  The wire holds only
    0x88b5 frames of clients and never the marker; each pair is on the
    wire both ways, every frame under the one version of its pair key.
    Both stores hold the six pairs with the same pair id and version,
    both bridges of a pair hold that SA at that version, and each bridge
    holds exactly the group key and its own clients' pairs.  ks1's audit
    has one 'issue' per pair; ks2's has none (nor a 'rotate') but an
    'obtain' for each."""
    net, ks1, ks2 = cascade
    m = marker()
    with net.capture() as cap:
        for a, b in CROSS:
            net.wait_ping(a, b)
            assert net.ping(b, a, count=2), (b, a)
            data = m + (b" %s>%s " % (b.encode(), a.encode())) * 300
            assert net.tcp_transfer(b, a, data) == data, (b, a)
        settle_tcp(net)
    assert_wire_sealed(net, cap.frames, (MARKER, m))

    d1, d2 = ks1.dump(), ks2.dump()
    cross = {frozenset(p) for p in CROSS}
    assert set(d1["pairs"]) == cross
    assert set(d2["pairs"]) == cross
    assert d2["clients"] == d1["clients"]
    assert len({pid for pid, _ in d1["pairs"].values()}) == len(CROSS)
    assert not key_problems(net, ks1, ks2, CROSS), \
        "\n".join(key_problems(net, ks1, ks2, CROSS))
    for a, b in CROSS:
        pair_id, version = d1["pairs"][frozenset((a, b))]
        for src, dst in ((a, b), (b, a)):
            frames = between(cap.frames, mac(net, src), mac(net, dst))
            assert frames, "%s > %s not on the wire" % (src, dst)
            used = {parse_frame(f).version for f in frames}
            assert used == {version}, "%s > %s: versions %s, the pair's " \
                "key is at %d" % (src, dst, sorted(used), version)
    expected = {b.name: {0} for b in net.topo.bridges}
    for pair, (pair_id, _) in d1["pairs"].items():
        for host in pair:
            expected[bridge_of(net, host)].add(pair_id)
    assert net.sa_ids() == expected

    issued = [e[1] for e in pair_events(ks1) if e[0] == "issue"]
    for pair in cross:
        assert issued.count(pair) == 1, "ks1 issued %s %d times" % (
            sorted(pair), issued.count(pair))
    assert_member_created_no_key(ks2)
    obtained = {e[1] for e in pair_events(ks2) if e[0] == "obtain"}
    assert obtained == cross, "ks2 obtained %s" % [sorted(p)
                                                   for p in obtained]


def test_broadcasts_cross_under_one_group_key(cascade):
    """2. Both stores and all four bridges have the group key at the
    authority's version (2: not the version 1 ks2 made for itself).  With
    the neighbour caches flushed, h1 pings h3 and h4 pings h2 (ARP
    requests are broadcasts), and h1 and h5 send a UDP broadcast each that
    every other host receives (h4 gets h5's from br4 itself).  On the wire
    every broadcast is 0x88b5 under that group key version, there is never
    the marker, and every bridge decrypted under SA 0."""
    net, ks1, ks2 = cascade
    group = ks1.dump()["group"]
    assert group == 2, "ks1 was started twice: group key version 2"
    assert ks2.dump()["group"] == group
    assert group_versions(net) == {b.name: group for b in net.topo.bridges}

    flush_neighbours(net)
    st = pairkey.show(net)
    decrypted = {b.name: pairkey.counter(st, b.name, 0, "decrypted",
                                         "packets")
                 for b in net.topo.bridges}
    m = marker()
    with net.capture() as cap:
        net.wait_ping("h1", "h3")
        net.wait_ping("h4", "h2")
        for src in ("h1", "h5"):
            assert_broadcast_reaches_all(net, src, m + b" from "
                                         + src.encode())
    assert_wire_sealed(net, cap.frames, (MARKER, m))
    broadcasts = [parse_frame(f) for f in cap.frames if f[0:6] == BROADCAST]
    senders = {s.src for s in broadcasts}
    for host in ("h1", "h4", "h5"):
        assert mac(net, host) in senders, "no broadcast of %s on the " \
            "wire" % host
    assert {s.version for s in broadcasts} == {group}
    st = pairkey.show(net)
    for br, before in decrypted.items():
        assert pairkey.counter(st, br, 0, "decrypted", "packets") > before, \
            "%s decrypted nothing under the group key" % br


# ------------------------------------------------------- configuration

def test_only_the_authority_configures(cascade):
    """3. list-peers shows each side verified, ks2 as 'member' at ks1,
    ks1 as 'authority' at ks2.  add-client, del-client and revoke-key at
    ks2 are refused (exit != 0, one line naming the authority) and change
    neither store.  add-peer with kind 'bogus' is refused with the
    expected line at both; a second authority at ks2 is refused naming
    ks1; list-peers does not change.
    A client enrolled at ks1 is listed by ks2 within about a second (2 s),
    and leaves ks2's list as fast once ks1 deletes it."""
    net, ks1, ks2 = cascade
    assert peers(ks1) == {MEMBER: [peer_remote(ks2), "verified", "member"]}
    assert peers(ks2) == {AUTHORITY: [peer_remote(ks1), "verified",
                                      "authority"]}

    dumps = ks1.ctl("dump").stdout, ks2.ctl("dump").stdout
    listing = ks2.ctl("list-clients").stdout
    problems = ["add-client at ks2: " + p for p in refusal_problems(
        ks2.ctl("add-client", *NEWCOMER, check=False), "authority")]
    problems += ["del-client at ks2: " + p for p in refusal_problems(
        ks2.ctl("del-client", "h3", check=False), "authority")]
    problems += ["revoke-key at ks2: " + p for p in refusal_problems(
        ks2.ctl("revoke-key", "h1", "h3", check=False), "authority")]
    assert (ks1.ctl("dump").stdout, ks2.ctl("dump").stdout) == dumps
    assert ks2.ctl("list-clients").stdout == listing

    peer_lists = ks1.ctl("list-peers").stdout, ks2.ctl("list-peers").stdout
    for pk in (ks1, ks2):
        problems += ["%s: add-peer kind bogus: %s" % (pk.name, p)
                     for p in refusal_problems(
                         pk.ctl("add-peer", "ks3", "ssl:127.0.0.1:9", "bogus",
                                check=False),
                         "unknown peer kind 'bogus' (expected inter, member "
                         "or authority)")]
    problems += ["second authority: " + p for p in refusal_problems(
        ks2.ctl("add-peer", "ks3", "ssl:127.0.0.1:9", "authority",
                check=False), "peer 'ks1' is already the authority")]
    assert (ks1.ctl("list-peers").stdout,
            ks2.ctl("list-peers").stdout) == peer_lists
    assert not problems, "\n".join(problems)

    client, client_mac = NEWCOMER
    start = time.monotonic()
    ks1.ctl("add-client", client, client_mac)
    wait_until(lambda: listed(ks2, client), 2, "ks2 to list %s" % client)
    print("%s listed by ks2 %.3f s after add-client at ks1"
          % (client, time.monotonic() - start))
    assert ks2.dump()["clients"][client] == client_mac
    ks1.ctl("del-client", client)
    wait_until(lambda: not listed(ks2, client), 2,
               "%s to leave ks2's list" % client)
    assert client not in ks2.dump()["clients"]


# ---------------------------------------------------------- revocation

@pytest.mark.allow_log(*REFUSED_AT_AUTHORITY, *REFUSED_FOR_MEMBER)
def test_revocation_reaches_the_member(cascade):
    """4. While h1 pings h3 and h4 every 50 ms, 'pairkeyctl del-client h3'
    at ks1: the SAs of h3's three pairs (with h1, h2 and h4: the last one
    only on ks2's bridges) leave every bridge within a second, h3's last
    reply comes less than a second after the command, h1 -> h4 loses
    nothing, ks2 stops listing h3.  Then, while h1 pings h4 and h2 pings
    h5, 'revoke-key h1 h4' at ks1: the pair's SA leaves br1 and br4 within
    a second, h4's last reply within a second, h2 -> h5 loses nothing;
    neither store keeps the pair, h1 no longer reaches h4, the other pairs
    still talk and a new one (h2, h4) gets its key."""
    net, ks1, ks2 = cascade
    net.static_arp()
    talk = [("h1", "h3"), ("h2", "h3"), ("h4", "h3"), ("h1", "h4"),
            ("h2", "h5"), ("h1", "h5")]
    for a, b in talk:
        net.wait_ping(a, b)
    wait_one_key(net, ks1, ks2, talk)
    dump = ks1.dump()
    gone = {pid for pair, (pid, _) in dump["pairs"].items() if "h3" in pair}
    assert len(gone) == 3
    assert gone & net.sa_ids()["br4"], "br4 holds no key with h3"

    with net.pinger("h1", "h3") as cut, net.pinger("h1", "h4") as other:
        wait_until(lambda: len(cut.replies) >= 5, 10, "pings h1 -> h3")
        start = time.monotonic()
        ks1.ctl("del-client", "h3")
        wait_until(lambda: not any(gone & ids
                                   for ids in net.sa_ids().values()),
                   1, "the SAs of h3's pairs to leave every bridge")
        print("h3's SAs gone from every bridge %.3f s after del-client"
              % (time.monotonic() - start))
        wait_pings_after(cut, start, "del-client")
    assert_cut_off(cut, other, start, "del-client")
    wait_until(lambda: not listed(ks2, "h3"), 2, "ks2 to stop listing h3")
    assert "h3" not in ks2.dump()["clients"]
    assert not net.ping("h4", "h3")

    revoked = ks1.pair_id("h1", "h4")
    assert {b for b, ids in net.sa_ids().items() if revoked in ids} == \
        {"br1", "br4"}
    with net.pinger("h1", "h4") as cut, net.pinger("h2", "h5") as other:
        wait_until(lambda: len(cut.replies) >= 5, 10, "pings h1 -> h4")
        start = time.monotonic()
        ks1.ctl("revoke-key", "h1", "h4")
        wait_until(lambda: not any(revoked in ids
                                   for ids in net.sa_ids().values()),
                   1, "the pair's SA to leave br1 and br4")
        wait_pings_after(cut, start, "revoke-key")
    assert_cut_off(cut, other, start, "revoke-key")
    pair = frozenset(("h1", "h4"))
    assert pair not in ks1.dump()["pairs"]
    wait_until(lambda: pair not in ks2.dump()["pairs"], 2,
               "the pair to leave ks2's store")
    assert not net.ping("h1", "h4") and not net.ping("h4", "h1")
    assert net.ping("h1", "h5") and net.ping("h5", "h2")
    net.wait_ping("h2", "h4")
    wait_one_key(net, ks1, ks2, [("h1", "h5"), ("h2", "h5"), ("h2", "h4")])
    assert_member_created_no_key(ks2)


# -------------------------------------------------------------- outages

@pytest.mark.allow_log(*CONTROLLER_DOWN, *PEER_DOWN, *NO_AUTHORITY)
def test_key_server_outages(cascade):
    """5. Static neighbours; h1-h3 and h1-h4 talk.  kill -9 of ks2 while
    h1 pings h3 every 50 ms: no echo is lost, h4 still answers h1, and h5
    (whose pair with h2 has no key yet) gets nothing onto the wire, its
    marker does not arrive.  Restarted on its store, ks2 controls br3 and
    br4 again, the link to ks1 is verified, every bridge has ks1's group
    key version (a broadcast from h5 reaches everybody), h1-h3 still
    talks and the new pair h2-h5 works.  Then ks1 stops (orderly) while
    h1 pings h3: no echo is lost, h2-h5 still talks; the new pair h3-h2
    gets no key (in neither store, no new SA on br3), not one frame
    between h3 and h2 reaches the wire and h3's marker does not arrive.
    Started again, ks1 controls br1 and br2, the group key is one version
    above the old one on every bridge and in both stores (a broadcast
    from h1 reaches everybody), and h3-h2 works.  Throughout, every pair's
    key is the same in both stores and both bridges, ks2 never issues or
    rotates a pair key, and the wire holds only sealed frames."""
    net, ks1, ks2 = cascade
    net.static_arp()
    for a, b in (("h1", "h3"), ("h1", "h4")):
        net.wait_ping(a, b)
    wait_one_key(net, ks1, ks2, [("h1", "h3"), ("h1", "h4")])
    m = marker()
    h2_rx = net.udp_socket("h2", PORT)
    got = []                            # every datagram h2 received

    # The member dies.
    from_h5 = m + b" h5>h2 while ks2 is down"
    with net.capture() as cap, net.pinger("h1", "h3") as old_pair:
        wait_until(lambda: len(old_pair.replies) >= 5, 10, "pings h1 -> h3")
        ks2.kill()
        assert not ks2.alive()
        down = len(old_pair.sent)
        assert net.ping("h4", "h1"), "an old pair stopped while ks2 is down"
        net.udp_send("h5", "h2", PORT, from_h5)
        assert not net.ping("h5", "h2")
        wait_until(lambda: len(old_pair.replies) >= down + 10, 10,
                   "pings h1 -> h3 while ks2 is down")
    assert old_pair.sent and not old_pair.lost(), \
        "lost echo requests: %s" % old_pair.lost()
    assert_wire_sealed(net, cap.frames, (MARKER, m))
    assert not [f for f in cap.frames if f[6:12] == mac(net, "h5")], \
        "h5 got frames onto the wire while ks2 was down"
    got += udp_drain(net, h2_rx)
    assert from_h5 not in got

    ks2.start()
    wait_serving(net, ks2)
    wait_linked(ks1, ks2)
    group = wait_one_group_key(net, ks1, ks2)
    assert_broadcast_reaches_all(net, "h5", m + b" from h5 after ks2's "
                                 b"restart")
    net.wait_ping("h1", "h3")
    net.wait_ping("h2", "h5")
    assert net.ping("h5", "h2", count=2)
    wait_one_key(net, ks1, ks2, [("h1", "h3"), ("h1", "h4"), ("h2", "h5")])

    # The authority stops.
    from_h3 = m + b" h3>h2 while ks1 is down"
    br3_sas = net.sa_ids()["br3"]
    with net.capture() as cap, net.pinger("h1", "h3") as old_pair:
        wait_until(lambda: len(old_pair.replies) >= 5, 10, "pings h1 -> h3")
        ks1.stop()
        assert not ks1.alive()
        down = len(old_pair.sent)
        assert net.ping("h2", "h5") and net.ping("h5", "h2"), \
            "an old pair stopped while ks1 is down"
        net.udp_send("h3", "h2", PORT, from_h3)
        assert not net.ping("h3", "h2", count=2)
        assert not net.ping("h2", "h3")
        wait_until(lambda: len(old_pair.replies) >= down + 10, 10,
                   "pings h1 -> h3 while ks1 is down")
        assert frozenset(("h2", "h3")) not in ks2.dump()["pairs"], \
            "ks2 has a key for a new pair while its authority is down"
        assert net.sa_ids()["br3"] == br3_sas
        got += udp_drain(net, h2_rx)
        assert from_h3 not in got
    assert old_pair.sent and not old_pair.lost(), \
        "lost echo requests: %s" % old_pair.lost()
    assert_wire_sealed(net, cap.frames, (MARKER, m))
    assert not either_way(net, cap.frames, "h2", "h3"), \
        "frames between h2 and h3 reached the wire while ks1 was down"

    ks1.start()
    wait_serving(net, ks1)
    wait_linked(ks1, ks2)
    assert wait_one_group_key(net, ks1, ks2) == group + 1
    assert_broadcast_reaches_all(net, "h1", m + b" from h1 after ks1's "
                                 b"restart")
    net.wait_ping("h3", "h2", timeout=15)
    assert net.ping("h2", "h3", count=2)
    net.wait_ping("h1", "h3")
    wait_one_key(net, ks1, ks2, [("h1", "h3"), ("h1", "h4"), ("h2", "h5"),
                                 ("h2", "h3")])
    assert_member_created_no_key(ks2)
