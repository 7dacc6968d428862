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

/* pairkeyd: the pairkey key server, an OpenFlow controller that issues one
 * key per pair of enrolled clients and programs the switches. */

#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "command-line.h"
#include "daemon.h"
#include "fatal-signal.h"
#include "keyserver.h"
#include "marks.h"
#include "peers.h"
#include "cascade.h"
#include "openflow/openflow.h"
#include "openvswitch/dynamic-string.h"
#include "openvswitch/poll-loop.h"
#include "openvswitch/vconn.h"
#include "openvswitch/vlog.h"
#include "packets.h"
#include "socket-util.h"
#include "store.h"
#include "stream.h"
#include "stream-ssl.h"
#include "timeval.h"
#include "unixctl.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(pairkeyd);

/* OpenFlow 1.3 and later only. */
#define ALLOWED_VERSIONS ((1u << OFP13_VERSION) | (1u << OFP14_VERSION) \
                          | (1u << OFP15_VERSION))

#define MAX_LISTENERS 16

static char *db_path;
static char *unixctl_path;
static char **ovsdb_remotes;
static size_t n_ovsdb_remotes;
static enum miss_policy miss_policy = MISS_HOLD;
static char *own_name;          /* --name: this key server, to its peers. */
static char *peer_listen;       /* --peer-listen. */
static long long int rekey_msec; /* --rekey-interval, 0 for none. */
static unsigned int request_rate = KEYSERVER_REQUEST_RATE;
                                 /* --request-rate, 0 for none. */
static unsigned int outside_idle = 300; /* --outside-idle-timeout. */

struct server {
    struct store *store;
    struct marks *marks;
    struct keyserver *ks;
    struct peers *peers;
    struct cascade *cascade;
    bool exiting;
};

static void parse_options(int argc, char *argv[]);
static void keep_keys_out_of_core_dumps(void);
OVS_NO_RETURN static void usage(void);
static void register_commands(struct server *);

int
main(int argc, char *argv[])
{
    struct pvconn *listeners[MAX_LISTENERS];
    struct unixctl_server *unixctl;
    struct server server;
    size_t n_listeners = 0;
    char *error;
    int retval;

    ovs_cmdl_proctitle_init(argc, argv);
    set_program_name(argv[0]);
    service_start(&argc, &argv);
    parse_options(argc, argv);
    fatal_ignore_sigpipe();

    if (!db_path) {
        ovs_fatal(0, "--db=FILE is required; use --help for usage");
    }
    if (optind >= argc) {
        ovs_fatal(0, "at least one LISTEN argument (punix:PATH, pssl:PORT or "
                  "ptcp:PORT) is required; use --help for usage");
    }

    for (int i = optind; i < argc; i++) {
        const char *name = argv[i];

        if (n_listeners >= MAX_LISTENERS) {
            ovs_fatal(0, "at most %d LISTEN arguments", MAX_LISTENERS);
        }
        retval = pvconn_open(name, ALLOWED_VERSIONS, DSCP_DEFAULT,
                             &listeners[n_listeners]);
        if (retval) {
            ovs_fatal(retval, "%s: cannot listen", name);
        }
        if (!strncmp(name, "ptcp:", 5)) {
            VLOG_WARN("%s: keys cross this channel unencrypted; use punix: "
                      "or pssl: outside a test network", name);
        }
        n_listeners++;
    }

    keep_keys_out_of_core_dumps();
    error = store_open(db_path, &server.store);
    if (error) {
        ovs_fatal(0, "%s", error);
    }

    daemonize_start(false);

    retval = unixctl_server_create(unixctl_path, &unixctl);
    if (retval) {
        exit(EXIT_FAILURE);
    }

    server.marks = marks_create();
    for (size_t i = 0; i < n_ovsdb_remotes; i++) {
        marks_add_remote(server.marks, ovsdb_remotes[i]);
    }
    server.ks = keyserver_create(server.store, server.marks, miss_policy);
    server.peers = peers_create(server.store, own_name);
    keyserver_set_peers(server.ks, server.peers);
    server.cascade = cascade_create(server.store, server.ks, server.peers);
    keyserver_set_cascade(server.ks, server.cascade);
    peers_set_cascade(server.peers, server.cascade);
    keyserver_set_rekey_interval(server.ks, rekey_msec);
    keyserver_set_request_rate(server.ks, request_rate);
    keyserver_set_outside_idle(server.ks, outside_idle);
    keyserver_start(server.ks);
    if (peer_listen) {
        error = peers_listen(server.peers, peer_listen);
        if (error) {
            ovs_fatal(0, "%s", error);
        }
    }
    server.exiting = false;
    register_commands(&server);

    daemonize_complete();
    VLOG_INFO("pairkeyd started: database %s (schema version %d), %"
              PRIuSIZE" clients", db_path,
              store_schema_version(server.store),
              store_count_clients(server.store));

    uint64_t netkeys_seqno = peers_seqno(server.peers);
    while (!server.exiting) {
        for (size_t i = 0; i < n_listeners; i++) {
            struct vconn *vconn;

            retval = pvconn_accept(listeners[i], &vconn);
            if (!retval) {
                keyserver_add_switch(server.ks, vconn);
            } else if (retval != EAGAIN) {
                static struct vlog_rate_limit rl = VLOG_RATE_LIMIT_INIT(1, 5);

                VLOG_WARN_RL(&rl, "accept: %s", ovs_strerror(retval));
            }
        }
        marks_run(server.marks);
        keyserver_run(server.ks);
        peers_run(server.peers);
        if (peers_seqno(server.peers) != netkeys_seqno) {
            netkeys_seqno = peers_seqno(server.peers);
            keyserver_netkeys_changed(server.ks);
        }
        unixctl_server_run(unixctl);

        for (size_t i = 0; i < n_listeners; i++) {
            pvconn_wait(listeners[i]);
        }
        marks_wait(server.marks);
        keyserver_wait(server.ks);
        peers_wait(server.peers);
        unixctl_server_wait(unixctl);
        if (server.exiting) {
            poll_immediate_wake();
        }
        poll_block();
    }

    peers_destroy(server.peers);
    cascade_destroy(server.cascade);
    keyserver_destroy(server.ks);
    marks_destroy(server.marks);
    store_close(server.store);
    for (size_t i = 0; i < n_listeners; i++) {
        pvconn_close(listeners[i]);
    }
    unixctl_server_destroy(unixctl);
    return 0;
}

