"""An active attacker on the wire (and a hostile client) against
topo.KEYSERVER with one pairkeyd: forged version reports followed by
replays, reflected broadcasts, another cipher, spoofed sources and a flood
of key requests.  Each test asserts that nothing was delivered, nothing
changed on the bridges or in the key server, and that the service is
still up.

    h1 --- [br1] --+
    h2 --- [br2] --+-- wire (tcpdump; the attacker injects here)
    h3 --- [br3] --+
    h4 -+- [br4] --+            pairkeyd (hold)
    h5 -+
"""

import re
import secrets
import struct
import time

import pytest

from harness import wait_until
from pairkey import (ETH_HLEN, ETH_P_PAIRKEY, HEADER, assert_wire_sealed,
                     between, host_mac, parse_frame, parse_show)
from topo import KEYSERVER

MARKER = b"PAIRKEY-HOSTILE-MARKER-"
PORT = 7070


@pytest.fixture
def ks(needs_pairkeyd, make_net):
    """KEYSERVER with pairkeyd controlling every bridge, every client
    enrolled, static ARP.  Returns (net, Pairkeyd)."""
    net = make_net(KEYSERVER)
    pk = net.start_keyserver()
    net.static_arp()
    return net, pk


def marker():
    return MARKER + secrets.token_hex(8).encode()


def bridge_of(net, host):
    return net.topo.host(host).bridge


def show(net, bridge):
    return parse_show(net.appctl("pairkey/show", bridge,
                                 ovs=net.ovs_of(bridge)).stdout)[bridge]


def sa_state(net, bridges, sa_id):
    """What the bridges hold of SA 'sa_id': versions and check values."""
    return {b: (show(net, b)["sa"][sa_id]["versions"],
                show(net, b)["sa"][sa_id]["kcv"]) for b in bridges}


def drop(net, bridge, sa_id, reason):
    return show(net, bridge)["sa"].get(sa_id, {}).get("drops", {}).get(
        reason, 0)


def reports(pk):
    """The 'version reports' line of pairkeyctl show, as a dict."""
    m = re.search(r"^version reports: (\d+) \((\d+) ignored, (\d+) "
                  r"re-pushed, (\d+) verified, (\d+) rate-limited\)$",
                  pk.ctl("show").stdout, re.M)
    assert m, pk.ctl("show").stdout
    return dict(zip(("reports", "ignored", "repushed", "verified",
                     "limited"), map(int, m.groups())))


def keys_lost(pk):
    return int(re.search(r"^keys lost by a switch: (\d+)$",
                         pk.ctl("show").stdout, re.M).group(1))


def forged(src, dst, cipher, version, n):
    """'n' frames from MAC 'src' to 'dst' that look encrypted under
    'version': random PNs and ciphertext, which no key opens."""
    return [dst + src + struct.pack("!H", ETH_P_PAIRKEY)
            + HEADER.pack(1, cipher, version,
                          secrets.randbits(40) << 12)
            + secrets.token_bytes(80) for _ in range(n)]


def received(sock, net):
    out = []
    while True:
        d = net.udp_recv(sock)
        if d is None:
            return out
        out.append(d)


def settle(pk, net, src, dst):
    """Waits until the key server has done what the frames injected so far
    made it do: one ping round trip through it after the reports stopped
    coming."""
    seen = -1
    while seen != reports(pk)["reports"]:
        seen = reports(pk)["reports"]
        time.sleep(0.3)
    net.wait_ping(src, dst)


# ------------------------------------------------------ forged reports

VERSIONS = {"cur": 0, "cur-1": -1, "cur+1": 1}


