"""Data-plane scenarios on topo.TWO_HOSTS: h1 on br1, h2 on br2, one
ovs-vswitchd, both bridges uplinked to one wire with an eavesdropper.
SAs and flows are installed by hand:

    br1: in_port=h1,actions=encrypt:1,output:br1-up
         in_port=br1-up,dl_type=0x88b5,actions=decrypt:1,output:h1
    br2: the same with h2.

The test_plain_* tests use plain forwarding instead and run with stock OVS
binaries: they prove the harness itself (capture, injection, VLAN,
restart).  Everything else skips until the binaries have pairkey.

Tests taking 'pk_each' run twice: with AF_PACKET ports, polled by
vswitchd's main thread, and on topo.TWO_HOSTS_AFXDP, whose AF_XDP ports
two PMD threads poll (skipped when AF_XDP cannot be set up).
"""

import dataclasses
import os
import secrets
import shutil

import pytest

from harness import wait_until
from pairkey import (DROP_REASONS, ETH_HLEN, ETH_P_PAIRKEY, HEADER,
                     OVERHEAD, add_sa, assert_no_key, counter, crypto_flows,
                     ethertype, flip_bit, mac_bytes, nonce_repeats,
                     parse_frame, plain_flows, rewrite, seal_pair, show)
from topo import TWO_HOSTS, TWO_HOSTS_AFXDP, TWO_HOSTS_VLAN

PORT = 5555
BROADCAST = b"\xff" * 6
MARKER = b"PAIRKEY-MARKER-"

# What ovs-vswitchd logs at WARN/ERR with AF_XDP ports, harmlessly:
AFXDP_LOG = (
    # OVS lifts RLIMIT_MEMLOCK to infinity before creating a umem; without
    # CAP_SYS_RESOURCE (a container) that fails, yet the port works: since
    # Linux 5.11 BPF memory is charged to the cgroup, and CAP_IPC_LOCK
    # exempts the umem from the limit.
    r"\|netdev_afxdp\|ERR\|setrlimit\(RLIMIT_MEMLOCK\) failed: "
    r"Operation not permitted$",
    # Two PMD threads busy-poll both cores, so the main thread can wait
    # for a CPU for a second while it sets up a port's umem: the
    # "Unreasonably long poll interval" report with its rusage lines, and
    # the RCU thread's complaint that main did not quiesce meanwhile.
    r"\|timeval\|WARN\|(Unreasonably long \d+ms poll interval"
    r"|faults: \d+ minor|disk: \d+ reads|context switches: \d+ voluntary)",
    r"\|ovs_rcu\(urcu\d*\)\|WARN\|blocked \d+ ms waiting for main to "
    r"quiesce$",
)

# The two ways OVS polls ports: AF_PACKET sockets in the main thread, AF_XDP
# sockets in two PMD threads.
DATAPATHS = [
    pytest.param(TWO_HOSTS, id="afpacket"),
    pytest.param(TWO_HOSTS_AFXDP, id="afxdp",
                 marks=pytest.mark.allow_log(*AFXDP_LOG)),
]


def marker():
    """A unique plaintext that must never be seen on the wire."""
    return MARKER + secrets.token_hex(8).encode()


def mac(net, host):
    return mac_bytes(net.topo.host(host).mac)


def drops(net, bridge, reason, sa_id=1):
    return counter(show(net), bridge, sa_id, "drops", reason)


def wait_drops(net, bridge, reason, at_least, sa_id=1):
    wait_until(lambda: drops(net, bridge, reason, sa_id) >= at_least, 10,
               "%s drops %s >= %d" % (bridge, reason, at_least))


def describe(frame):
    """A frame's Ethernet header and first bytes, for failure messages."""
    return "%s %s %04x %s" % (frame[0:6].hex(":"), frame[6:12].hex(":"),
                              ethertype(frame), frame[14:30].hex())


