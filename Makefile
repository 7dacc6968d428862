# pairkey: per-pair encryption for Open vSwitch.
#
#   make               install missing packages, patch and build OVS, then
#                      pairkeyd and pairkeyctl, into build/bin (as root on a
#                      fresh machine)
#   make check         every test: unit, OVS suite, integration
#   make demo          two hosts, one wire: ciphertext on the wire,
#                      plaintext at the receiver
#   make bench         throughput, pps and crypto microbenchmarks
#   make ovs-src       build/ovs as a git repository, one commit per patch
#   make ovs-patches   write the commits of build/ovs back to ovs-patch/

OVS := build/ovs
PYTHON := /usr/bin/python3
OVS_PROGRAMS := vswitchd/ovs-vswitchd ovsdb/ovsdb-server ovsdb/ovsdb-tool \
	utilities/ovs-vsctl utilities/ovs-ofctl utilities/ovs-appctl \
	utilities/ovs-pki
PATCHES := $(sort $(wildcard ovs-patch/*.patch))
JOBS ?= $(shell nproc)

# The OVS suite tests that the patch series adds or touches.
OVS_TESTSUITEFLAGS ?= -k ofp-actions -k odp -k crypt -k ofp-print -k vconn

.PHONY: all deps ovs ovs-src ovs-patches check check-unit check-ovs \
	check-integration demo bench clean distclean

all: build/bin/.stamp

deps: build/.deps-stamp

build/.deps-stamp: scripts/install-deps.sh
	bash scripts/install-deps.sh
	@mkdir -p build && touch $@

$(OVS)/.git/pairkey-unpacked: | build/.deps-stamp
	bash scripts/ovs-tree.sh unpack
	touch $@

# Re-applies the series when a patch changed; files that end up identical
# keep their timestamps, so only what a patch touched is rebuilt.
$(OVS)/.git/pairkey-synced: $(OVS)/.git/pairkey-unpacked $(PATCHES)
	bash scripts/ovs-tree.sh sync
	touch $@

$(OVS)/config.status: | $(OVS)/.git/pairkey-synced
	cd $(OVS) && ./configure --enable-Werror --enable-afxdp \
		PYTHON3=$(PYTHON) LIBS=-lsodium >configure.out \
		|| { tail -n 30 configure.out config.log; exit 1; }

ovs: $(OVS)/config.status
	bash scripts/ovs-tree.sh sync
	$(MAKE) -C $(OVS) -j$(JOBS) >/dev/null

build/bin/.stamp: ovs
	$(MAKE) -C controller OVS_SRC=../$(OVS)
	@mkdir -p build/bin build/share
	@for p in $(OVS_PROGRAMS); do \
		ln -sf ../ovs/$$p build/bin/; \
	done
	@ln -sf ../../controller/pairkeyd ../../controller/pairkeyctl build/bin/
	@cp -p $(OVS)/vswitchd/vswitch.ovsschema build/share/
	@touch $@
	@echo "pairkey: programs in build/bin, schema in build/share"

ovs-src: $(OVS)/.git/pairkey-synced
	@echo "build/ovs is a git repository on branch 'pairkey', one commit per"
	@echo "patch on top of tag 'base'.  Commit there, then: make ovs-patches"

ovs-patches:
	bash scripts/ovs-tree.sh export

check: all
	$(MAKE) check-unit
	$(MAKE) check-ovs
	$(MAKE) check-integration

check-unit: all
	$(MAKE) -C unit check OVS_SRC=../$(OVS)

check-ovs: all
	$(MAKE) -C $(OVS) -j$(JOBS) check \
		TESTSUITEFLAGS='-j$(JOBS) $(OVS_TESTSUITEFLAGS)' \
		|| { cat $(OVS)/tests/testsuite.log | tail -n 200; exit 1; }

check-integration: all
	$(PYTHON) -m pytest -p no:cacheprovider integration -v -rs

demo: all
	$(PYTHON) integration/demo.py

bench: all
	$(MAKE) -C bench all OVS_SRC=../$(OVS)

clean:
	-$(MAKE) -C controller clean
	-$(MAKE) -C unit clean
	-$(MAKE) -C bench clean
	rm -rf build/bin build/share

distclean:
	rm -rf build
