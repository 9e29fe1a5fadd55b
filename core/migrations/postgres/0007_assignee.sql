-- Who a conversation belongs to: an admin (`adm_account.aid`) or nobody (NULL).
ALTER TABLE sg_conversations ADD COLUMN IF NOT EXISTS assignee VARCHAR(20) NULL;