/* This process holds every key it ever issued: no core dump may carry them
 * to disk, and no other process of the same user may read its memory. */
static void
keep_keys_out_of_core_dumps(void)
{
    const struct rlimit no_core = { 0, 0 };

    if (setrlimit(RLIMIT_CORE, &no_core)) {
        ovs_fatal(errno, "cannot disable core dumps");
    }
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) {
        ovs_fatal(errno, "cannot make the process non-dumpable");
    }
}

/* Control commands. */

static char *
format_time(long long int msec)
{
    return xastrftime_msec("%Y-%m-%dT%H:%M:%S.###Z", msec, true);
}

/* Parses 's', a time as milliseconds since the epoch or as UTC
 * "YYYY-MM-DDTHH:MM:SS[.mmm]Z", into '*msec'. */
static bool
parse_time(const char *s, long long int *msec)
{
    int year, mon, day, hour, min, sec, ms = 0, n = 0;

    if (s[0] && strspn(s, "0123456789") == strlen(s) && strlen(s) <= 15) {
        *msec = strtoll(s, NULL, 10);
        return true;
    }
    if (strlen(s) == 20 || strlen(s) == 24) {
        const char *fmt = (strlen(s) == 20
                           ? "%4d-%2d-%2dT%2d:%2d:%2dZ%n"
                           : "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n");
        bool ok = (strlen(s) == 20
                   ? sscanf(s, fmt, &year, &mon, &day, &hour, &min, &sec,
                            &n) == 6
                   : sscanf(s, fmt, &year, &mon, &day, &hour, &min, &sec,
                            &ms, &n) == 7);
        struct tm tm = {
            .tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day,
            .tm_hour = hour, .tm_min = min, .tm_sec = sec,
        };

        if (ok && n == strlen(s) && strspn(s, "0123456789-:.TZ") == n
            && year >= 1970 && mon >= 1 && mon <= 12 && day >= 1
            && day <= 31 && hour <= 23 && min <= 59 && sec <= 60) {
            time_t t = timegm(&tm);

            if (t != (time_t) -1 && tm.tm_mday == day) {
                *msec = (long long int) t * 1000 + ms;
                return true;
            }
        }
    }
    return false;
}

/* Parses 's', which must be exactly six two-digit hexadecimal octets
 * separated by colons, into '*mac'. */
