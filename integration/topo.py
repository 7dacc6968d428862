"""Topologies as data, and Net, which builds one out of network namespaces,
veth pairs, a private Open vSwitch instance and a Linux-bridge wire.

TWO_HOSTS (the default):

   ns <p>h1         ns <p>ovs: ovsdb-server,           ns <p>wire
                    ovs-vswitchd (netdev datapath)
  +--------+      +---------------------------+      +------------+
  | eth0   |-veth-| h1(1) [br1] br1-up(100)   |-veth-| to-br1     |
  |10.0.0.1|      |                           |      |   [wire]   |-> tcpdump
  +--------+      |                           |      | Linux br,  |
  +--------+      |                           |      | hub mode   |
  | eth0   |-veth-| h2(1) [br2] br2-up(100)   |-veth-| to-br2     |
  |10.0.0.2|      +---------------------------+      +------------+
  +--------+
   ns <p>h2       (n): OpenFlow port; uplink path MTU 1600, hosts 1500

Each host is a namespace whose eth0 is a veth to an OVS port named after the
host.  Each bridge with a wire has one uplink port '<bridge>-up' to the
wire namespace, where a Linux bridge without learning (a hub, so a capture
on the bridge device sees every frame once) joins the uplinks.  Hosts keep
MTU 1500; the uplink path runs at Topo.wire_mtu so encrypted full-size
frames fit.  <p> is a prefix unique to each Net.

The OVS ports are AF_PACKET sockets polled by vswitchd's main thread, or,
with Topo.port_type "afxdp" (TWO_HOSTS_AFXDP), AF_XDP sockets polled by
PMD threads; Topo.host_queues and Topo.pmd_cpu_mask spread one host's
frames over several PMD threads.

A Router (Topo.routers) is a namespace <p><name> that forwards IPv4
between the wires it is attached to: one veth per wire, named after the
wire on the router's side and '<router>-<wire>' on the wire's side,
where it joins the Linux bridge like an uplink does.
"""

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from dataclasses import dataclass, field

import harness
import pairkey
from harness import run, wait_until

HOST_PORT_OFPORT = 1
UPLINK_OFPORT = 100
INTER_OFPORT = 200

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ovs_paths():
    """(directory of the OVS programs, OVSDB schema): $PAIRKEY_BIN and
    $PAIRKEY_SCHEMA, by default <repo>/build/bin and
    <repo>/build/share/vswitch.ovsschema."""
    return (os.environ.get("PAIRKEY_BIN")
            or os.path.join(_REPO, "build", "bin"),
            os.environ.get("PAIRKEY_SCHEMA")
            or os.path.join(_REPO, "build", "share", "vswitch.ovsschema"))


@dataclass(frozen=True)
class Host:
    name: str
    bridge: str
    mac: str
    ip: str                          # with prefix length, e.g. "10.0.0.1/24"
    vlan: int = None                 # put ip on eth0.<vlan> instead of eth0
    # "client": an enrolled client (its port pairkey-role=client); "plain":
    # a host of a plain network behind a gateway (its port pairkey-role=
    # clear), never enrolled.
    role: str = "client"
    gw: str = None                   # default gateway (no prefix length)

    @property
    def addr(self):
        return self.ip.split("/")[0]

    @property
    def iface(self):
        return "eth0.%d" % self.vlan if self.vlan else "eth0"


@dataclass(frozen=True)
class Bridge:
    name: str
    wire: str = "wire"      # Linux bridge the uplink joins (None: no uplink)
    # The private OVS instance (ovsdb-server + ovs-vswitchd, namespace
    # <p><ovs>, see Net) the bridge lives in.
    ovs: str = "ovs"
    # Linux bridge an inter port (toward another encrypted subnet) joins,
    # or None.
    inter: str = None

    @property
    def uplink(self):
        return "%s-up" % self.name

    @property
    def inter_port(self):
        return "%s-in" % self.name


@dataclass(frozen=True)
class Router:
    """A Linux router: namespace <p><name> with IPv4 forwarding on and IPv6
    off, and one interface per wire in 'wires', named after the wire."""
    name: str
    wires: tuple            # ((wire, "ip/prefix"), ...)
    # The wire on whose interface outgoing IPv4 is masqueraded (source NAT
    # to that interface's address, nftables), or None.
    masquerade: str = None

    def addr(self, wire):
        """The router's address on 'wire' (without prefix length)."""
        return dict(self.wires)[wire].split("/")[0]

    def wire_port(self, wire):
        """The wire-side end of the router's veth to 'wire'."""
        return "%s-%s" % (self.name, wire)


@dataclass(frozen=True)
class Topo:
    hosts: tuple
    bridges: tuple
    wire_mtu: int = 1600
    host_mtu: int = 1500
    # OVS Interface type of every host port and uplink: None for the
    # default ("system", an AF_PACKET socket polled by the main thread), or
    # "afxdp" (an AF_XDP socket per rx queue, polled by PMD threads).
    port_type: str = None
    # Rx/tx queues of the OVS side of every host veth (options:n_rxq with
    # afxdp), so that one host's frames can be polled by several threads.
    host_queues: int = 1
    # Open_vSwitch other_config:pmd-cpu-mask, e.g. "0x3" (None: OVS default).
    pmd_cpu_mask: str = None
    # OpenFlow versions every bridge allows, e.g. "OpenFlow13" (None: OVS
    # default); ovs-ofctl then speaks the same.
    protocols: str = None
    routers: tuple = ()

    def host(self, name):
        return next(h for h in self.hosts if h.name == name)

    def host_ofport(self, name):
        """OpenFlow port number of a host's OVS port: 1, 2, ... in the
        order the hosts of one bridge are listed."""
        h = self.host(name)
        same = [x.name for x in self.hosts if x.bridge == h.bridge]
        return HOST_PORT_OFPORT + same.index(name)

    def bridge(self, name):
        return next(b for b in self.bridges if b.name == name)

    def router(self, name):
        return next(r for r in self.routers if r.name == name)

    def router_mac(self, name, wire):
        """MAC address of router 'name''s interface on 'wire'."""
        i = next(i for i, r in enumerate(self.routers, 1) if r.name == name)
        wires = [w for w, _ in self.router(name).wires]
        return _mac(0xec, i, wires.index(wire) + 1)

    @property
    def wires(self):
        return sorted({b.wire for b in self.bridges if b.wire}
                      | {b.inter for b in self.bridges if b.inter}
                      | {w for r in self.routers for w, _ in r.wires})

    @property
    def instances(self):
        """Names of the OVS instances, in the order of the bridges; the
        first is the primary one (Net.ovs)."""
        return list(dict.fromkeys(b.ovs for b in self.bridges))


TWO_HOSTS = Topo(
    hosts=(Host("h1", "br1", "02:00:00:00:01:01", "10.0.0.1/24"),
           Host("h2", "br2", "02:00:00:00:02:02", "10.0.0.2/24")),
    bridges=(Bridge("br1"), Bridge("br2")))

# TWO_HOSTS with every OVS port an AF_XDP socket: two PMD threads (cores 0
# and 1) poll them, and each host port has two rx queues, one per PMD, so
# both threads encrypt frames of the same sender at the same time.
TWO_HOSTS_AFXDP = dataclasses.replace(TWO_HOSTS, port_type="afxdp",
                                      host_queues=2, pmd_cpu_mask="0x3")

