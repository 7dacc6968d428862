"""A private Open vSwitch and two hosts, built out of network namespaces,
for the throughput benchmark.  Standard library only.

     ns <p>h1          ns <p>ovs (ovsdb-server, ovs-vswitchd)         ns <p>h2
   +----------+   +--------------------------------------------+  +----------+
   | eth0     |---| h1 (1)                              (1) h2 |--| eth0     |
   | 10.0.0.1 |   |  [br1] (100) br1-up ==== br2-up (100) [br2] |  | 10.0.0.2 |
   +----------+   +--------------------------------------------+  +----------+
                   (n) = OpenFlow port number; ==== the wire, a veth pair

Hosts keep MTU 1500; both ends of the wire run at 1600 so that encrypted
full-size frames (32 bytes longer) fit.  The four OVS ports are all of one
type: "system" (AF_PACKET sockets, the netdev-linux default) or "afxdp".
<p> is a prefix unique to each run.  Everything a Net creates is registered
for cleanup where it is created and torn down in reverse order by stop(),
also after a failure half-way through start(); processes are stopped by the
PID of the Popen that started them.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "integration"))
import harness  # noqa: E402
from harness import run, wait_until  # noqa: E402

HOST_OFPORT = 1
UPLINK_OFPORT = 100
WIRE_MTU = 1600
EXEC_RETRY_SECONDS = 30
HOSTS = {
    # name: (bridge, MAC, address)
    "h1": ("br1", "02:00:00:00:01:01", "10.0.0.1"),
    "h2": ("br2", "02:00:00:00:02:02", "10.0.0.2"),
}
OVS_PROGRAMS = ("ovs-vswitchd", "ovsdb-server", "ovsdb-tool", "ovs-vsctl",
                "ovs-ofctl", "ovs-appctl")
# Where each program sits in a built (not installed) OVS tree.
OVS_TREE_DIRS = {"ovs-vswitchd": "vswitchd", "ovsdb-server": "ovsdb",
                 "ovsdb-tool": "ovsdb"}


class FeatureMissing(Exception):
    """The kernel or the OVS build lacks something (benchmarks skip)."""


def find_ovs(bindir, srcdir):
    """(program directory map, schema path) for OVS binaries in 'bindir'
    (build/bin style) or else in the built tree 'srcdir'."""
    paths = {}
    for prog in OVS_PROGRAMS:
        candidates = [os.path.join(bindir, prog)] if bindir else []
        if srcdir:
            candidates.append(os.path.join(
                srcdir, OVS_TREE_DIRS.get(prog, "utilities"), prog))
        found = [c for c in candidates if os.access(c, os.X_OK)]
        if not found:
            raise FileNotFoundError("no %s in %s" % (prog, candidates))
        paths[prog] = os.path.abspath(found[0])
    schemas = []
    if bindir:
        schemas.append(os.path.join(bindir, os.pardir, "share",
                                    "vswitch.ovsschema"))
    if srcdir:
        schemas.append(os.path.join(srcdir, "vswitchd", "vswitch.ovsschema"))
    schema = next((s for s in schemas if os.path.exists(s)), None)
    if not schema:
        raise FileNotFoundError("no vswitch.ovsschema in %s" % schemas)
    return paths, os.path.abspath(schema)


def start_daemon(name, argv, env, log_path, program=None):
    """Starts a daemon in its own session (so a Ctrl-C on the terminal
    reaches only the benchmark, which then stops it in order)."""
    if program:
        # The OVS tree may be relinking it.
        wait_until(lambda: os.access(program, os.X_OK),
                   EXEC_RETRY_SECONDS, program)
    return harness.Daemon(name, argv, env, log_path, new_session=True)


class Net:
    """The topology in the module docstring.  Use as a context manager or
    call start() and stop()."""

    def __init__(self, programs, schema, port_type="system", prefix=None,
                 workdir=None, switch_cpu=None):
        self.programs = programs
        self.schema = schema
        self.port_type = port_type
        self.switch_cpu = switch_cpu    # None: let the scheduler place it
        self.prefix = prefix or "pkbench%d-" % os.getpid()
        self.rundir = tempfile.mkdtemp(prefix="pairkey-bench-", dir=workdir)
        self.env = dict(os.environ, OVS_RUNDIR=self.rundir,
                        OVS_DBDIR=self.rundir, OVS_LOGDIR=self.rundir,
                        OVS_SYSCONFDIR=self.rundir,
                        OVS_PKGDATADIR=self.rundir)
        self._cleanup = contextlib.ExitStack()
        self._cleanup.callback(shutil.rmtree, self.rundir, True)
        self.vswitchd = None
        self.ovsdb = None
        self._n_keys = 0

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------ names
    def ns(self, what):
        """Namespace name of 'h1', 'h2' or 'ovs'."""
        return self.prefix + what

    def path(self, name):
        return os.path.join(self.rundir, name)

    # ------------------------------------------------------------ tools
    def _tool(self, prog, *args, check=True, timeout=30, input=None):
        return run([self.programs[prog]] + list(args), check=check,
                   env=self.env, timeout=timeout, input=input)

    def vsctl(self, *args, check=True):
        return self._tool("ovs-vsctl", "--timeout=20",
                          "--db=unix:" + self.path("db.sock"), *args,
                          check=check)

    def ofctl(self, *args, check=True):
        return self._tool("ovs-ofctl", *args, check=check)

    def appctl(self, *args, check=True, target="ovs-vswitchd"):
        return self._tool("ovs-appctl", "-t", self.path(target + ".ctl"),
                          *args, check=check)

    def ns_run(self, what, *argv, check=True, timeout=30):
        return run(["ip", "netns", "exec", self.ns(what)] + list(argv),
                   check=check, timeout=timeout)

    def ns_popen(self, what, *argv, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE):
        """A process inside namespace 'what', in its own session.  The
        caller stops it (by its PID) or waits for it."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns(what)] + [str(a) for a in argv],
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            text=True, start_new_session=True)

    # ------------------------------------------------------------ build
    def start(self):
        try:
            self._remove_leftovers()
            for what in ("ovs", "h1", "h2"):
                self._add_ns(self.ns(what))
            self._start_ovsdb()
            if self.switch_cpu is not None:
                self.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                           "other_config:pmd-cpu-mask=%#x"
                           % (1 << self.switch_cpu))
            self._start_vswitchd()
            for host, (br, _, _) in sorted(HOSTS.items()):
                self.vsctl("add-br", br, "--", "set", "Bridge", br,
                           "datapath_type=netdev", "fail_mode=secure",
                           "other-config:disable-in-band=true")
            self._add_wire()
            for host in sorted(HOSTS):
                self._add_host(host)
            self._wait_ports()
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

    def _add_veth(self, ns_a, name_a, mac_a, ns_b, name_b, mac_b, mtu):
        """A veth pair made directly inside two namespaces."""
        run(["ip", "-n", ns_a, "link", "add", "name", name_a, "address",
             mac_a, "mtu", mtu, "type", "veth", "peer", "name", name_b,
             "address", mac_b, "mtu", mtu, "netns", ns_b])
        self._cleanup.callback(run, ["ip", "-n", ns_a, "link", "del",
                                     name_a], check=False)

    def _start_ovsdb(self):
        run([self.programs["ovsdb-tool"], "create", self.path("conf.db"),
             self.schema], env=self.env)
        self.ovsdb = start_daemon(
            "ovsdb-server",
            ["ip", "netns", "exec", self.ns("ovs"),
             self.programs["ovsdb-server"], self.path("conf.db"),
             "--remote=punix:" + self.path("db.sock"),
             "--unixctl=" + self.path("ovsdb-server.ctl"),
             "--pidfile=" + self.path("ovsdb-server.pid"),
             "--log-file=" + self.path("ovsdb-server.log"),
             "-vconsole:off"],
            self.env, self.path("ovsdb-server.stderr"),
            self.programs["ovsdb-server"])
        self._cleanup.callback(self._stop_daemon, "ovsdb-server")
        wait_until(lambda: self._daemon_up(self.ovsdb, "db.sock"), 10,
                   "ovsdb-server")
        self.vsctl("--no-wait", "init")

    def _start_vswitchd(self):
        pin = []
        if self.switch_cpu is not None:
            # Every thread of vswitchd, PMD threads included, on one CPU.
            pin = ["taskset", "-c", str(self.switch_cpu)]
        self.vswitchd = start_daemon(
            "ovs-vswitchd",
            ["ip", "netns", "exec", self.ns("ovs")] + pin +
            [self.programs["ovs-vswitchd"], "--disable-system",
             "unix:" + self.path("db.sock"),
             "--unixctl=" + self.path("ovs-vswitchd.ctl"),
             "--pidfile=" + self.path("ovs-vswitchd.pid"),
             "--log-file=" + self.path("ovs-vswitchd.log"),
             "-vconsole:off"],
            self.env, self.path("ovs-vswitchd.stderr"),
            self.programs["ovs-vswitchd"])
        self._cleanup.callback(self._stop_daemon, "ovs-vswitchd")
        wait_until(lambda: self._daemon_up(self.vswitchd,
                                           "ovs-vswitchd.ctl")
                   and self.appctl("version", check=False).returncode == 0,
                   10, "ovs-vswitchd")

    def _daemon_up(self, daemon, sock):
        if not daemon.alive():
            raise RuntimeError("%s exited, see %s" % (daemon.name,
                                                      daemon.log_path))
        return os.path.exists(self.path(sock))

    def _stop_daemon(self, name):
        daemon = self.vswitchd if name == "ovs-vswitchd" else self.ovsdb
        if daemon is None:
            return
        try:
            if daemon.alive():
                args = ["exit"]
                if name == "ovs-vswitchd":
                    args.append("--cleanup")
                self.appctl(*args, check=False, target=name)
                wait_until(lambda: not daemon.alive(), 5, name + " to exit")
        finally:
            # SIGTERM by PID if the orderly exit failed or timed out.
            daemon.stop()

    def _port_options(self):
        if self.port_type == "afxdp":
            # veth has no zero-copy AF_XDP; native (driver) mode works.
            return ["type=afxdp", "options:xdp-mode=native"]
        return []

    def _add_port(self, br, port, ofport, mtu=None):
        args = ["add-port", br, port, "--", "set", "Interface", port,
                "ofport_request=%d" % ofport] + self._port_options()
        if mtu:
            args.append("mtu_request=%d" % mtu)
        self.vsctl(*args)

    def _add_wire(self):
        ovs = self.ns("ovs")
        self._add_veth(ovs, "br1-up", "02:00:00:ee:00:01",
                       ovs, "br2-up", "02:00:00:ee:00:02", WIRE_MTU)
        for up in ("br1-up", "br2-up"):
            run(["ip", "-n", ovs, "link", "set", up, "up"])
        self._add_port("br1", "br1-up", UPLINK_OFPORT, WIRE_MTU)
        self._add_port("br2", "br2-up", UPLINK_OFPORT, WIRE_MTU)

    def _add_host(self, host):
        br, mac, addr = HOSTS[host]
        hns, ovs = self.ns(host), self.ns("ovs")
        self._add_veth(hns, "eth0", mac, ovs, host,
                       "02:00:00:ef:00:0%s" % host[-1], 1500)
        # Mandatory with the userspace datapath: no partial checksums.
        run(["ip", "netns", "exec", hns, "ethtool", "-K", "eth0", "tx",
             "off"])
        run(["ip", "-n", hns, "addr", "add", addr + "/24", "dev", "eth0"])
        run(["ip", "-n", hns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ovs, "link", "set", host, "up"])
        self._add_port(br, host, HOST_OFPORT)
        # Static neighbours: no ARP in the measurements.
        for other, (_, omac, oaddr) in HOSTS.items():
            if other != host:
                run(["ip", "-n", hns, "neigh", "replace", oaddr, "lladdr",
                     omac, "dev", "eth0", "nud", "permanent"])

    def _wait_ports(self):
        def ready():
            out = self.vsctl("--columns=name,ofport,error", "--format=json",
                             "list", "Interface").stdout
            rows = json.loads(out)["data"]
            for name, ofport, error in rows:
                if isinstance(error, str) and error:
                    raise FeatureMissing("port %s: %s" % (name, error))
                if not isinstance(ofport, int) or ofport <= 0:
                    return False
            return True
        wait_until(ready, 15, "OVS ports to get OpenFlow port numbers")

    # ------------------------------------------------- flows and keys
    def set_flows(self, bridge, flows):
        """Replaces every flow of 'bridge' with 'flows' (a list)."""
        path = self.path("flows-%s.txt" % bridge)
        with open(path, "w") as f:
            f.write("".join(flow + "\n" for flow in flows))
        self.ofctl("replace-flows", bridge, path)

    def add_sa(self, bridge, sa_id=1, version=1, key_hex=None):
        """Installs an SA with a key from a fresh file (random unless
        'key_hex' is given) and returns the key in hex."""
        key_hex = key_hex or os.urandom(32).hex()
        self._n_keys += 1
        path = self.path("key%d.hex" % self._n_keys)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key_hex + "\n")
        self.ofctl("add-sa", bridge, "id=%d,version=%d,key-file=%s"
                   % (sa_id, version, path))
        return key_hex

    def flush_datapath_flows(self):
        """Makes the next packet go through the current OpenFlow tables."""
        self.appctl("revalidator/purge")

    # ------------------------------------------------------ counters
    def link_stats(self, what, dev):
        out = run(["ip", "-n", self.ns(what), "-s", "-j", "link", "show",
                   "dev", dev]).stdout
        stats = json.loads(out)[0]["stats64"]
        return {"rx_packets": stats["rx"]["packets"],
                "rx_dropped": stats["rx"]["dropped"],
                "tx_packets": stats["tx"]["packets"],
                "tx_dropped": stats["tx"]["dropped"]}

    def packet_socket_stats(self):
        """Sum over the AF_PACKET sockets in the OVS namespace of the bytes
        queued, the receive buffer size and the drops (sk_drops: frames
        that found the receive buffer full), from 'ss -0 -m'."""
        out = run(["ip", "netns", "exec", self.ns("ovs"), "ss", "-0", "-a",
                   "-m", "-n"]).stdout
        total = {"sockets": 0, "rcvbuf": 0, "drops": 0}
        for m in re.finditer(r"skmem:\(([^)]*)\)", out):
            fields = dict(re.findall(r"([a-z]+)(\d+)", m.group(1)))
            total["sockets"] += 1
            total["rcvbuf"] = max(total["rcvbuf"], int(fields.get("rb", 0)))
            total["drops"] += int(fields.get("d", 0))
        return total

    def ovs_port_stats(self):
        """'ovs-appctl dpctl/show -s' parsed into {port: {counter: n}}."""
        out = self.appctl("dpctl/show", "-s").stdout
        ports, port = {}, None
        for line in out.splitlines():
            m = re.match(r"\s+port \d+: (\S+)", line)
            if m:
                port = ports.setdefault(m.group(1), {})
                continue
            m = re.match(r"\s+([RT]X) packets:(\d+).*?dropped:(\d+|\?)",
                         line)
            if m and port is not None:
                d = m.group(1).lower()
                port[d + "_packets"] = int(m.group(2))
                if m.group(3) != "?":
                    port[d + "_dropped"] = int(m.group(3))
        return ports

    def log_lines(self, levels=("WARN", "ERR", "EMER")):
        path = self.path("ovs-vswitchd.log")
        if not os.path.exists(path):
            return []
        with open(path, errors="replace") as f:
            return [line.rstrip("\n") for line in f
                    if any("|%s|" % lvl in line for lvl in levels)]
