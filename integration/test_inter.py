"""Two encrypted subnets (topo.INTER), each with its own key server (ks-a
for bra and bga, ks-b for bgb and brb), joined by their gateways' inter
ports (pairkey-role=inter) on a third wire.  The key servers peer over
SSL and agree on a NETKEY; a frame from ha to hb crosses wirea under the
pair key (ha, gateway A), iwire under the NETKEY, and wireb under the
pair key (hb, gateway B).  No segment ever carries plaintext.
"""

import os
import re
import secrets
import socket

import pytest

import harness
import pairkey
from harness import wait_until
from pairkey import ETH_P_PAIRKEY, ethertype
from topo import INTER, INTER_OFPORT

MARKER = b"PAIRKEY-INTER-MARKER-"
NETKEY_SA = 0xffff0000 + INTER_OFPORT


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_subnets(net, peer=True):
    """ks-a and ks-b, each controlling its subnet's bridges; ports marked;
    ha enrolled in A, hb in B; if 'peer', peers that agreed on a NETKEY.
    Returns (ks-a, ks-b)."""
    pki = net.make_pki("pki")
    ports = {"ks-a": free_port(), "ks-b": free_port()}
    ks = {}
    for name in ("ks-a", "ks-b"):
        ks[name] = net.start_pairkeyd(
            name=name, ssl=net.make_cert(pki, name, "controller")[:2]
            + (os.path.join(pki, "ca", "controllerca", "cacert.pem"),),
            extra=["--name=" + name,
                   "--peer-listen=pssl:%d:127.0.0.1" % ports[name]])
    net.mark_ports()
    for gw, other in (("bga", "ks-b"), ("bgb", "ks-a")):
        net.vsctl("set", "Interface", gw + "-in",
                  "external_ids:pairkey-role=inter",
                  "external_ids:pairkey-peer=" + other)
    for br, name in (("bra", "ks-a"), ("bga", "ks-a"), ("bgb", "ks-b"),
                     ("brb", "ks-b")):
        net.set_controller(ks[name].listen[1:], [br])
    ks["ks-a"].ctl("add-client", "ha", net.topo.host("ha").mac)
    ks["ks-b"].ctl("add-client", "hb", net.topo.host("hb").mac)
    if not peer:
        return ks["ks-a"], ks["ks-b"]
    ks["ks-a"].ctl("add-peer", "ks-b", "ssl:127.0.0.1:%d" % ports["ks-b"])
    ks["ks-b"].ctl("add-peer", "ks-a", "ssl:127.0.0.1:%d" % ports["ks-a"])
    wait_until(lambda: all(NETKEY_SA in net.sa_ids()[gw]
                           for gw in ("bga", "bgb")), 15,
               "both gateways to hold the NETKEY")
    return ks["ks-a"], ks["ks-b"]


def exchange(net, m):
    """ha and hb ping each other and send 'm' * 300 over TCP both ways."""
    net.wait_ping("ha", "hb", timeout=15)
    assert net.ping("hb", "ha", count=2)
    data = m * 300
    assert net.tcp_transfer("ha", "hb", data) == data
    assert net.tcp_transfer("hb", "ha", data) == data
    wait_until(lambda: net.tcp_idle("ha") and net.tcp_idle("hb"), 10,
               "TCP to finish")


def assert_sealed(frames, markers, where):
    assert frames, "nothing on " + where
    for f in frames:
        assert ethertype(f) == ETH_P_PAIRKEY, \
            "clear frame on %s: %s > %s %04x" % (
                where, f[6:12].hex(":"), f[0:6].hex(":"), ethertype(f))
        for m in markers:
            assert m not in f, "plaintext marker on " + where


# Before the peers have added each other, the first may dial in unknown.
EARLY_PEER = r"ks-[ab]\.log: .*\|peers\|WARN\|.*certificate 'ks-[ab]' is " \
    r"not a configured peer; closing$"


