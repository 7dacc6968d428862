"""Key rotation (the patent's PW_ID update) on topo.KEYSERVER with one
pairkeyd: a key rolls over in two phases, its new version first installed
on every holder for receiving only (NXCSM_ADD_RX), then, once every
holder confirmed with a barrier reply, for sending.  No frame is lost, no
nonce is used twice and nothing crosses the wire in the clear.

    h1 --- [br1] --+
    h2 --- [br2] --+-- wire (tcpdump)    pairkeyd (hold)
    h3 --- [br3] --+
    h4 -+- [br4] --+
    h5 -+
"""

import concurrent.futures
import os
import re
import secrets
import signal
import time

import pytest

from harness import run, wait_until
from pairkey import (assert_wire_sealed, nonce_repeats, parse_frame,
                     parse_show)
from topo import KEYSERVER, KEYSERVER_TWO_OVS

MARKER = b"PAIRKEY-ROTATION-MARKER-"
GROUP_SA = 0


@pytest.fixture
def ks(needs_pairkeyd, make_net):
    """KEYSERVER with pairkeyd controlling every bridge, every client
    enrolled.  Returns (net, Pairkeyd)."""
    net = make_net(KEYSERVER)
    return net, net.start_keyserver()


def marker():
    return MARKER + secrets.token_hex(8).encode()


def sa(net, bridge, sa_id):
    """SA 'sa_id' of 'bridge' as parsed from pairkey/show of its own
    ovs-vswitchd ({} if it holds none)."""
    show = parse_show(net.appctl("pairkey/show", bridge,
                                 ovs=net.ovs_of(bridge)).stdout)
    return show.get(bridge, {}).get("sa", {}).get(sa_id, {})


def versions(net, bridge, sa_id):
    """[current, other] key versions of SA 'sa_id' on 'bridge': the one
    that encrypts first."""
    return sa(net, bridge, sa_id).get("versions", [])


def rotate(pk, *args):
    """pairkeyctl rotate-key ARGS; returns (pair id, new version)."""
    out = pk.ctl("rotate-key", *args).stdout
    m = re.match(r"key (\d+) version (\d+)$", out.strip())
    assert m, out
    return int(m.group(1)), int(m.group(2))


def rotated_everywhere(net, bridges, sa_id, version):
    return all(versions(net, b, sa_id)[:1] == [version] for b in bridges)


def sealed_frames(frames):
    return [s for s in map(parse_frame, frames) if s]


def test_hundred_rotations_lose_nothing(ks):
    """1. h1 pings h2 every 10 ms and streams TCP to it while their pair
    key is rotated 100 times, each rotation waited for on both bridges:
    not one ping lost, the stream arrives whole in time, the wire holds
    only sealed frames without the marker, no (sender, version, PN) twice,
    and the version went up by exactly 100.  Then the group key is
    rotated 10 times under the same pings: still nothing lost."""
    net, pk = ks
    net.static_arp()
    net.wait_ping("h1", "h2")
    pair, first = rotate(pk, "h1", "h2")
    wait_until(lambda: rotated_everywhere(net, ("br1", "br2"), pair, first),
               5, "the first rotation")
    m = marker()
    data = m * 40000
    with net.capture() as cap, net.pinger("h1", "h2", interval=0.01) as ping, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        wait_until(lambda: len(ping.replies) >= 10, 10, "pings h1 -> h2")
        stream = pool.submit(net.tcp_transfer, "h1", "h2", data, 5001, 60)
        version = first
        for _ in range(100):
            pair_again, version = rotate(pk, "h1", "h2")
            assert pair_again == pair
            wait_until(lambda: rotated_everywhere(net, ("br1", "br2"), pair,
                                                  version), 5,
                       "version %d on br1 and br2" % version)
        assert stream.result() == data
        groups = []
        for _ in range(10):
            out = pk.ctl("rotate-group").stdout
            g = int(re.match(r"group key version (\d+)$", out.strip())
                    .group(1))
            groups.append(g)
            wait_until(lambda: rotated_everywhere(
                net, [b.name for b in net.topo.bridges], GROUP_SA, g), 5,
                "group key version %d everywhere" % g)
        wait_until(lambda: len(ping.replies) >= len(ping.sent) - 2, 5,
                   "the last pings")
    assert version == first + 100
    assert groups == sorted(set(groups)) and len(groups) == 10
    assert not ping.lost(until=time.monotonic() - 1), \
        "lost pings %s of %d" % (ping.lost(), len(ping.sent))
    assert len(ping.sent) > 100
    assert_wire_sealed(net, cap.frames, (MARKER, m))
    sealed = sealed_frames(cap.frames)
    assert not nonce_repeats(sealed)
    assert {s.version for s in sealed} >= {first, version}
    audit = pk.ctl("audit").stdout
    assert audit.count("\trotate-key") >= 101, audit[-2000:]


