"""Low-level helpers: commands, polling, network namespaces, raw sockets,
pcap capture.  Standard library only.

Everything here acts on resources the caller created and names explicitly:
processes are stopped by the PID of the Popen object that started them,
sockets live in namespaces given by name.
"""

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import time

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

_libc = ctypes.CDLL(None, use_errno=True)


class CommandError(Exception):
    """A command exited non-zero; carries the CompletedProcess."""

    def __init__(self, argv, proc):
        self.argv = argv
        self.proc = proc
        super().__init__("%s exited %d: %s" % (
            " ".join(argv), proc.returncode, proc.stderr.strip()))


def run(argv, check=True, env=None, timeout=30, input=None, cwd=None):
    """Runs argv (a list) and returns the CompletedProcess (text mode)."""
    argv = [str(a) for a in argv]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env,
                          timeout=timeout, input=input, cwd=cwd)
    if check and proc.returncode != 0:
        raise CommandError(argv, proc)
    return proc


def wait_until(predicate, timeout=10.0, what=None):
    """Polls predicate() until it returns a true value, which is returned.
    Raises TimeoutError after 'timeout' seconds.  The only place in the
    harness that sleeps, and only in bounded polling steps."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s"
                               % (timeout, what or predicate.__name__))
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


# ---------------------------------------------------------------- namespaces

def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: %s" % os.strerror(err))


@contextlib.contextmanager
def netns(name):
    """Moves the calling thread into network namespace 'name' for the body
    of the with-statement.  Sockets created inside stay in that namespace."""
    with open("/proc/thread-self/ns/net") as orig, \
            open("/run/netns/%s" % name) as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(orig.fileno())


def ns_socket(ns, family, type_, proto=0):
    """Returns a socket created inside namespace ns."""
    with netns(ns):
        return socket.socket(family, type_, proto)


def netns_list():
    """Names of the network namespaces in /run/netns."""
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def add_quiet_netns(ns):
    """Creates namespace 'ns' with loopback up and IPv6 off, so that links
    made in it later stay quiet (no DAD, RS or MLD on the wire)."""
    run(["ip", "netns", "add", ns])
    run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
         "net.ipv6.conf.all.disable_ipv6=1",
         "net.ipv6.conf.default.disable_ipv6=1"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])


def del_netns(ns):
    """Deletes namespace 'ns' and waits until it is gone."""
    run(["ip", "netns", "del", ns], check=False)
    wait_until(lambda: ns not in netns_list(), 10,
               "namespace %s to go" % ns)


def del_netns_with_prefix(prefix):
    """Deletes leftover namespaces whose names start with 'prefix' (a run's
    own unique prefix: never anybody else's)."""
    for ns in netns_list():
        if ns.startswith(prefix):
            run(["ip", "netns", "del", ns], check=False)


def link_stats(ns, dev):
    """Kernel counters of dev in ns: rx/tx_packets, rx/tx_bytes,
    rx/tx_dropped."""
    out = run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev]).stdout
    stats = json.loads(out)[0]["stats64"]
    return {"%s_%s" % (d, k): stats[d][k]
            for d in ("rx", "tx") for k in ("packets", "bytes", "dropped")}


SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
AUXDATA = struct.Struct("=IIIHHHH")     # struct tpacket_auxdata


