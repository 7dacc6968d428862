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

#ifndef STORE_H
#define STORE_H 1

/* The key server's store: one SQLite database file holding the enrolled
 * clients (ID-MAC), the pair keys (ID-ID-KEY), the group key and an audit
 * log of every key issued.  This module owns every connection to it.
 *
 * Every function that changes the store does so in one transaction, unless
 * the caller has opened a batch with store_batch_begin(), in which case the
 * change becomes durable only at store_batch_commit().  Functions that
 * return 'char *' return NULL on success or a malloc()'d one-line error
 * message that names the input; on error they change nothing.
 *
 * Key bytes are returned to the caller (who installs them on switches) but
 * never appear in any error message or log line.  struct store_pair_key and
 * struct store_group_key hold key bytes: wipe them with store_key_wipe()
 * when done.
 *
 * Error messages for bad input are exactly like "client 'bob' already
 * exists", "MAC 02:00:00:00:00:01 is already enrolled to client 'alice'",
 * "unknown client 'carol'", "unknown pair 17", "pair needs two different
 * clients", "client ID 'b d' is not valid: ..."; database failures read
 * "cannot add client 'bob': pairkey.db: database is locked".
 *
 * Not thread-safe: use a store from one thread at a time.  Other processes
 * may open the same file (SQLite locking; a writer waits up to 5 s). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "openvswitch/compiler.h"
#include "openvswitch/types.h"

#define STORE_KEY_LEN 32
#define STORE_KCV_LEN 8         /* Hexadecimal digits of a key check value. */
#define STORE_ID_MAX_LEN 64

/* Pair ids are SA ids on the switches: 1...STORE_PAIR_ID_MAX.  The SA ids
 * above are never a pair's, for keys that belong to no pair (the group
 * key, an inter-network key). */
#define STORE_PAIR_ID_MAX 0xfffeffffu

struct store;

/* Opening.  Creates the database with the current schema if 'path' does not
 * exist, migrates an older one step by step (schema/NNN-*.sql), and refuses
 * one newer than this program ("pairkey.db: database schema version 7 is
 * newer than this pairkeyd supports (1)") without changing it.  The file
 * holds key bytes: it is created with mode 0600 whatever the umask (and so
 * are its -wal and -shm files), and a database, -wal or -shm file owned by
 * another user or open to group or others is refused ("pairkey.db: mode
 * 0644 lets group or others access the key store; refusing to open it
 * (chmod 600 it first)") without being changed.  On error, '*storep' is
 * NULL. */
char *store_open(const char *path, struct store **storep)
    OVS_WARN_UNUSED_RESULT;
void store_close(struct store *);
int store_schema_version(const struct store *);
int store_latest_schema_version(void);

/* Batches: every change between begin and commit is one transaction.
 *
 * Inside a batch, a function that fails undoes only its own change; the
 * batch goes on.  If the database fails in a way that loses the whole
 * transaction (I/O error), every later change and the commit fail.
 * Abort rolls back every change of the batch; so does store_close().
 * Batches do not nest. */
void store_batch_begin(struct store *);
char *store_batch_commit(struct store *) OVS_WARN_UNUSED_RESULT;
void store_batch_abort(struct store *);

/* Validation of user input: 1 to STORE_ID_MAX_LEN of [A-Za-z0-9._-]. */
bool store_id_is_valid(const char *id);

/* Returns a malloc()'d copy of user input 's' that is safe to print on one
 * line: truncated, with non-printable bytes written as \xNN. */
char *store_quote_input(const char *s);

/* Clients (ID-MAC).  A gateway is a client without a MAC ('gateway' true,
 * 'mac' all zeros): the virtual client of a fully decrypted port, which
 * holds pair keys with the clients that talk to hosts behind it.  Lookups by
 * id find gateways too; lookups by MAC, lists and counts of clients do not. */
struct store_client {
    char id[STORE_ID_MAX_LEN + 1];
    struct eth_addr mac;
    long long int created;      /* Milliseconds since the epoch. */
    bool gateway;
};

/* Enrolls client 'id' with 'mac' (unicast, nonzero), audited as "enroll".
 * If 'mac' was an outside host, it no longer is (audited as "unlearn"). */
char *store_add_client(struct store *, const char *id, struct eth_addr mac)
    OVS_WARN_UNUSED_RESULT;