# A switch that does not answer in time: the rollover finishes anyway.
LATE = (
    r"pairkeyd\.log: .*\|keyserver\|WARN\|rollover of 1 keys: \d+ "
    r"switches did not confirm in time, \d+ did not come back$",
)


@pytest.mark.allow_log(*LATE)
def test_rotation_refuses_bad_input(ks):
    """2. pairkeyd refuses a rekey interval that is not a number of
    seconds from 1 to a year.  rotate-key of a pair without a key, of an
    unknown client, with one id, or while the same key is still rolling
    over (ovs-vswitchd
    stopped with SIGSTOP, so that no barrier reply comes) fails with one
    clear line and changes nothing; with vswitchd continued, the rollover
    completes and h1 reaches h2 under the new version."""
    net, pk = ks
    net.wait_ping("h1", "h2")
    before = pk.ctl("dump").stdout
    for args, why in ((("h1", "h3"), "no key for this pair"),
                      (("h1", "nobody"), "no key for this pair"),
                      (("h1",), "use rotate-key ID1 ID2 or rotate-key "
                                "--all")):
        proc = pk.ctl("rotate-key", *args, check=False)
        assert proc.returncode != 0, args
        assert why in proc.stderr and len(proc.stderr.splitlines()) == 1, \
            proc.stderr
    assert pk.ctl("dump").stdout == before
    for bad in ("0", "-5", "1.5", "x", "31536001"):
        proc = run([os.path.join(net.ovs.bindir, "pairkeyd"),
                    "--db=" + os.path.join(net.ovs.rundir, "unused.db"),
                    "--rekey-interval=" + bad,
                    "punix:" + os.path.join(net.ovs.rundir, "unused.sock")],
                   check=False, env=net.ovs.env)
        assert proc.returncode != 0, bad
        assert "--rekey-interval=%s: must be a number of seconds" % bad \
            in proc.stderr, proc.stderr

    net.vswitchd.send_signal(signal.SIGSTOP)
    try:
        pair, version = rotate(pk, "h1", "h2")
        proc = pk.ctl("rotate-key", "h1", "h2", check=False)
        assert proc.returncode != 0
        assert "key %d is being rotated already" % pair in proc.stderr, \
            proc.stderr
        proc = pk.ctl("rotate-group", check=False)
    finally:
        net.vswitchd.send_signal(signal.SIGCONT)
    wait_until(lambda: rotated_everywhere(net, ("br1", "br2"), pair,
                                          version), 10,
               "the rollover to finish")
    assert net.ping("h1", "h2", count=2)


# br2 away: its controller connection drops, and comes back.
AWAY = (
    r"ovs-vswitchd\.log: .*\|rconn\|WARN\|br2<->unix:\S+: connection "
    r"(dropped|failed) .*$",
)


