-- Migration 2: gateways (virtual clients without a MAC) and the MACs of
-- hosts outside the encrypted subnet.
--
-- SQLite cannot relax a NOT NULL constraint in place: the clients table is
-- copied aside and created again as schema.sql has it (foreign keys are
-- off while migrations run, so the pair keys stay).

CREATE TABLE clients_v1 AS SELECT id, mac, created FROM clients;
DROP TABLE clients;

CREATE TABLE clients (
    id TEXT PRIMARY KEY NOT NULL       -- 1 to 64 of [A-Za-z0-9._-].
        CHECK (length(id) BETWEEN 1 AND 64
               AND id NOT GLOB '*[^A-Za-z0-9._-]*'),
    mac TEXT UNIQUE                    -- "aa:bb:cc:dd:ee:ff", lower case.
        CHECK (mac GLOB '[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]'),
    created INTEGER NOT NULL,          -- Milliseconds since the epoch.
    kind TEXT NOT NULL DEFAULT 'client'
        CHECK ((kind = 'client' AND mac IS NOT NULL)
               OR (kind = 'gateway' AND mac IS NULL))
) STRICT;

INSERT INTO clients (id, mac, created, kind)
    SELECT id, mac, created, 'client' FROM clients_v1;
DROP TABLE clients_v1;

-- Hosts outside the encrypted subnet (MACs not enrolled) and the gateway
-- that serves each: the one where it was last seen.
CREATE TABLE outside_macs (
    mac TEXT PRIMARY KEY NOT NULL
        CHECK (mac GLOB '[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]'),
    gateway TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    learned INTEGER NOT NULL           -- Milliseconds since the epoch.
) STRICT;

CREATE INDEX outside_macs_gateway ON outside_macs (gateway);
