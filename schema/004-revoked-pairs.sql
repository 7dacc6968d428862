-- Migration 4: pairs revoked by an operator.

-- Pairs revoked with 'pairkeyctl revoke-key': no new key for the pair
-- until both clients were enrolled again after 'time'.  Not references:
-- a revocation outlives the clients' enrollments.
CREATE TABLE revoked_pairs (
    id_a TEXT NOT NULL,
    id_b TEXT NOT NULL,
    time INTEGER NOT NULL,             -- Milliseconds since the epoch.
    CHECK (id_a < id_b),
    PRIMARY KEY (id_a, id_b)
) STRICT;
