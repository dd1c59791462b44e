-- The filesystem of the volume's PersistentVolume (spec.csi.fsType) when it
-- was backed up: a restore makes the new PV with it (Longhorn's pvCreate
-- defaults to ext4, and an xfs volume under an ext4 PV does not mount).
-- NULL for rows written before it was recorded: ext4 is assumed for those.
ALTER TABLE backups ADD COLUMN fs_type TEXT;