TWO_HOSTS_VLAN = Topo(
    hosts=(Host("h1", "br1", "02:00:00:00:01:01", "10.0.100.1/24", vlan=100),
           Host("h2", "br2", "02:00:00:00:02:02", "10.0.100.2/24", vlan=100)),
    bridges=(Bridge("br1"), Bridge("br2")))


# The key server's topology: five clients, three on bridges of their own
# and two sharing br4, all in one ovs-vswitchd; each client's id is its host
# name.  The bridges speak OpenFlow 1.3 to pairkeyd.
#
#   ns <p>h1 --- h1(1) [br1] br1-up(100) ---+
#   ns <p>h2 --- h2(1) [br2] br2-up(100) ---+   ns <p>wire
#   ns <p>h3 --- h3(1) [br3] br3-up(100) ---+-- [wire] Linux br, hub mode
#   ns <p>h4 --- h4(1) [br4] br4-up(100) ---+     -> tcpdump
#   ns <p>h5 --- h5(2) [br4]
#                 ^ ns <p>ovs: ovsdb-server, ovs-vswitchd,
#                   all bridges controlled by pairkeyd
#
# h4 and h5 share br4: frames between them never reach the wire.
KEYSERVER = Topo(
    hosts=(Host("h1", "br1", "02:00:00:00:01:01", "10.0.0.1/24"),
           Host("h2", "br2", "02:00:00:00:02:02", "10.0.0.2/24"),
           Host("h3", "br3", "02:00:00:00:03:03", "10.0.0.3/24"),
           Host("h4", "br4", "02:00:00:00:04:04", "10.0.0.4/24"),
           Host("h5", "br4", "02:00:00:00:05:05", "10.0.0.5/24")),
    bridges=(Bridge("br1"), Bridge("br2"), Bridge("br3"), Bridge("br4")),
    protocols="OpenFlow13")

# Two clients on two OVS instances, each with its own ovsdb-server and
# ovs-vswitchd in a namespace of its own (one userspace vswitchd per
# namespace); the uplinks share one wire, one pairkeyd serves both.
#
#   ns <p>h1 --- h1(1) [br1] br1-up(100) ---+   ns <p>wire
#                 ^ ns <p>ovs               +-- [wire] -> tcpdump
#   ns <p>h2 --- h2(1) [br2] br2-up(100) ---+
#                 ^ ns <p>ovs2 (run directory <rundir>/ovs2)
# A gateway: br3's port to the plain host p1 is a fully decrypted port
# (pairkey-role=clear), which makes br3 the gateway of the plain network
# p1 stands for.  h3 is a client on the gateway bridge itself.
#
#   ns <p>h1 --- h1(1) [br1] br1-up(100) ---+
#   ns <p>h2 --- h2(1) [br2] br2-up(100) ---+-- [wire] -> tcpdump
#   ns <p>h3 --- h3(1) [br3] br3-up(100) ---+
#   ns <p>p1 --- p1(2) [br3]   (clear)
GATEWAY = Topo(
    hosts=(Host("h1", "br1", "02:00:00:00:01:01", "10.0.0.1/24"),
           Host("h2", "br2", "02:00:00:00:02:02", "10.0.0.2/24"),
           Host("h3", "br3", "02:00:00:00:03:03", "10.0.0.3/24"),
           Host("p1", "br3", "02:00:00:00:0a:01", "10.0.0.101/24",
                role="plain")),
    bridges=(Bridge("br1"), Bridge("br2"), Bridge("br3")),
    protocols="OpenFlow13")

# Two gateways: br2 and br3 each have a clear port to a plain network
# (p1 and p2), h1 is a client.
#
#   ns <p>h1 --- h1(1) [br1] br1-up(100) ---+
#   ns <p>p1 --- p1(1) [br2] br2-up(100) ---+-- [wire] -> tcpdump
#   ns <p>p2 --- p2(1) [br3] br3-up(100) ---+
GATEWAYS = Topo(
    hosts=(Host("h1", "br1", "02:00:00:00:01:01", "10.0.0.1/24"),
           Host("p1", "br2", "02:00:00:00:0a:01", "10.0.0.101/24",
                role="plain"),
           Host("p2", "br3", "02:00:00:00:0a:02", "10.0.0.102/24",
                role="plain")),
    bridges=(Bridge("br1"), Bridge("br2"), Bridge("br3")),
    protocols="OpenFlow13")

# Two encrypted subnets, each with its own wire and key server, joined by
# their gateways' inter ports on a third wire:
#
#   ns <p>ha --- ha(1) [bra] bra-up ---+-- [wirea]      subnet A: ks-a
#                     [bga] bga-up ---+
#                           bga-in ---+-- [iwire]  (NETKEY of ks-a, ks-b)
#                     [bgb] bgb-in ---+
#                           bgb-up ---+-- [wireb]      subnet B: ks-b
#   ns <p>hb --- hb(1) [brb] brb-up ---+
INTER = Topo(
    hosts=(Host("ha", "bra", "02:00:00:00:01:01", "10.0.0.1/24"),
           Host("hb", "brb", "02:00:00:00:02:02", "10.0.0.2/24")),
    bridges=(Bridge("bra", wire="wirea"), Bridge("bga", wire="wirea",
                                                 inter="iwire"),
             Bridge("bgb", wire="wireb", inter="iwire"),
             Bridge("brb", wire="wireb")),
    protocols="OpenFlow13")

# The two subnets of INTER as two IPv4 networks with a Linux router between
# them: each gateway's inter port is on a wire of its own (iwa, iwb), where
# the router rt has an interface, and each host's default route is rt.  The
# tests mark the inter ports pairkey-mode=l3 (or nat, INTER_NAT), so that
# what crosses iwa and iwb is IPv4 that rt can route.
#
#   ns <p>ha --- ha(1) [bra] bra-up ---+-- [wirea]    subnet A (ks-a)
#                     [bga] bga-up ---+
#                           bga-in ------- [iwa] --- iwa 10.1.0.1 ---+
#                                                                    | ns <p>rt
#                           bgb-in ------- [iwb] --- iwb 10.2.0.1 ---+
#                     [bgb] bgb-up ---+-- [wireb]    subnet B (ks-b)
#   ns <p>hb --- hb(1) [brb] brb-up ---+
#
#   ha 10.1.0.10/24 (gw 10.1.0.1), hb 10.2.0.10/24 (gw 10.2.0.1)
INTER_L3 = Topo(
    hosts=(Host("ha", "bra", "02:00:00:00:01:01", "10.1.0.10/24",
                gw="10.1.0.1"),
           Host("hb", "brb", "02:00:00:00:02:02", "10.2.0.10/24",
                gw="10.2.0.1")),
    bridges=(Bridge("bra", wire="wirea"),
             Bridge("bga", wire="wirea", inter="iwa"),
             Bridge("bgb", wire="wireb", inter="iwb"),
             Bridge("brb", wire="wireb")),
    routers=(Router("rt", (("iwa", "10.1.0.1/24"), ("iwb", "10.2.0.1/24"))),),
    protocols="OpenFlow13")