class RawPort:
    """An AF_PACKET socket bound to one interface inside a namespace: sends
    whole Ethernet frames and collects the frames the interface receives
    (with any VLAN tag the kernel took off put back, as on the wire)."""

    def __init__(self, ns, ifname):
        self.ns = ns
        self.ifname = ifname
        self.frames = []
        self.sock = ns_socket(ns, socket.AF_PACKET, socket.SOCK_RAW,
                              socket.htons(ETH_P_ALL))
        self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self.sock.bind((ifname, 0))
        self.sock.setblocking(False)

    def send(self, frame):
        self.sock.send(frame)

    def received(self):
        """Every frame received since this port was opened (frames this
        host sent itself are left out)."""
        while True:
            try:
                data, ancdata, _, addr = self.sock.recvmsg(
                    65535, socket.CMSG_SPACE(AUXDATA.size))
            except BlockingIOError:
                return self.frames
            if addr[2] == PACKET_OUTGOING:
                continue
            for level, kind, cdata in ancdata:
                if (level, kind) == (SOL_PACKET, PACKET_AUXDATA):
                    status, _, _, _, _, tci, tpid = AUXDATA.unpack_from(cdata)
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = 0x8100
                        data = (data[:12] + struct.pack("!HH", tpid, tci)
                                + data[12:])
            self.frames.append(data)

    def close(self):
        self.sock.close()


def inet_checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2