def assert_sealed_only(net, frames, markers=(MARKER,)):
    """Every frame on the wire is encrypted, between host MACs, and no
    plaintext marker shows."""
    macs = {mac_bytes(h.mac) for h in net.topo.hosts}
    for f in frames:
        assert ethertype(f) == ETH_P_PAIRKEY, "clear frame on the wire: " \
            + describe(f)
        assert f[6:12] in macs, "unknown source MAC: " + describe(f)
        assert f[0:6] in macs | {BROADCAST}, "unknown dest: " + describe(f)
        for m in markers:
            assert m not in f, "plaintext marker on the wire: " + describe(f)


def sealed_and_wire(net):
    """(frames the bridges have encrypted under SA 1, frames the wire has
    received): equal deltas mean every encrypted frame reached the wire."""
    st = show(net)
    return (sum(counter(st, br.name, 1, "encrypted", "packets")
                for br in net.topo.bridges), net.wire_rx())


def settle(net, base):
    """Waits until TCP in every host has finished (no more frames to come)
    and every frame encrypted since 'base' (from sealed_and_wire()) is on
    the wire: a capture stopped and counters read afterwards then see the
    same frames."""
    wait_until(lambda: all(net.tcp_idle(h.name) for h in net.topo.hosts),
               10, "TCP connections to finish")
    def caught_up():
        sealed, wire = sealed_and_wire(net)
        return sealed - base[0] == wire - base[1]
    wait_until(caught_up, 10, "every encrypted frame to reach the wire")


def only_frame_from(frames, src):
    found = [f for f in frames if f[6:12] == src]
    assert len(found) == 1, "expected one frame from %s, got %d" % (
        src.hex(":"), len(found))
    return found[0]


def delivered_from(sniffer, src):
    return [f for f in sniffer.received() if f[6:12] == src]


@pytest.fixture
def pk(needs_pairkey, net):
    """TWO_HOSTS with one random key as SA 1 (version 1) on both bridges
    and the encrypt/decrypt flows (pairkey.seal_pair).  Returns (net,
    key)."""
    return net, seal_pair(net)


@pytest.fixture(params=DATAPATHS)
def pk_each(request, needs_pairkey, make_net):
    """pk, once on AF_PACKET ports and once on AF_XDP ports."""
    net = make_net(request.param)
    return net, seal_pair(net)


# ------------------------------------------- harness proof (stock OVS)

def test_plain_plumbing(net):
    """Plain forwarding: ping, TCP and UDP work, the eavesdropper sees the
    marker in clear, and a frame injected on the wire reaches h2."""
    plain_flows(net)
    m = marker()
    rx = net.udp_socket("h2", PORT)
    with net.capture() as cap:
        net.wait_ping("h1", "h2")
        assert net.ping("h1", "h2", count=3)
        data = m * 2000
        assert net.tcp_transfer("h1", "h2", data) == data
        net.udp_send("h1", "h2", PORT, m)
        assert wait_until(lambda: net.udp_recv(rx)) == m

    macs = {mac(net, "h1"), mac(net, "h2")}
    assert cap.frames
    assert {f[6:12] for f in cap.frames} == macs
    assert {ethertype(f) for f in cap.frames} <= {0x0800, 0x0806}
    datagrams = [f for f in cap.frames if m in f and f[23] == 17]
    assert len(datagrams) == 1
    assert len([f for f in cap.frames if m in f]) > 10    # TCP segments

    sniffer = net.sniffer("h2")
    net.inject("br2", datagrams)
    assert wait_until(lambda: net.udp_recv(rx)) == m
    assert any(m in f for f in sniffer.received())

    for br in net.topo.bridges:
        mtu = net.vsctl("get", "Interface", br.uplink, "mtu").stdout.strip()
        assert mtu == str(net.topo.wire_mtu)


def test_plain_vlan_plumbing(make_net):
    """VLAN sub-interfaces work, and in clear the wire shows 802.1Q tags
    (so the encrypted VLAN test below is meaningful)."""
    net = make_net(TWO_HOSTS_VLAN)
    plain_flows(net)
    with net.capture() as cap:
        net.wait_ping("h1", "h2")
    tagged = [f for f in cap.frames if ethertype(f) == 0x8100]
    assert tagged and all(f[14:16] == b"\x00\x64" for f in tagged)