@pytest.mark.allow_log(EARLY_PEER)
def test_clients_of_two_subnets_talk_sealed(needs_pairkeyd, make_net):
    """1. ha (subnet A) and hb (subnet B) ping and run TCP both ways, ARP
    included.  Captures on all three wires hold only 0x88b5 frames and no
    marker; ha's and hb's frames cross iwire; each key server knows the
    other subnet's host as an outside host behind its own gateway, and
    holds a pair key with it through that gateway, not a key of the
    other subnet.  Both gateways use the same NETKEY version."""
    net = make_net(INTER)
    ka, kb = start_subnets(net)
    m = MARKER + secrets.token_hex(8).encode()
    with net.capture("wirea") as ca, net.capture("wireb") as cb, \
            net.capture("iwire") as ci:
        exchange(net, m)
    for frames, where in ((ca.frames, "wirea"), (cb.frames, "wireb"),
                          (ci.frames, "iwire")):
        assert_sealed(frames, (MARKER, m), where)
    ha_mac = bytes.fromhex(net.topo.host("ha").mac.replace(":", ""))
    assert [f for f in ci.frames if f[6:12] == ha_mac], "ha not on iwire"

    da, db = ka.dump(), kb.dump()
    gw_a, = da["gateways"]
    gw_b, = db["gateways"]
    assert da["outside"] == {net.topo.host("hb").mac: gw_a}
    assert db["outside"] == {net.topo.host("ha").mac: gw_b}
    assert frozenset(("ha", gw_a)) in da["pairs"]
    assert frozenset(("hb", gw_b)) in db["pairs"]
    st = pairkey.show(net)
    for gw in ("bga", "bgb"):
        for what in ("encrypted", "decrypted"):
            assert pairkey.counter(st, gw, NETKEY_SA, what, "packets") > 0, \
                (gw, what)
    va = re.search(r"\tnetkey (\d+) (\w+)$", ka.ctl("list-peers").stdout,
                   re.M)
    vb = re.search(r"\tnetkey (\d+) (\w+)$", kb.ctl("list-peers").stdout,
                   re.M)
    assert va and vb and va.groups() == vb.groups()


def netkey_version(ks):
    """The NETKEY version ks lists for its (only) peer, or None."""
    m = re.search(r"\tnetkey (\d+) \w+$", ks.ctl("list-peers").stdout, re.M)
    return int(m.group(1)) if m else None


def wait_netkey(net, ka, kb, above):
    """Waits until both key servers list one NETKEY version above 'above'
    and both gateways hold it; returns it."""
    def agreed():
        va, vb = netkey_version(ka), netkey_version(kb)
        if va is None or va != vb or va <= above:
            return None
        st = pairkey.show(net)
        return va if all(st.get(gw, {}).get("sa", {}).get(NETKEY_SA, {})
                         .get("versions", [None])[0] == va
                         for gw in ("bga", "bgb")) else None
    return wait_until(agreed, 15, "a NETKEY above version %d" % above)


# Restarted daemons: the bridges lose and regain their controllers.
RESTARTS = (
    r"ovs-vswitchd\.log: .*\|rconn\|WARN\|b\w+<->ssl:\S+: connection "
    r"(failed|dropped) .*$",
    r"ks-[ab]\.log: .*\|(peers|jsonrpc|reconnect|stream_ssl)\|WARN\|.*$",
)


@pytest.mark.allow_log(EARLY_PEER, *RESTARTS)
def test_netkey_rolls_forward(needs_pairkeyd, make_net):
    """4. A NETKEY version reaches a gateway once, like every key.  After
    ovs-vswitchd restarts (both gateways lose their SAs and would take the
    old version with new replay windows), the owner (ks-a) rotates the
    NETKEY, ks-b obtains the new version, both gateways hold it and the
    subnets talk again; a NETKEY frame recorded on iwire before the
    restart, replayed into bgb, is dropped as an unknown version.  After
    the other key server (ks-b) restarts, the version moves on again; each
    rotation is in both audit logs."""
    net = make_net(INTER)
    ka, kb = start_subnets(net)
    v1 = wait_netkey(net, ka, kb, 0)
    with net.capture("iwire") as ci:
        net.wait_ping("ha", "hb", timeout=15)
    old = [f for f in ci.frames if ethertype(f) == ETH_P_PAIRKEY
           and f[6:12] == bytes.fromhex(
               net.topo.host("ha").mac.replace(":", ""))]
    assert old, "no frame of ha on iwire"

    net.restart_vswitchd()
    v2 = wait_netkey(net, ka, kb, v1)
    net.wait_ping("ha", "hb", timeout=15)
    before = pairkey.counter(pairkey.show(net), "bgb", NETKEY_SA, "drops",
                             "unknown_version")
    net.inject("bgb", old, inter=True)
    wait_until(lambda: pairkey.counter(pairkey.show(net), "bgb", NETKEY_SA,
                                       "drops", "unknown_version")
               >= before + len(old), 10, "bgb to drop the replayed frames")

    kb.stop()
    kb.start()
    wait_netkey(net, ka, kb, v2)
    net.wait_ping("ha", "hb", timeout=15)
    for ks in (ka, kb):
        events = [line.split("\t") for line in
                  ks.ctl("audit").stdout.splitlines()]
        assert [e for e in events if "rotate" in e or "obtain" in e], \
            ks.name


