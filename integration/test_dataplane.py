"""Data-plane scenarios on topo.TWO_HOSTS: h1 on br1, h2 on br2, one
ovs-vswitchd, both bridges uplinked to one wire with an eavesdropper.
SAs and flows are installed by hand:

    br1: in_port=h1,actions=encrypt:1,output:br1-up
         in_port=br1-up,dl_type=0x88b5,actions=decrypt:1,output:h1
    br2: the same with h2.

The test_plain_* tests use plain forwarding instead and run with stock OVS
binaries: they prove the harness itself (capture, injection, VLAN,
restart).  Everything else skips until the binaries have pairkey.
"""

import collections
import os
import secrets

import pytest

from harness import wait_until
from pairkey import (DROP_REASONS, ETH_HLEN, ETH_P_PAIRKEY, HEADER, add_sa,
                     assert_no_key, counter, crypto_flows, ethertype,
                     flip_bit, mac_bytes, parse_frame, rewrite, show)
from topo import TWO_HOSTS_VLAN

PORT = 5555
BROADCAST = b"\xff" * 6
MARKER = b"PAIRKEY-MARKER-"


def marker():
    """A unique plaintext that must never be seen on the wire."""
    return MARKER + secrets.token_hex(8).encode()


def mac(net, host):
    return mac_bytes(net.topo.host(host).mac)


def plain_flows(net):
    for h in net.topo.hosts:
        br, port = net.host_port(h.name)
        up = net.uplink(br)
        net.add_flow(br, "in_port=%d,actions=output:%d" % (port, up))
        net.add_flow(br, "in_port=%d,actions=output:%d" % (up, port))


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
    and the encrypt/decrypt flows.  Returns (net, key)."""
    key = net.key()
    for br in ("br1", "br2"):
        add_sa(net, br, key)
    crypto_flows(net)
    return net, key


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

def test_encrypted_traffic(pk):
    """1. ping, TCP and UDP work; the wire holds only 0x88b5 frames of
    h1/h2, never the marker; counters rise on both bridges and match the
    wire; no key bytes in any output."""
    net, key = pk
    m = marker()
    rx = net.udp_socket("h2", PORT)
    with net.capture() as cap:
        net.wait_ping("h1", "h2")
        assert net.ping("h1", "h2", count=3)
        data = m * 2000
        assert net.tcp_transfer("h1", "h2", data) == data
        net.udp_send("h1", "h2", PORT, m)
        assert wait_until(lambda: net.udp_recv(rx)) == m

    assert cap.frames
    assert_sealed_only(net, cap.frames, (MARKER, m))
    sealed = [parse_frame(f) for f in cap.frames]
    assert {(s.format, s.cipher, s.version) for s in sealed} == {(1, 1, 1)}
    nonces = collections.Counter((s.src, s.version, s.pn) for s in sealed)
    assert max(nonces.values()) == 1, "a (MAC, version, PN) repeats"
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


def test_tampered_truncated_replayed_frames_are_dropped(pk):
    """2. Copies of a genuine frame that br2 has not yet seen, bit-flipped
    or truncated and injected toward h2, are not delivered and are counted
    on br2; the intact frame is then delivered once, and its replay is
    dropped."""
    net, _ = pk
    net.static_arp()
    m = marker()
    rx = net.udp_socket("h2", PORT)
    up = net.uplink("br2")
    # Let br2 ignore the genuine frame, so its PN stays fresh for br2.
    net.add_flow("br2", "priority=60000,in_port=%d,actions=drop" % up)
    net.flush_datapath_flows()
    with net.capture() as cap:
        net.udp_send("h1", "h2", PORT, m)
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


@pytest.mark.allow_log(r"(?i)too.?big|message too long|\bmtu\b")
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
    nonces = collections.Counter((s.src, s.version, s.pn) for s in old + new)
    repeats = [k for k, n in nonces.items() if n > 1]
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