def vlan_push_flows(net, encrypt):
    """br1 tags what h1 sends with VLAN 100 (no VLAN devices needed on the
    hosts); br2 delivers what comes from the wire as it is."""
    for host, br in (("h1", "br1"), ("h2", "br2")):
        _, port = net.host_port(host)
        up = net.uplink(br)
        push = "mod_vlan_vid:100," if host == "h1" else ""  # OF1.0: adds a tag
        seal = "encrypt:1," if encrypt else ""
        unseal = "dl_type=0x88b5,actions=decrypt:1," if encrypt else "actions="
        net.add_flow(br, "in_port=%d,actions=%s%soutput:%d"
                     % (port, push, seal, up))
        net.add_flow(br, "in_port=%d,%soutput:%d" % (up, unseal, port))


def tagged_with(frames, vid, m):
    return [f for f in frames if ethertype(f) == 0x8100
            and int.from_bytes(f[14:16], "big") & 0xFFF == vid and m in f]


def test_plain_vlan_push_plumbing(net):
    """br1 pushes VLAN 100 on h1's frames: the wire and h2's eth0 show the
    tag (proves tag-aware capture and sniffing)."""
    vlan_push_flows(net, encrypt=False)
    net.static_arp()
    sniffer = net.sniffer("h2")
    m = marker()
    with net.capture() as cap:
        net.udp_send("h1", "h2", PORT, m)
        wait_until(lambda: tagged_with(sniffer.received(), 100, m), 10,
                   "tagged frame at h2")
    assert len(tagged_with(cap.frames, 100, m)) == 1


@pytest.mark.parametrize("crash", [False, True], ids=["exit", "kill"])
def test_plain_restart_plumbing(net, crash):
    """Restarting ovs-vswitchd keeps bridges and ports; flows must be
    reinstalled, and until then fail_mode=secure passes nothing."""
    plain_flows(net)
    net.wait_ping("h1", "h2")
    old = net.vswitchd.pid
    net.restart_vswitchd(crash)
    assert net.vswitchd.pid != old
    assert not net.ping("h1", "h2")
    plain_flows(net)
    net.wait_ping("h1", "h2")


# ------------------------------------------------------ pairkey

def test_encrypted_traffic(pk_each):
    """1. ping, TCP and UDP work; the wire holds only 0x88b5 frames of
    h1/h2, never the marker; counters rise on both bridges and match the
    wire; no key bytes in any output."""
    net, key = pk_each
    m = marker()
    rx = net.udp_socket("h2", PORT)
    base = sealed_and_wire(net)
    with net.capture() as cap:
        net.wait_ping("h1", "h2")
        assert net.ping("h1", "h2", count=3)
        data = m * 2000
        assert net.tcp_transfer("h1", "h2", data) == data
        net.udp_send("h1", "h2", PORT, m)
        assert wait_until(lambda: net.udp_recv(rx)) == m
        settle(net, base)

    assert cap.frames
    assert_sealed_only(net, cap.frames, (MARKER, m))
    sealed = [parse_frame(f) for f in cap.frames]
    assert {(s.format, s.cipher, s.version) for s in sealed} == {(1, 1, 1)}
    assert not nonce_repeats(sealed), "a (MAC, version, PN) repeats"
    assert {s.src for s in sealed} == {mac(net, "h1"), mac(net, "h2")}

    st = show(net)
    for br, host, peer in (("br1", "h1", "h2"), ("br2", "h2", "h1")):
        sa = st[br]["sa"][1]
        assert sa["cipher"] == "aes-256-gcm"
        assert sa["versions"] == [1]
        sent = sum(1 for s in sealed if s.src == mac(net, host))
        got = sum(1 for s in sealed if s.src == mac(net, peer))
        assert sa["encrypted"]["packets"] == sent
        assert sa["decrypted"]["packets"] == got
        assert {r: sa["drops"].get(r, 0) for r in DROP_REASONS} == \
            dict.fromkeys(DROP_REASONS, 0)

    outputs = {"pairkey/show": net.appctl("pairkey/show").stdout}
    for br in ("br1", "br2"):
        outputs["dump-flows " + br] = net.ofctl("dump-flows", br).stdout
    with open(net.ovs.path("ovs-vswitchd.log")) as f:
        outputs["ovs-vswitchd.log"] = f.read()
    for where, text in outputs.items():
        assert_no_key(key, text, where)


