-- Socketgram's own tables, then their backfill from the messages already stored. Ids here are
-- signed BIGINT: they hold any id the core binds (the legacy INT UNSIGNED columns are a subset),
-- so a read mark far ahead is stored as it is on the other backends.

-- Read marks and the last message of each conversation.
CREATE TABLE IF NOT EXISTS sg_conversations (
    cid BIGINT NOT NULL PRIMARY KEY,
    last_message_id BIGINT NOT NULL DEFAULT 0,
    support_read_id BIGINT NOT NULL DEFAULT 0,
    visitor_read_id BIGINT NOT NULL DEFAULT 0,
    KEY sg_conversations_last (last_message_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Origin and client message id of each message stored by Socketgram. The client id is binary
-- so that it compares byte for byte, as on SQLite and PostgreSQL (a _ci collation would take
-- "A" and "a" for the same key). 512 bytes hold the core's 64 characters of UTF-8.
CREATE TABLE IF NOT EXISTS sg_message_meta (
    message_id BIGINT NOT NULL PRIMARY KEY,
    cid BIGINT NOT NULL,
    origin INT NOT NULL,
    client_msg_id VARBINARY(512) NULL,
    UNIQUE KEY sg_message_meta_client (cid, client_msg_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One row that every writer locks first (SELECT ... FOR UPDATE): writers of several core
-- replicas serialise, so message ids commit in increasing order.
CREATE TABLE IF NOT EXISTS sg_write_lock (
    id INT NOT NULL PRIMARY KEY
) ENGINE = InnoDB;
INSERT IGNORE INTO sg_write_lock (id) VALUES (1);

-- Conversations of an adopted database, from its messages. IGNORE: a second run keeps what the
-- first one (and the server since) wrote.
INSERT IGNORE INTO sg_conversations (cid, last_message_id)
    SELECT cid, MAX(id) FROM messages GROUP BY cid;
