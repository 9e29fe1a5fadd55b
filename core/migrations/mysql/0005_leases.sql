-- Named leases with an expiry (the Telegram edge's one deliverer per bot): who holds each and
-- until when, in milliseconds since 1970 by the database's clock, never a core's (replicas'
-- clocks may disagree). A lease whose row is missing or expired is free.
-- A new table only: the legacy tables are not touched. utf8mb4_bin compares names and holders
-- byte for byte, as on SQLite and PostgreSQL (a _ci collation would take "A" and "a" for the
-- same holder), and still reads back as text.
CREATE TABLE IF NOT EXISTS sg_leases (
    name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    holder VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    expires_at_ms BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