def test_tampered_truncated_replayed_frames_are_dropped(pk_each):
    """2. Copies of a genuine frame that br2 has not yet seen, bit-flipped
    or truncated and injected toward h2, are not delivered and are counted
    on br2; the intact frame is then delivered once, and its replay is
    dropped."""
    net, _ = pk_each
    net.static_arp()
    m = marker()
    rx = net.udp_socket("h2", PORT)
    up = net.uplink("br2")
    # Let br2 ignore the genuine frame, so its PN stays fresh for br2.
    net.add_flow("br2", "priority=60000,in_port=%d,actions=drop" % up)
    net.flush_datapath_flows()
    with net.capture() as cap:
        net.udp_send("h1", "h2", PORT, m)
        wait_until(lambda: [f for f in cap.current()
                            if f[6:12] == mac(net, "h1")], 10,
                   "h1's frame on the wire")
    orig = only_frame_from(cap.frames, mac(net, "h1"))
    net.ofctl("--strict", "del-flows", "br2", "priority=60000,in_port=%d" % up)
    net.flush_datapath_flows()
    assert net.udp_recv(rx) is None

    body = ETH_HLEN + HEADER.size
    sealed = parse_frame(orig)
    cases = [("bad_tag", "tag bit flipped", flip_bit(orig, -1)),
             ("bad_tag", "ciphertext bit flipped", flip_bit(orig, body + 4)),
             ("bad_tag", "PN changed", rewrite(orig, pn=sealed.pn + 1)),
             ("bad_tag", "source MAC changed", flip_bit(orig, 11, 1)),
             ("truncated", "cut inside the tag", orig[:body + 8]),
             ("truncated", "header only", orig[:body])]
    sniffer = net.sniffer("h2")
    for reason, what, frame in cases:
        before = drops(net, "br2", reason)
        net.inject("br2", [frame])
        wait_until(lambda: drops(net, "br2", reason) == before + 1, 10,
                   "%s counted as %s" % (what, reason))
    assert net.udp_recv(rx) is None
    assert not delivered_from(sniffer, mac(net, "h1"))

    net.inject("br2", [orig])                 # intact: delivered once
    assert wait_until(lambda: net.udp_recv(rx)) == m
    before = drops(net, "br2", "replay")
    net.inject("br2", [orig])                 # again: a replay
    wait_drops(net, "br2", "replay", before + 1)
    assert net.udp_recv(rx) is None
    assert len(delivered_from(sniffer, mac(net, "h1"))) == 1
    assert show(net)["br2"]["sa"][1]["decrypted"]["packets"] == 1

    # Nothing crashed: genuine traffic still flows.
    net.udp_send("h1", "h2", PORT, m)
    assert wait_until(lambda: net.udp_recv(rx)) == m


def test_wrong_key_delivers_nothing(needs_pairkey, net):
    """3. br2 holds a different key for SA 1: nothing reaches h2, bad_tag
    rises."""
    add_sa(net, "br1", net.key())
    add_sa(net, "br2", net.key())
    crypto_flows(net)
    net.static_arp()
    m = marker()
    rx = net.udp_socket("h2", PORT)
    sniffer = net.sniffer("h2")
    with net.capture() as cap:
        for _ in range(3):
            net.udp_send("h1", "h2", PORT, m)
        wait_drops(net, "br2", "bad_tag", 3)
        assert not net.ping("h1", "h2")
    assert_sealed_only(net, cap.frames, (MARKER, m))
    assert net.udp_recv(rx) is None
    assert not delivered_from(sniffer, mac(net, "h1"))
    assert show(net)["br2"]["sa"][1]["decrypted"]["packets"] == 0


