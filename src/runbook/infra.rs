//! The infrastructure stage's check of Longhorn's backup target, as a new
//! cluster needs it: the target points at the store that holds the point's
//! backups, and Longhorn lists them — a fresh Longhorn only does after its
//! backup target was synced with the store, which dr asks for.

use super::steps::{StepCtx, StepError, restorable};
use crate::catalog::BackupRecord;
use std::time::{Duration, Instant};

/// How long the check waits for a requested sync to list the point's
/// backups: Longhorn's backup target controller lists the store's backup
/// volumes, then each backup volume's controller its backups.
pub const SYNC_WAIT: Duration = Duration::from_secs(120);
/// Between two looks at the listing while a sync runs.
const SYNC_LOOK: Duration = Duration::from_millis(500);

/// The backup target a backup URL was made under: Longhorn's backup URL is
/// the target URL with `volume` and `backup` added to its query
/// (backupstore.go `EncodeBackupURL`), and `DecodeBackupURL` takes them off
/// again. Normalised for comparison: no trailing `/` on the path, the other
/// query pairs sorted. Pure.
pub fn target_of_backup_url(backup_url: &str) -> Option<String> {
    normalise(backup_url, true)
}

/// A backup target URL normalised as [`target_of_backup_url`] does.
pub fn normalise_target(url: &str) -> Option<String> {
    normalise(url, false)
}

fn normalise(raw: &str, strip_backup: bool) -> Option<String> {
    let mut u = url::Url::parse(raw).ok()?;
    let mut pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| !(strip_backup && (k == "volume" || k == "backup")))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    let path = u.path().trim_end_matches('/').to_owned();
    u.set_path(&path);
    u.set_query(None);
    if !pairs.is_empty() {
        u.query_pairs_mut().extend_pairs(pairs);
    }
    Some(u.to_string())
}

/// The stores the point's restorable backups are in, each once.
pub fn stores_of(backups: &[&BackupRecord]) -> Vec<String> {
    let mut out: Vec<String> = backups
        .iter()
        .filter_map(|b| b.backup_url.as_deref())
        .filter_map(target_of_backup_url)
        .collect();
    out.sort();
    out.dedup();
    out
}

impl StepCtx<'_> {
    /// `check: backup-target`: available, pointing at the point's store,
    /// listing every backup of the point (after a sync dr asks for when it
    /// does not), and the point's bundle readable.
    pub(super) async fn check_backup_target(&self) -> Result<String, StepError> {
        let t = self.env.longhorn.backup_target().await?;
        if !t.available {
            return Err(StepError::Check(format!(
                "Longhorn's backup target {} is not available: {}",
                t.backup_target_url, t.message
            )));
        }
        let backups = restorable(&self.plan.backups);
        let target = normalise_target(&t.backup_target_url);
        let elsewhere: Vec<String> = stores_of(&backups)
            .into_iter()
            .filter(|s| Some(s) != target.as_ref())
            .collect();
        if !elsewhere.is_empty() {
            return Err(StepError::Check(format!(
                "Longhorn's backup target is {}, but recovery point {}'s backups are in {}: point the backup target (Longhorn setting or BackupTarget {}) at that store, then re-run",
                t.backup_target_url,
                self.plan.point.id,
                elsewhere.join(", "),
                t.name
            )));
        }
        let synced = self.wait_listed(&backups).await?;
        self.bundle().await?;
        Ok(format!(
            "backup target {} available; {} backups of the point listed{}; bundle readable",
            t.backup_target_url,
            backups.len(),
            synced
                .map(|d| format!(" after a backup-target sync ({:.1} s)", d.as_secs_f64()))
                .unwrap_or_default()
        ))
    }

    /// The point's backups Longhorn does not list.
    async fn unlisted<'b>(
        &self,
        backups: &[&'b BackupRecord],
    ) -> Result<Vec<&'b BackupRecord>, StepError> {
        let mut out = Vec::new();
        for b in backups {
            let Some(name) = b.backup_name.as_deref() else {
                continue;
            };
            if self
                .env
                .longhorn
                .backup(b.volume.as_str(), name)
                .await?
                .is_none()
            {
                out.push(*b);
            }
        }
        Ok(out)
    }

    /// Waits until Longhorn lists every backup of the point, asking for a
    /// backup-target sync first when it does not; the sync's time, if one
    /// was needed.
    async fn wait_listed(&self, backups: &[&BackupRecord]) -> Result<Option<Duration>, StepError> {
        if self.unlisted(backups).await?.is_empty() {
            return Ok(None);
        }
        let start = Instant::now();
        self.env.longhorn.request_backup_target_sync().await?;
        loop {
            let missing = self.unlisted(backups).await?;
            if missing.is_empty() {
                return Ok(Some(start.elapsed()));
            }
            if start.elapsed() >= SYNC_WAIT {
                let names: Vec<String> = missing
                    .iter()
                    .map(|b| {
                        format!(
                            "{} of volume {}",
                            b.backup_name.as_deref().unwrap_or("?"),
                            b.volume
                        )
                    })
                    .collect();
                return Err(StepError::Check(format!(
                    "Longhorn does not list {} of the point's backups {} s after a backup-target sync: {}; check that its backup target reads the store (credentials, endpoint), then re-run",
                    missing.len(),
                    SYNC_WAIT.as_secs(),
                    names.join(", ")
                )));
            }
            tokio::time::sleep(SYNC_LOOK).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_url_names_its_target() {
        let t = "s3://dr-test@us-east-1/prefix/";
        let b = "s3://dr-test@us-east-1/prefix/?backup=backup-1a&volume=pvc-9";
        assert_eq!(target_of_backup_url(b), normalise_target(t));
        assert_eq!(
            target_of_backup_url("s3://dr-test@us-east-1/prefix?volume=v&backup=b"),
            normalise_target(t)
        );
        // Another path, bucket or region is another store.
        for other in [
            "s3://dr-test@us-east-1/other/?backup=b&volume=v",
            "s3://dr-prod@us-east-1/prefix/?backup=b&volume=v",
            "s3://dr-test@eu-west-1/prefix/?backup=b&volume=v",
        ] {
            assert_ne!(target_of_backup_url(other), normalise_target(t), "{other}");
        }
        // Options of the target stay (nfs mount options, say).
        let nfs = "nfs://srv:/export?nfsOptions=soft";
        assert_eq!(
            target_of_backup_url("nfs://srv:/export?backup=b&nfsOptions=soft&volume=v"),
            normalise_target(nfs)
        );
        assert_eq!(target_of_backup_url("not a url"), None);
    }
}
