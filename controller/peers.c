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

#include <config.h>
#include "peers.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "jsonrpc.h"
#include "openvswitch/dynamic-string.h"
#include "openvswitch/json.h"
#include "openvswitch/list.h"
#include "openvswitch/poll-loop.h"
#include "cascade.h"
#include "openvswitch/vlog.h"
#include "simap.h"
#include "store.h"
#include "stream.h"
#include "timeval.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(peers);

static struct vlog_rate_limit rl = VLOG_RATE_LIMIT_INIT(5, 20);

/* How long a peer connection may take to show its certificate. */
#define PEER_HANDSHAKE_MSEC 10000

/* One JSON-RPC session with a peer key server: one we opened to a
 * configured peer's remote ('active'), or one a peer opened to us. */
struct peer_conn {
    struct ovs_list list_node;      /* In struct peers's 'conns'. */
    struct jsonrpc_session *js;
    bool active;
    char *peer;                 /* Active: the peer it is for.  Passive: the
                                 * peer it proved to be, or NULL. */
    char *remote;               /* Active only. */
    unsigned int seqno;         /* Connection handled (see conn_run()). */
    long long int since;        /* When that connection came up. */
    bool checked;               /* Its certificate was looked at... */
    bool verified;              /* ...and names 'peer'. */
    struct json *request_id;    /* Our outstanding "netkey" request. */
    bool again;                 /* Ask again once it is answered. */
    enum store_peer_kind kind;  /* Of 'peer', once verified. */
};

struct peers {
    struct store *store;
    char *name;                 /* Ours. */
    struct pstream *listener;
    struct ovs_list conns;      /* Contains "struct peer_conn"s. */
    uint64_t seqno;             /* Changes when a NETKEY may have. */
    struct vlog_module *jsonrpc_log;    /* See keep_keys_out_of_log(). */

    /* Per peer name: the newest NETKEY version that is newer than any the
     * store held when this process started (issued, rotated or obtained
     * since), and a version that must be replaced by a newer one. */
    struct simap fresh;
    struct simap stale;

    struct cascade *cascade;    /* Member and authority links, or null. */
};

struct peers *
peers_create(struct store *store, const char *name)
{
    struct peers *peers = xzalloc(sizeof *peers);

    peers->store = store;
    peers->name = nullable_xstrdup(name);
    peers->jsonrpc_log = vlog_module_from_name("jsonrpc");
    ovs_list_init(&peers->conns);
    simap_init(&peers->fresh);
    simap_init(&peers->stale);
    peers_reload(peers);
    return peers;
}

static void
conn_destroy(struct peer_conn *conn)
{
    ovs_list_remove(&conn->list_node);
    jsonrpc_session_close(conn->js);
    json_destroy(conn->request_id);
    free(conn->peer);
    free(conn->remote);
    free(conn);
}

void
peers_destroy(struct peers *peers)
{
    if (peers) {
        struct peer_conn *conn;

        LIST_FOR_EACH_SAFE (conn, list_node, &peers->conns) {
            conn_destroy(conn);
        }
        pstream_close(peers->listener);
        simap_destroy(&peers->fresh);
        simap_destroy(&peers->stale);
        free(peers->name);
        free(peers);
    }
}

char *
peers_listen(struct peers *peers, const char *name)
{
    int error;

    if (!peers->name) {
        return xstrdup("--peer-listen needs --name");
    } else if (strncmp(name, "pssl:", 5)) {
        return xasprintf("%s: peers listen on pssl: only (peer links carry "
                         "keys)", name);
    } else if (peers->listener) {
        return xstrdup("only one --peer-listen");
    }
    error = jsonrpc_pstream_open(name, &peers->listener, DSCP_DEFAULT);
    return error ? xasprintf("%s: cannot listen (%s)", name,
                             ovs_strerror(error)) : NULL;
}

static struct peer_conn *
conn_create(struct peers *peers, struct jsonrpc_session *js, bool active,
            const char *peer, const char *remote)
{
    struct peer_conn *conn = xzalloc(sizeof *conn);

    conn->js = js;
    conn->active = active;
    conn->peer = nullable_xstrdup(peer);
    conn->remote = nullable_xstrdup(remote);
    ovs_list_push_back(&peers->conns, &conn->list_node);
    return conn;
}

