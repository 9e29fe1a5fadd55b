-- Socketgram's own sign-in for support staff (the console): an argon2id hash (PHC string) per
-- admin of `adm_account`.
CREATE TABLE IF NOT EXISTS sg_admin_passwords (
    aid TEXT NOT NULL PRIMARY KEY,
    hash TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