def icmp_echo(ns, dst, count=1, size=56, dont_fragment=False, timeout=1.0):
    """ping without the ping program: sends 'count' ICMP echo requests
    with 'size' payload bytes from namespace ns to IPv4 address dst, waits
    up to 'timeout' seconds for each reply, returns how many came back."""
    ident = int.from_bytes(os.urandom(2), "big")
    payload = (b"pairkey-echo " * (size // 13 + 1))[:size]
    answered = 0
    with ns_socket(ns, socket.AF_INET, socket.SOCK_RAW,
                   socket.IPPROTO_ICMP) as sock:
        if dont_fragment:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER,
                            IP_PMTUDISC_DO)
        for seq in range(1, count + 1):
            csum = inet_checksum(struct.pack("!BBHHH", 8, 0, 0, ident, seq)
                                  + payload)
            try:
                sock.sendto(struct.pack("!BBHHH", 8, 0, csum, ident, seq)
                            + payload, (dst, 0))
            except OSError:              # e.g. EMSGSIZE with DF set
                continue
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([sock], [], [], left)[0]:
                    break
                data = sock.recv(65535)
                ihl = (data[0] & 0x0F) * 4
                kind, _, _, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
                if kind == 0 and rid == ident and rseq == seq:
                    answered += 1
                    break
    return answered


class Pinger:
    """ping -i: a thread sending ICMP echo requests from namespace ns to
    IPv4 address dst every 'interval' seconds, from start() until stop(),
    recording when each was sent and when its reply came
    (time.monotonic()).  Use it as a context manager."""

    def __init__(self, ns, dst, interval=0.05, size=56):
        self.dst = dst
        self.interval = interval
        self.sent = {}                  # seq -> time sent
        self.replies = {}               # seq -> time answered
        self._ident = int.from_bytes(os.urandom(2), "big")
        self._payload = (b"pairkey-pinger " * (size // 15 + 1))[:size]
        self._sock = ns_socket(ns, socket.AF_INET, socket.SOCK_RAW,
                               socket.IPPROTO_ICMP)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        """Stops sending; waits up to a second for outstanding replies."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._sock.close()

    def _send(self, seq):
        head = struct.pack("!BBHHH", 8, 0, 0, self._ident, seq & 0xFFFF)
        csum = inet_checksum(head + self._payload)
        self.sent[seq] = time.monotonic()
        try:
            self._sock.sendto(struct.pack("!BBHHH", 8, 0, csum, self._ident,
                                          seq & 0xFFFF) + self._payload,
                              (self.dst, 0))
        except OSError:                 # e.g. no neighbour yet: a loss
            pass

    def _receive(self):
        data = self._sock.recv(65535)
        now = time.monotonic()
        ihl = (data[0] & 0x0F) * 4
        kind, _, _, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
        if kind == 0 and rid == self._ident and rseq in self.sent:
            self.replies.setdefault(rseq, now)

    def _run(self):
        seq, next_send, end = 0, time.monotonic(), None
        while True:
            now = time.monotonic()
            if end is None and self._stop.is_set():
                end = now + 1.0
            if end is not None and (now >= end
                                    or len(self.replies) == len(self.sent)):
                return
            if end is None and now >= next_send:
                seq += 1
                self._send(seq)
                next_send += self.interval
            wake = end if end is not None else next_send
            if select.select([self._sock], [], [],
                             max(0, wake - time.monotonic()))[0]:
                self._receive()

    def lost(self, since=None, until=None):
        """Sequence numbers of requests sent in [since, until] (default:
        all) that were never answered."""
        return sorted(s for s, t in self.sent.items()
                      if (since is None or t >= since)
                      and (until is None or t <= until)
                      and s not in self.replies)

    def last_reply(self):
        """Time of the latest reply, or None."""
        return max(self.replies.values(), default=None)


# ------------------------------------------------------------------ daemons

class Daemon:
    """A process this harness started (in a namespace via 'ip netns exec',
    which execs, so the Popen PID is the daemon's PID)."""

    def __init__(self, name, argv, env, log_path, new_session=False):
        """With 'new_session', a Ctrl-C on the terminal does not reach the
        daemon, so that its owner can stop it in order."""
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen([str(a) for a in argv], env=env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log,
                                     start_new_session=new_session)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        """Sends 'sig' (e.g. SIGSTOP, SIGCONT) by PID, and returns."""
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Stops this process by PID: 'sig', then SIGKILL after 'timeout'."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._log.close()


# ------------------------------------------------------------------ capture

def read_pcap(path):
    """Returns the frames (bytes) of a pcap file; tolerates a partially
    written last record."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError("%s: not a pcap file" % path)
    record = struct.Struct(endian + "IIII")
    frames = []
    off = 24
    while off + record.size <= len(data):
        _, _, incl, _ = record.unpack_from(data, off)
        off += record.size
        if off + incl > len(data):
            break
        frames.append(data[off:off + incl])
        off += incl
    return frames


class Capture:
    """tcpdump writing a pcap inside a namespace.

    'expected' is a callable returning how many frames the capture must
    hold at least (used by stop() to wait until tcpdump has caught up with
    the kernel counters before it is stopped).  'snaplen' bytes of each
    frame are kept: the default is above any wire MTU; a small one keeps
    up with heavy load when only headers matter."""

    def __init__(self, ns, iface, pcap_path, expected=None, snaplen=4096):
        self.ns = ns
        self.iface = iface
        self.path = pcap_path
        self.expected = expected
        self.frames = None
        self.daemon = Daemon(
            "tcpdump", ["ip", "netns", "exec", ns, "tcpdump", "-i", iface,
                        "-w", pcap_path, "-U", "--immediate-mode", "-n",
                        # Immediate mode uses a ring of snaplen-sized slots:
                        # a small snaplen and a big buffer keep bursts from
                        # being dropped.
                        "-s", snaplen, "-B", "16384", "-Z", "root"],
            None, pcap_path + ".log")
        wait_until(self._listening, 10, "tcpdump to listen on %s" % iface)

    def _listening(self):
        if not self.daemon.alive():
            raise RuntimeError("tcpdump exited: %s" % self._log_text())
        return "listening on" in self._log_text()

    def _log_text(self):
        with open(self.daemon.log_path, errors="replace") as f:
            return f.read()

    def current(self):
        return read_pcap(self.path) if os.path.exists(self.path) else []

    def stop(self, settle=True):
        """Waits until the pcap holds every frame the kernel saw, stops
        tcpdump and loads self.frames.  Safe to call twice."""
        if self.frames is not None:
            return self.frames
        try:
            if settle and self.expected is not None:
                need = self.expected()
                try:
                    wait_until(lambda: len(self.current()) >= need, 10)
                except TimeoutError:
                    raise TimeoutError("capture on %s holds %d of %d frames"
                                       % (self.iface, len(self.current()),
                                          need)) from None
        finally:
            self.daemon.stop(signal.SIGINT)
            self.frames = self.current()
        return self.frames
