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


#ifndef CASCADE_H
#define CASCADE_H 1

/* Cascaded key servers (patent: several secure switches of one subnet, each
 * with its own key server, sharing ID-MAC and ID-ID-KEY).
 *
 * One key server of a subnet is its authority: it enrolls the clients and
 * issues and rotates every key.  The others are its members (peers of kind
 * "member" at the authority, which is a peer of kind "authority" at each
 * member): each controls its own bridges and mirrors, in its own store, the
 * authority's clients, group key and the pair keys its bridges need,
 * obtained over the verified peer link.  So there is one owner per key and
 * two key servers never issue two keys for one pair.
 *
 * Protocol (JSON-RPC on the peer link, peers.h):
 *   member -> authority  "sync" []          -> {"clients": [[ID, MAC]...],
 *                                               "group": KEY}
 *                        "pair" [A, B, ABOVE, CREATE]
 *                                           -> {"a": A, "b": B, "id": N,
 *                                               "key": KEY}
 *                        "group" [ABOVE]    -> KEY
 *   authority -> member  "changed" []       (clients changed: sync again)
 *                        "revoked" [A, B]   (pair key revoked)
 * where KEY is {"version": V, "key": HEX} and ABOVE a version the answer
 * must be newer than (0: any), so that a member's bridge never gets a
 * version it may have held before. */

#include <stdbool.h>
#include <stdint.h>
#include "store.h"

struct jsonrpc_msg;
struct keyserver;
struct peers;

struct cascade *cascade_create(struct store *, struct keyserver *,
                               struct peers *);
void cascade_destroy(struct cascade *);

/* Rereads the peers: call after they changed. */
void cascade_reload(struct cascade *);

/* The name of this key server's authority, or NULL if it is none's
 * member. */
const char *cascade_authority(const struct cascade *);

/* Member: asks the authority for the key of pair ('a', 'b') newer than
 * 'above' (created if 'create'), or for the group key.  The answer goes to
 * keyserver_pair_obtained() or keyserver_pair_refused(), or
 * keyserver_group_obtained(). */
void cascade_ask_pair(struct cascade *, const char *a, const char *b,
                      uint32_t above, bool create);
void cascade_ask_group(struct cascade *, uint32_t above);

/* Authority: tells the members. */
void cascade_clients_changed(struct cascade *);
void cascade_pair_revoked(struct cascade *, const char *a, const char *b);

/* For peers.c: a verified link to our authority or a member came up; a
 * member's request (returns the reply); a message from our authority
 * (returns false if it is none of ours). */
void cascade_link_up(struct cascade *, const char *peer,
                     enum store_peer_kind);
struct jsonrpc_msg *cascade_answer(struct cascade *, const char *member,
                                   const struct jsonrpc_msg *request);
bool cascade_take(struct cascade *, const struct jsonrpc_msg *);

#endif /* cascade.h */