void
peers_reload(struct peers *peers)
{
    struct store_peer *list;
    struct peer_conn *conn;
    size_t n;

    peers->seqno++;             /* A deleted peer takes its NETKEY. */
    if (!peers->name) {
        return;
    }
    store_list_peers(peers->store, &list, &n);

    /* Sessions with a peer no longer configured, or elsewhere, go. */
    LIST_FOR_EACH_SAFE (conn, list_node, &peers->conns) {
        bool keep = false;

        for (size_t i = 0; i < n && conn->peer; i++) {
            if (!strcmp(conn->peer, list[i].name)) {
                keep = !conn->active || !strcmp(conn->remote,
                                                list[i].remote);
            }
        }
        if (!keep && (conn->active || conn->peer)) {
            conn_destroy(conn);
        }
    }

    /* Every configured peer has a session we keep open. */
    for (size_t i = 0; i < n; i++) {
        bool found = false;

        LIST_FOR_EACH (conn, list_node, &peers->conns) {
            found |= conn->active && !strcmp(conn->peer, list[i].name);
        }
        if (!found) {
            conn_create(peers, jsonrpc_session_open(list[i].remote, true),
                        true, list[i].name, list[i].remote);
        }
    }
    free(list);
}

/* True if certificate common name 'cn' names key server 'name'. */
static bool
cn_names(const char *cn, const char *name)
{
    size_t len = strlen(name);

    return cn && !strncmp(cn, name, len)
           && (!cn[len] || !strncmp(cn + len, " id:", 4));
}

/* The peer that owns (generates) the NETKEY shared with us. */
static bool
we_own_netkey(const struct peers *peers, const char *peer)
{
    return strcmp(peers->name, peer) < 0;
}

/* Checks who is at the other end of 'conn', whose certificate common name
 * is 'cn'.  Returns false if the connection was refused. */
static bool
conn_verify(struct peers *peers, struct peer_conn *conn, const char *cn)
{
    char *quoted = store_quote_input(cn ? cn : "");

    conn->checked = true;
    conn->verified = false;
    if (conn->active) {
        conn->verified = cn_names(cn, conn->peer);
        if (!conn->verified) {
            VLOG_WARN_RL(&rl, "peer %s at %s: its certificate names '%s', "
                         "not '%s'; nothing exchanged", conn->peer,
                         conn->remote, quoted, conn->peer);
        }
    } else {
        struct store_peer *list;
        size_t n;

        store_list_peers(peers->store, &list, &n);
        for (size_t i = 0; i < n && !conn->verified; i++) {
            if (cn_names(cn, list[i].name)) {
                free(conn->peer);
                conn->peer = xstrdup(list[i].name);
                conn->verified = true;
            }
        }
        free(list);
        if (!conn->verified) {
            VLOG_WARN_RL(&rl, "%s: certificate '%s' is not a configured "
                         "peer; closing", jsonrpc_session_get_name(conn->js),
                         quoted);
        }
    }
    free(quoted);
    if (conn->verified) {
        struct store_peer sp;

        conn->kind = (store_find_peer(peers->store, conn->peer, &sp)
                      ? sp.kind : STORE_PEER_INTER);
    }
    return conn->verified;
}

static void
key_to_hex(const uint8_t key[STORE_KEY_LEN], char hex[2 * STORE_KEY_LEN + 1])
{
    sodium_bin2hex(hex, 2 * STORE_KEY_LEN + 1, key, STORE_KEY_LEN);
}

/* Tells every verified connection to 'peer' that its NETKEY changed. */
static void
notify_netkey_changed(struct peers *peers, const char *peer)
{
    struct peer_conn *conn;

    LIST_FOR_EACH (conn, list_node, &peers->conns) {
        if (conn->verified && conn->peer && !strcmp(conn->peer, peer)) {
            jsonrpc_session_send(conn->js, jsonrpc_create_notify(
                                     "netkey_changed",
                                     json_array_create_empty()));
        }
    }
}