@pytest.mark.parametrize("sender,victim", [("h1", "h2"), ("h2", "h1")])
def test_forged_version_reports_then_replay(ks, sender, victim):
    """1. The attack on the self-heal path: capture 40 frames sender ->
    victim, then inject at the sender's bridge frames that claim to come
    from the victim under versions cur, cur-1, cur+1, 0 and 2^32-1 with
    garbage ciphertext (those the bridge does not hold reach the key
    server as version reports), then replay the 40 captured frames to the
    victim's bridge.  Not one is delivered (each is a replay), the SA of
    both bridges is what it was (versions, check values), the key server
    neither rotated nor re-pushed anything and at most verified, and the
    pair still works.  Before the fix, every replay was delivered."""
    net, pk = ks
    sb, vb = bridge_of(net, sender), bridge_of(net, victim)
    net.wait_ping(sender, victim)
    pk.ctl("rotate-key", sender, victim)        # cur-1 is a real version
    pair = pk.pair_id(sender, victim)
    wait_until(lambda: all(show(net, b)["sa"][pair]["versions"][0] == 2
                           for b in (sb, vb)), 5, "the rotation")
    net.wait_ping(sender, victim)

    sock = net.udp_socket(victim, PORT)
    m = marker()
    with net.capture() as cap:
        for i in range(40):
            net.udp_send(sender, victim, PORT, m + b" %d" % i)
        wait_until(lambda: len(received(sock, net)) >= 0
                   and net.wire_rx_from(sb) > 0, 5, "the datagrams")
    captured = [f for f in between(cap.frames, host_mac(net, sender),
                                   host_mac(net, victim))
                if parse_frame(f) and parse_frame(f).version == 2]
    assert len(captured) >= 40, len(captured)
    captured = captured[-40:]
    wait_until(lambda: drop(net, vb, pair, "replay") >= 0, 1)
    received(sock, net)                         # the genuine ones

    before = sa_state(net, (sb, vb), pair)
    audit = pk.ctl("audit").stdout
    cipher = parse_frame(captured[0]).cipher
    frames = []
    for name, offset in VERSIONS.items():
        frames += forged(host_mac(net, victim), host_mac(net, sender),
                         cipher, 2 + offset, 20)
    frames += forged(host_mac(net, victim), host_mac(net, sender), cipher,
                     0, 20)
    frames += forged(host_mac(net, victim), host_mac(net, sender), cipher,
                     2**32 - 1, 20)
    net.inject(sb, frames)
    wait_until(lambda: drop(net, sb, pair, "unknown_version") >= 60, 5,
               "the forged frames at %s" % sb)
    wait_until(lambda: reports(pk)["reports"] >= 1, 5, "a version report")
    settle(pk, net, sender, victim)

    replays = drop(net, vb, pair, "replay")
    net.inject(vb, captured)
    wait_until(lambda: drop(net, vb, pair, "replay") >= replays + 40, 5,
               "the replays dropped at %s" % vb)
    time.sleep(0.2)
    assert received(sock, net) == [], "a replayed frame was delivered"

    assert sa_state(net, (sb, vb), pair) == before
    assert pk.ctl("audit").stdout == audit, "the key server changed a key"
    r = reports(pk)
    assert r["repushed"] == 0 and r["reports"] == r["ignored"] \
        + r["verified"] + r["limited"], r
    assert keys_lost(pk) == 0
    net.wait_ping(sender, victim)
    net.udp_send(sender, victim, PORT, m + b" after")
    wait_until(lambda: received(sock, net), 5, "the pair to work")
    assert_wire_sealed(net, cap.frames, (MARKER, m))


REFUSED = (r"pairkeyd\.log: .*\|keyserver\|WARN\|br\d: refused key request "
           r"from \S+ to \S+ on port \d+: (source is not an enrolled "
           r"client|destination is not enrolled)$",)


@pytest.mark.allow_log(*REFUSED)
def test_flood_of_forged_reports(ks):
    """2. 2000 frames injected at br1 as from h2 under versions 0 and
    cur+1, and 30 from a MAC that is no client and from br1's own client:
    br1 reports at most 10 a second (pairkey/set-report-rate), the key
    server ignores the future versions, verifies br2 at most once a second
    and changes nothing; the unknown sender's frames are refused key
    requests that leave nothing in the store; a new pair still works."""
    net, pk = ks
    net.wait_ping("h1", "h2")
    pair = pk.pair_id("h1", "h2")
    before = sa_state(net, ("br1", "br2"), pair)
    audit = pk.ctl("audit").stdout
    dump = pk.dump()
    nobody = bytes.fromhex("02dead00beef")
    h1, h2 = host_mac(net, "h1"), host_mac(net, "h2")
    frames = (forged(nobody, h1, 1, 1, 15) + forged(h1, h1, 1, 1, 15))
    for _ in range(1000):
        frames += forged(h2, h1, 1, 0, 1) + forged(h2, h1, 1, 2, 1)
    start = time.monotonic()
    net.inject("br1", frames)
    wait_until(lambda: drop(net, "br1", pair, "unknown_version") >= 2000, 10,
               "the forged frames at br1")
    settle(pk, net, "h1", "h2")
    elapsed = time.monotonic() - start
    r = reports(pk)
    print("forged reports: 2000 frames, %d reports in %.1f s: %s"
          % (r["reports"], elapsed, r))
    assert 1 <= r["reports"] <= 10 * (elapsed + 1), r
    assert r["repushed"] == 0 and r["verified"] <= elapsed + 1, r
    assert r["ignored"] >= 1, r
    assert sa_state(net, ("br1", "br2"), pair) == before
    assert pk.ctl("audit").stdout == audit
    assert pk.dump() == dump
    net.wait_ping("h2", "h3")                   # a new pair still works


# ---------------------------------------------------- frames sent back