/* Deletes client 'id' and every pair key it holds (recorded in the audit log
 * as "unenroll", then one "revoke" per pair).  If 'revoked' is nonnull,
 * stores the pair ids of the deleted keys, ascending, in '*revoked'
 * (malloc()'d, NULL if none) and their number in '*n_revoked'. */
char *store_del_client(struct store *, const char *id,
                       int64_t **revoked, size_t *n_revoked)
    OVS_WARN_UNUSED_RESULT;

bool store_find_client_by_id(struct store *, const char *id,
                             struct store_client *);
bool store_find_client_by_mac(struct store *, struct eth_addr,
                              struct store_client *);

/* Stores all clients, ordered by id, in '*clients' (malloc()'d). */
void store_list_clients(struct store *, struct store_client **clients,
                        size_t *n);

/* Revokes the key of pair ('id1', 'id2'): deletes it (audited as "revoke",
 * reason "revoke-key") and stores its pair id in '*pair_id'.  The pair gets
 * no new key until both clients were enrolled again. */
char *store_revoke_pair(struct store *, const char *id1, const char *id2,
                        int64_t *pair_id)
    OVS_WARN_UNUSED_RESULT;

/* Gateways and the hosts outside the encrypted subnet behind them (the
 * patent's ID_X86 and its ID-MAC).  An outside host is served by the
 * gateway where it was first seen, until it is moved or forgotten. */
struct store_outside {
    struct eth_addr mac;
    char gateway[STORE_ID_MAX_LEN + 1];
    long long int learned;      /* Milliseconds since the epoch. */
};

/* Creates gateway 'id' unless it exists (audited as "enroll", reason
 * "gateway").  Refuses an id that is an ordinary client's. */
char *store_add_gateway(struct store *, const char *id)
    OVS_WARN_UNUSED_RESULT;

/* Stores all gateways, ordered by id, in '*gateways' (malloc()'d). */
void store_list_gateways(struct store *, struct store_client **gateways,
                         size_t *n);

/* Records that outside host 'mac' is behind gateway 'gateway' (audited as
 * "learn" if it is new; '*changed' says so, if nonnull).  Refuses a MAC
 * enrolled to a client, an unknown gateway, and a host behind another
 * gateway ("outside host 02:00:00:00:00:50 is behind gateway 'gw-1'"). */
char *store_learn_outside(struct store *, struct eth_addr mac,
                          const char *gateway, bool *changed)
    OVS_WARN_UNUSED_RESULT;

/* Moves known outside host 'mac' to another gateway, 'gateway' (audited as
 * "learn", reason "mac <MAC> moved from gateway <OLD>"). */
char *store_move_outside(struct store *, struct eth_addr mac,
                         const char *gateway) OVS_WARN_UNUSED_RESULT;

/* Forgets outside host 'mac' (audited as "unlearn", reason "mac <MAC>
 * <WHY>") and stores what it was in '*out' if nonnull.  With a nonnull
 * 'gateway', only if it is behind that gateway. */
char *store_forget_outside(struct store *, struct eth_addr mac,
                           const char *gateway, const char *why,
                           struct store_outside *out)
    OVS_WARN_UNUSED_RESULT;
bool store_find_outside(struct store *, struct eth_addr mac,
                        struct store_outside *);

/* Stores all outside hosts, ordered by MAC, in '*outs' (malloc()'d). */
void store_list_outside(struct store *, struct store_outside **outs,
                        size_t *n);

/* Pair keys (ID-ID-KEY).  A pair is unordered: (A,B) and (B,A) are the same
 * pair, stored with id_a < id_b. */
struct store_pair_key {
    int64_t pair_id;            /* Never reused; the SA id on switches. */
    char id_a[STORE_ID_MAX_LEN + 1];
    char id_b[STORE_ID_MAX_LEN + 1];
    uint32_t version;           /* Key version (the patent's PW_ID). */
    uint8_t key[STORE_KEY_LEN];
    long long int created;      /* Milliseconds since the epoch. */
    long long int updated;      /* When 'version' was issued. */
};

/* Finds the key of pair ('id1', 'id2'), creating it with a new random key
 * (version 1, audited as "issue" with 'switch_name' and 'reason', either may
 * be NULL) if there is none.  Both clients must be enrolled and distinct.
 * Sets '*created' (if nonnull) to whether it was created.  Once pair ids
 * run out (STORE_PAIR_ID_MAX), creating fails. */