/* The version of the NETKEY of 'peer' in the store, 0 if none. */
static uint32_t
stored_netkey_version(const struct peers *peers, const char *peer)
{
    struct store_netkey nk;
    uint32_t version = 0;

    if (store_get_netkey(peers->store, peer, &nk)) {
        version = nk.version;
        store_key_wipe(&nk, sizeof nk);
    }
    return version;
}

/* The owner's NETKEY for 'peer', rotated if its version is 'above' or
 * lower.  Returns NULL or an error. */
static char * OVS_WARN_UNUSED_RESULT
issue_netkey(struct peers *peers, const char *peer, uint32_t above,
             struct store_netkey *nk)
{
    uint32_t had = stored_netkey_version(peers, peer);
    char *error = store_issue_netkey(peers->store, peer, above, nk);

    if (!error && nk->version != had) {
        VLOG_INFO("peer %s: NETKEY version %"PRIu32" issued", peer,
                  nk->version);
        simap_put(&peers->fresh, peer, nk->version);
        peers->seqno++;
        notify_netkey_changed(peers, peer);
    }
    return error;
}

/* The owner's answer to a verified peer's "netkey" request, whose
 * parameters are the asking peer's name and, optionally, a version the
 * answer must be newer than. */
static void
answer_netkey(struct peers *peers, struct peer_conn *conn,
              const struct jsonrpc_msg *request)
{
    const struct json *params = request->params;
    struct store_netkey nk;
    struct jsonrpc_msg *reply;
    uint32_t above = 0;
    char *error;

    if (!we_own_netkey(peers, conn->peer)) {
        reply = jsonrpc_create_error(json_string_create("not the owner"),
                                     request->id);
        jsonrpc_session_send(conn->js, reply);
        return;
    }
    if (params && params->type == JSON_ARRAY && json_array(params)->n > 1) {
        const struct json *v = json_array(params)->elems[1];

        if (v->type != JSON_INTEGER || json_integer(v) < 0
            || json_integer(v) > UINT32_MAX) {
            reply = jsonrpc_create_error(json_string_create("bad version"),
                                         request->id);
            jsonrpc_session_send(conn->js, reply);
            return;
        }
        above = json_integer(v);
    }
    error = issue_netkey(peers, conn->peer, above, &nk);
    if (error) {
        VLOG_WARN_RL(&rl, "peer %s: %s", conn->peer, error);
        reply = jsonrpc_create_error(json_string_create("no NETKEY"),
                                     request->id);
        jsonrpc_session_send(conn->js, reply);
        free(error);
        return;
    }
    reply = jsonrpc_create_reply(peers_key_to_json(nk.version, nk.key),
                                 request->id);
    jsonrpc_session_send(conn->js, reply);
    store_key_wipe(&nk, sizeof nk);
}

/* The owner's reply to our "netkey" request. */
static void
take_netkey(struct peers *peers, struct peer_conn *conn,
            const struct jsonrpc_msg *reply)
{
    struct store_netkey nk;
    uint32_t had;
    char *error;

    memset(&nk, 0, sizeof nk);
    if (!peers_key_from_json(reply->result, &nk.version, nk.key)) {
        VLOG_WARN_RL(&rl, "peer %s: malformed NETKEY reply", conn->peer);
        return;
    }
    if (nk.version <= simap_get(&peers->stale, conn->peer)) {
        VLOG_WARN_RL(&rl, "peer %s: NETKEY version %"PRIu32" is not newer "
                     "than the stale one", conn->peer, nk.version);
        store_key_wipe(&nk, sizeof nk);
        return;
    }
    had = stored_netkey_version(peers, conn->peer);
    error = store_put_netkey(peers->store, conn->peer, &nk);
    if (error) {
        VLOG_WARN_RL(&rl, "peer %s: %s", conn->peer, error);
        free(error);
    } else if (nk.version > had) {
        VLOG_INFO("peer %s: NETKEY version %"PRIu32, conn->peer, nk.version);
        simap_put(&peers->fresh, conn->peer, nk.version);
        simap_find_and_delete(&peers->stale, conn->peer);
        peers->seqno++;
    }
    store_key_wipe(&nk, sizeof nk);
}