def test_reflected_broadcast_is_dropped(ks):
    """3. h4's broadcast (group key) captured on the wire and sent back to
    br4, three times: neither h4 nor h5 (which got the original in the
    clear inside br4) receives it again."""
    net, pk = ks
    net.wait_ping("h4", "h1")
    m = marker()
    at_h4, at_h5 = net.sniffer("h4"), net.sniffer("h5")
    src = host_mac(net, "h4")

    def seen(port):
        return sum(m in f for f in port.received())

    with net.capture() as cap:
        at_h4.send(b"\xff" * 6 + src + b"\x88\xb6" + m + b"\x00" * 20)
        wait_until(lambda: seen(at_h5) == 1, 5, "h5 to get h4's broadcast")
    sealed = [f for f in between(cap.frames, src, b"\xff" * 6)
              if parse_frame(f)]
    assert len(sealed) == 1, "h4's broadcast on the wire, sealed"
    net.inject("br4", sealed * 3)
    net.wait_ping("h4", "h1")
    net.wait_ping("h5", "h1")
    assert seen(at_h4) == 0, "h4 got its own broadcast back"
    assert seen(at_h5) == 1, "h5 got h4's broadcast again"
    assert_wire_sealed(net, cap.frames, (MARKER, m))


def test_other_cipher_is_dropped(ks):
    """4. A captured frame with its cipher byte changed (1 <-> 2) is
    dropped as wrong_cipher: one key never opens two ciphers."""
    net, pk = ks
    net.wait_ping("h1", "h2")
    pair = pk.pair_id("h1", "h2")
    sock = net.udp_socket("h2", PORT)
    with net.capture() as cap:
        net.udp_send("h1", "h2", PORT, marker())
        wait_until(lambda: received(sock, net), 5, "the datagram")
    frame = between(cap.frames, host_mac(net, "h1"), host_mac(net, "h2"))[-1]
    other = bytearray(frame)
    other[ETH_HLEN + 1] ^= 3
    net.inject("br2", [bytes(other)])
    wait_until(lambda: drop(net, "br2", pair, "wrong_cipher") == 1, 5,
               "the frame to be dropped as wrong_cipher")
    assert received(sock, net) == []


# ------------------------------------------------------ hostile clients

def test_spoofed_source_on_a_client_port(ks):
    """5. h3 sends, from its own port, frames with h1's MAC as source, to
    h2 and broadcast: br3 passes none of them: h2 gets nothing and the
    wire never shows h1's MAC (h1 itself is silent meanwhile)."""
    net, pk = ks
    net.wait_ping("h1", "h2")
    m = marker()
    h1, h2 = host_mac(net, "h1"), host_mac(net, "h2")
    at_h3, at_h2 = net.sniffer("h3"), net.sniffer("h2")
    with net.capture() as cap:
        for dst in (h2, b"\xff" * 6):
            for _ in range(10):
                at_h3.send(dst + h1 + b"\x88\xb6" + m + b"\x00" * 20)
        net.wait_ping("h3", "h2")
    assert not any(m in f for f in at_h2.received())
    assert not [f for f in cap.frames if f[6:12] == h1]
    assert_wire_sealed(net, cap.frames, (MARKER, m))


@pytest.mark.allow_log(*REFUSED)
def test_flood_of_key_requests(ks):
    """6. h1 sends to 3000 random unicast MACs as fast as it can: the
    requests pass br1's meter at most at its rate, the key server keeps no
    state for them (no client, no key, no outside host) and answers a new
    pair (h2 -> h3) during the flood; nothing in the clear on the wire.
    Prints the new pair's latency."""
    net, pk = ks
    net.wait_ping("h1", "h2")
    before = pk.dump()
    requests = int(re.search(r"^key requests: (\d+)", pk.ctl("show").stdout,
                             re.M).group(1))
    m = marker()
    src = host_mac(net, "h1")
    at_h1 = net.sniffer("h1")
    with net.capture() as cap:
        start = time.monotonic()
        for i in range(3000):
            dst = bytes([0x02]) + secrets.token_bytes(5)
            at_h1.send(dst + src + b"\x08\x00" + m + b"\x00" * 30)
            if i == 1500:
                t0 = time.monotonic()
                net.wait_ping("h2", "h3")
                latency = time.monotonic() - t0
        sent = time.monotonic() - start
    requests = int(re.search(r"^key requests: (\d+)", pk.ctl("show").stdout,
                             re.M).group(1)) - requests
    print("flood: 3000 frames in %.2f s; %d reached the key server; new "
          "pair answered in %.1f ms" % (sent, requests, latency * 1000))
    # The meter lets through its rate (200/s) plus a burst of as many.
    assert requests <= 200 * (sent + 1) + 200 + 50, requests
    after = pk.dump()
    assert after["clients"] == before["clients"]
    assert after["outside"] == before["outside"] == {}
    assert set(after["pairs"]) == set(before["pairs"]) | {
        frozenset(("h2", "h3"))}
    assert_wire_sealed(net, cap.frames, (MARKER, m))
    assert pk.alive()
