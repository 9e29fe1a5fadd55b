-- Where each consumer that pushes messages elsewhere (the Telegram edge) has got to: the last
-- message id it has finished with. It survives restarts, so nothing accepted is lost.
-- A new table only: the legacy tables are not touched. The consumer name is binary so that it
-- compares byte for byte, as on SQLite and PostgreSQL; 256 bytes hold 64 characters of UTF-8.
CREATE TABLE IF NOT EXISTS sg_delivery_cursors (
    consumer VARBINARY(256) NOT NULL PRIMARY KEY,
    message_id BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
