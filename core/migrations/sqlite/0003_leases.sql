-- Named leases with an expiry (the Telegram edge's one deliverer per bot): who holds each and
-- until when, in milliseconds since 1970 by the database's clock, never a core's (replicas'
-- clocks may disagree). A lease whose row is missing or expired is free.
CREATE TABLE IF NOT EXISTS sg_leases (
    name TEXT NOT NULL PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