static bool
parse_mac(const char *s, struct eth_addr *mac)
{
    if (strlen(s) != 17) {
        return false;
    }
    for (int i = 0; i < 6; i++) {
        int hi = hexit_value(s[3 * i]);
        int lo = hexit_value(s[3 * i + 1]);

        if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':')) {
            return false;
        }
        mac->ea[i] = (hi << 4) | lo;
    }
    return true;
}

/* Why a member of a cascade does not change its clients or keys. */
static const char *
not_here(const struct server *server)
{
    static char msg[128 + STORE_ID_MAX_LEN];

    snprintf(msg, sizeof msg, "clients and keys are managed at the "
             "authority '%s'", cascade_authority(server->cascade));
    return msg;
}

static void
cmd_add_client(struct unixctl_conn *conn, int argc OVS_UNUSED,
               const char *argv[], void *server_)
{
    struct server *server = server_;
    char *id = store_quote_input(argv[1]);
    char *mac_s = store_quote_input(argv[2]);
    struct eth_addr mac;
    char *error = NULL;

    if (cascade_authority(server->cascade)) {
        error = xasprintf("Unable to add client '%s': %s", id,
                          not_here(server));
    } else if (!store_id_is_valid(argv[1])) {
        error = xasprintf("Unable to add client '%s': the id must be 1 to %d "
                          "letters, digits, '.', '_' or '-'", id,
                          STORE_ID_MAX_LEN);
    } else if (!parse_mac(argv[2], &mac)
               || eth_addr_is_multicast(mac) || eth_addr_is_zero(mac)) {
        error = xasprintf("Unable to add client '%s': MAC '%s' is not a "
                          "unicast address like 02:00:00:00:00:01", id,
                          mac_s);
    } else {
        char *store_error = store_add_client(server->store, argv[1], mac);

        if (store_error) {
            error = xasprintf("Unable to add client '%s': %s", id,
                              store_error);
            free(store_error);
        }
    }
    free(mac_s);

    if (error) {
        free(id);
        unixctl_command_reply_error(conn, error);
        free(error);
        return;
    }
    VLOG_INFO("enrolled client %s with MAC "ETH_ADDR_FMT, id,
              ETH_ADDR_ARGS(mac));
    keyserver_client_added(server->ks, mac);
    cascade_clients_changed(server->cascade);
    unixctl_command_reply(conn, NULL);
    free(id);
}

static void
cmd_del_client(struct unixctl_conn *conn, int argc OVS_UNUSED,
               const char *argv[], void *server_)
{
    struct server *server = server_;
    char *id = store_quote_input(argv[1]);
    struct store_client client;
    int64_t *pairs = NULL;
    size_t n_pairs = 0;
    char *error;

    if (cascade_authority(server->cascade)) {
        error = xasprintf("Unable to delete client '%s': %s", id,
                          not_here(server));
        unixctl_command_reply_error(conn, error);
        free(error);
        free(id);
        return;
    }
    if (!store_find_client_by_id(server->store, argv[1], &client)) {
        error = xasprintf("Unable to delete client '%s': unknown client",
                          id);
        unixctl_command_reply_error(conn, error);
        free(error);
        free(id);
        return;
    }
    error = store_del_client(server->store, argv[1], &pairs, &n_pairs);
    if (error) {
        char *msg = xasprintf("Unable to delete client '%s': %s", id, error);

        unixctl_command_reply_error(conn, msg);
        free(msg);
        free(error);
        free(id);
        return;
    }
    VLOG_INFO("revoked client %s and its %"PRIuSIZE" pair keys", id,
              n_pairs);
    keyserver_client_removed(server->ks, client.mac, pairs, n_pairs);
    cascade_clients_changed(server->cascade);
    free(pairs);
    free(id);
    unixctl_command_reply(conn, NULL);
}

static void
cmd_revoke_key(struct unixctl_conn *conn, int argc OVS_UNUSED,
               const char *argv[], void *server_)
{
    struct server *server = server_;
    int64_t pair_id;
    char *error = (cascade_authority(server->cascade)
                   ? xstrdup(not_here(server))
                   : store_revoke_pair(server->store, argv[1], argv[2],
                                       &pair_id));

    if (error) {
        char *a = store_quote_input(argv[1]);
        char *b = store_quote_input(argv[2]);
        char *msg = xasprintf("Unable to revoke key of '%s' and '%s': %s",
                              a, b, error);

        unixctl_command_reply_error(conn, msg);
        free(msg);
        free(a);
        free(b);
        free(error);
        return;
    }
    VLOG_INFO("revoked key %"PRId64, pair_id);
    keyserver_pair_revoked(server->ks, pair_id);
    cascade_pair_revoked(server->cascade, argv[1], argv[2]);
    unixctl_command_reply(conn, NULL);
}