@pytest.mark.allow_log(*AWAY)
def test_rotation_while_a_holder_is_away(ks):
    """3. br2 loses its controller and h1 and h2's key is rotated: br1
    gets the new version for receiving only and keeps encrypting with the
    old one, which br2 still holds, for as long as br2 is away (the
    rollover waits for it; pairkey/show counts it).  Once br2 is back it
    gets the new version for receiving, confirms, and both switch over;
    h1 then pings h2 every 10 ms without a loss, nothing crossed the wire
    in the clear, no nonce twice.  (Removing a bridge's only controller
    makes OVS flush its flows, so br2 forwards nothing while it has none:
    a controller that is merely unreachable leaves the flows alone, see
    test_keyserver_kill9.)"""
    net, pk = ks
    net.static_arp()
    net.wait_ping("h1", "h2")
    pair = pk.pair_id("h1", "h2")
    old = versions(net, "br1", pair)[0]
    m = marker()
    with net.capture() as cap:
        net.vsctl("del-controller", "br2")
        wait_until(lambda: "br2" not in pk.connected(), 10,
                   "pairkeyd to lose br2")
        _, new = rotate(pk, "h1", "h2")
        wait_until(lambda: versions(net, "br1", pair) == [old, new], 5,
                   "br1 to decrypt version %d too" % new)
        net.udp_send("h1", "h2", 5555, m)
        assert versions(net, "br1", pair) == [old, new]
        assert versions(net, "br2", pair)[:1] == [old]
        assert "keys rolling over: 1" in pk.ctl("show").stdout
        net.set_controller(pk.listen[1:], ["br2"])
        wait_until(lambda: rotated_everywhere(net, ("br1", "br2"), pair,
                                              new), 10, "both to move on")
        with net.pinger("h1", "h2", interval=0.01) as ping:
            wait_until(lambda: len(ping.replies) >= 100, 10, "pings")
    assert not ping.lost(until=time.monotonic() - 1), ping.lost()
    assert "keys rolling over: 0" in pk.ctl("show").stdout
    assert_wire_sealed(net, cap.frames, (MARKER, m))
    assert not nonce_repeats(sealed_frames(cap.frames))


def test_rekey_interval(needs_pairkeyd, make_net):
    """4. pairkeyd --rekey-interval=2 rotates h1 and h2's key and the
    group key on its own, every two seconds or so, while h1 pings h2
    every 10 ms without a loss; the audit log says why."""
    net = make_net(KEYSERVER)
    pk = net.start_pairkeyd(extra=["--rekey-interval=2"])
    net.mark_ports()
    net.set_controller(pk.listen[1:])
    net.enroll()
    net.wait_keyserver()
    net.static_arp()
    net.wait_ping("h1", "h2")
    pair = pk.pair_id("h1", "h2")
    v0 = versions(net, "br1", pair)[0]
    g0 = versions(net, "br1", GROUP_SA)[0]
    with net.pinger("h1", "h2", interval=0.01) as ping:
        wait_until(lambda: versions(net, "br1", pair)[0] >= v0 + 2
                   and versions(net, "br1", GROUP_SA)[0] >= g0 + 2, 15,
                   "two automatic rotations")
        wait_until(lambda: len(ping.replies) >= len(ping.sent) - 2, 5,
                   "the last pings")
    assert not ping.lost(until=time.monotonic() - 1), ping.lost()
    assert "rekey interval" in pk.ctl("audit").stdout