char *store_get_pair_key(struct store *, const char *id1, const char *id2,
                         const char *switch_name, const char *reason,
                         struct store_pair_key *, bool *created)
    OVS_WARN_UNUSED_RESULT;

/* Replaces the key of pair 'pair_id' by a new random key with the next
 * version, audited as "rotate" with 'switch_name' and 'reason'.  Also the
 * way to roll a pair forward after a restart, so that no key is installed
 * again with its packet counters reset. */
char *store_rotate_pair_key(struct store *, int64_t pair_id,
                            const char *switch_name, const char *reason,
                            struct store_pair_key *)
    OVS_WARN_UNUSED_RESULT;

/* For a member key server: stores pair key 'pk' obtained from its
 * authority, which owns every key.  Both clients ('pk->id_a' and
 * 'pk->id_b', in either order) must be enrolled here.  Creates the pair
 * with pair id 'pk->pair_id', 'pk->version' and 'pk->key', or replaces the
 * three if the pair exists; refuses a version older than the stored one.
 * The same version with the same key and pair id changes nothing.
 * Otherwise audited as "obtain" (reason "pair <PAIR_ID>").
 *
 * The authority's pair ids win: another pair that holds 'pk->pair_id'
 * here is deleted first (audited as "revoke"), and the pair, if it is here
 * under another pair id, moves to 'pk->pair_id'.  A caller that installs
 * keys on switches looks up both (store_find_pair_key(),
 * store_find_pair_key_by_ids()) before, to remove what goes.  A pair
 * revoked here is accepted: the authority decides.  'pk->created' and
 * 'pk->updated' are ignored (the times here are this server's). */
char *store_put_pair_key(struct store *, const struct store_pair_key *pk)
    OVS_WARN_UNUSED_RESULT;

bool store_find_pair_key(struct store *, int64_t pair_id,
                         struct store_pair_key *);

/* Finds the key of pair ('id1', 'id2') without creating it. */
bool store_find_pair_key_by_ids(struct store *, const char *id1,
                                const char *id2, struct store_pair_key *);

/* Stores every pair key, ordered by pair id, in '*keys' (malloc()'d); wipe
 * each and free the array when done.  If 'client_id' is nonnull, only the
 * pairs that include it. */
void store_list_pair_keys(struct store *, const char *client_id,
                          struct store_pair_key **keys, size_t *n);

/* The group key, for broadcast and multicast, created on first use (version
 * 1, audited as "issue" with empty ids and reason "group key").  It has no
 * pair id: its SA id must be 0 or above STORE_PAIR_ID_MAX. */
struct store_group_key {
    uint32_t version;
    uint8_t key[STORE_KEY_LEN];
    long long int updated;
};

char *store_get_group_key(struct store *, struct store_group_key *)
    OVS_WARN_UNUSED_RESULT;

/* Replaces the group key by a new random key with the next version,
 * audited as "rotate" (with empty ids and reason "group key"); creates it
 * if there is none yet. */
char *store_rotate_group_key(struct store *, struct store_group_key *)
    OVS_WARN_UNUSED_RESULT;

/* For a member key server: stores group key 'gk' obtained from its
 * authority, audited as "obtain" (with empty ids and reason "group key"),
 * unless the stored one has the same version and key.  A stored key of the
 * same version but another key is replaced (the authority's wins); an
 * older version is refused.  'gk->updated' is ignored. */
char *store_put_group_key(struct store *, const struct store_group_key *gk)
    OVS_WARN_UNUSED_RESULT;

/* Peer key servers, and the inter-network key (NETKEY) shared with each
 * peer of another encrypted subnet.  Remotes are "ssl:HOST:PORT" only: the
 * links carry keys. */
#define STORE_REMOTE_MAX_LEN 256

enum store_peer_kind {
    STORE_PEER_INTER,           /* Key server of another encrypted subnet,
                                 * sharing a NETKEY with this one. */
    STORE_PEER_MEMBER,          /* Key server of this subnet that mirrors
                                 * this one's clients and keys. */
    STORE_PEER_AUTHORITY,       /* The key server of this subnet that owns
                                 * every key (at most one). */
};

/* "inter", "member", "authority"; NULL if 'kind' is none of them. */
const char *store_peer_kind_name(enum store_peer_kind kind);

/* Stores the kind named 'name' (exactly as store_peer_kind_name() writes
 * it) in '*kindp' and returns true, or returns false ('*kindp' unchanged)
 * if there is none. */