/* Parses 'arg', the MAC of an outside host, into '*mac'.  Returns an error
 * message if it is not a unicast address. */
static char *
parse_outside_mac(const char *arg, struct eth_addr *mac)
{
    return (!parse_mac(arg, mac) || eth_addr_is_multicast(*mac)
            || eth_addr_is_zero(*mac)
            ? xstrdup("not a unicast address like 02:00:00:00:00:01")
            : NULL);
}

/* Replies to 'conn' for command 'what' ("forget", "move") on outside host
 * 'arg' ('mac'): with 'error' (freed), if any, or success after telling
 * the key server. */
static void
reply_outside_change(struct unixctl_conn *conn, struct server *server,
                     const char *what, const char *arg, struct eth_addr mac,
                     char *error)
{
    if (error) {
        char *quoted = store_quote_input(arg);
        char *msg = xasprintf("Unable to %s outside host '%s': %s", what,
                              quoted, error);

        unixctl_command_reply_error(conn, msg);
        free(msg);
        free(quoted);
        free(error);
        return;
    }
    keyserver_outside_changed(server->ks, mac);
    unixctl_command_reply(conn, NULL);
}

/* An outside host stays behind the gateway where it was first seen: the
 * admin moves it, or forgets it so that it is learned again where it is
 * seen next. */
static void
cmd_forget_outside(struct unixctl_conn *conn, int argc OVS_UNUSED,
                   const char *argv[], void *server_)
{
    struct server *server = server_;
    struct store_outside out;
    struct eth_addr mac;
    char *error = parse_outside_mac(argv[1], &mac);

    if (!error) {
        error = store_forget_outside(server->store, mac, NULL,
                                     "forgotten by pairkeyctl "
                                     "forget-outside", &out);
    }
    if (!error) {
        VLOG_INFO("forgot outside host "ETH_ADDR_FMT" behind gateway %s",
                  ETH_ADDR_ARGS(mac), out.gateway);
    }
    reply_outside_change(conn, server, "forget", argv[1], mac, error);
}

static void
cmd_move_outside(struct unixctl_conn *conn, int argc OVS_UNUSED,
                 const char *argv[], void *server_)
{
    struct server *server = server_;
    struct eth_addr mac;
    char *error = parse_outside_mac(argv[1], &mac);

    if (!error) {
        error = store_move_outside(server->store, mac, argv[2]);
    }
    if (!error) {
        VLOG_INFO("moved outside host "ETH_ADDR_FMT" to gateway %s",
                  ETH_ADDR_ARGS(mac), argv[2]);
    }
    reply_outside_change(conn, server, "move", argv[1], mac, error);
}

/* Replies to 'conn' with 'error' (freed), if any, or success after
 * rereading the peers. */
static void
reply_peer_change(struct unixctl_conn *conn, struct server *server,
                  const char *what, const char *name, char *error)
{
    if (error) {
        char *quoted = store_quote_input(name);
        char *msg = xasprintf("Unable to %s peer '%s': %s", what, quoted,
                              error);

        unixctl_command_reply_error(conn, msg);
        free(msg);
        free(quoted);
        free(error);
    } else {
        peers_reload(server->peers);
        cascade_reload(server->cascade);
        unixctl_command_reply(conn, NULL);
    }
}

static void
cmd_add_peer(struct unixctl_conn *conn, int argc, const char *argv[],
             void *server_)
{
    struct server *server = server_;
    enum store_peer_kind kind = STORE_PEER_INTER;

    if (argc > 3 && !store_peer_kind_from_name(argv[3], &kind)) {
        char *quoted = store_quote_input(argv[3]);
        char *error = xasprintf("unknown peer kind '%s' (expected inter, "
                                "member or authority)", quoted);

        free(quoted);
        reply_peer_change(conn, server, "add", argv[1], error);
        return;
    }
    reply_peer_change(conn, server, "add", argv[1],
                      store_add_peer(server->store, argv[1], argv[2], kind));
}

static void
cmd_del_peer(struct unixctl_conn *conn, int argc OVS_UNUSED,
             const char *argv[], void *server_)
{
    struct server *server = server_;

    reply_peer_change(conn, server, "delete", argv[1],
                      store_del_peer(server->store, argv[1]));
}

