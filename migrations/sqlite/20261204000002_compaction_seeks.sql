-- Compaction (src/catalog/history.rs) runs after every retention, three
-- statements a batch; without these indexes two of them read whole tables
-- at every batch, and on SQLite a tick's writes wait for each statement.
-- Measured by `cargo bench --bench history` (README, Benchmarks).
--
-- Tick outcomes older than the history, by time: the primary key starts with
-- the policy, so `tick_at < $1` read the whole ticks table.
CREATE INDEX ticks_by_time ON ticks (tick_at);
-- A point is removed only when no tick outcome names it: the NOT EXISTS and
-- the foreign-key check of each point removed read the whole ticks table
-- (a statement removing 250 points of a 420-day history took 1.2 s).
CREATE INDEX ticks_by_point ON ticks (point_id);
-- Points to remove, pruned or failed and ticked before the history: a seek,
-- not a read of every pruned point and its tick time at every batch.
CREATE INDEX recovery_points_by_state_tick ON recovery_points (state, tick_at);