/* Asks the owner on 'conn' for our NETKEY, newer than the stale version if
 * there is one. */
static void
request_netkey(struct peers *peers, struct peer_conn *conn)
{
    struct json *params = json_array_create_1(json_string_create(
                                                  peers->name));
    uint32_t stale = simap_get(&peers->stale, conn->peer);

    if (conn->request_id) {
        conn->again = true;
        return;
    }
    if (stale) {
        json_array_add(params, json_integer_create(stale));
    }
    jsonrpc_session_send(conn->js, jsonrpc_create_request(
                             "netkey", params, &conn->request_id));
}

static void
conn_process(struct peers *peers, struct peer_conn *conn,
             struct jsonrpc_msg *msg)
{
    if (conn->kind != STORE_PEER_INTER) {
        /* Our member or our authority: the cascade protocol, no NETKEY. */
        if (!peers->cascade) {
            /* Nothing to say. */
        } else if (msg->type == JSONRPC_REQUEST
                   && conn->kind == STORE_PEER_MEMBER) {
            jsonrpc_session_send(conn->js, cascade_answer(peers->cascade,
                                                          conn->peer, msg));
            return;
        } else if (conn->kind == STORE_PEER_AUTHORITY
                   && cascade_take(peers->cascade, msg)) {
            return;
        }
        if (msg->type == JSONRPC_REQUEST) {
            jsonrpc_session_send(conn->js, jsonrpc_create_error(
                                     json_string_create("unknown method"),
                                     msg->id));
        }
        return;
    }
    if (msg->type == JSONRPC_REQUEST && !strcmp(msg->method, "netkey")) {
        answer_netkey(peers, conn, msg);
    } else if (msg->type == JSONRPC_NOTIFY
               && !strcmp(msg->method, "netkey_changed")
               && !we_own_netkey(peers, conn->peer)) {
        request_netkey(peers, conn);
    } else if ((msg->type == JSONRPC_REPLY || msg->type == JSONRPC_ERROR)
               && conn->request_id && msg->id
               && json_equal(msg->id, conn->request_id)) {
        json_destroy(conn->request_id);
        conn->request_id = NULL;
        if (msg->type == JSONRPC_REPLY) {
            take_netkey(peers, conn, msg);
        } else {
            VLOG_WARN_RL(&rl, "peer %s refused our NETKEY request",
                         conn->peer);
        }
        if (conn->again) {
            conn->again = false;
            request_netkey(peers, conn);
        }
    } else if (msg->type == JSONRPC_REQUEST) {
        jsonrpc_session_send(conn->js, jsonrpc_create_error(
                                 json_string_create("unknown method"),
                                 msg->id));
    }
}

/* Returns false if 'conn' must go. */
static bool
conn_run(struct peers *peers, struct peer_conn *conn)
{
    jsonrpc_session_run(conn->js);
    if (!jsonrpc_session_is_alive(conn->js)) {
        return false;
    }
    if (!jsonrpc_session_is_connected(conn->js)) {
        return true;
    }
    if (conn->seqno != jsonrpc_session_get_seqno(conn->js)) {
        conn->seqno = jsonrpc_session_get_seqno(conn->js);
        conn->since = time_msec();
        conn->checked = conn->verified = false;
        json_destroy(conn->request_id);
        conn->request_id = NULL;
        conn->again = false;
    }
    if (!conn->checked) {
        /* The certificate is known once the SSL handshake is done. */
        const char *cn = jsonrpc_session_get_id(conn->js);

        if (!cn && time_msec() < conn->since + PEER_HANDSHAKE_MSEC) {
            return true;
        }
        if (!conn_verify(peers, conn, cn)) {
            if (!conn->active) {
                return false;
            }
            jsonrpc_session_force_reconnect(conn->js);
            return true;
        }
        if (conn->kind == STORE_PEER_INTER) {
            if (!we_own_netkey(peers, conn->peer)) {
                request_netkey(peers, conn);
            }
        } else if (peers->cascade) {
            cascade_link_up(peers->cascade, conn->peer, conn->kind);
        }
    }

    for (int i = 0; i < 50; i++) {
        struct jsonrpc_msg *msg = jsonrpc_session_recv(conn->js);

        if (!msg) {
            break;
        }
        if (conn->verified) {
            conn_process(peers, conn, msg);
        }
        jsonrpc_msg_destroy(msg);
    }
    return true;
}

