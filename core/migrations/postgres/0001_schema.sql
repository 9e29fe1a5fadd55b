-- The legacy schema (LEGACY.md §5) in PostgreSQL terms, then Socketgram's additions. PostgreSQL
-- DDL is transactional: this migration applies entirely or not at all.
-- Ids are BIGINT sequences (never reused: they are resume cursors); `date` is a naive
-- TIMESTAMP(0), the wall-clock time in the configured GMT offset, whole seconds.
CREATE TABLE IF NOT EXISTS users (
    id BIGSERIAL PRIMARY KEY,
    login_another_db VARCHAR(256) NULL,
    password VARCHAR(256) NOT NULL
);
CREATE TABLE IF NOT EXISTS adm_account (
    aid VARCHAR(20) NOT NULL PRIMARY KEY,
    name VARCHAR(20) NOT NULL,
    lid INTEGER NOT NULL
);
-- Visitor messages carry aid '0' (LEGACY.md §5).
INSERT INTO adm_account (aid, name, lid) VALUES ('0', '', 0) ON CONFLICT (aid) DO NOTHING;
CREATE TABLE IF NOT EXISTS messages (
    id BIGSERIAL PRIMARY KEY,
    cid BIGINT NOT NULL,
    aid VARCHAR(20) NOT NULL REFERENCES adm_account (aid),
    direction INTEGER NOT NULL,
    date TIMESTAMP(0) NOT NULL,
    message VARCHAR(10000) NULL,
    check_msg INTEGER NOT NULL,
    check_msg_admin INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sg_messages_cid_id ON messages (cid, id);
CREATE TABLE IF NOT EXISTS telegram (
    id BIGSERIAL PRIMARY KEY,
    cid BIGINT NULL,
    chat_id BIGINT NOT NULL,
    status INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS sg_telegram_chat_id ON telegram (chat_id);
CREATE INDEX IF NOT EXISTS sg_telegram_cid ON telegram (cid);
CREATE TABLE IF NOT EXISTS sg_conversations (
    cid BIGINT NOT NULL PRIMARY KEY,
    last_message_id BIGINT NOT NULL DEFAULT 0,
    support_read_id BIGINT NOT NULL DEFAULT 0,
    visitor_read_id BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sg_conversations_last ON sg_conversations (last_message_id);
CREATE TABLE IF NOT EXISTS sg_message_meta (
    message_id BIGINT NOT NULL PRIMARY KEY,
    cid BIGINT NOT NULL,
    origin INTEGER NOT NULL,
    client_msg_id TEXT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS sg_message_meta_client ON sg_message_meta (cid, client_msg_id);
-- One row that every writer locks first (SELECT ... FOR UPDATE): writers of several core
-- replicas serialise, so message ids commit in increasing order.
CREATE TABLE IF NOT EXISTS sg_write_lock (
    id INTEGER NOT NULL PRIMARY KEY
);
INSERT INTO sg_write_lock (id) VALUES (1) ON CONFLICT (id) DO NOTHING;
INSERT INTO sg_conversations (cid, last_message_id)
    SELECT cid, MAX(id) FROM messages GROUP BY cid
    ON CONFLICT (cid) DO NOTHING;