def test_deleted_sa_passes_nothing(pk):
    """4. After del-sa on br1 nothing from h1 reaches the wire (no
    plaintext fallback) and ping fails."""
    net, _ = pk
    net.static_arp()
    net.wait_ping("h1", "h2")
    net.ofctl("del-sa", "br1", "id=1")
    st = show(net)
    assert 1 not in st["br1"]["sa"] and 1 in st["br2"]["sa"]
    before = st["br1"].get("unknown_sa", 0)
    m = marker()
    rx = net.udp_socket("h2", PORT)
    with net.capture() as cap:
        assert not net.ping("h1", "h2", count=2)
        net.udp_send("h1", "h2", PORT, m)
        wait_until(lambda: show(net)["br1"].get("unknown_sa", 0)
                   >= before + 3, 10, "br1 unknown_sa to count 3 frames")
    assert not [f for f in cap.frames if f[6:12] == mac(net, "h1")]
    assert_sealed_only(net, cap.frames, (MARKER, m))
    assert net.udp_recv(rx) is None


def test_new_key_version(pk):
    """5. Version 2 added on both bridges: traffic continues under version
    2 and pairkey/show lists versions=2,1."""
    net, _ = pk
    net.wait_ping("h1", "h2")
    key2 = net.key()
    for br in ("br1", "br2"):
        add_sa(net, br, key2, version=2)
    st = show(net)
    assert st["br1"]["sa"][1]["versions"] == [2, 1]
    assert st["br2"]["sa"][1]["versions"] == [2, 1]
    m = marker()
    rx = net.udp_socket("h2", PORT)
    with net.capture() as cap:
        assert net.ping("h1", "h2", count=3)
        net.udp_send("h1", "h2", PORT, m)
        assert wait_until(lambda: net.udp_recv(rx)) == m
    assert_sealed_only(net, cap.frames, (MARKER, m))
    assert {parse_frame(f).version for f in cap.frames} == {2}
    for br in ("br1", "br2"):
        assert drops(net, br, "unknown_version") == 0


def test_unknown_key_version_is_dropped(pk):
    """6. A frame naming a key version neither side holds is dropped and
    counted as unknown_version."""
    net, _ = pk
    net.static_arp()
    m = marker()
    rx = net.udp_socket("h2", PORT)
    with net.capture() as cap:
        net.udp_send("h1", "h2", PORT, m)
        assert wait_until(lambda: net.udp_recv(rx)) == m
    orig = only_frame_from(cap.frames, mac(net, "h1"))
    forged = rewrite(orig, version=0x7777, pn=parse_frame(orig).pn + 100)
    sniffer = net.sniffer("h2")
    before = drops(net, "br2", "unknown_version")
    net.inject("br2", [forged])
    wait_drops(net, "br2", "unknown_version", before + 1)
    assert net.udp_recv(rx) is None
    assert not delivered_from(sniffer, mac(net, "h1"))


def test_too_big_is_dropped(pk):
    """7. With br1's uplink at MTU 1500, an encrypted 1500-byte IP packet
    does not fit: dropped as too_big, nothing of it on the wire."""
    net, _ = pk
    net.vsctl("set", "Interface", "br1-up", "mtu_request=1500")
    wait_until(lambda: net.vsctl("get", "Interface", "br1-up",
                                 "mtu").stdout.strip() == "1500", 10,
               "br1-up MTU 1500")
    net.static_arp()
    net.wait_ping("h1", "h2")            # small frames still fit
    before = drops(net, "br1", "too_big")
    with net.capture() as cap:
        assert not net.ping("h1", "h2", count=2, size=1472,
                            dont_fragment=True)
        wait_drops(net, "br1", "too_big", before + 2)
    assert_sealed_only(net, cap.frames)
    assert all(len(f) <= 1514 for f in cap.frames
               if f[6:12] == mac(net, "h1"))


@pytest.mark.parametrize("mtu,ip_len,fits", [
    (1532, 1500, True),
    (1531, 1500, False),
    (1531, 1499, True),
], ids=["mtu1532-ip1500-fits", "mtu1531-ip1500-too_big",
        "mtu1531-ip1499-fits"])