/* The jsonrpc module logs whole messages at debug level, which would put
 * NETKEYs in the log: it may not log at that level here (an operator may
 * have raised it with vlog/set since the last time). */
static void
keep_keys_out_of_log(const struct peers *peers)
{
    struct vlog_module *module = peers->jsonrpc_log;

    for (int d = 0; module && d < VLF_N_DESTINATIONS; d++) {
        if (vlog_get_level(module, d) > VLL_INFO) {
            vlog_set_levels(module, d, VLL_INFO);
        }
    }
}

void
peers_run(struct peers *peers)
{
    struct peer_conn *conn;

    if (!peers->name) {
        return;
    }
    keep_keys_out_of_log(peers);

    if (peers->listener) {
        struct stream *stream;
        int error = pstream_accept(peers->listener, &stream);

        if (!error) {
            conn_create(peers, jsonrpc_session_open_unreliably(
                            jsonrpc_open(stream), DSCP_DEFAULT),
                        false, NULL, NULL);
        } else if (error != EAGAIN) {
            VLOG_WARN_RL(&rl, "%s: accept failed: %s",
                         pstream_get_name(peers->listener),
                         ovs_strerror(error));
        }
    }

    LIST_FOR_EACH_SAFE (conn, list_node, &peers->conns) {
        if (!conn_run(peers, conn)) {
            conn_destroy(conn);
        }
    }
}

uint64_t
peers_seqno(const struct peers *peers)
{
    return peers->seqno;
}

void
peers_wait(struct peers *peers)
{
    struct peer_conn *conn;

    if (!peers->name) {
        return;
    }
    if (peers->listener) {
        pstream_wait(peers->listener);
    }
    LIST_FOR_EACH (conn, list_node, &peers->conns) {
        jsonrpc_session_wait(conn->js);
        jsonrpc_session_recv_wait(conn->js);
        if (!conn->checked && jsonrpc_session_is_connected(conn->js)) {
            /* Nothing wakes us when the handshake completes. */
            poll_timer_wait(50);
        }
    }
}

/* A short fingerprint of a NETKEY, to compare the two ends' keys without
 * showing either. */
static void
netkey_fingerprint(const struct store_netkey *nk, char out[17])
{
    static const char context[] = "pairkey-v1 netkey fingerprint";
    uint8_t hash[8];

    crypto_generichash(hash, sizeof hash, (const uint8_t *) context,
                       strlen(context), nk->key, sizeof nk->key);
    sodium_bin2hex(out, 17, hash, sizeof hash);
}

void
peers_format(struct peers *peers, struct ds *s)
{
    struct store_peer *list;
    size_t n;

    store_list_peers(peers->store, &list, &n);
    for (size_t i = 0; i < n; i++) {
        const struct peer_conn *conn;
        const char *state = "not connected";
        struct store_netkey nk;

        LIST_FOR_EACH (conn, list_node, &peers->conns) {
            if (conn->peer && !strcmp(conn->peer, list[i].name)
                && jsonrpc_session_is_connected(conn->js)) {
                state = conn->verified ? "verified" : "connected";
                if (conn->verified) {
                    break;
                }
            }
        }
        ds_put_format(s, "%s\t%s\t%s\t", list[i].name, list[i].remote,
                      peers->name ? state : "peering off (no --name)");
        if (list[i].kind != STORE_PEER_INTER) {
            ds_put_format(s, "%s\n", store_peer_kind_name(list[i].kind));
        } else if (store_get_netkey(peers->store, list[i].name, &nk)) {
            char fp[17];

            netkey_fingerprint(&nk, fp);
            ds_put_format(s, "netkey %"PRIu32" %s\n", nk.version, fp);
            store_key_wipe(&nk, sizeof nk);
        } else {
            ds_put_cstr(s, "no netkey\n");
        }
    }
    free(list);
}