def test_slow_holder_never_misses_a_version(needs_pairkeyd, make_net):
    """5. h1 (br1) and h2 (br2, in a second ovs-vswitchd) talk while br2's
    vswitchd is stopped (SIGSTOP) and their key is rotated: br1 gets the
    new version for receiving only and keeps encrypting with the old one
    as long as br2 has not confirmed it (pairkey/show lists the old version
    first); once br2 runs again, both move on.  br2 never sees a frame
    under a version it lacks (no unknown_version drop) and not one ping of
    h1's is lost, only delayed."""
    net = make_net(KEYSERVER_TWO_OVS)
    pk = net.start_keyserver()
    net.static_arp()
    net.wait_ping("h1", "h2")
    net.wait_ping("h2", "h1")
    pair = pk.pair_id("h1", "h2")
    old = versions(net, "br1", pair)[0]
    slow = net.instances["ovs2"].vswitchd
    with net.pinger("h1", "h2", interval=0.01) as ping:
        wait_until(lambda: len(ping.replies) >= 10, 10, "pings h1 -> h2")
        slow.send_signal(signal.SIGSTOP)
        try:
            _, new = rotate(pk, "h1", "h2")
            wait_until(lambda: versions(net, "br1", pair) == [old, new], 5,
                       "br1 to decrypt version %d too" % new)
            sent = len(ping.sent)
            wait_until(lambda: len(ping.sent) >= sent + 5, 5, "more pings")
            assert versions(net, "br1", pair) == [old, new]
        finally:
            slow.send_signal(signal.SIGCONT)
        wait_until(lambda: rotated_everywhere(net, ("br1", "br2"), pair,
                                              new), 5, "both to move on")
        wait_until(lambda: len(ping.replies) >= len(ping.sent) - 2, 5,
                   "the last pings")
    assert not ping.lost(until=time.monotonic() - 1), ping.lost()
    assert sa(net, "br2", pair)["drops"]["unknown_version"] == 0


def test_packet_limit(ks):
    """6. With a soft limit of 100 packets per key version on the bridges,
    every version of h1 and h2's key is reported when it reaches it and
    rotated by the key server (audited with reason "packet limit"), again
    and again, while h1 pings h2 every 10 ms without a loss."""
    net, pk = ks
    net.static_arp()
    net.wait_ping("h1", "h2")
    pair = pk.pair_id("h1", "h2")
    v0 = versions(net, "br1", pair)[0]
    net.appctl("pairkey/set-key-limits", "100", "100000")
    with net.pinger("h1", "h2", interval=0.01) as ping:
        wait_until(lambda: versions(net, "br1", pair)[0] >= v0 + 3, 15,
                   "three rotations at the packet limit")
        wait_until(lambda: len(ping.replies) >= len(ping.sent) - 2, 5,
                   "the last pings")
    assert not ping.lost(until=time.monotonic() - 1), ping.lost()
    assert "\tpacket limit" in pk.ctl("audit").stdout


# The key server is gone: the rotation the limit asks for never comes.
KEY_SERVER_GONE = (
    r"ovs-vswitchd\.log: .*\|rconn\|WARN\|br\d<->unix:\S+: connection "
    r"(dropped|failed) .*$",
)


@pytest.mark.allow_log(*KEY_SERVER_GONE)
def test_hard_limit_stops_encryption(ks):
    """7. With the key server killed, nothing rotates the key of h1 and h2:
    once a version encrypted the hard limit (50 packets) the bridges drop
    what they would encrypt under it (key_exhausted): h1's pings stop
    being answered, and nothing crosses the wire in the clear."""
    net, pk = ks
    net.static_arp()
    net.wait_ping("h1", "h2")
    pair = pk.pair_id("h1", "h2")
    pk.kill()
    net.appctl("pairkey/set-key-limits", "10", "50")
    m = marker()
    with net.capture() as cap:
        with net.pinger("h1", "h2", interval=0.01) as ping:
            wait_until(lambda: sa(net, "br1", pair).get("drops", {}).get(
                "key_exhausted", 0) >= 10, 15, "br1 to stop encrypting")
        net.udp_send("h1", "h2", 5555, m)
    assert ping.lost(), "no ping lost after the hard limit"
    assert len(ping.replies) <= 50
    assert_wire_sealed(net, cap.frames, (MARKER, m))


def kcvs(net, bridge, sa_id):
    """Key check values of SA 'sa_id' on 'bridge', current version
    first."""
    return sa(net, bridge, sa_id).get("kcv", [])


def lost(bridge):
    """The key server's warning that 'bridge' lost a key version."""
    return (r"pairkeyd\.log: .*\|keyserver\|WARN\|%s: lost version \d+ of "
            r"key \d+; rotating it$" % bridge)