def test_mtu_boundary(needs_pairkey, make_net, mtu, ip_len, fits):
    """7b. The whole wire path (uplinks, wire veths, Linux bridge) at MTU
    'mtu', hosts at 1500.  Encryption adds 32 bytes, so an IP packet of
    'ip_len' bytes needs mtu >= ip_len + 32.  If it fits, echo request and
    reply arrive and are on the wire as frames of exactly ip_len + 14 + 32
    bytes; if not, br1 drops each request as too_big and nothing of it
    reaches the wire.  Small packets pass either way."""
    net = make_net(dataclasses.replace(TWO_HOSTS, wire_mtu=mtu))
    seal_pair(net)
    for br in net.topo.bridges:
        assert net.vsctl("get", "Interface", br.uplink,
                         "mtu").stdout.strip() == str(mtu)
    net.static_arp()
    net.wait_ping("h1", "h2")                # small frames fit
    before = show(net)
    with net.capture() as cap:
        answered = net.ping("h1", "h2", count=2, size=ip_len - 28,
                            dont_fragment=True)
        if not fits:
            wait_drops(net, "br1", "too_big", 2)
    after = show(net)

    def delta(br, group, name):
        return (counter(after, br, 1, group, name)
                - counter(before, br, 1, group, name))

    assert_sealed_only(net, cap.frames)
    if fits:
        assert answered
        # Two requests and two replies, each exactly the full frame + 32.
        assert sorted(len(f) for f in cap.frames) == \
            [ETH_HLEN + ip_len + OVERHEAD] * 4
        assert delta("br1", "encrypted", "packets") == 2
        assert delta("br2", "decrypted", "packets") == 2
    else:
        assert not answered
        assert not cap.frames, "frames on the wire: " + ", ".join(
            "%d bytes from %s" % (len(f), f[6:12].hex(":"))
            for f in cap.frames)
        assert delta("br1", "drops", "too_big") == 2
        assert delta("br1", "encrypted", "packets") == 0
        assert delta("br2", "decrypted", "packets") == 0
    assert delta("br2", "drops", "too_big") == 0
    if fits:
        assert delta("br1", "drops", "too_big") == 0
    assert net.ping("h1", "h2", count=2)     # small frames still fit


def test_vlan_tag_is_inside_ciphertext(needs_pairkey, make_net):
    """8. Hosts talk over VLAN 100: ping works and the wire shows no
    802.1Q tag, only 0x88b5."""
    net = make_net(TWO_HOSTS_VLAN)
    key = net.key()
    for br in ("br1", "br2"):
        add_sa(net, br, key)
    crypto_flows(net)
    m = marker()
    rx = net.udp_socket("h2", PORT)
    with net.capture() as cap:
        net.wait_ping("h1", "h2")
        assert net.ping("h1", "h2", count=3)
        net.udp_send("h1", "h2", PORT, m)
        assert wait_until(lambda: net.udp_recv(rx)) == m
    assert cap.frames
    assert not [f for f in cap.frames if ethertype(f) in (0x8100, 0x88a8)]
    assert_sealed_only(net, cap.frames, (MARKER, m))


def test_vlan_pushed_by_ovs_is_inside_ciphertext(pk):
    """8b. Same property without host VLAN devices: br1 pushes VLAN 100
    before encrypt; h2 receives the tagged frame, the wire shows no tag."""
    net, _ = pk
    for br in ("br1", "br2"):
        net.del_flows(br)
    vlan_push_flows(net, encrypt=True)
    net.static_arp()
    sniffer = net.sniffer("h2")
    m = marker()
    with net.capture() as cap:
        net.udp_send("h1", "h2", PORT, m)
        wait_until(lambda: tagged_with(sniffer.received(), 100, m), 10,
                   "tagged frame at h2")
    assert cap.frames
    assert_sealed_only(net, cap.frames, (MARKER, m))


