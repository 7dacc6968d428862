#!/usr/bin/python3
"""Throughput and packet rate of pairkey's encrypt/decrypt actions through a
private Open vSwitch (userspace datapath), plain flows against encrypting
ones, in one run so that both see the same machine.

    h1 --- [br1] ==== the wire (veth, MTU 1600) ==== [br2] --- h2

(benchnet.py has the full picture.)  Each bridge either just forwards
between its host port and its uplink (plain) or encrypts what its host sends
and decrypts what the wire brings (crypt), with SA 1 holding the same key on
both bridges.  For each port type (AF_PACKET, then AF_XDP if the kernel and
the build allow it):

  TCP   iperf3 h1 -> h2, REPS alternating runs of each flow set
        (plain, crypt, plain, crypt, ...); the median Gbit/s of each.
  pps   a flood of 60-byte UDP frames (64 on a real wire with the FCS;
        iperf3 -u -l 18 -b 0) from h1; frames per second arriving at h2's
        interface, measured over the middle of each run, median of the
        runs.  The sender offers more than the switch can take, so this is
        the switch's forwarding rate at saturation.

Every run checks through 'ovs-appctl pairkey/show' that frames were
encrypted and decrypted (crypt) or not (plain), so a flow that did not take
effect cannot pass for a result.  AF_PACKET receive-buffer drops (sk_drops of
vswitchd's packet sockets, from 'ss -0 -m'; OVS's own counters do not see
them), OVS transmit drops and TCP retransmissions are reported with each
run.

Timings are printed and written as JSON (--json), never asserted: the
machine may be small and shared, so compare figures only within one run.
Needs root; cleans up every namespace, link and process it made, also on
Ctrl-C.
"""

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchnet                                         # noqa: E402
from benchnet import HOST_OFPORT, UPLINK_OFPORT, HOSTS  # noqa: E402

MODES = ("plain", "crypt")
PORT_TYPES = {"system": "AF_PACKET", "afxdp": "AF_XDP"}
IPERF_PORT = 5201
UDP_PAYLOAD = 18        # 14 + 20 + 8 + 18 = 60-byte frames (64 with FCS).
SA_ID = 1
SWITCH_CPU, HOSTS_CPU = 0, 1        # --pin
# Errors that say something about the machine, not the run.
BENIGN_LOG = (r"setrlimit\(RLIMIT_MEMLOCK\)",)


class Stop(BaseException):
    """SIGINT, SIGTERM or SIGHUP: tear down and leave."""


def flows(mode):
    enc = "encrypt:%d," % SA_ID if mode == "crypt" else ""
    dec = "decrypt:%d," % SA_ID if mode == "crypt" else ""
    return ["in_port=%d,actions=%soutput:%d" % (HOST_OFPORT, enc,
                                                UPLINK_OFPORT),
            "in_port=%d,actions=%soutput:%d" % (UPLINK_OFPORT, dec,
                                                HOST_OFPORT)]


def parse_pairkey_show(text):
    """{(bridge, 'encrypted'|'decrypted'|'drops'): n} for SA_ID."""
    counts, bridge, sa = {}, None, None
    for line in text.splitlines():
        m = re.match(r"(\S+):$", line)
        if m:
            bridge = m.group(1)
            continue
        m = re.match(r"\s+sa (\d+):", line)
        if m:
            sa = int(m.group(1))
            continue
        if sa != SA_ID:
            continue
        m = re.match(r"\s+(encrypted|decrypted): packets=(\d+)", line)
        if m:
            counts[(bridge, m.group(1))] = int(m.group(2))
        elif line.strip().startswith("drops:"):
            counts[(bridge, "drops")] = sum(
                int(n) for n in re.findall(r"=(\d+)", line))
    return counts


