-- "Continue in Telegram": one-time tokens that link a Telegram chat to a visitor's
-- conversation when the bot gets `/start <token>`. Only the SHA-256 of each token is kept
-- (never the token, which only the visitor's link holds), with its conversation and until
-- when it is accepted (milliseconds since 1970, by the database's clock). A redeem deletes
-- its row; expired rows are deleted when a new token is made.
CREATE TABLE IF NOT EXISTS sg_telegram_link_tokens (
    id TEXT NOT NULL PRIMARY KEY,
    cid INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sg_telegram_link_tokens_expiry ON sg_telegram_link_tokens (expires_at_ms);
CREATE INDEX IF NOT EXISTS sg_telegram_link_tokens_cid ON sg_telegram_link_tokens (cid);