static void
cmd_list_peers(struct unixctl_conn *conn, int argc OVS_UNUSED,
               const char *argv[] OVS_UNUSED, void *server_)
{
    struct server *server = server_;
    struct ds s = DS_EMPTY_INITIALIZER;

    peers_format(server->peers, &s);
    unixctl_command_reply(conn, ds_cstr(&s));
    ds_destroy(&s);
}

static void
cmd_list_clients(struct unixctl_conn *conn, int argc OVS_UNUSED,
                 const char *argv[] OVS_UNUSED, void *server_)
{
    struct server *server = server_;
    struct store_client *clients;
    struct ds s = DS_EMPTY_INITIALIZER;
    size_t n;

    store_list_clients(server->store, &clients, &n);
    ds_put_format(&s, "%-20s %-17s %s\n", "ID", "MAC", "ENROLLED");
    for (size_t i = 0; i < n; i++) {
        char *t = format_time(clients[i].created);

        ds_put_format(&s, "%-20s "ETH_ADDR_FMT" %s\n", clients[i].id,
                      ETH_ADDR_ARGS(clients[i].mac), t);
        free(t);
    }
    free(clients);
    unixctl_command_reply(conn, ds_cstr(&s));
    ds_destroy(&s);
}

static void
cmd_list_keys(struct unixctl_conn *conn, int argc OVS_UNUSED,
              const char *argv[] OVS_UNUSED, void *server_)
{
    struct server *server = server_;
    struct store_pair_key *keys;
    struct ds s = DS_EMPTY_INITIALIZER;
    size_t n;

    /* Pairs, versions, key check values and times; never key bytes. */
    store_list_pair_keys(server->store, NULL, &keys, &n);
    ds_put_format(&s, "%-8s %-20s %-20s %-8s %-8s %-24s %s\n", "PAIR",
                  "CLIENT-A", "CLIENT-B", "VERSION", "KCV", "CREATED",
                  "UPDATED");
    for (size_t i = 0; i < n; i++) {
        char *created = format_time(keys[i].created);
        char *updated = format_time(keys[i].updated);
        char kcv[STORE_KCV_LEN + 1];

        store_key_kcv(keys[i].key, kcv);
        ds_put_format(&s, "%-8"PRId64" %-20s %-20s %-8"PRIu32" %-8s %-24s "
                      "%s\n", keys[i].pair_id, keys[i].id_a, keys[i].id_b,
                      keys[i].version, kcv, created, updated);
        free(created);
        free(updated);
        store_key_wipe(&keys[i], sizeof keys[i]);
    }
    free(keys);
    unixctl_command_reply(conn, ds_cstr(&s));
    ds_destroy(&s);
}

/* The audit log, one tab-separated line per entry: time, event, the two
 * ids, version, switch, reason, key check value ("-" for none).  Never key
 * bytes. */
static void
cmd_audit(struct unixctl_conn *conn, int argc, const char *argv[],
          void *server_)
{
    struct server *server = server_;
    struct ds s = DS_EMPTY_INITIALIZER;
    struct store_audit *entries;
    long long int since = 0;
    size_t n;

    if (argc == 2 && !strcmp(argv[1], "--since")) {
        unixctl_command_reply_error(conn, "audit: --since needs a TIME");
        return;
    } else if (argc == 2 || (argc == 3 && strcmp(argv[1], "--since"))) {
        char *arg = store_quote_input(argv[1]);
        char *error = xasprintf("audit: unknown argument '%s' (use "
                                "--since TIME)", arg);
        unixctl_command_reply_error(conn, error);
        free(error);
        free(arg);
        return;
    } else if (argc == 3 && !parse_time(argv[2], &since)) {
        char *arg = store_quote_input(argv[2]);
        char *error = xasprintf("audit: invalid time '%s' (use milliseconds "
                                "since the epoch or YYYY-MM-DDTHH:MM:SSZ)",
                                arg);
        unixctl_command_reply_error(conn, error);
        free(error);
        free(arg);
        return;
    }

    store_list_audit(server->store, since, &entries, &n);
    for (size_t i = 0; i < n; i++) {
        const struct store_audit *a = &entries[i];
        char *when = format_time(a->time);
        char *sw = store_quote_input(a->switch_name);
        char *reason = store_quote_input(a->reason);

        ds_put_format(&s, "%s\t%s\t%s\t%s\t", when, a->event,
                      a->id_a[0] ? a->id_a : "-",
                      a->id_b[0] ? a->id_b : "-");
        if (a->version) {
            ds_put_format(&s, "%"PRIu32, a->version);
        } else {
            ds_put_char(&s, '-');
        }
        ds_put_format(&s, "\t%s\t%s\t%s\n", sw[0] ? sw : "-",
                      reason[0] ? reason : "-", a->kcv[0] ? a->kcv : "-");
        free(when);
        free(sw);
        free(reason);
    }
    free(entries);
    unixctl_command_reply(conn, ds_cstr(&s));
    ds_destroy(&s);
}