bool
peers_netkey_is_fresh(const struct peers *peers, const char *peer,
                      uint32_t version)
{
    return version && simap_get(&peers->fresh, peer) == version;
}

void
peers_refresh_netkey(struct peers *peers, const char *peer, uint32_t stale)
{
    struct peer_conn *conn;

    if (!peers->name || simap_get(&peers->fresh, peer) > stale
        || simap_get(&peers->stale, peer) >= stale) {
        return;                 /* Newer already, or asked for already. */
    }
    if (we_own_netkey(peers, peer)) {
        struct store_netkey nk;
        char *error = issue_netkey(peers, peer, stale, &nk);

        if (error) {
            VLOG_WARN_RL(&rl, "peer %s: %s", peer, error);
            free(error);
        }
        store_key_wipe(&nk, sizeof nk);
        return;
    }
    simap_put(&peers->stale, peer, stale);
    LIST_FOR_EACH (conn, list_node, &peers->conns) {
        if (conn->verified && conn->peer && !strcmp(conn->peer, peer)) {
            request_netkey(peers, conn);
        }
    }
}

void
peers_set_cascade(struct peers *peers, struct cascade *cascade)
{
    peers->cascade = cascade;
}

/* The verified connection to peer 'name' of 'kind', preferring the one we
 * opened, or NULL. */
static struct peer_conn *
find_verified(const struct peers *peers, const char *name,
              enum store_peer_kind kind)
{
    struct peer_conn *conn, *found = NULL;

    LIST_FOR_EACH (conn, list_node, &peers->conns) {
        if (conn->verified && conn->kind == kind && conn->peer
            && (!name || !strcmp(conn->peer, name))
            && jsonrpc_session_is_connected(conn->js)
            && (!found || conn->active)) {
            found = conn;
        }
    }
    return found;
}

bool
peers_send_to_authority(struct peers *peers, struct jsonrpc_msg *msg)
{
    struct peer_conn *conn = find_verified(peers, NULL,
                                           STORE_PEER_AUTHORITY);

    if (!conn) {
        jsonrpc_msg_destroy(msg);
        return false;
    }
    jsonrpc_session_send(conn->js, msg);
    return true;
}

void
peers_notify_members(struct peers *peers, const char *method,
                     const struct json *params)
{
    struct peer_conn *conn;

    LIST_FOR_EACH (conn, list_node, &peers->conns) {
        if (conn->verified && conn->kind == STORE_PEER_MEMBER
            && jsonrpc_session_is_connected(conn->js)) {
            jsonrpc_session_send(conn->js, jsonrpc_create_notify(
                                     method, (params ? json_clone(params)
                                              : json_array_create_empty())));
        }
    }
}

struct json *
peers_key_to_json(uint32_t version, const uint8_t key[])
{
    char hex[2 * STORE_KEY_LEN + 1];
    struct json *json = json_object_create();

    key_to_hex(key, hex);
    json_object_put(json, "version", json_integer_create(version));
    json_object_put_string(json, "key", hex);
    sodium_memzero(hex, sizeof hex);
    return json;
}

bool
peers_key_from_json(const struct json *json, uint32_t *version,
                    uint8_t key[])
{
    const struct json *v, *k;

    v = (json && json->type == JSON_OBJECT
         ? shash_find_data(json_object(json), "version") : NULL);
    k = (json && json->type == JSON_OBJECT
         ? shash_find_data(json_object(json), "key") : NULL);
    if (!v || v->type != JSON_INTEGER
        || json_integer(v) < 1 || json_integer(v) > UINT32_MAX
        || !k || k->type != JSON_STRING
        || strlen(json_string(k)) != 2 * STORE_KEY_LEN
        || sodium_hex2bin(key, STORE_KEY_LEN, json_string(k),
                          2 * STORE_KEY_LEN, NULL, NULL, NULL)) {
        sodium_memzero(key, STORE_KEY_LEN);
        return false;
    }
    *version = json_integer(v);
    return true;
}