bool store_peer_kind_from_name(const char *name, enum store_peer_kind *kindp);

struct store_peer {
    char name[STORE_ID_MAX_LEN + 1];
    char remote[STORE_REMOTE_MAX_LEN];
    long long int created;      /* Milliseconds since the epoch. */
    enum store_peer_kind kind;
};

struct store_netkey {
    uint32_t version;
    uint8_t key[STORE_KEY_LEN];
    long long int updated;      /* Milliseconds since the epoch. */
};

/* Adds peer 'name' of 'kind' at 'remote' (audited as "peer", reason
 * "kind <KIND> remote <REMOTE>").  Refuses a second authority ("peer 'ks-a'
 * is already the authority").  store_del_peer() deletes a peer with its
 * NETKEY (audited as "unpeer"). */
char *store_add_peer(struct store *, const char *name, const char *remote,
                     enum store_peer_kind kind)
    OVS_WARN_UNUSED_RESULT;
char *store_del_peer(struct store *, const char *name)
    OVS_WARN_UNUSED_RESULT;
bool store_find_peer(struct store *, const char *name, struct store_peer *);
void store_list_peers(struct store *, struct store_peer **, size_t *n);

/* The NETKEY shared with 'peer', if any. */
bool store_get_netkey(struct store *, const char *peer,
                      struct store_netkey *);

/* The NETKEY of 'peer' for the key server that generates it: version 1,
 * created now (audited as "issue") if there is none yet, or a new random
 * key with the next version (audited as "rotate") if the current version
 * is 'above' or lower.  'above' 0 never rotates. */
char *store_issue_netkey(struct store *, const char *peer, uint32_t above,
                         struct store_netkey *)
    OVS_WARN_UNUSED_RESULT;

/* Stores NETKEY 'nk' obtained from 'peer' (audited as "obtain" if it is
 * new).  Refuses a version older than the one stored. */
char *store_put_netkey(struct store *, const char *peer,
                       const struct store_netkey *)
    OVS_WARN_UNUSED_RESULT;

/* Records that version 'version' of the key of pair ('id1', 'id2'), with
 * bytes 'key', was installed again on switch 'switch_name' because a frame
 * showed that a holder lacked it (audited as "repush" with 'reason'). */
char *store_note_repush(struct store *, const char *id1, const char *id2,
                        uint32_t version, const uint8_t key[STORE_KEY_LEN],
                        const char *switch_name,
                        const char *reason) OVS_WARN_UNUSED_RESULT;

/* Audit log.  Events: "enroll", "unenroll", "issue", "rotate", "revoke",
 * "learn", "unlearn", "peer", "unpeer", "obtain", "repush".
 * "enroll" and "unenroll" have id_a = the client and reason "mac <MAC>".
 * Strings longer than their field are truncated. */
struct store_audit {
    int64_t seq;
    long long int time;         /* Milliseconds since the epoch. */
    char event[16];
    char id_a[STORE_ID_MAX_LEN + 1];    /* Empty if not applicable. */
    char id_b[STORE_ID_MAX_LEN + 1];
    uint32_t version;
    char switch_name[64];
    char reason[64];
    char kcv[STORE_KCV_LEN + 1];        /* Key check value, or empty. */
};

/* Stores the entries with 'time' >= 'since', in 'seq' order, in '*entries'
 * (malloc()'d). */
void store_list_audit(struct store *, long long int since,
                      struct store_audit **entries, size_t *n);

/* Counts, for status output. */
size_t store_count_clients(struct store *);
size_t store_count_pair_keys(struct store *);

/* Wipes key bytes. */
void store_key_wipe(void *key, size_t n);

/* Formats the key check value of 'key' (crypt_key_check(), as "ovs-appctl
 * pairkey/show" prints it) into 'kcv'. */
void store_key_kcv(const uint8_t key[STORE_KEY_LEN],
                   char kcv[STORE_KCV_LEN + 1]);


/* For unit tests: store_open() with another schema, 'schema_sql' at version
 * 'n_migrations', reached from an empty database by 'migrations'.  It must
 * include every table and column of the real one. */
char *store_open__(const char *path, const char *schema_sql,
                   const char *const *migrations, int n_migrations,
                   struct store **storep)
    OVS_WARN_UNUSED_RESULT;

#endif /* store.h */