static void
cmd_show(struct unixctl_conn *conn, int argc OVS_UNUSED,
         const char *argv[] OVS_UNUSED, void *server_)
{
    struct server *server = server_;
    struct ds s = DS_EMPTY_INITIALIZER;

    ds_put_format(&s, "database: %s (schema version %d)\n", db_path,
                  store_schema_version(server->store));
    keyserver_format_status(server->ks, &s);
    unixctl_command_reply(conn, ds_cstr(&s));
    ds_destroy(&s);
}

/* Stable tab-separated output for scripts: one record per line, the record
 * type first.  Times are milliseconds since the epoch. */
static void
cmd_dump(struct unixctl_conn *conn, int argc OVS_UNUSED,
         const char *argv[] OVS_UNUSED, void *server_)
{
    struct server *server = server_;
    struct store_client *clients;
    struct store_pair_key *keys;
    struct store_group_key gk;
    struct ds s = DS_EMPTY_INITIALIZER;
    size_t n;
    char *error;

    store_list_clients(server->store, &clients, &n);
    for (size_t i = 0; i < n; i++) {
        ds_put_format(&s, "client\t%s\t"ETH_ADDR_FMT"\t%lld\n",
                      clients[i].id, ETH_ADDR_ARGS(clients[i].mac),
                      clients[i].created);
    }
    free(clients);

    store_list_gateways(server->store, &clients, &n);
    for (size_t i = 0; i < n; i++) {
        ds_put_format(&s, "gateway\t%s\t%lld\n", clients[i].id,
                      clients[i].created);
    }
    free(clients);

    struct store_outside *outs;
    store_list_outside(server->store, &outs, &n);
    for (size_t i = 0; i < n; i++) {
        ds_put_format(&s, "outside\t"ETH_ADDR_FMT"\t%s\t%lld\n",
                      ETH_ADDR_ARGS(outs[i].mac), outs[i].gateway,
                      outs[i].learned);
    }
    free(outs);

    store_list_pair_keys(server->store, NULL, &keys, &n);
    for (size_t i = 0; i < n; i++) {
        ds_put_format(&s, "pair\t%"PRId64"\t%s\t%s\t%"PRIu32"\t%lld\t%lld\n",
                      keys[i].pair_id, keys[i].id_a, keys[i].id_b,
                      keys[i].version, keys[i].created, keys[i].updated);
        store_key_wipe(&keys[i], sizeof keys[i]);
    }
    free(keys);

    error = store_get_group_key(server->store, &gk);
    if (!error) {
        ds_put_format(&s, "group\t%"PRIu32"\t%lld\n", gk.version,
                      gk.updated);
        store_key_wipe(&gk, sizeof gk);
    }
    free(error);

    unixctl_command_reply(conn, ds_cstr(&s));
    ds_destroy(&s);
}

static void
cmd_exit(struct unixctl_conn *conn, int argc OVS_UNUSED,
         const char *argv[] OVS_UNUSED, void *server_)
{
    struct server *server = server_;

    server->exiting = true;
    unixctl_command_reply(conn, NULL);
}

/* Replies to 'conn' with 'out', or with 'error' (freed) prefixed with
 * 'what'. */
static void
reply_rotation(struct unixctl_conn *conn, const char *what, char *error,
               struct ds *out)
{
    if (error) {
        char *msg = xasprintf("Unable to rotate %s: %s", what, error);

        unixctl_command_reply_error(conn, msg);
        free(msg);
        free(error);
    } else {
        unixctl_command_reply(conn, ds_cstr(out));
    }
    ds_destroy(out);
}

static void
cmd_rotate_key(struct unixctl_conn *conn, int argc, const char *argv[],
               void *server_)
{
    struct server *server = server_;
    struct ds out = DS_EMPTY_INITIALIZER;
    char *error, *what;

    if (argc == 2 && !strcmp(argv[1], "--all")) {
        what = xstrdup("every key");
        error = keyserver_rotate_all(server->ks, &out);
    } else if (argc == 3) {
        char *a = store_quote_input(argv[1]);
        char *b = store_quote_input(argv[2]);

        what = xasprintf("the key of '%s' and '%s'", a, b);
        error = keyserver_rotate_pair(server->ks, argv[1], argv[2], &out);
        free(a);
        free(b);
    } else {
        what = xstrdup("keys");
        error = xstrdup("use rotate-key ID1 ID2 or rotate-key --all");
    }
    reply_rotation(conn, what, error, &out);
    free(what);
}

