/*
 * Copyright (c) 2026 The pairkey authors.
 *
 * Licensed under the Apache License, Version 2.0 (the "License");
 * you may not use this file except in compliance with the License.
 * You may obtain a copy of the License at:
 *
 *     http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */

#ifndef PEERS_H
#define PEERS_H 1

/* Peer key servers: the key servers of other encrypted subnets, and the
 * inter-network key (NETKEY) shared with each (patent: NETKEY, handed only
 * to a peer key server whose identity was verified).
 *
 * Peers talk JSON-RPC over SSL only, each side presenting a certificate
 * that the other's CA verifies; a peer is who its certificate's common name
 * says ("NAME", or "NAME id:..." as ovs-pki makes them), and must be one
 * configured with 'pairkeyctl add-peer NAME REMOTE'.  Of two peers, the one
 * whose name sorts first generates their NETKEY; the other asks for it on
 * every connection, and the owner answers only a verified peer.  A key
 * server that fails authentication gets nothing, and is logged. */

#include <stdbool.h>
#include <stdint.h>
#include "openvswitch/compiler.h"

struct cascade;
struct ds;
struct json;
struct jsonrpc_msg;
struct store;
struct peers;

/* 'name' is this key server's own name (its certificate's); NULL disables
 * peering. */
struct peers *peers_create(struct store *, const char *name);
void peers_destroy(struct peers *);

/* Listens for peers on 'pstream' ("pssl:PORT[:IP]"). */
char *peers_listen(struct peers *, const char *pstream)
    OVS_WARN_UNUSED_RESULT;

/* Rereads the configured peers from the store. */
void peers_reload(struct peers *);

void peers_run(struct peers *);
void peers_wait(struct peers *);

/* Changes whenever a NETKEY may have changed. */
uint64_t peers_seqno(const struct peers *);

/* NETKEY versions have the same rule as every key: a gateway gets a version
 * only if this process issued or obtained it (a restarted key server cannot
 * know which bridges held a version before) and the gateway did not hold it
 * in an earlier connection (a restarted bridge would accept old frames
 * under it again, its replay windows being new).  A key server that needs
 * a fresh NETKEY asks for a version above the stale one: the owner rotates
 * it, and each side then hands it to its gateways.  Until then the link
 * carries nothing new under the stale version. */
bool peers_netkey_is_fresh(const struct peers *, const char *peer,
                           uint32_t version);
void peers_refresh_netkey(struct peers *, const char *peer, uint32_t stale);

/* Links to our authority and our members (peers of kind "authority" and
 * "member") carry the cascade protocol (cascade.h) instead of a NETKEY. */
void peers_set_cascade(struct peers *, struct cascade *);

/* Sends 'msg' (taken) on the verified link to our authority; returns false,
 * having dropped it, if there is none. */
bool peers_send_to_authority(struct peers *, struct jsonrpc_msg *msg);

/* Sends notification 'method' with 'params' (copied) to every verified
 * member. */
void peers_notify_members(struct peers *, const char *method,
                          const struct json *params);

/* A key as the peer protocols carry it: {"version": V, "key": "HEX"}. */
struct json *peers_key_to_json(uint32_t version, const uint8_t key[]);
bool peers_key_from_json(const struct json *, uint32_t *version,
                         uint8_t key[]);

/* One line per configured peer: name, remote, link state, NETKEY version
 * and fingerprint (never the key). */
void peers_format(struct peers *, struct ds *);

#endif /* peers.h */
