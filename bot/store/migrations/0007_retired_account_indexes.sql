-- Deleting retired accounts' credentials (housekeeping) finds the retired accounts, and asks
-- of each whether a task or a training still runs with it, through these indexes: not by
-- reading every account, every submitted task or every training.
CREATE INDEX accounts_retired_idx ON accounts (retired_at) WHERE retired_at IS NOT NULL;
CREATE INDEX tasks_account_state_idx ON tasks (account_id, state);
CREATE INDEX trainings_account_state_idx ON trainings (account_id, state);
