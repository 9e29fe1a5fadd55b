-- Support in a Telegram group (`[telegram] staff_chat_id`): which admin each Telegram user of
-- the staff group is (`socketgram admin link-telegram`), and the forum topic each conversation
-- has in a staff chat (a deleted topic is replaced by a new one).
CREATE TABLE IF NOT EXISTS sg_admin_telegram (
    aid VARCHAR(20) NOT NULL PRIMARY KEY,
    telegram_user_id BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS sg_admin_telegram_user ON sg_admin_telegram (telegram_user_id);
CREATE TABLE IF NOT EXISTS sg_staff_topics (
    chat_id BIGINT NOT NULL,
    cid BIGINT NOT NULL,
    thread_id BIGINT NOT NULL,
    PRIMARY KEY (chat_id, cid)
);
CREATE UNIQUE INDEX IF NOT EXISTS sg_staff_topics_thread ON sg_staff_topics (chat_id, thread_id);
