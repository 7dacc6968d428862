"""Fixtures of the pairkey integration suite (see README.md).

  net           the TWO_HOSTS topology, built fresh for one test
  make_net      factory: make_net(topo) for other topologies
  needs_pairkey skips the test unless the OVS binaries have pairkey
  needs_pairkeyd  ...and unless pairkeyd and pairkeyctl are built

Environment: PAIRKEY_BIN (directory of the OVS programs, default
<repo>/build/bin), PAIRKEY_SCHEMA (default
<repo>/build/share/vswitch.ovsschema), PAIRKEY_KEEP_ARTIFACTS=1 (save
forensics for passing tests too).
"""

import itertools
import os
import pathlib
import re
import secrets
import shutil
import signal

import pytest

import harness
import pairkey
from topo import TWO_HOSTS, FeatureMissing, Net, ovs_paths

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
BINDIR, SCHEMA = ovs_paths()
ARTIFACTS = HERE / "artifacts"
KEEP = os.environ.get("PAIRKEY_KEEP_ARTIFACTS") == "1"

# Prefix of every namespace and run directory this pytest run creates.
SESSION = "pk%s" % secrets.token_hex(3)
_nets = itertools.count(1)

PROGRAMS = ("ovs-vswitchd", "ovsdb-server", "ovsdb-tool", "ovs-vsctl",
            "ovs-ofctl", "ovs-appctl")
TOOLS = ("ip", "ethtool", "tcpdump", "sysctl")

KEYSERVER_PROGRAMS = ("pairkeyd", "pairkeyctl")

# ovs-vswitchd and pairkeyd WARN/ERR lines that every test tolerates
# (regexes).
BASE_LOG_ALLOW = ()


def pytest_configure(config):
    def terminate(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    # Make 'kill <pytest>' unwind like Ctrl-C, so fixtures tear down.
    signal.signal(signal.SIGTERM, terminate)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _probe_kernel():
    """None if namespaces, veth pairs and Linux bridges work, else why."""
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (OVS netdev bridges need tap devices)"
    ns = "%s-probe" % SESSION
    try:
        for argv in (["ip", "netns", "add", ns],
                     ["ip", "-n", ns, "link", "add", "name", "pa", "type",
                      "veth", "peer", "name", "pb"],
                     ["ip", "-n", ns, "link", "add", "name", "pbr", "type",
                      "bridge"]):
            proc = harness.run(argv, check=False)
            if proc.returncode != 0:
                return "kernel feature missing: '%s': %s" % (
                    " ".join(argv), proc.stderr.strip())
    finally:
        if ns in harness.netns_list():
            harness.run(["ip", "-n", ns, "link", "del", "pa"], check=False)
            harness.run(["ip", "-n", ns, "link", "del", "pbr"], check=False)
            harness.run(["ip", "netns", "del", ns], check=False)
    return None


@pytest.fixture(scope="session")
def environment():
    """Skips every network test unless root, tools, OVS binaries and the
    kernel features are there."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    for tool in TOOLS:
        if not shutil.which(tool):
            pytest.skip("'%s' is not installed" % tool)
    for prog in PROGRAMS:
        if not os.access(os.path.join(BINDIR, prog), os.X_OK):
            pytest.skip("%s not found in PAIRKEY_BIN=%s" % (prog, BINDIR))
    if not os.path.exists(SCHEMA):
        pytest.skip("OVSDB schema not found: PAIRKEY_SCHEMA=%s" % SCHEMA)
    why = _probe_kernel()
    if why:
        pytest.skip(why)


@pytest.fixture(scope="session")
def pairkey_missing(environment):
    """None when the binaries support pairkey, else the reason."""
    def ofctl(*args):
        return harness.run([os.path.join(BINDIR, "ovs-ofctl")] + list(args),
                           check=False)
    return pairkey.missing_support(ofctl)


@pytest.fixture
def needs_pairkey(pairkey_missing):
    if pairkey_missing:
        pytest.skip(pairkey_missing)


@pytest.fixture
def needs_pairkeyd(needs_pairkey):
    for prog in KEYSERVER_PROGRAMS:
        if not os.access(os.path.join(BINDIR, prog), os.X_OK):
            pytest.skip("%s not found in PAIRKEY_BIN=%s" % (prog, BINDIR))


def _allowed(request):
    patterns = list(BASE_LOG_ALLOW)
    for mark in request.node.iter_markers("allow_log"):
        patterns.extend(mark.args)
    return [re.compile(p) for p in patterns]


@pytest.fixture
def make_net(request, environment):
    """make_net(topo) builds a topology; everything is torn down after the
    test, forensics are saved if it failed, and unexpected WARN/ERR lines in
    the logs of ovs-vswitchd and pairkeyd fail it."""
    nets = []

    def make(topo=TWO_HOSTS):
        net = Net(topo, BINDIR, SCHEMA, "%s-%d-" % (SESSION, next(_nets)))
        try:
            net.start()
        except FeatureMissing as e:
            pytest.skip(str(e))
        nets.append(net)
        return net

    yield make

    allow = _allowed(request)
    rep = getattr(request.node, "rep_call", None)
    failed = rep is None or rep.failed
    unexpected = []
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    for i, net in enumerate(nets):
        try:
            bad = [line for line in net.log_lines()
                   if not any(p.search(line) for p in allow)]
            unexpected += bad
            if failed or bad or KEEP:
                dest = ARTIFACTS / SESSION / (name + ("-%d" % i if i else ""))
                net.save_forensics(str(dest))
                print("forensics saved in %s" % dest.relative_to(REPO))
        finally:
            net.stop()
    if unexpected:
        pytest.fail("unexpected WARN/ERR lines in daemon logs:\n"
                    + "\n".join(unexpected), pytrace=False)


@pytest.fixture
def net(make_net):
    return make_net()
