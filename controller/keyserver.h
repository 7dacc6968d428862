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

#ifndef KEYSERVER_H
#define KEYSERVER_H 1

/* The key server's switch side: OpenFlow connections to the bridges, the
 * fail-secure pipeline on each, key requests (table misses) answered with
 * pair keys from the store, the group key, and revocation.
 *
 * Pipeline, per bridge:
 *   table 0: a client port passes only its enrolled client's source MAC to
 *            table 1; an uplink passes only encrypted frames to table 2; a
 *            gateway port passes its frames to table 1 (those of each
 *            outside host behind it through a flow of the host's own that
 *            ages when the host is silent), except from sources refused
 *            there (a client's MAC, an outside host of another gateway);
 *            everything else is dropped.
 *   table 1: frames from clients, by destination MAC: encrypt with the pair
 *            key and send to the uplink (or deliver locally, in the clear,
 *            to a client on the same bridge); broadcast and multicast are
 *            encrypted with the group key.  A miss is a key request.
 *   table 2: encrypted frames from the uplink, by source and destination
 *            MAC: decrypt and deliver to the client.  A miss for a local
 *            client is a key request; anything else is dropped, and so is
 *            a frame whose source is a client of this bridge (its own,
 *            sent back).
 *
 * Every flow that sends frames to the key server first passes a meter of
 * the port the frame came in on (meter id = port number). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "openvswitch/compiler.h"
#include "openvswitch/types.h"

struct cascade;
struct ds;
struct marks;
struct store_group_key;
struct store_pair_key;
struct peers;
struct store;
struct vconn;

enum miss_policy {
    MISS_HOLD,                  /* Deliver the packet once keyed. */
    MISS_DROP,                  /* Drop it, as the patent does. */
};

struct keyserver *keyserver_create(struct store *, struct marks *,
                                   enum miss_policy);
void keyserver_destroy(struct keyserver *);

/* Takes ownership of 'vconn', a new connection from a switch. */
void keyserver_add_switch(struct keyserver *, struct vconn *);

void keyserver_run(struct keyserver *);
void keyserver_wait(struct keyserver *);

/* Tell the key server that enrollment changed. */
void keyserver_client_added(struct keyserver *, struct eth_addr mac);
void keyserver_client_removed(struct keyserver *, struct eth_addr mac,
                              const int64_t *pair_ids, size_t n);

/* Tell the key server that outside host 'mac' was moved to another gateway
 * or forgotten: its flows leave every switch, and it is watched at its new
 * gateway. */
void keyserver_outside_changed(struct keyserver *, struct eth_addr mac);

/* Forget where an outside host is once it has been silent at its gateway
 * for 'seconds' (at most 65535; 0: never).  The default is 300. */
void keyserver_set_outside_idle(struct keyserver *, unsigned int seconds);

/* Tell the key server that the key of pair 'pair_id' was revoked: its
 * flows and SAs leave every switch. */
void keyserver_pair_revoked(struct keyserver *, int64_t pair_id);

/* Tell the key server that a NETKEY shared with a peer changed. */
void keyserver_netkeys_changed(struct keyserver *);

/* The peer key servers, whom the key server asks for a new NETKEY when a
 * gateway must not get the current one again (see peers.h). */
void keyserver_set_peers(struct keyserver *, struct peers *);

/* Cascaded key servers (cascade.h).  A member of a cascade never creates or
 * rotates a key: it asks its authority, parks the frames that missed, and
 * goes on when the answer is in its store. */
void keyserver_set_cascade(struct keyserver *, struct cascade *);

/* Starts issuing: the group key gets a new version (unless this key server
 * is a member, which takes its authority's).  Call after
 * keyserver_set_cascade(). */
void keyserver_start(struct keyserver *);

/* Authority: the key of pair ('a', 'b') for a member, created if 'create'
 * and none exists, rotated (on this key server's switches too) if its
 * version is 'above' or lower. */
char *keyserver_obtain_pair(struct keyserver *, const char *a, const char *b,
                            uint32_t above, bool create, const char *member,
                            struct store_pair_key *) OVS_WARN_UNUSED_RESULT;
char *keyserver_obtain_group(struct keyserver *, uint32_t above,
                             struct store_group_key *) OVS_WARN_UNUSED_RESULT;

/* Member: the authority's key for pair ('a', 'b'), or the group key, is now
 * in the store; or the authority refused the pair. */
void keyserver_pair_obtained(struct keyserver *, const char *a,
                             const char *b);
void keyserver_pair_refused(struct keyserver *, const char *a,
                            const char *b);
void keyserver_group_obtained(struct keyserver *);

void keyserver_format_status(const struct keyserver *, struct ds *);

/* Rotation (the patent's PW_ID update).  A key rolls over in two phases:
 * its new version goes to every holder for receiving only, and once every
 * holder confirmed, for sending too, so that no frame is lost.  These return
 * NULL and describe what they did in 'out', or an error (a pair without a
 * key, a key being rotated already, a member of a cascade). */
char *keyserver_rotate_pair(struct keyserver *, const char *a, const char *b,
                            struct ds *out) OVS_WARN_UNUSED_RESULT;
char *keyserver_rotate_all(struct keyserver *, struct ds *out)
    OVS_WARN_UNUSED_RESULT;
char *keyserver_rotate_group(struct keyserver *, struct ds *out)
    OVS_WARN_UNUSED_RESULT;

/* Rotates every key older than 'msec' milliseconds (0: never). */
void keyserver_set_rekey_interval(struct keyserver *, long long int msec);

/* Frames that go to the key server (key requests) pass, per port of each
 * bridge, an OpenFlow meter of 'pps' packets per second (0: none), so that
 * a flood from one host or from the wire cannot starve the others.  Takes
 * effect on switches that connect afterwards. */
#define KEYSERVER_REQUEST_RATE 200
void keyserver_set_request_rate(struct keyserver *, unsigned int pps);

#endif /* keyserver.h */