# INTER_L3 with a second client ha2 in subnet A (own bridge bra2) and rt
# masquerading what leaves through iwb: subnet B sees both clients as
# 10.2.0.1, as behind a home router.
#
#   ns <p>ha  --- ha(1)  [bra]  bra-up  ---+-- [wirea]
#   ns <p>ha2 --- ha2(1) [bra2] bra2-up ---+
#                        [bga]  bga-up  ---+
#                               bga-in --- [iwa] --- iwa 10.1.0.1 ---+
#                                                                    | ns <p>rt
#                               bgb-in --- [iwb] --- iwb 10.2.0.1 ---+
#                        [bgb]  bgb-up  ---+-- [wireb]             masquerade
#   ns <p>hb  --- hb(1)  [brb]  brb-up  ---+                       on iwb
#
#   ha 10.1.0.10/24, ha2 10.1.0.11/24 (gw 10.1.0.1); hb 10.2.0.10/24 (gw
#   10.2.0.1)
INTER_NAT = Topo(
    hosts=(Host("ha", "bra", "02:00:00:00:01:01", "10.1.0.10/24",
                gw="10.1.0.1"),
           Host("ha2", "bra2", "02:00:00:00:01:02", "10.1.0.11/24",
                gw="10.1.0.1"),
           Host("hb", "brb", "02:00:00:00:02:02", "10.2.0.10/24",
                gw="10.2.0.1")),
    bridges=(Bridge("bra", wire="wirea"), Bridge("bra2", wire="wirea"),
             Bridge("bga", wire="wirea", inter="iwa"),
             Bridge("bgb", wire="wireb", inter="iwb"),
             Bridge("brb", wire="wireb")),
    routers=(Router("rt", (("iwa", "10.1.0.1/24"), ("iwb", "10.2.0.1/24")),
                    masquerade="iwb"),),
    protocols="OpenFlow13")

KEYSERVER_TWO_OVS = Topo(
    hosts=(Host("h1", "br1", "02:00:00:00:01:01", "10.0.0.1/24"),
           Host("h2", "br2", "02:00:00:00:02:02", "10.0.0.2/24")),
    bridges=(Bridge("br1"), Bridge("br2", ovs="ovs2")),
    protocols="OpenFlow13")


class FeatureMissing(Exception):
    """The kernel or OVS lacks something a topology needs (tests skip)."""


def _mac(kind, a, b):
    return "02:%02x:00:00:%02x:%02x" % (kind, a, b)


@dataclass
class Ovs:
    """Where the OVS binaries and schema are, and one private instance's
    name (Bridge.ovs), run directory and daemons."""
    bindir: str
    schema: str
    rundir: str
    env: dict = field(default_factory=dict)
    name: str = "ovs"
    ovsdb: object = None            # harness.Daemon
    vswitchd: object = None

    @property
    def db(self):
        """The OVSDB remote of this instance."""
        return "unix:" + self.path("db.sock")

    def path(self, name):
        return os.path.join(self.rundir, name)


class Pairkeyd:
    """pairkeyd, the key server, for the bridges of a Net (see
    Net.start_pairkeyd).

    It runs in the foreground as a harness.Daemon, so it is stopped and
    killed by its own PID.  Its store (<rundir>/pairkey.db) and log
    (<rundir>/pairkeyd.log, appended to by every run) outlive restarts.  It
    reads port marks from the Net's OVSDB and listens on 'listen'
    (default: punix:<rundir>/pairkeyd.sock).  With 'ns' it runs inside that
    namespace, which TCP and SSL listeners need for ovs-vswitchd to reach
    them; 'ssl' is (private key, certificate, CA certificate).  It reads
    the OVSDB remotes 'ovsdbs' (default: every OVS instance of the Net),
    one --ovsdb each."""

    def __init__(self, net, miss_policy="hold", listen=None, ns=None,
                 ssl=None, ovsdbs=None, name="pairkeyd", extra=()):
        self.net = net
        self.name = name
        self.extra = list(extra)
        self.ovsdbs = list(ovsdbs or [o.db for o in net.instances.values()])
        self.miss_policy = miss_policy
        self.listen = listen or "punix:" + net.ovs.path(name + ".sock")
        self.ns = ns
        self.ssl = ssl
        self.db = net.ovs.path("pairkey.db" if name == "pairkeyd"
                               else name + ".db")
        self.log_path = net.ovs.path(name + ".log")
        self.daemon = None
        self.runs = 0

    @property
    def target(self):
        """The control socket of the running pairkeyd (by its PID)."""
        return self.net.ovs.path("pairkeyd.%d.ctl" % self.daemon.pid)

    def alive(self):
        return self.daemon is not None and self.daemon.alive()

    def start(self, miss_policy=None):
        """Starts pairkeyd (again, on the same store) and waits until it
        answers on its control socket."""
        assert not self.alive(), "pairkeyd is already running"
        if miss_policy:
            self.miss_policy = miss_policy
        o = self.net.ovs
        argv = [os.path.join(o.bindir, "pairkeyd"), "--db=" + self.db]
        argv += ["--ovsdb=" + remote for remote in self.ovsdbs]
        argv += ["--miss-policy=" + self.miss_policy, "--no-chdir",
                "--pidfile=" + o.path(self.name + ".pid"),
                "--log-file=" + self.log_path, "-vconsole:off"]
        argv += self.extra
        if self.ssl:
            key, cert, cacert = self.ssl
            argv += ["--private-key=" + key, "--certificate=" + cert,
                     "--ca-cert=" + cacert]
        argv.append(self.listen)
        if self.ns:
            argv = ["ip", "netns", "exec", self.ns] + argv
        self.runs += 1
        self.daemon = harness.Daemon(
            self.name, argv, o.env,
            o.path("%s-%d.stderr" % (self.name, self.runs)))

        def ready():
            if not self.daemon.alive():
                with open(self.daemon.log_path, errors="replace") as f:
                    raise RuntimeError("pairkeyd exited: " + f.read())
            return (os.path.exists(self.target)
                    and self.ctl("show", check=False).returncode == 0)
        wait_until(ready, 10, "pairkeyd to answer")
        return self

    def stop(self):
        """Orderly exit ('exit' on the control socket), then by PID."""
        if not self.alive():
            return
        try:
            self.net._tool("ovs-appctl", "-t", self.target, "exit",
                           check=False)
            wait_until(lambda: not self.daemon.alive(), 10,
                       "pairkeyd to exit")
        finally:                        # by PID, whatever happened above
            self.daemon.stop()

    def kill(self):
        """kill -9, by PID."""
        self.daemon.stop(signal.SIGKILL)

    def ctl(self, *args, check=True, target=None, rundir=None):
        """Runs pairkeyctl -t TARGET (default: this pairkeyd's control
        socket).  With 'rundir', runs it without -t and with OVS_RUNDIR set
        to 'rundir' instead, so that it finds the daemon by its pidfile."""
        prog = os.path.join(self.net.ovs.bindir, "pairkeyctl")
        if rundir is None:
            return run([prog, "-t", target or self.target] + list(args),
                       check=check, env=self.net.ovs.env)
        return run([prog] + list(args), check=check,
                   env=dict(self.net.ovs.env, OVS_RUNDIR=rundir))

    def dump(self):
        """Parsed 'pairkeyctl dump': {'clients': {id: mac}, 'gateways':
        set of ids, 'outside': {mac: gateway id}, 'pairs':
        {frozenset((a, b)): (pair id, version)}, 'group': version}."""
        out = {"clients": {}, "gateways": set(), "outside": {}, "pairs": {},
               "group": None}
        for line in self.ctl("dump").stdout.splitlines():
            f = line.split("\t")
            if f[0] == "client":
                out["clients"][f[1]] = f[2]
            elif f[0] == "gateway":
                out["gateways"].add(f[1])
            elif f[0] == "outside":
                out["outside"][f[1]] = f[2]
            elif f[0] == "pair":
                out["pairs"][frozenset(f[2:4])] = (int(f[1]), int(f[4]))
            elif f[0] == "group":
                out["group"] = int(f[1])
        return out

    def pair_id(self, a, b):
        return self.dump()["pairs"][frozenset((a, b))][0]

    def key_kcvs(self):
        """{pair id: key check value of its current version} from
        'pairkeyctl list-keys'."""
        lines = self.ctl("list-keys").stdout.splitlines()
        kcv = lines[0].split().index("KCV")
        return {int(f[0]): f[kcv] for f in map(str.split, lines[1:])}

    def switches(self):
        """{switch name: status line} from 'pairkeyctl show'."""
        out, inside = {}, False
        for line in self.ctl("show").stdout.splitlines():
            if line == "switches:":
                inside = True
            elif inside and line.startswith("  ") and ": " in line:
                name, status = line.strip().split(": ", 1)
                out[name] = status
        return out

    def connected(self):
        """Names of the bridges connected and identified (by datapath
        id)."""
        return {name for name, status in self.switches().items()
                if status.startswith("connected, dpid")}

    def log_lines(self, levels=("WARN", "ERR", "EMER")):
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path, errors="replace") as f:
            return [line.rstrip("\n") for line in f
                    if any("|%s|" % lvl in line for lvl in levels)]


