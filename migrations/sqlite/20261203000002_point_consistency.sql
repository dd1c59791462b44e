-- What a recovery point's data is consistent with: 'crash-consistent' (the
-- snapshots were taken of live filesystems) or 'filesystem-frozen' (Longhorn
-- froze every volume's filesystem for its snapshot). NULL for points made
-- before dr recorded it.
ALTER TABLE recovery_points ADD COLUMN consistency TEXT
  CHECK (consistency IN ('crash-consistent', 'filesystem-frozen'));
