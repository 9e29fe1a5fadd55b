-- What is known of a conversation's visitor besides messages, as JSON: what the host site
-- vouched for (`verified`, a signed token's claims) and what the visitor's page reported
-- (`page`, unverified); NULL when absent. Kept from the visitor's first visit, before any
-- message. A new table only: the legacy tables are not touched.
CREATE TABLE IF NOT EXISTS sg_visitor_context (
    cid BIGINT NOT NULL PRIMARY KEY,
    verified TEXT NULL,
    page TEXT NULL,
    updated_at_ms BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
