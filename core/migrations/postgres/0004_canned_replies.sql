-- The team's canned replies (saved answers), by shortcut; support's clients expand them. The
-- text is kept as written (it is escaped for `messages` only when sent as a message).
CREATE TABLE IF NOT EXISTS sg_canned_replies (
    shortcut VARCHAR(32) NOT NULL PRIMARY KEY,
    text TEXT NOT NULL,
    updated_by VARCHAR(20) NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