@pytest.mark.allow_log(lost("br2"))
def test_self_heal_after_a_lost_version(ks):
    """8. br2 loses the current version of h1 and h2's key behind the key
    server's back (the SA replaced by hand with an older version and an
    unrelated key): h1's frames reach br2 under a version it lacks and br2
    reports it.  The report is only a hint: the key server asks br2
    (NXCSM_VERIFY) whether it holds the version it was given, and on br2's
    answer that it does not, rolls the key over to a new version (audited
    "rotate ... lost version"); it never sends br2 the lost version again.
    h1 reaches h2 again within a second, both bridges hold the same new
    key (same kcv); nothing in the clear."""
    net, pk = ks
    net.static_arp()
    net.wait_ping("h1", "h2")
    pair, version = rotate(pk, "h1", "h2")
    wait_until(lambda: rotated_everywhere(net, ("br1", "br2"), pair,
                                          version), 5, "the rotation")
    stale = os.path.join(net.ovs.rundir, "stale.key")
    with open(stale, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    m = marker()
    with net.capture() as cap:
        net.ofctl("del-sa", "br2", "id=%d" % pair)
        net.ofctl("add-sa", "br2", "id=%d,version=%d,key-file=%s"
                  % (pair, version - 1, stale))
        assert versions(net, "br2", pair) == [version - 1]
        start = time.monotonic()
        with net.pinger("h1", "h2", interval=0.01) as ping:
            wait_until(lambda: len(ping.replies) >= 5, 10,
                       "h1 to reach h2 again")
            healed = min(ping.replies.values()) - start
        net.udp_send("h1", "h2", 5555, m)
    assert healed < 1.0, "healed after %.3f s" % healed
    assert versions(net, "br2", pair)[0] == version + 1
    assert versions(net, "br1", pair)[0] == version + 1
    assert kcvs(net, "br1", pair)[0] == kcvs(net, "br2", pair)[0]
    assert re.search(r"\trotate\th1\th2\t%d\t-\tlost version\t"
                     % (version + 1), pk.ctl("audit").stdout, re.M), \
        pk.ctl("audit").stdout[-1500:]
    assert "repush" not in pk.ctl("audit").stdout
    assert "keys lost by a switch: 1" in pk.ctl("show").stdout
    assert_wire_sealed(net, cap.frames, (MARKER, m))


@pytest.mark.allow_log(lost("br1"))
def test_self_heal_of_a_lagging_sender(ks):
    """9. The other case: the sender's bridge is left on an older version
    (br1's SA replaced by hand with a version two rotations back and an
    unrelated key), so br2 gets frames under a version it no longer holds
    and reports them; the key server verifies the sender's bridge, br1,
    and on its answer rolls the key over.  h1 reaches h2 again within a
    second (fails without the verify)."""
    net, pk = ks
    net.static_arp()
    net.wait_ping("h1", "h2")
    for _ in range(2):
        pair, version = rotate(pk, "h1", "h2")
        wait_until(lambda: rotated_everywhere(net, ("br1", "br2"), pair,
                                              version), 5, "the rotation")
    stale = os.path.join(net.ovs.rundir, "stale.key")
    with open(stale, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    net.ofctl("del-sa", "br1", "id=%d" % pair)
    net.ofctl("add-sa", "br1", "id=%d,version=%d,key-file=%s"
              % (pair, version - 2, stale))
    start = time.monotonic()
    with net.pinger("h1", "h2", interval=0.01) as ping:
        wait_until(lambda: len(ping.replies) >= 5, 10,
                   "h1 to reach h2 again")
        healed = min(ping.replies.values()) - start
    assert healed < 1.0, "healed after %.3f s" % healed
    assert versions(net, "br1", pair)[0] == version + 1
    assert kcvs(net, "br1", pair)[0] == kcvs(net, "br2", pair)[0]
    assert sa(net, "br2", pair)["drops"]["unknown_version"] >= 1
    assert ("\trotate\th1\th2\t%d\t-\tlost version" % (version + 1)
            in pk.ctl("audit").stdout)