static void
cmd_rotate_group(struct unixctl_conn *conn, int argc OVS_UNUSED,
                 const char *argv[] OVS_UNUSED, void *server_)
{
    struct server *server = server_;
    struct ds out = DS_EMPTY_INITIALIZER;

    reply_rotation(conn, "the group key",
                   keyserver_rotate_group(server->ks, &out), &out);
}

static void
register_commands(struct server *server)
{
    unixctl_command_register("pairkey/add-client", "ID MAC", 2, 2,
                             cmd_add_client, server);
    unixctl_command_register("pairkey/del-client", "ID", 1, 1,
                             cmd_del_client, server);
    unixctl_command_register("pairkey/list-clients", "", 0, 0,
                             cmd_list_clients, server);
    unixctl_command_register("pairkey/list-keys", "", 0, 0,
                             cmd_list_keys, server);
    unixctl_command_register("pairkey/show", "", 0, 0, cmd_show, server);
    unixctl_command_register("pairkey/audit", "[--since TIME]", 0, 2,
                             cmd_audit, server);
    unixctl_command_register("pairkey/revoke-key", "ID1 ID2", 2, 2,
                             cmd_revoke_key, server);
    unixctl_command_register("pairkey/rotate-key", "ID1 ID2 | --all", 1, 2,
                             cmd_rotate_key, server);
    unixctl_command_register("pairkey/rotate-group", "", 0, 0,
                             cmd_rotate_group, server);
    unixctl_command_register("pairkey/add-peer", "NAME REMOTE [KIND]", 2, 3,
                             cmd_add_peer, server);
    unixctl_command_register("pairkey/del-peer", "NAME", 1, 1,
                             cmd_del_peer, server);
    unixctl_command_register("pairkey/list-peers", "", 0, 0,
                             cmd_list_peers, server);
    unixctl_command_register("pairkey/forget-outside", "MAC", 1, 1,
                             cmd_forget_outside, server);
    unixctl_command_register("pairkey/move-outside", "MAC GATEWAY", 2, 2,
                             cmd_move_outside, server);
    unixctl_command_register("pairkey/dump", "", 0, 0, cmd_dump, server);
    unixctl_command_register("exit", "", 0, 0, cmd_exit, server);
}

/* Options. */

