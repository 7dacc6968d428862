-- Migration 3: peer key servers and the inter-network keys (NETKEY).

-- Peer key servers of other encrypted subnets, reached at 'remote' (an
-- ssl: remote; the peer's certificate must name it).
CREATE TABLE peers (
    name TEXT PRIMARY KEY NOT NULL     -- 1 to 64 of [A-Za-z0-9._-].
        CHECK (length(name) BETWEEN 1 AND 64
               AND name NOT GLOB '*[^A-Za-z0-9._-]*'),
    remote TEXT NOT NULL CHECK (remote GLOB 'ssl:?*'),
    created INTEGER NOT NULL           -- Milliseconds since the epoch.
) STRICT;

-- NETKEY: the inter-network key shared with each peer.  The peer whose
-- name sorts first generates it; the other obtains it over the
-- authenticated link.
CREATE TABLE netkeys (
    peer TEXT PRIMARY KEY NOT NULL REFERENCES peers (name) ON DELETE CASCADE,
    version INTEGER NOT NULL CHECK (version BETWEEN 1 AND 4294967295),
    key BLOB NOT NULL CHECK (length(key) = 32),
    updated INTEGER NOT NULL           -- Milliseconds since the epoch.
) STRICT;