class Net:
    """A running topology.  start() builds it, stop() tears down everything
    it created, in reverse order; each resource registers its cleanup
    where it is created, so a failure half-way leaves nothing behind.

    Each OVS instance of the topology (Bridge.ovs) has its namespace
    <p><name>, its ovsdb-server and ovs-vswitchd, and its run directory:
    the Net's own for the first (self.ovs), <rundir>/<name> for others
    (self.instances).  vsctl, ofctl and appctl talk to self.ovs unless
    given 'ovs' (ofctl finds the instance of a bridge named in its
    arguments)."""

    def __init__(self, topo, bindir, schema, prefix, workdir=None):
        self.topo = topo
        self.prefix = prefix
        rundir = tempfile.mkdtemp(prefix="pairkey-%s" % prefix, dir=workdir)
        env = dict(os.environ, OVS_RUNDIR=rundir, OVS_DBDIR=rundir,
                   OVS_LOGDIR=rundir, OVS_SYSCONFDIR=rundir,
                   OVS_PKGDATADIR=rundir)
        names = topo.instances
        self.ovs = Ovs(str(bindir), str(schema), rundir, env, names[0])
        self.instances = {names[0]: self.ovs}
        for name in names[1:]:
            sub = os.path.join(rundir, name)
            os.mkdir(sub)
            # OVS_RUNDIR stays shared: ovs-vswitchd connects only to unix
            # controller sockets there (pairkeyd's), and bridge names
            # (<bridge>.mgmt) are unique in a topology; every other file
            # of the instance is named explicitly, in 'sub'.
            self.instances[name] = Ovs(
                str(bindir), str(schema), sub,
                dict(env, OVS_DBDIR=sub, OVS_LOGDIR=sub), name)
        self.keydir = os.path.join(rundir, "keys")
        self._cleanup = contextlib.ExitStack()
        self._cleanup.callback(shutil.rmtree, rundir, True)
        self.pairkeyd = None
        self.other_pairkeyds = []           # Pairkeyds with their own name
        self._captures = 0
        self._keys = 0

    # ------------------------------------------------------------- names
    def ns(self, what):
        """Namespace name of a host, a router, 'ovs' or 'wire'."""
        return "%s%s" % (self.prefix, what)

    @property
    def namespaces(self):
        return ([self.ns(name) for name in self.instances] + [self.ns("wire")]
                + [self.ns(h.name) for h in self.topo.hosts]
                + [self.ns(r.name) for r in self.topo.routers])

    @property
    def vswitchd(self):
        """ovs-vswitchd of the first OVS instance."""
        return self.ovs.vswitchd

    @property
    def ovsdb(self):
        return self.ovs.ovsdb

    def ovs_of(self, bridge):
        """The Ovs instance that holds bridge (a name)."""
        return self.instances[self.topo.bridge(bridge).ovs]

    def _port_ovs(self, port):
        """The Ovs instance of an OVS port: a host's port or an uplink."""
        for b in self.topo.bridges:
            if port == b.uplink:
                return self.ovs_of(b.name)
        return self.ovs_of(self.topo.host(port).bridge)

    # ------------------------------------------------------------ tools
    def _tool(self, name, *args, check=True, timeout=30, cwd=None, ovs=None):
        ovs = ovs or self.ovs
        argv = [os.path.join(ovs.bindir, name)] + list(args)
        return run(argv, check=check, env=ovs.env, timeout=timeout, cwd=cwd)

    def vsctl(self, *args, check=True, ovs=None):
        ovs = ovs or self.ovs
        return self._tool("ovs-vsctl", "--timeout=20", "--db=" + ovs.db,
                          *args, check=check, ovs=ovs)

    def ofctl(self, *args, check=True, ovs=None):
        if ovs is None:
            bridges = {b.name for b in self.topo.bridges}
            ovs = next((self.ovs_of(a) for a in args if a in bridges),
                       self.ovs)
        proto = ["-O", self.topo.protocols] if self.topo.protocols else []
        return self._tool("ovs-ofctl", *proto, *args, check=check, ovs=ovs)

    def appctl(self, *args, check=True, target="ovs-vswitchd", ovs=None):
        ovs = ovs or self.ovs
        return self._tool("ovs-appctl", "-t", ovs.path(target + ".ctl"),
                          *args, check=check, ovs=ovs)

    def add_flow(self, bridge, flow):
        self.ofctl("add-flow", bridge, flow)

    def del_flows(self, bridge):
        self.ofctl("del-flows", bridge)

    def flush_datapath_flows(self):
        """Drops cached datapath flows, so the next packet is translated
        with the current OpenFlow tables."""
        self.appctl("revalidator/purge")

    def dump_flows(self, bridge):
        return self.ofctl("dump-flows", "--no-stats", bridge).stdout

    def host_port(self, host):
        """(bridge, ofport) of the OVS port of a host."""
        h = self.topo.host(host)
        return h.bridge, self.ofport(h.name)

    def uplink(self, bridge):
        """OpenFlow port number of bridge's uplink."""
        return self.ofport(self.topo.bridge(bridge).uplink)

    def rx_dropped(self, port):
        """Frames the kernel dropped on receive at OVS port 'port' (a veth
        in the ovs namespace) before OVS saw them; with type=afxdp, those
        that found the AF_XDP socket's ring full.  (OVS 3.1's own AF_XDP
        rx_dropped is the kernel's minus one, '?' when zero.)"""
        return harness.link_stats(self.ns(self._port_ovs(port).name),
                                  port)["rx_dropped"]

    def ofport(self, port):
        """OpenFlow port number of an OVS port (names are unique per
        topology)."""
        return int(self.vsctl("get", "Interface", port, "ofport",
                              ovs=self._port_ovs(port)).stdout)

    # ---------------------------------------------------------- build
    def start(self):
        try:
            self._remove_leftovers()
            for ns in self.namespaces:
                self._add_ns(ns)
            for ovs in self.instances.values():
                self._start_ovsdb(ovs)
                self._start_vswitchd(ovs)
            for br in self.topo.bridges:
                self._add_bridge(br)
            for wire in self.topo.wires:
                self._add_wire(wire)
            for i, br in enumerate(self.topo.bridges, 1):
                if br.wire:
                    self._add_uplink(br, i)
                if br.inter:
                    self._add_wire_port(br, i, br.inter, "in-" + br.name,
                                        br.inter_port, INTER_OFPORT, 3)
            for i, h in enumerate(self.topo.hosts, 1):
                self._add_host(h, i)
            for i, r in enumerate(self.topo.routers, 1):
                self._add_router(r, i)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        self._cleanup.close()

    def _remove_leftovers(self):
        harness.del_netns_with_prefix(self.prefix)

    def _add_ns(self, ns):
        harness.add_quiet_netns(ns)
        self._cleanup.callback(harness.del_netns, ns)

    def _add_veth(self, ns_a, name_a, mac_a, ns_b, name_b, mac_b, mtu,
                  queues=1):
        """Creates a veth pair directly inside two namespaces (it never
        appears in the caller's namespace), each end with 'queues' rx and
        tx queues."""
        q = ["numtxqueues", queues, "numrxqueues", queues]
        run(["ip", "-n", ns_a, "link", "add", "name", name_a, "address", mac_a,
             "mtu", mtu] + q + ["type", "veth", "peer", "name", name_b,
                                "address", mac_b, "mtu", mtu] + q
            + ["netns", ns_b])
        self._cleanup.callback(run, ["ip", "-n", ns_a, "link", "del", name_a],
                               check=False)

    def _start_ovsdb(self, o):
        run([os.path.join(o.bindir, "ovsdb-tool"), "create",
             o.path("conf.db"), o.schema], env=o.env)
        o.ovsdb = harness.Daemon(
            "ovsdb-server",
            ["ip", "netns", "exec", self.ns(o.name),
             os.path.join(o.bindir, "ovsdb-server"), o.path("conf.db"),
             "--remote=punix:" + o.path("db.sock"),
             "--unixctl=" + o.path("ovsdb-server.ctl"),
             "--pidfile=" + o.path("ovsdb-server.pid"),
             "--log-file=" + o.path("ovsdb-server.log"), "-vconsole:off"],
            o.env, o.path("ovsdb-server.stderr"))
        self._cleanup.callback(self._stop_daemon, "ovsdb-server", False, o)
        # The socket exists a moment before ovsdb-server listens on it.
        wait_until(lambda: self._daemon_up(o.ovsdb, o.path("db.sock"))
                   and self.vsctl("--no-wait", "init", check=False,
                                  ovs=o).returncode == 0, 10,
                   "ovsdb-server (%s)" % o.name)
        if self.topo.pmd_cpu_mask:
            self.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                       "other_config:pmd-cpu-mask=" + self.topo.pmd_cpu_mask,
                       ovs=o)

    @staticmethod
    def _daemon_up(daemon, sock):
        if not daemon.alive():
            raise RuntimeError("%s exited, see %s" % (daemon.name,
                                                      daemon.log_path))
        return os.path.exists(sock)

    def _start_vswitchd(self, o):
        o.vswitchd = harness.Daemon(
            "ovs-vswitchd",
            ["ip", "netns", "exec", self.ns(o.name),
             os.path.join(o.bindir, "ovs-vswitchd"), "--disable-system",
             "unix:" + o.path("db.sock"),
             "--unixctl=" + o.path("ovs-vswitchd.ctl"),
             "--pidfile=" + o.path("ovs-vswitchd.pid"),
             "--log-file=" + o.path("ovs-vswitchd.log"), "-vconsole:off"],
            o.env, o.path("ovs-vswitchd.stderr"))
        self._cleanup.callback(self._stop_daemon, "ovs-vswitchd", True, o)
        wait_until(lambda: self._daemon_up(o.vswitchd,
                                           o.path("ovs-vswitchd.ctl"))
                   and self.appctl("version", check=False,
                                   ovs=o).returncode == 0,
                   10, "ovs-vswitchd (%s)" % o.name)

    def _stop_daemon(self, target, cleanup, o):
        daemon = o.vswitchd if target == "ovs-vswitchd" else o.ovsdb
        if daemon is None or not daemon.alive():
            return
        args = ["exit", "--cleanup"] if cleanup else ["exit"]
        try:
            self.appctl(*args, check=False, target=target, ovs=o)
            wait_until(lambda: not daemon.alive(), 10, "%s to exit" % target)
        finally:                        # by PID, whatever happened above
            daemon.stop()

    def restart_vswitchd(self, crash=False):
        """Stops ovs-vswitchd (of the first OVS instance), with 'exit
        --cleanup' or, if crash, with SIGKILL, and starts it again on the
        same OVSDB.  Flows and SAs are gone afterwards; bridges and ports
        come back."""
        if crash:
            self.vswitchd.stop(signal.SIGKILL)
        else:
            self._stop_daemon("ovs-vswitchd", True, self.ovs)
        self._start_vswitchd(self.ovs)
        for br in self.topo.bridges:
            wait_until(lambda: self.ofctl("show", br.name,
                                          check=False).returncode == 0,
                       10, "bridge %s after restart" % br.name)
        self._wait_ports()

    def _add_bridge(self, br):
        proto = (["protocols=" + self.topo.protocols]
                 if self.topo.protocols else [])
        self.vsctl("add-br", br.name, "--", "set", "Bridge", br.name,
                   "datapath_type=netdev", "fail_mode=secure",
                   "other-config:disable-in-band=true", *proto,
                   ovs=self.ovs_of(br.name))

    def _add_wire(self, wire):
        ns = self.ns("wire")
        run(["ip", "-n", ns, "link", "add", "name", wire, "address",
             _mac(0xee, 0, 1), "mtu", self.topo.wire_mtu, "type", "bridge",
             "mcast_snooping", "0", "stp_state", "0", "ageing_time", "0"])
        self._cleanup.callback(run, ["ip", "-n", ns, "link", "del", wire],
                               check=False)
        run(["ip", "-n", ns, "link", "set", wire, "up"])

    def _add_uplink(self, br, i):
        self._add_wire_port(br, i, br.wire, "to-%s" % br.name, br.uplink,
                            UPLINK_OFPORT, 1)

    def _add_wire_port(self, br, i, wire, wport, port, ofport, mac_kind):
        """OVS port 'port' of bridge 'br' (the i-th), a veth whose other
        end 'wport' joins Linux bridge 'wire'."""
        wns, ons = self.ns("wire"), self.ns(br.ovs)
        mtu = self.topo.wire_mtu
        self._add_veth(wns, wport, _mac(0xee, i, mac_kind + 1), ons, port,
                       _mac(0xef, i, mac_kind), mtu)
        self._join_wire(wire, wport)
        run(["ip", "-n", ons, "link", "set", port, "up"])
        self._add_port(br.name, port, ofport, "mtu_request=%d" % mtu)

    def _join_wire(self, wire, wport):
        """Makes 'wport' (a veth end in the wire namespace) a port of Linux
        bridge 'wire', and sets it up."""
        wns = self.ns("wire")
        run(["ip", "-n", wns, "link", "set", wport, "master", wire])
        # No learning: the Linux bridge floods every frame (a hub), so the
        # capture on the bridge device sees each frame exactly once.
        run(["ip", "-n", wns, "link", "set", "dev", wport, "type",
             "bridge_slave", "learning", "off"])
        run(["ip", "-n", wns, "link", "set", wport, "up"])

    def _add_port(self, bridge, name, ofport, *settings, queues=1):
        """Adds OVS port 'name' (a veth end in the bridge's OVS namespace)
        with Topo.port_type; raises FeatureMissing if OVS cannot open it
        that way (e.g. AF_XDP not available)."""
        o = self.ovs_of(bridge)
        settings = ["ofport_request=%d" % ofport] + list(settings)
        if self.topo.port_type:
            settings.append("type=" + self.topo.port_type)
            if self.topo.port_type == "afxdp":
                settings.append("options:n_rxq=%d" % queues)
        self.vsctl("add-port", bridge, name, "--", "set", "Interface", name,
                   *settings, ovs=o)
        if self.topo.port_type:
            def opened():
                error = self.vsctl("get", "Interface", name, "error",
                                   ovs=o).stdout.strip()
                if error not in ("[]", ""):
                    raise FeatureMissing("cannot open %s as type=%s: %s" % (
                        name, self.topo.port_type, error.strip('"')))
                ofport = self.vsctl("get", "Interface", name, "ofport",
                                    ovs=o).stdout.strip()
                return ofport.isdigit() and int(ofport) > 0
            wait_until(opened, 10, "%s to open as type=%s" % (
                name, self.topo.port_type))

    def _add_host(self, h, i):
        hns, ons = self.ns(h.name), self.ns(self.topo.bridge(h.bridge).ovs)
        self._add_veth(hns, "eth0", h.mac, ons, h.name, _mac(0xef, i, 2),
                       self.topo.host_mtu, self.topo.host_queues)
        # Mandatory with the userspace datapath: no partial checksums.
        run(["ip", "netns", "exec", hns, "ethtool", "-K", "eth0", "tx",
             "off"])
        run(["ip", "-n", ons, "link", "set", h.name, "up"])
        self._add_port(h.bridge, h.name, self.topo.host_ofport(h.name),
                       queues=self.topo.host_queues)
        if h.vlan:
            proc = run(["ip", "-n", hns, "link", "add", "link", "eth0",
                        "name", h.iface, "type", "vlan", "id", h.vlan],
                       check=False)
            if "Unknown device type" in proc.stderr:
                raise FeatureMissing("kernel without 802.1Q VLAN devices "
                                     "(CONFIG_VLAN_8021Q)")
            if proc.returncode != 0:
                raise harness.CommandError(proc.args, proc)
            run(["ip", "netns", "exec", hns, "ethtool", "-K", h.iface, "tx",
                 "off"])
        run(["ip", "-n", hns, "addr", "add", h.ip, "dev", h.iface])
        run(["ip", "-n", hns, "link", "set", "eth0", "up"])
        run(["ip", "-n", hns, "link", "set", h.iface, "up"])
        if h.gw:
            run(["ip", "-n", hns, "route", "add", "default", "via", h.gw])
        self._wait_ports()

    def _add_router(self, r, i):
        """Router r (the i-th): its namespace forwards IPv4; one veth per
        wire, '<wire>' in the router's namespace (MTU Topo.wire_mtu, MAC
        Topo.router_mac, address from r.wires), '<router>-<wire>' a port
        of the wire's Linux bridge; and the masquerade rule, if any."""
        rns = self.ns(r.name)
        run(["ip", "netns", "exec", rns, "sysctl", "-q", "-w",
             "net.ipv4.ip_forward=1"])
        for j, (wire, ip) in enumerate(r.wires, 1):
            self._add_veth(rns, wire, self.topo.router_mac(r.name, wire),
                           self.ns("wire"), r.wire_port(wire),
                           _mac(0xed, i, j), self.topo.wire_mtu)
            # What the router sends itself goes to OVS: full checksums.
            run(["ip", "netns", "exec", rns, "ethtool", "-K", wire, "tx",
                 "off"])
            self._join_wire(wire, r.wire_port(wire))
            run(["ip", "-n", rns, "addr", "add", ip, "dev", wire])
            run(["ip", "-n", rns, "link", "set", wire, "up"])
        if r.masquerade:
            self._masquerade(rns, r.masquerade)

    @staticmethod
    def _masquerade(ns, iface):
        """Source NAT of every IPv4 packet namespace ns sends out of
        'iface' to iface's address (the nftables ruleset goes with the
        namespace)."""
        if not shutil.which("nft"):
            raise FeatureMissing("'nft' is not installed (nftables, for a "
                                 "masquerading router)")
        proc = run(["ip", "netns", "exec", ns, "nft",
                    "add table ip nat; "
                    "add chain ip nat post { type nat hook postrouting "
                    "priority 100 ; }; "
                    "add rule ip nat post oifname %s masquerade" % iface],
                   check=False)
        if proc.returncode != 0:
            raise FeatureMissing("nftables masquerade not available: %s"
                                 % proc.stderr.strip())

    def _wait_ports(self):
        def ready(o):
            out = self.vsctl("--columns=name,ofport", "--format=csv",
                             "--data=bare", "--no-headings", "list",
                             "Interface", ovs=o).stdout
            ofports = [line.split(",")[1] for line in out.split()]
            return all(p.isdigit() and int(p) > 0 for p in ofports)
        for o in self.instances.values():
            wait_until(lambda: ready(o), 10,
                       "OVS ports to get OpenFlow port numbers (%s)" % o.name)

    # ---------------------------------------------------- key server
    def start_pairkeyd(self, miss_policy="hold", listen=None, ns=None,
                       ssl=None, ovsdbs=None, name="pairkeyd", extra=()):
        """Starts pairkeyd (a Pairkeyd, also self.pairkeyd, unless 'name'
        makes it another one: its files are then named after it) for this
        Net; it is stopped at teardown."""
        pk = Pairkeyd(self, miss_policy, listen, ns, ssl, ovsdbs, name, extra)
        if name == "pairkeyd":
            self.pairkeyd = pk
        else:
            self.other_pairkeyds.append(pk)
        self._cleanup.callback(self._stop_pairkeyd, pk)
        return pk.start()

    @staticmethod
    def _stop_pairkeyd(pk):
        if pk.daemon is not None:
            try:
                pk.stop()
            finally:
                pk.daemon.stop()            # closes its log file

    def mark_ports(self):
        """Marks each client's port pairkey-role=client with the host name
        as pairkey-id, each plain host's port pairkey-role=clear, and each
        uplink pairkey-role=uplink."""
        for h in self.topo.hosts:
            if h.role == "plain":
                self.vsctl("set", "Interface", h.name,
                           "external_ids:pairkey-role=clear",
                           ovs=self.ovs_of(h.bridge))
                continue
            self.vsctl("set", "Interface", h.name,
                       "external_ids:pairkey-role=client",
                       "external_ids:pairkey-id=" + h.name,
                       ovs=self.ovs_of(h.bridge))
        for br in self.topo.bridges:
            if br.wire:
                self.vsctl("set", "Interface", br.uplink,
                           "external_ids:pairkey-role=uplink",
                           ovs=self.ovs_of(br.name))

    def set_controller(self, target, bridges=None):
        """Points every bridge (or those named) at controller 'target',
        retrying a lost connection every second at most."""
        for br in bridges or [b.name for b in self.topo.bridges]:
            self.vsctl("set-controller", br, target, "--", "set",
                       "Controller", br, "max_backoff=1000",
                       ovs=self.ovs_of(br))

    def make_pki(self, name):
        """A new certificate authority pair (ovs-pki init: 'controllerca'
        and 'switchca') in <rundir>/<name>; returns that directory."""
        pki = self.ovs.path(name)
        os.makedirs(pki)
        self._tool("ovs-pki", "--dir=" + os.path.join(pki, "ca"),
                   "--log=" + os.path.join(pki, "ovs-pki.log"), "init",
                   cwd=pki)
        return pki

    def make_cert(self, pki, name, kind):
        """A private key and a certificate signed by the 'kind'
        ('controller' or 'switch') CA of PKI 'pki' (from make_pki):
        returns (private key, certificate, CA certificate) paths, the CA
        certificate being the one that verifies the other side."""
        self._tool("ovs-pki", "--dir=" + os.path.join(pki, "ca"),
                   "--log=" + os.path.join(pki, "ovs-pki.log"), "--batch",
                   "--unique", "req+sign", name, kind, cwd=pki)
        other = "switchca" if kind == "controller" else "controllerca"
        return (os.path.join(pki, name + "-privkey.pem"),
                os.path.join(pki, name + "-cert.pem"),
                os.path.join(pki, "ca", other, "cacert.pem"))

    def enroll(self, *hosts):
        """pairkeyctl add-client for each host (default: every client), with
        the host name as client id."""
        for name in hosts or [h.name for h in self.topo.hosts
                              if h.role == "client"]:
            self.pairkeyd.ctl("add-client", name, self.topo.host(name).mac)

    def start_keyserver(self, miss_policy="hold", enroll=True, ovsdbs=None,
                        extra=()):
        """pairkeyd on a unix socket (reading 'ovsdbs', default every OVS
        instance's, with 'extra' options), ports marked, every bridge its
        controller, every host enrolled (if 'enroll'); waits until every
        bridge is connected and holds the group key (SA 0)."""
        pk = self.start_pairkeyd(miss_policy, ovsdbs=ovsdbs, extra=extra)
        self.mark_ports()
        self.set_controller(pk.listen[1:])          # punix:X -> unix:X
        if enroll:
            self.enroll()
        self.wait_keyserver()
        return pk

    def wait_keyserver(self, timeout=10):
        """Waits until pairkeyd knows every bridge and, if any host is
        enrolled, every bridge holds the group key (SA 0)."""
        names = {b.name for b in self.topo.bridges}
        wait_until(lambda: self.pairkeyd.connected() >= names, timeout,
                   "every bridge to connect to pairkeyd")
        if self.pairkeyd.dump()["clients"]:
            wait_until(lambda: all(0 in sas for sas in self.sa_ids().values()),
                       timeout, "every bridge to hold the group key")

    def sa_ids(self):
        """{bridge: set of SA ids it holds} from pairkey/show of the
        bridge's own ovs-vswitchd."""
        return {b: set(sas) for b, sas in self.sa_kcvs().items()}

    def sa_kcvs(self):
        """{bridge: {SA id: [key check value of each version, current
        first]}} from pairkey/show of the bridge's own ovs-vswitchd."""
        st = {name: pairkey.parse_show(self.appctl("pairkey/show",
                                                   ovs=o).stdout)
              for name, o in self.instances.items()}
        return {b.name: {sa_id: sa["kcv"] for sa_id, sa
                         in st[b.ovs].get(b.name, {}).get("sa", {}).items()}
                for b in self.topo.bridges}

    def kcv_holders(self, kcv):
        """The bridges that hold a key version with check value 'kcv'."""
        return {b for b, sas in self.sa_kcvs().items()
                if any(kcv in kcvs for kcvs in sas.values())}

    # ---------------------------------------------------------- keys
    def key(self):
        """A new random key file in this Net's run directory."""
        os.makedirs(self.keydir, mode=0o700, exist_ok=True)
        self._keys += 1
        return pairkey.Key(os.path.join(self.keydir, "k%d.hex" % self._keys))

    # ------------------------------------------------------- traffic
    def host_run(self, host, *argv, check=False, timeout=30):
        return run(["ip", "netns", "exec", self.ns(host)] + list(argv),
                   check=check, timeout=timeout)

    def ping(self, src, dst, count=1, size=56, dont_fragment=False):
        """True if every echo request from src to host dst is answered."""
        return harness.icmp_echo(self.ns(src), self.topo.host(dst).addr,
                                 count, size, dont_fragment) == count

    def wait_ping(self, src, dst, timeout=10):
        """Pings until one echo succeeds (the first may wait for ARP)."""
        return wait_until(lambda: self.ping(src, dst), timeout,
                          "ping %s -> %s" % (src, dst))

    def pinger(self, src, dst, interval=0.05):
        """A harness.Pinger from host src to host dst (not started); it is
        stopped at teardown at the latest."""
        p = harness.Pinger(self.ns(src), self.topo.host(dst).addr, interval)
        self._cleanup.callback(p.stop)
        return p

    def static_arp(self):
        """Permanent neighbor entries between all hosts: afterwards one
        datagram is exactly one frame on the wire."""
        for a in self.topo.hosts:
            for b in self.topo.hosts:
                if a is not b:
                    run(["ip", "-n", self.ns(a.name), "neigh", "replace",
                         b.addr, "lladdr", b.mac, "dev", a.iface, "nud",
                         "permanent"])

    def tcp_idle(self, host):
        """True if no TCP connection of host has frames left to send: each
        is closed or in TIME-WAIT."""
        return not self.host_run(host, "ss", "-Htn", "state", "connected",
                                 "exclude", "time-wait",
                                 check=True).stdout.strip()

    def udp_socket(self, host, port):
        """A non-blocking UDP socket bound in host to (its address, port)."""
        s = harness.ns_socket(self.ns(host), socket.AF_INET, socket.SOCK_DGRAM)
        self._cleanup.callback(s.close)
        s.bind((self.topo.host(host).addr, port))
        s.setblocking(False)
        return s

    def udp_send(self, src, dst, port, payload):
        s = harness.ns_socket(self.ns(src), socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.sendto(payload, (self.topo.host(dst).addr, port))

    @staticmethod
    def udp_recv(sock):
        """The next datagram waiting on a non-blocking socket, or None."""
        try:
            return sock.recv(65535)
        except BlockingIOError:
            return None

    def tcp_transfer(self, src, dst, payload, port=5001, timeout=10):
        """Sends payload over TCP from src to dst; returns what dst read."""
        addr = (self.topo.host(dst).addr, port)
        server = harness.ns_socket(self.ns(dst), socket.AF_INET,
                                   socket.SOCK_STREAM)
        client = harness.ns_socket(self.ns(src), socket.AF_INET,
                                   socket.SOCK_STREAM)
        received = []
        with server, client:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(addr)
            server.listen(1)
            server.settimeout(timeout)

            def serve():
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(timeout)
                    while chunk := conn.recv(65536):
                        received.append(chunk)
            t = threading.Thread(target=serve, daemon=True)
            t.start()
            client.settimeout(timeout)
            client.connect(addr)
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            t.join(timeout)
        return b"".join(received)

    def iperf3(self, src, dst, seconds, parallel=4, bidir=True):
        """Runs an iperf3 TCP test from src to host dst ('parallel'
        streams, both directions at once if bidir) and returns iperf3's
        JSON result.  The server runs in dst for this one test."""
        addr = self.topo.host(dst).addr
        port = 5201
        log = self.ovs.path("iperf3-%s.log" % dst)
        server = harness.Daemon(
            "iperf3", ["ip", "netns", "exec", self.ns(dst), "iperf3",
                       "--server", "--one-off", "--bind", addr,
                       "--port", port], None, log)
        try:
            wait_until(lambda: self._listening(server, dst, port), 10,
                       "iperf3 server in %s" % dst)
            proc = self.host_run(
                src, "iperf3", "--client", addr, "--port", port, "--json",
                "--time", seconds, "--parallel", parallel,
                *(["--bidir"] if bidir else []), timeout=seconds + 30)
            result = json.loads(proc.stdout or "{}")
            if proc.returncode != 0 or "error" in result:
                raise RuntimeError("iperf3 %s -> %s failed: %s" % (
                    src, dst, result.get("error") or proc.stderr.strip()))
            wait_until(lambda: not server.alive(), 10, "iperf3 server exit")
            return result
        finally:
            server.stop()

    def _listening(self, daemon, host, port):
        if not daemon.alive():
            raise RuntimeError("%s exited, see %s" % (daemon.name,
                                                      daemon.log_path))
        return self.host_run(host, "ss", "-Htln",
                             "sport = :%d" % port).stdout.strip()

    def pmd_rxqs(self):
        """{(port, rx queue): core id of the PMD thread polling it}, from
        dpif-netdev/pmd-rxq-show."""
        rxqs, core = {}, None
        out = self.appctl("dpif-netdev/pmd-rxq-show").stdout
        for line in out.splitlines():
            words = line.split()
            if line.startswith("pmd thread") and "core_id" in words:
                core = int(words[words.index("core_id") + 1].rstrip(":"))
            elif words[:1] == ["port:"] and "queue-id:" in words:
                queue = int(words[words.index("queue-id:") + 1])
                rxqs[(words[1], queue)] = core
        return rxqs

    def xdp_rxq_packets(self, port):
        """{rx queue: frames its XDP program saw} of OVS port 'port' (a
        veth in the ovs namespace; with type=afxdp, every frame it
        receives), from the veth's 'ethtool -S' counters."""
        out = run(["ip", "netns", "exec", self.ns(self._port_ovs(port).name),
                   "ethtool", "-S", port]).stdout
        return {int(m.group(1)): int(m.group(2)) for m in re.finditer(
            r"^\s*rx_queue_(\d+)_xdp_packets: (\d+)$", out, re.M)}

    def sniffer(self, host):
        """A RawPort on host's eth0: what actually reached the host."""
        port = harness.RawPort(self.ns(host), "eth0")
        self._cleanup.callback(port.close)
        return port

    # ----------------------------------------------------------- wire
    def wire_ports(self, wire=None):
        """The wire-side ports of Linux bridge 'wire' (default: of every
        wire the uplinks join): uplinks, inter ports and routers."""
        return ([("to-%s" % b.name) for b in self.topo.bridges
                 if b.wire and wire in (None, b.wire)]
                + [("in-%s" % b.name) for b in self.topo.bridges
                   if b.inter and wire == b.inter]
                + [r.wire_port(w) for r in self.topo.routers
                   for w, _ in r.wires if wire == w])

    def wire_rx(self, wire=None):
        """Frames 'wire' (default: every uplink wire) has received from the
        bridges so far."""
        ns = self.ns("wire")
        return sum(harness.link_stats(ns, p)["rx_packets"]
                   for p in self.wire_ports(wire))

    def wire_rx_from(self, bridge):
        """Frames the wire has received from one bridge's uplink."""
        return harness.link_stats(self.ns("wire"),
                                  "to-%s" % bridge)["rx_packets"]

    @contextlib.contextmanager
    def capture(self, wire="wire", snaplen=4096):
        """Captures the wire while the with-body runs.  On leaving, waits
        until every frame the wire received is in the pcap, then stops;
        the frames (their first 'snaplen' bytes) are in .frames of the
        yielded Capture."""
        self._captures += 1
        path = self.ovs.path("%s-%d.pcap" % (wire, self._captures))
        cap = harness.Capture(self.ns("wire"), wire, path, snaplen=snaplen)
        self._cleanup.callback(cap.stop, False)
        base = self.wire_rx(wire)
        cap.expected = lambda: self.wire_rx(wire) - base
        try:
            yield cap
        except BaseException:
            cap.stop(settle=False)
            raise
        cap.stop()

    def inject(self, bridge, frames, inter=False):
        """Sends frames from the wire into bridge's uplink, or its inter
        port if 'inter' (only that bridge sees them)."""
        port = harness.RawPort(self.ns("wire"),
                               ("in-%s" if inter else "to-%s") % bridge)
        with contextlib.closing(port):
            for f in frames:
                port.send(f)

    # ---------------------------------------------------- forensics
    def log_lines(self, levels=("WARN", "ERR", "EMER")):
        """WARN/ERR lines of ovs-vswitchd (of every OVS instance) and, if
        started, pairkeyd, each prefixed with its log's name (relative to
        the Net's run directory)."""
        lines = []
        for o in self.instances.values():
            path = o.path("ovs-vswitchd.log")
            name = os.path.relpath(path, self.ovs.rundir)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    lines += ["%s: %s" % (name, line.rstrip("\n"))
                              for line in f
                              if any("|%s|" % lvl in line for lvl in levels)]
        for pk in ([self.pairkeyd] if self.pairkeyd else []) \
                + self.other_pairkeyds:
            lines += ["%s.log: %s" % (pk.name, line)
                      for line in pk.log_lines(levels)]
        return lines

    def save_forensics(self, dest):
        """Copies logs and pcaps and dumps OVS state into dest (never the
        key files)."""
        os.makedirs(dest, exist_ok=True)

        def save(name, fn):
            try:
                text = fn()
            except Exception as e:           # keep collecting the rest
                text = "failed: %s\n" % e
            with open(os.path.join(dest, name), "w") as f:
                f.write(text)

        def out(fn, *args):
            return lambda: (lambda p: p.stdout + p.stderr)(
                fn(*args, check=False))

        for o in self.instances.values():
            # "" for the first instance, "<name>-" for the others
            tag = "" if o is self.ovs else o.name + "-"
            save(tag + "ovs-vsctl-show.txt",
                 lambda o=o: (lambda p: p.stdout + p.stderr)(
                     self.vsctl("show", check=False, ovs=o)))
            if o.vswitchd is None or not o.vswitchd.alive():
                continue
            for br in self.topo.bridges:
                if self.ovs_of(br.name) is o:
                    save("dump-flows-%s.txt" % br.name,
                         out(self.ofctl, "dump-flows", br.name))
                    save("dump-ports-%s.txt" % br.name,
                         out(self.ofctl, "dump-ports", br.name))
            for what in ("pairkey/show", "coverage/show", "dpctl/dump-flows"):
                save(tag + what.replace("/", "-") + ".txt",
                     lambda o=o, what=what: (lambda p: p.stdout + p.stderr)(
                         self.appctl(what, check=False, ovs=o)))
        pk = self.pairkeyd
        if pk is not None and pk.alive():
            for cmd in ("show", "dump", "list-clients", "list-keys"):
                save("pairkeyctl-%s.txt" % cmd, out(pk.ctl, cmd))
        for ns in self.namespaces:
            save("ip-%s.txt" % ns, lambda ns=ns: "".join(
                run(["ip", "-n", ns, "-s", "-d"] + a, check=False).stdout
                for a in (["link"], ["addr"], ["neigh"])))
        for r in self.topo.routers:
            ns = self.ns(r.name)
            save("router-%s.txt" % r.name, lambda ns=ns: "".join(
                (lambda p: p.stdout + p.stderr)(run(a, check=False))
                for a in (["ip", "-n", ns, "route"],
                          ["ip", "netns", "exec", ns, "nft", "list",
                           "ruleset"])))
        for o in self.instances.values():
            tag = "" if o is self.ovs else o.name + "-"
            for name in sorted(os.listdir(o.rundir)):
                if name.endswith((".log", ".stderr", ".pcap")):
                    shutil.copy(o.path(name), os.path.join(dest, tag + name))