@pytest.mark.parametrize("crash", [False, True], ids=["exit", "kill"])
def test_nonces_unique_across_restart(pk, crash):
    """9. Restart ovs-vswitchd (same OVSDB; orderly exit or SIGKILL) and
    re-add the same key and version: no (MAC, version, PN) repeats, and
    every PN after the restart is above every PN before it."""
    net, key = pk
    net.static_arp()
    socks = {h: net.udp_socket(h, PORT) for h in ("h1", "h2")}

    def burst(n=20):
        for i in range(n):
            for src, dst in (("h1", "h2"), ("h2", "h1")):
                msg = b"%s %d" % (marker(), i)
                net.udp_send(src, dst, PORT, msg)
                assert wait_until(lambda: net.udp_recv(socks[dst])) == msg

    with net.capture() as before:
        burst()
    net.restart_vswitchd(crash)
    for br in ("br1", "br2"):
        add_sa(net, br, key)
    crypto_flows(net)
    with net.capture() as after:
        burst()

    old = [parse_frame(f) for f in before.frames]
    new = [parse_frame(f) for f in after.frames]
    assert None not in old + new
    repeats = nonce_repeats(old + new)
    assert not repeats, "%d nonces repeat" % len(repeats)
    for host in ("h1", "h2"):
        src = mac(net, host)
        last_old = max(s.pn for s in old if s.src == src)
        first_new = min(s.pn for s in new if s.src == src)
        assert first_new > last_old, host


def test_bad_input_is_refused(pk):
    """10. Malformed add-sa / del-sa / add-flow input: non-zero exit, a
    one-line error without key material, and no change at all."""
    net, key = pk

    def state():
        return (net.appctl("pairkey/show").stdout, net.dump_flows("br1"),
                net.dump_flows("br2"))

    good = key.path
    cases = []                       # (what, ovs-ofctl args, secret)
    fake = os.urandom(32).hex()
    for what, content in (("63 hex digits", fake[:63]),
                          ("non-hex digit", "g" + fake[1:]),
                          ("65 hex digits", fake + "a"),
                          ("empty", "")):
        path = os.path.join(net.keydir, "bad-%d.hex" % len(cases))
        with open(path, "w") as f:
            f.write(content + "\n")
        cases.append(("key file: " + what,
                      ["add-sa", "br1", "id=1,version=2,key-file=" + path],
                      content))
    cases.append(("missing key file", ["add-sa", "br1", "id=1,version=2,"
                  "key-file=" + os.path.join(net.keydir, "missing")], None))
    for what, spec in (
            ("non-numeric id", "id=abc,version=2"),
            ("negative id", "id=-1,version=2"),
            ("id out of range", "id=99999999999999999999,version=2"),
            ("id above 32 bits", "id=4294967296,version=2"),
            ("non-numeric version", "id=1,version=v2"),
            ("negative version", "id=1,version=-2"),
            ("unknown field", "id=1,version=2,colour=blue"),
            ("unknown cipher", "id=1,version=2,cipher=rot13")):
        cases.append((what, ["add-sa", "br1", spec + ",key-file=" + good],
                      None))
    cases.append(("no key file", ["add-sa", "br1", "id=1,version=2"], None))
    cases.append(("del-sa bad id", ["del-sa", "br1", "id=abc"], None))
    for action in ("encrypt:abc", "decrypt:abc", "encrypt:"):
        cases.append(("add-flow " + action,
                      ["add-flow", "br1", "in_port=1,actions=%s,output:100"
                       % action], None))

    problems = []
    before = state()
    for what, args, secret in cases:
        proc = net.ofctl(*args, check=False)
        err = proc.stderr.strip()
        leak = bool(secret) and secret[:16] in proc.stdout + proc.stderr
        if leak:
            problems.append("%s: output shows the key file's content" % what)
        if key.found_in(proc.stdout + proc.stderr):
            problems.append("%s: output shows the installed key" % what)
        if proc.returncode == 0:
            problems.append("%s: exit status 0" % what)
        if not err or "\n" in err:
            problems.append("%s: error is not one line: %r" % (
                what, "(hidden)" if leak else err[:300]))
        after = state()
        if after != before:
            problems.append("%s: pairkey/show or flows changed" % what)
            before = after
    assert not problems, "\n".join(problems)


