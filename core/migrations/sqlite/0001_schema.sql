-- The legacy schema (LEGACY.md §5) in SQLite terms, then Socketgram's additions.
-- AUTOINCREMENT keeps ids from ever being reused: they are resume cursors.
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    login_another_db TEXT NULL,
    password TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS adm_account (
    aid TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    lid INTEGER NOT NULL
);
-- Visitor messages carry aid '0' (LEGACY.md §5).
INSERT OR IGNORE INTO adm_account (aid, name, lid) VALUES ('0', '', 0);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cid INTEGER NOT NULL,
    aid TEXT NOT NULL REFERENCES adm_account (aid),
    direction INTEGER NOT NULL,
    date TEXT NOT NULL,
    message TEXT NULL,
    check_msg INTEGER NOT NULL,
    check_msg_admin INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sg_messages_cid_id ON messages (cid, id);
CREATE TABLE IF NOT EXISTS telegram (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cid INTEGER NULL,
    chat_id INTEGER NOT NULL,
    status INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS sg_telegram_chat_id ON telegram (chat_id);
CREATE INDEX IF NOT EXISTS sg_telegram_cid ON telegram (cid);
CREATE TABLE IF NOT EXISTS sg_conversations (
    cid INTEGER NOT NULL PRIMARY KEY,
    last_message_id INTEGER NOT NULL DEFAULT 0,
    support_read_id INTEGER NOT NULL DEFAULT 0,
    visitor_read_id INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sg_conversations_last ON sg_conversations (last_message_id);
CREATE TABLE IF NOT EXISTS sg_message_meta (
    message_id INTEGER NOT NULL PRIMARY KEY,
    cid INTEGER NOT NULL,
    origin INTEGER NOT NULL,
    client_msg_id TEXT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS sg_message_meta_client ON sg_message_meta (cid, client_msg_id);
INSERT OR IGNORE INTO sg_conversations (cid, last_message_id)
    SELECT cid, MAX(id) FROM messages GROUP BY cid;