class Bench:
    """The measurements on one running Net."""

    def __init__(self, net, args):
        self.net = net
        self.args = args
        self.dst = HOSTS["h2"][2]
        self.iperf_pin = ["-A", HOSTS_CPU] if args.pin else []

    # ---------------------------------------------------------- setup
    def setup(self, stack):
        key = self.net.add_sa("br1", SA_ID)
        self.net.add_sa("br2", SA_ID, key_hex=key)
        server = self.net.ns_popen("h2", "iperf3", "-s", "-B", self.dst,
                                   "-p", IPERF_PORT, *self.iperf_pin,
                                   stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        stack.callback(stop_process, server)
        benchnet.wait_until(
            lambda: server.poll() is None and ":%d " % IPERF_PORT in
            self.net.ns_run("h2", "ss", "-ltn").stdout, 10, "iperf3 server")

    def set_mode(self, mode):
        for br in ("br1", "br2"):
            self.net.set_flows(br, flows(mode))
        self.net.flush_datapath_flows()
        benchnet.wait_until(
            lambda: self.net.ns_run("h1", "ping", "-c", "1", "-W", "1",
                                    self.dst, check=False).returncode == 0,
            10, "h1 to reach h2 with %s flows" % mode)

    # ------------------------------------------------------- counters
    def snapshot(self):
        net = self.net
        return {"pairkey": parse_pairkey_show(
                    net.appctl("pairkey/show").stdout),
                "sock": net.packet_socket_stats(),
                "tx_dropped": sum(p.get("tx_dropped", 0) for p in
                                  net.ovs_port_stats().values()),
                "h1_tx": net.link_stats("h1", "eth0")["tx_packets"],
                "h2_rx": net.link_stats("h2", "eth0")["rx_packets"],
                "time": time.monotonic()}

    def check(self, mode, before, after):
        """Raises if the run did not go through the flows of 'mode'."""
        def delta(key):
            return after["pairkey"].get(key, 0) - before["pairkey"].get(key, 0)
        enc, dec = delta(("br1", "encrypted")), delta(("br2", "decrypted"))
        drops = delta(("br1", "drops")) + delta(("br2", "drops"))
        if mode == "crypt" and not (enc > 0 and dec > 0):
            raise RuntimeError("crypt run encrypted %d and decrypted %d "
                               "frames: flows not in effect" % (enc, dec))
        if mode == "plain" and enc:
            raise RuntimeError("plain run encrypted %d frames" % enc)
        return {"encrypted": enc, "decrypted": dec, "crypt_drops": drops,
                "sock_drops": after["sock"]["drops"]
                - before["sock"]["drops"],
                "ovs_tx_dropped": after["tx_dropped"] - before["tx_dropped"]}

    # ------------------------------------------------------------ TCP
    def tcp_run(self, mode):
        secs = self.args.tcp_seconds
        before = self.snapshot()
        proc = self.net.ns_run("h1", "iperf3", "-c", self.dst, "-p",
                               IPERF_PORT, "-t", secs, "-O", 1, "-J",
                               *self.iperf_pin,
                               check=False, timeout=secs + 60)
        after = self.snapshot()
        result = json.loads(proc.stdout or "{}")
        if proc.returncode or "error" in result:
            raise RuntimeError("iperf3 TCP: %s" % (
                result.get("error") or proc.stderr.strip()))
        end = result["end"]
        run = {"gbps": end["sum_received"]["bits_per_second"] / 1e9,
               "retransmits": end["sum_sent"].get("retransmits", 0)}
        run.update(self.check(mode, before, after))
        return run

    # ------------------------------------------------------------ pps
    def udp_run(self, mode):
        secs = self.args.udp_seconds
        warmup = min(1.0, secs / 4)
        window = secs - 2 * warmup
        proc = self.net.ns_popen("h1", "iperf3", "-c", self.dst, "-p",
                                 IPERF_PORT, "-u", "-l", UDP_PAYLOAD, "-b",
                                 "0", "-t", secs, "-J", *self.iperf_pin)
        try:
            start = time.monotonic()
            time.sleep(warmup)
            before = self.snapshot()
            time.sleep(max(0.0, start + warmup + window - time.monotonic()))
            after = self.snapshot()
            out, err = proc.communicate(timeout=secs + 60)
        finally:
            stop_process(proc)
        result = json.loads(out or "{}")
        if proc.returncode or "error" in result:
            raise RuntimeError("iperf3 UDP: %s" % (
                result.get("error") or err.strip()))
        elapsed = after["time"] - before["time"]
        run = {"pps": (after["h2_rx"] - before["h2_rx"]) / elapsed,
               "offered_pps": (after["h1_tx"] - before["h1_tx"]) / elapsed}
        run.update(self.check(mode, before, after))
        return run

    # ---------------------------------------------------------- all
    def measure(self, port_type):
        out = {"port_type": port_type, "tcp": {}, "pps": {}}
        try:
            self.set_mode("plain")
        except TimeoutError as e:
            if port_type == "system":
                raise
            raise benchnet.FeatureMissing("no traffic through %s ports (%s)"
                                          % (PORT_TYPES[port_type], e))
        for test, reps, fn, fmt in (
                ("tcp", self.args.reps, self.tcp_run,
                 "%(gbps)6.3f Gbit/s  retransmits %(retransmits)d"),
                ("pps", self.args.udp_reps, self.udp_run,
                 "%(pps)9.0f pps  (offered %(offered_pps).0f)")):
            runs = {m: [] for m in MODES}
            for rep in range(reps):
                for mode in MODES:
                    self.set_mode(mode)
                    r = fn(mode)
                    runs[mode].append(r)
                    print("  %-9s %-3s %-5s #%d  %s  sock_drops %d  "
                          "tx_dropped %d"
                          % (PORT_TYPES[port_type], test, mode, rep + 1,
                             fmt % r, r["sock_drops"], r["ovs_tx_dropped"]),
                          flush=True)
            key = "gbps" if test == "tcp" else "pps"
            for mode in MODES:
                out[test][mode] = {
                    "median": statistics.median(r[key] for r in runs[mode]),
                    "runs": runs[mode]}
            plain = out[test]["plain"]["median"]
            out[test]["ratio"] = (out[test]["crypt"]["median"] / plain
                                  if plain else None)
        out["rcvbuf"] = self.net.packet_socket_stats()["rcvbuf"]
        out["log_errors"] = [line for line in self.net.log_lines()
                             if not any(re.search(p, line)
                                        for p in BENIGN_LOG)]
        return out


def stop_process(proc):
    """Stops a process this program started, by its PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_port_type(port_type, programs, schema, args):
    print("%s ports:" % PORT_TYPES[port_type], flush=True)
    with contextlib.ExitStack() as stack:
        net = stack.enter_context(benchnet.Net(
            programs, schema, port_type,
            switch_cpu=SWITCH_CPU if args.pin else None))
        bench = Bench(net, args)
        bench.setup(stack)
        return bench.measure(port_type)


def median_row(label, res, test, scale, fmt):
    t = res[test]
    ratio = "%.3f" % t["ratio"] if t["ratio"] is not None else "-"
    return "%-34s %10s %10s %8s" % (
        label, fmt % (t["plain"]["median"] * scale),
        fmt % (t["crypt"]["median"] * scale), ratio)


def print_table(results, args):
    print()
    print("pairkey throughput: h1 -> br1 = wire = br2 -> h2 (medians; "
          "%d CPUs, shared machine: compare within one run)"
          % os.cpu_count())
    print("%-34s %10s %10s %8s" % ("", "plain", "crypt", "ratio"))
    for port_type, res in results.items():
        name = PORT_TYPES[port_type]
        if "skipped" in res:
            print("%-34s skipped: %s" % (name, res["skipped"]))
            continue
        print(median_row("%s TCP Gbit/s (%d x %gs)"
                         % (name, args.reps, args.tcp_seconds),
                         res, "tcp", 1, "%.3f"))
        print(median_row("%s 64-byte frames kpps (%d x %gs)"
                         % (name, args.udp_reps, args.udp_seconds),
                         res, "pps", 1e-3, "%.1f"))
        if port_type == "system":
            drops = {m: sum(r["sock_drops"] for r in res["tcp"][m]["runs"])
                     for m in MODES}
            print("%-34s %10d %10d   (rcvbuf %d B)"
                  % ("AF_PACKET drops in TCP runs", drops["plain"],
                     drops["crypt"], res["rcvbuf"]))
        errors = res["log_errors"]
        for line in errors[:2]:
            print("  vswitchd: %s" % line)
        if len(errors) > 2:
            print("  vswitchd: ... %d more WARN/ERR lines (in the JSON)"
                  % (len(errors) - 2))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ovs-bin", default=os.path.join(here, "..",
                                                          "build", "bin"),
                        help="directory with the OVS programs "
                        "(default: build/bin)")
    parser.add_argument("--ovs-src", default=os.path.join(here, "..",
                                                          "build", "ovs"),
                        help="built OVS tree, used for programs missing "
                        "from --ovs-bin (default: build/ovs)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--reps", type=int, default=3,
                        help="TCP runs of each flow set (default 3)")
    parser.add_argument("--tcp-seconds", type=float, default=5,
                        help="length of a TCP run (default 5)")
    parser.add_argument("--udp-reps", type=int, default=5,
                        help="pps runs of each flow set (default 5)")
    parser.add_argument("--udp-seconds", type=float, default=3,
                        help="length of a pps run (default 3)")
    parser.add_argument("--port-types", default="system,afxdp",
                        help="comma-separated: system (AF_PACKET), afxdp")
    parser.add_argument("--pin", action="store_true",
                        help="run every vswitchd thread on CPU 0 and "
                        "iperf3 on CPU 1 (needs 2 CPUs)")
    args = parser.parse_args()
    port_types = [t for t in args.port_types.split(",") if t]
    if any(t not in PORT_TYPES for t in port_types):
        parser.error("--port-types: one of %s" % ", ".join(PORT_TYPES))

    if os.geteuid() != 0:
        sys.exit("throughput.py: needs root (namespaces, OVS)")
    for tool in ("iperf3", "ss", "ethtool", "ip"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "").split(os.pathsep)):
            sys.exit("throughput.py: %s is not installed" % tool)
    programs, schema = benchnet.find_ovs(args.ovs_bin, args.ovs_src)

    # The first signal unwinds (tearing everything down); later ones are
    # ignored so that the teardown completes.
    stopping = []

    def on_signal(signum, frame):
        if not stopping:
            stopping.append(signum)
            raise Stop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    results = {}
    try:
        for port_type in port_types:
            try:
                results[port_type] = run_port_type(port_type, programs,
                                                   schema, args)
            except benchnet.FeatureMissing as e:
                print("  skipped: %s" % e)
                results[port_type] = {"skipped": str(e)}
    except Stop:
        print("\nthroughput.py: interrupted, cleaned up", file=sys.stderr)
        return 130

    print_table(results, args)
    if args.json:
        report = {
            "machine": {"cpus": os.cpu_count(),
                        "kernel": platform.release(),
                        "note": "shared machine: compare within one run"},
            "config": {"reps": args.reps, "tcp_seconds": args.tcp_seconds,
                       "udp_reps": args.udp_reps,
                       "udp_seconds": args.udp_seconds,
                       "udp_frame_bytes": 42 + UDP_PAYLOAD,
                       "wire_mtu": benchnet.WIRE_MTU},
            "results": results,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        print("figures written to %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
