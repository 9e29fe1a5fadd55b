-- Socketgram's own sign-in for support staff (the console): an argon2id hash (PHC string) per
-- admin of `adm_account`.
CREATE TABLE IF NOT EXISTS sg_admin_passwords (
    aid VARCHAR(20) NOT NULL PRIMARY KEY,
    hash VARCHAR(255) NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
