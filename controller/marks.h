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

#ifndef MARKS_H
#define MARKS_H 1

/* Port marks, read live from one or more OVSDB servers.
 *
 * An operator marks an OVS interface with
 *     external_ids:pairkey-role=client external_ids:pairkey-id=ID
 * (the NIC of client ID),
 *     external_ids:pairkey-role=uplink
 * (toward the encrypted network) or
 *     external_ids:pairkey-role=clear [external_ids:pairkey-id=ID]
 * (a fully decrypted port to a plain network, which makes the bridge the
 * gateway ID, by default "gw-" and the bridge's datapath id in hex), or
 *     external_ids:pairkey-role=inter external_ids:pairkey-peer=NAME
 *     [external_ids:pairkey-id=ID] [external_ids:pairkey-mode=l2|l3|nat]
 * (toward the encrypted subnet of peer key server NAME: a gateway port
 * whose frames travel under the NETKEY shared with NAME, as Ethernet frames
 * (l2, the default), as IPv4 packets that routers can forward (l3) or in
 * UDP through a NAT (nat)).
 * Marks are grouped by the datapath id of the interface's bridge, which is
 * how OpenFlow connections are matched to bridges.  A malformed mark is
 * logged and ignored.
 *
 * An id belongs to one client port, or to the gateway ports of one bridge
 * (which share it): a port that also claims it is refused, as if it had no
 * mark, and logged once (ERR) naming both ports.  The holder is the port
 * that this process saw claim the id first; when its mark goes, the next
 * claim in order takes over.  Among claims seen at once (as when pairkeyd
 * starts), the order is by bridge datapath id, then OpenFlow port number.
 * Refused and malformed marks are listed by marks_format_refused(). */

#include <stdbool.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include "crypt-frame.h"
#include "openvswitch/types.h"

struct ds;

enum mark_role {
    MARK_CLIENT,
    MARK_UPLINK,
    MARK_CLEAR,                 /* Fully decrypted port to a plain network. */
    MARK_INTER,                 /* Toward another encrypted subnet. */
};

/* The gateway id of a clear port without pairkey-id, from its bridge's
 * datapath id. */
#define MARKS_GATEWAY_ID_FMT "gw-%016"PRIx64

struct mark {
    enum mark_role role;
    ofp_port_t ofport;
    char *iface;                /* Interface name. */
    char *client_id;            /* MARK_CLIENT: the client's id.
                                 * MARK_CLEAR, MARK_INTER: the gateway's
                                 * id. */
    char *peer;                 /* MARK_INTER: the peer key server whose
                                 * NETKEY protects the link. */
    enum crypt_mode mode;       /* MARK_INTER: how frames cross the link
                                 * (CRYPT_MODE_L2, _L3 or _NAT). */
};

/* True for the ports that make their bridge a gateway. */
static inline bool
mark_is_gateway(const struct mark *m)
{
    return m->role == MARK_CLEAR || m->role == MARK_INTER;
}

struct marks;

struct marks *marks_create(void);
void marks_destroy(struct marks *);
void marks_add_remote(struct marks *, const char *remote);

void marks_run(struct marks *);
void marks_wait(struct marks *);

/* Changes whenever any mark may have changed. */
uint64_t marks_seqno(const struct marks *);

/* Stores the marks of the bridge with datapath id 'dpid', ordered by
 * OpenFlow port number, in '*marks' (free with marks_free()), and returns
 * their number.  Stores the bridge's name in '*bridge' if nonnull (a
 * malloc()'d string, or NULL if the bridge is unknown). */
size_t marks_get(const struct marks *, uint64_t dpid, struct mark **marks,
                 char **bridge);
void marks_free(struct mark *, size_t n);

/* Finds the port marked for client or gateway 'id': stores its bridge's
 * datapath id and its OpenFlow port number.  Returns false if there is
 * none. */
bool marks_find_client(const struct marks *, const char *id,
                       uint64_t *dpid, ofp_port_t *ofport);

/* The marks that program nothing: malformed, or claiming an id that
 * another port holds.  marks_format_refused() appends one line per mark to
 * 's': "  IFACE (bridge BRIDGE, port N): REASON". */
size_t marks_n_refused(const struct marks *);
void marks_format_refused(const struct marks *, struct ds *s);

/* Who holds each id, on its own for tests.  Each port marked with an id
 * is one claim. */
struct mark_claim {
    const char *id;             /* Client or gateway id. */
    uint64_t dpid;              /* Its bridge's datapath id. */
    ofp_port_t ofport;
    const char *iface;
    bool gateway;               /* A gateway port: the gateway ports of one
                                 * bridge are one claimant. */
    size_t owner;               /* Set by mark_owners_resolve(): this
                                 * claim's index if it holds 'id', otherwise
                                 * the index of a claim that does. */
};

struct mark_owners *mark_owners_create(void);
void mark_owners_destroy(struct mark_owners *);

/* Decides, for the 'n' claims of every port marked now, who holds each
 * id: the holder from the previous call if it still claims it, otherwise
 * the claim lowest by (dpid, ofport).  'owners' remembers the holders for
 * the next call. */
void mark_owners_resolve(struct mark_owners *, struct mark_claim *,
                         size_t n);

#endif /* marks.h */