static void
parse_options(int argc, char *argv[])
{
    enum {
        OPT_DB = UCHAR_MAX + 1,
        OPT_OVSDB,
        OPT_MISS_POLICY,
        OPT_UNIXCTL,
        OPT_PEER_CA_CERT,
        OPT_NAME,
        OPT_PEER_LISTEN,
        OPT_REKEY_INTERVAL,
        OPT_REQUEST_RATE,
        OPT_OUTSIDE_IDLE_TIMEOUT,
        VLOG_OPTION_ENUMS,
        DAEMON_OPTION_ENUMS,
        SSL_OPTION_ENUMS,
    };
    static const struct option long_options[] = {
        {"db", required_argument, NULL, OPT_DB},
        {"ovsdb", required_argument, NULL, OPT_OVSDB},
        {"miss-policy", required_argument, NULL, OPT_MISS_POLICY},
        {"unixctl", required_argument, NULL, OPT_UNIXCTL},
        {"peer-ca-cert", required_argument, NULL, OPT_PEER_CA_CERT},
        {"name", required_argument, NULL, OPT_NAME},
        {"peer-listen", required_argument, NULL, OPT_PEER_LISTEN},
        {"rekey-interval", required_argument, NULL, OPT_REKEY_INTERVAL},
        {"request-rate", required_argument, NULL, OPT_REQUEST_RATE},
        {"outside-idle-timeout", required_argument, NULL,
         OPT_OUTSIDE_IDLE_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        DAEMON_LONG_OPTIONS,
        VLOG_LONG_OPTIONS,
        STREAM_SSL_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    char *short_options = ovs_cmdl_long_options_to_short_options(long_options);

    for (;;) {
        int c = getopt_long(argc, argv, short_options, long_options, NULL);
        if (c == -1) {
            break;
        }

        switch (c) {
        case OPT_DB:
            db_path = optarg;
            break;

        case OPT_OVSDB:
            ovsdb_remotes = xrealloc(ovsdb_remotes, (n_ovsdb_remotes + 1)
                                     * sizeof *ovsdb_remotes);
            ovsdb_remotes[n_ovsdb_remotes++] = optarg;
            break;

        case OPT_MISS_POLICY:
            if (!strcmp(optarg, "hold")) {
                miss_policy = MISS_HOLD;
            } else if (!strcmp(optarg, "drop")) {
                miss_policy = MISS_DROP;
            } else {
                ovs_fatal(0, "--miss-policy=%s: must be hold or drop",
                          optarg);
            }
            break;

        case OPT_UNIXCTL:
            unixctl_path = optarg;
            break;

        case OPT_NAME:
            if (!store_id_is_valid(optarg)) {
                char *quoted = store_quote_input(optarg);
                ovs_fatal(0, "--name=%s: use 1 to 64 letters, digits, '.', "
                          "'_' or '-'", quoted);
            }
            own_name = optarg;
            break;

        case OPT_PEER_LISTEN:
            peer_listen = optarg;
            break;

        case OPT_REKEY_INTERVAL: {
            unsigned int seconds;

            if (!str_to_uint(optarg, 10, &seconds) || !seconds
                || seconds > 365 * 24 * 3600) {
                ovs_fatal(0, "--rekey-interval=%s: must be a number of "
                          "seconds from 1 to 31536000", optarg);
            }
            rekey_msec = seconds * 1000LL;
            break;
        }

        case OPT_REQUEST_RATE:
            if (!str_to_uint(optarg, 10, &request_rate)
                || request_rate > 1000000) {
                ovs_fatal(0, "--request-rate=%s: must be a number of "
                          "packets per second from 0 to 1000000", optarg);
            }
            break;

        case OPT_OUTSIDE_IDLE_TIMEOUT:
            if (!str_to_uint(optarg, 10, &outside_idle)
                || outside_idle > UINT16_MAX) {
                ovs_fatal(0, "--outside-idle-timeout=%s: must be a number of "
                          "seconds from 0 (never) to 65535", optarg);
            }
            break;

        case OPT_PEER_CA_CERT:
            stream_ssl_set_peer_ca_cert_file(optarg);
            break;

        case 'h':
            usage();

        case 'V':
            ovs_print_version(OFP13_VERSION, OFP15_VERSION);
            exit(EXIT_SUCCESS);

        VLOG_OPTION_HANDLERS
        DAEMON_OPTION_HANDLERS
        STREAM_SSL_OPTION_HANDLERS

        case '?':
            exit(EXIT_FAILURE);

        default:
            OVS_NOT_REACHED();
        }
    }
    free(short_options);
}

static void
usage(void)
{
    printf("%s: pairkey key server\n"
           "usage: %s [OPTIONS] --db=FILE LISTEN...\n"
           "where LISTEN is punix:PATH, pssl:PORT[:IP] or ptcp:PORT[:IP].\n"
           "Keys cross the OpenFlow channel: use punix: or pssl:.\n"
           "\nKey server options:\n"
           "  --db=FILE               SQLite database (created if missing)\n"
           "  --ovsdb=REMOTE          read port marks from this OVSDB "
           "server\n"
           "                          (repeatable; e.g. unix:db.sock)\n"
           "  --miss-policy=hold|drop deliver (hold, default) or drop the "
           "packet\n"
           "                          that caused a key request\n"
           "  --unixctl=SOCKET        override default control socket name\n"
           "  --name=NAME             this key server's name (its "
           "certificate's),\n"
           "                          needed to peer with other key "
           "servers\n"
           "  --peer-listen=pssl:PORT[:IP]  accept peer key servers\n"
           "  --rekey-interval=SECONDS  rotate every key this old\n"
           "  --request-rate=PPS      key requests each port may send "
           "(default %u,\n"
           "                          0 for no limit)\n"
           "  --outside-idle-timeout=SECONDS  forget where an outside host "
           "is\n"
           "                          once it is silent this long (default "
           "300,\n"
           "                          0: never)\n",
           program_name, program_name, KEYSERVER_REQUEST_RATE);
    daemon_usage();
    vlog_usage();
    stream_usage("LISTEN", false, true, false);
    printf("\nOther options:\n"
           "  -h, --help              display this help message\n"
           "  -V, --version           display version information\n");
    exit(EXIT_SUCCESS);
}
