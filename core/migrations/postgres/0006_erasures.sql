-- The record of each erasure (a visitor's right to erasure): which conversation, who erased
-- it and when, how much went; never anything of what was erased.
CREATE TABLE IF NOT EXISTS sg_erasures (
    id BIGSERIAL PRIMARY KEY,
    cid BIGINT NOT NULL,
    erased_by VARCHAR(20) NOT NULL,
    erased_at_ms BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    notes BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS sg_erasures_cid ON sg_erasures (cid);
