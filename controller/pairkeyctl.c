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

/* pairkeyctl: administers a running pairkeyd through its control socket. */

#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command-line.h"
#include "daemon.h"
#include "dirs.h"
#include "jsonrpc.h"
#include "openvswitch/vlog.h"
#include "unixctl.h"
#include "util.h"

struct command {
    const char *name;
    const char *args;           /* For usage. */
    int min_args, max_args;
    const char *help;
};

static const struct command commands[] = {
    { "add-client", "ID MAC", 2, 2, "enroll client ID with MAC" },
    { "del-client", "ID", 1, 1, "revoke client ID and every key it holds" },
    { "revoke-key", "ID1 ID2", 2, 2,
      "revoke the key of a pair (no new one until both enroll again)" },
    { "rotate-key", "ID1 ID2 | --all", 1, 2,
      "rotate the key of a pair, or every pair key, without losing frames" },
    { "rotate-group", "", 0, 0, "rotate the group key" },
    { "list-clients", "", 0, 0, "list enrolled clients" },
    { "list-keys", "", 0, 0,
      "list pair keys (versions and times, never keys)" },
    { "show", "", 0, 0, "show the key server's status" },
    { "dump", "", 0, 0, "print clients and keys as tab-separated records" },
    { "forget-outside", "MAC", 1, 1,
      "forget which gateway serves outside host MAC" },
    { "move-outside", "MAC GATEWAY", 2, 2,
      "move outside host MAC behind gateway GATEWAY" },
    { "add-peer", "NAME REMOTE [KIND]", 2, 3,
      "peer with key server NAME at REMOTE (ssl:HOST:PORT); KIND inter "
      "(default), authority or member" },
    { "del-peer", "NAME", 1, 1, "forget peer NAME and its NETKEY" },
    { "list-peers", "", 0, 0,
      "list peers: remote, link, NETKEY version and fingerprint" },
    { "audit", "[--since TIME]", 0, 2,
      "print the audit log (TIME: ms since the epoch or UTC "
      "YYYY-MM-DDTHH:MM:SSZ)" },
};

static const char *target;

OVS_NO_RETURN static void usage(void);
static const struct command *find_command(const char *name);
static char *target_socket(void);

int
main(int argc, char *argv[])
{
    static const struct option long_options[] = {
        {"target", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const struct command *cmd;
    struct jsonrpc *client;
    char *cmd_result, *cmd_error;
    char *socket_name;
    char *unixctl_cmd;
    int error;

    set_program_name(argv[0]);
    vlog_set_levels(NULL, VLF_CONSOLE, VLL_OFF);

    for (;;) {
        int c = getopt_long(argc, argv, "+t:hV", long_options, NULL);
        if (c == -1) {
            break;
        }
        switch (c) {
        case 't':
            target = optarg;
            break;
        case 'h':
            usage();
        case 'V':
            ovs_print_version(0, 0);
            exit(EXIT_SUCCESS);
        case '?':
            exit(EXIT_FAILURE);
        default:
            OVS_NOT_REACHED();
        }
    }

    if (optind >= argc) {
        ovs_fatal(0, "missing command; use --help for usage");
    }
    cmd = find_command(argv[optind]);
    if (!cmd) {
        ovs_fatal(0, "unknown command '%s'; use --help for usage",
                  argv[optind]);
    }
    int n_args = argc - optind - 1;
    if (n_args < cmd->min_args || n_args > cmd->max_args) {
        if (cmd->min_args == cmd->max_args) {
            ovs_fatal(0, "'%s' takes %d argument%s (%s); use --help for "
                      "usage", cmd->name, cmd->min_args,
                      cmd->min_args == 1 ? "" : "s",
                      cmd->min_args ? cmd->args : "none");
        }
        ovs_fatal(0, "'%s' takes %d to %d arguments (%s); use --help for "
                  "usage", cmd->name, cmd->min_args, cmd->max_args,
                  cmd->args);
    }

    socket_name = target_socket();
    error = unixctl_client_create(socket_name, &client);
    if (error) {
        ovs_fatal(0, "cannot connect to pairkeyd at %s (%s): is it running?",
                  socket_name, ovs_strerror(error));
    }

    unixctl_cmd = xasprintf("pairkey/%s", cmd->name);
    error = unixctl_client_transact(client, unixctl_cmd, n_args,
                                    &argv[optind + 1], &cmd_result,
                                    &cmd_error);
    if (error) {
        ovs_fatal(0, "transaction with pairkeyd at %s failed (%s)",
                  socket_name, ovs_strerror(error));
    }
    if (cmd_error) {
        fprintf(stderr, "%s: %s", program_name, cmd_error);
        if (!*cmd_error || cmd_error[strlen(cmd_error) - 1] != '\n') {
            putc('\n', stderr);
        }
        exit(EXIT_FAILURE);
    }
    if (cmd_result) {
        fputs(cmd_result, stdout);
    }

    jsonrpc_close(client);
    free(cmd_result);
    free(unixctl_cmd);
    free(socket_name);
    return 0;
}

static const struct command *
find_command(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
        if (!strcmp(commands[i].name, name)) {
            return &commands[i];
        }
    }
    return NULL;
}

/* The control socket of the target: a path if it contains '/', otherwise the
 * socket of the daemon named by the target (default "pairkeyd") whose
 * pidfile is in the run directory. */
static char *
target_socket(void)
{
    const char *name = target ? target : "pairkeyd";
    char *pidfile;
    pid_t pid;

    if (strchr(name, '/')) {
        return xstrdup(name);
    }

    pidfile = xasprintf("%s/%s.pid", ovs_rundir(), name);
    pid = read_pidfile(pidfile);
    if (pid < 0) {
        ovs_fatal(-pid, "cannot read pidfile %s: is %s running?", pidfile,
                  name);
    }
    free(pidfile);
    return xasprintf("%s/%s.%ld.ctl", ovs_rundir(), name, (long int) pid);
}

static void
usage(void)
{
    printf("%s: pairkey key server administration\n"
           "usage: %s [-t|--target=SOCKET] COMMAND [ARG...]\n\n"
           "Commands:\n", program_name, program_name);
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
        char *s = xasprintf("%s %s", commands[i].name, commands[i].args);
        printf("  %-22s %s\n", s, commands[i].help);
        free(s);
    }
    printf("\nOptions:\n"
           "  -t, --target=SOCKET  pairkeyd control socket, or daemon name\n"
           "                       whose pidfile is in the run directory\n"
           "                       (default: pairkeyd)\n"
           "  -h, --help           display this help message\n"
           "  -V, --version        display version information\n");
    exit(EXIT_SUCCESS);
}