def test_sa_ids_are_per_bridge(needs_pairkey, net):
    """11. SA 1 on br1 is not SA 1 on br2: only matching keys work,
    whatever the ids."""
    ka, kb = net.key(), net.key()
    add_sa(net, "br1", ka, sa_id=1)
    add_sa(net, "br1", kb, sa_id=2)
    add_sa(net, "br2", kb, sa_id=1)
    add_sa(net, "br2", ka, sa_id=2)
    net.static_arp()

    # Same id, different keys (ka on br1, kb on br2).  This runs first: a
    # receiver checks its replay window before the tag, and forged frames
    # never move the window, so the counts here are pure bad_tag.
    crypto_flows(net, {"br1": 1, "br2": 1})
    assert not net.ping("h1", "h2")
    wait_drops(net, "br2", "bad_tag", 1)
    assert show(net)["br2"]["sa"][1]["decrypted"]["packets"] == 0

    # Different ids, same key (kb on both sides).
    for br in ("br1", "br2"):
        net.del_flows(br)
    crypto_flows(net, {"br1": 2, "br2": 1})
    net.flush_datapath_flows()
    net.wait_ping("h1", "h2")
    st = show(net)
    assert st["br1"]["sa"][2]["encrypted"]["packets"] > 0
    assert st["br2"]["sa"][1]["decrypted"]["packets"] > 0


@pytest.mark.allow_log(*AFXDP_LOG)
def test_nonces_unique_on_two_pmd_threads(needs_pairkey, make_net):
    """12. AF_XDP ports polled by two PMD threads, each host port with one
    rx queue on each thread.  During seconds of bidirectional TCP load
    (iperf3) both threads encrypt frames of both hosts at once: no (MAC,
    key version, PN) repeats on the wire, and each sealed frame is counted
    once by its sender and, unless lost on receive, decrypted once by the
    receiver, with no drops."""
    if not shutil.which("iperf3"):
        pytest.skip("'iperf3' is not installed")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPU cores for two PMD threads")
    net = make_net(TWO_HOSTS_AFXDP)
    seal_pair(net)
    hosts = ("h1", "h2")
    rxqs = net.pmd_rxqs()
    for h in hosts:
        assert {rxqs.get((h, 0)), rxqs.get((h, 1))} == {0, 1}, \
            "rx queues of %s not on PMD cores 0 and 1: %s" % (h, rxqs)
    net.static_arp()
    net.wait_ping("h1", "h2")

    before = show(net)
    base = sealed_and_wire(net)
    rxq_before = {h: net.xdp_rxq_packets(h) for h in hosts}
    lost_before = {br.name: net.rx_dropped(br.uplink)
                   for br in net.topo.bridges}
    # Headers are all that matters here: a short snaplen keeps up.
    with net.capture(snaplen=64) as cap:
        result = net.iperf3("h1", "h2", seconds=3, parallel=4)
        settle(net, base)
    after = show(net)
    end = result["end"]
    assert end["sum_received"]["bytes"] > 10 ** 6
    assert end["sum_received_bidir_reverse"]["bytes"] > 10 ** 6

    # Each host's frames came in on both rx queues, i.e. both threads
    # encrypted them.
    for h in hosts:
        rxq = net.xdp_rxq_packets(h)
        for q in (0, 1):
            n = rxq.get(q, 0) - rxq_before[h].get(q, 0)
            assert n >= 1000, "%s rx queue %d: only %d frames" % (h, q, n)

    sealed = [parse_frame(f) for f in cap.frames]
    assert None not in sealed, "clear frame on the wire"
    repeats = nonce_repeats(sealed)
    assert not repeats, "%d of %d (MAC, version, PN) repeat, e.g. %s" % (
        len(repeats), len(sealed), [(m.hex(":"), v, hex(pn))
                                    for m, v, pn in repeats[:3]])

    def delta(br, group, name):
        return (counter(after, br, 1, group, name)
                - counter(before, br, 1, group, name))

    for host, br, peer_br in (("h1", "br1", "br2"), ("h2", "br2", "br1")):
        sent = sum(1 for s in sealed if s.src == mac(net, host))
        assert sent > 10000, host
        assert delta(br, "encrypted", "packets") == sent, host
        drops = {r: delta(peer_br, "drops", r) for r in DROP_REASONS}
        assert drops == dict.fromkeys(DROP_REASONS, 0), peer_br
        # Under load the receiver's AF_XDP ring may overflow: frames lost
        # there never reach decrypt.
        lost = (net.rx_dropped(net.topo.bridge(peer_br).uplink)
                - lost_before[peer_br])
        assert delta(peer_br, "decrypted", "packets") + lost == sent, \
            "%s: %d lost on receive" % (peer_br, lost)