def test_no_netkey_nothing_crosses(needs_pairkeyd, make_net):
    """2. The same subnets, but the key servers never peer: the gateways
    hold no NETKEY, ha and hb cannot reach each other, and not one frame
    reaches iwire, neither sealed nor in the clear; frames for the other
    subnet die in the gateway's clone under the missing SA, counted."""
    net = make_net(INTER)
    start_subnets(net, peer=False)
    wait_until(lambda: all(0 in net.sa_ids()[b] for b in ("bra", "bga",
                                                          "bgb", "brb")),
               10, "every bridge to hold its subnet's group key")
    with net.capture("iwire") as ci:
        assert not net.ping("ha", "hb", count=3)
        assert not net.ping("hb", "ha", count=3)
    assert not ci.frames, "%d frames on iwire" % len(ci.frames)
    for gw in ("bga", "bgb"):
        assert NETKEY_SA not in net.sa_ids()[gw]


# A peer that nobody answers for.
UNREACHABLE = (
    r"ks-[ab]\.log: .*\|(reconnect|stream_ssl|jsonrpc)\|WARN\|.*$",
)


@pytest.mark.allow_log(*UNREACHABLE)
def test_unreachable_peer_nothing_crosses(needs_pairkeyd, make_net):
    """2b. Each key server is configured with its peer at an address where
    nothing listens: list-peers says 'not connected' and 'no netkey', the
    gateways hold no NETKEY, and not one frame reaches iwire while ha and
    hb try each other."""
    net = make_net(INTER)
    ka, kb = start_subnets(net, peer=False)
    ka.ctl("add-peer", "ks-b", "ssl:127.0.0.1:%d" % free_port())
    kb.ctl("add-peer", "ks-a", "ssl:127.0.0.1:%d" % free_port())
    wait_until(lambda: all(0 in net.sa_ids()[b] for b in ("bra", "bga",
                                                          "bgb", "brb")),
               10, "every bridge to hold its subnet's group key")
    with net.capture("iwire") as ci:
        assert not net.ping("ha", "hb", count=3)
        assert not net.ping("hb", "ha", count=3)
    assert not ci.frames, "%d frames on iwire" % len(ci.frames)
    for ks in (ka, kb):
        line = ks.ctl("list-peers").stdout
        assert "\tnot connected\t" in line and line.endswith(
            "\tno netkey\n"), line
    for gw in ("bga", "bgb"):
        assert NETKEY_SA not in net.sa_ids()[gw]


BAD_MARKS = (
    r"ks-[ab]\.log: .*\|marks\|WARN\|interface bga-in: pairkey-role=inter "
    r"needs pairkey-peer=NAME, a valid peer name; mark ignored$",
    r"ks-[ab]\.log: .*\|marks\|WARN\|interface bga-in: unknown "
    r"pairkey-role; mark ignored$",
)


def from_bga(net):
    """Frames iwire has received from bga's inter port."""
    return harness.link_stats(net.ns("wire"), "in-bga")["rx_packets"]


@pytest.mark.allow_log(EARLY_PEER, *BAD_MARKS)
def test_bad_inter_marks_close_the_link(needs_pairkeyd, make_net):
    """3. The inter port of bga marked without pairkey-peer, with a peer
    name that is not valid, or with an unknown role: the key server logs
    the bad mark (once), bga's flows and NETKEY SA for the port go, and
    not one frame leaves bga for iwire while ha tries hb (bgb, still
    whole, may send hb's).  With the mark repaired, the subnets talk
    again."""
    net = make_net(INTER)
    start_subnets(net)
    net.wait_ping("ha", "hb", timeout=15)
    bad = (["external_ids:pairkey-role=inter",
            "external_ids:pairkey-peer=\"\""],
           ["external_ids:pairkey-role=inter",
            "external_ids:pairkey-peer=\"ks b\""],
           ["external_ids:pairkey-role=gateway"])
    for settings in bad:
        net.vsctl("remove", "Interface", "bga-in", "external_ids",
                  "pairkey-peer")
        net.vsctl("set", "Interface", "bga-in", *settings)
        wait_until(lambda: "actions=decrypt:%d" % NETKEY_SA not in
                   net.ofctl("dump-flows", "bga", "table=0").stdout, 10,
                   "bga to stop decrypting from its inter port")
        before = from_bga(net)
        assert not net.ping("ha", "hb", count=2), settings
        assert from_bga(net) == before, settings
    net.vsctl("set", "Interface", "bga-in", "external_ids:pairkey-role=inter",
              "external_ids:pairkey-peer=ks-b")
    net.wait_ping("ha", "hb", timeout=15)
