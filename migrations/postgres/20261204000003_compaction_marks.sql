-- Compaction (src/catalog/history.rs `compact_backup_rows`) marks a pruned
-- point once its backup rows are gone, and looks only at unmarked ones:
-- without the mark, each 500-row statement walked from the oldest pruned
-- point through every point already emptied (on PostgreSQL through their
-- dead index entries too), 0.6 s a statement a few thousand points into a
-- year's backlog (`cargo bench --bench history`, README, Benchmarks).
ALTER TABLE recovery_points ADD COLUMN backups_compacted BOOLEAN NOT NULL DEFAULT FALSE;
-- Pruned points already emptied by an earlier compaction.
UPDATE recovery_points SET backups_compacted = TRUE
 WHERE state = 'pruned'
   AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.point_id = recovery_points.id);
CREATE INDEX recovery_points_to_compact ON recovery_points (pruned_at)
 WHERE state = 'pruned' AND NOT backups_compacted;
