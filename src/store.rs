//! The S3 adapter: manifest bundles in dr's bucket, and read-only checks of
//! Longhorn's backup store (its layout: `backupstore/volumes/<h1>/<h2>/<vol>/…`,
//! see Longhorn's backupstore). Works with AWS and any S3-compatible server
//! (custom endpoint, path-style addressing).

use crate::bundle::Bundle;
use crate::config::StoreConfig;
use crate::point_file::PointFile;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use serde::Deserialize;
use sha2::{Digest, Sha512};
use std::collections::BTreeSet;

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("S3 {op} of s3://{bucket}/{key} failed: {message}")]
    S3 {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    #[error("s3://{bucket}/{key} is not what dr expects: {message}")]
    Corrupt {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("s3://{bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    #[error("{0:?} is not an S3 backup target URL; Longhorn's form is s3://BUCKET@REGION/PATH/")]
    TargetUrl(String),
}

fn s3_err<E: std::fmt::Display>(op: &'static str, bucket: &str, key: &str, e: E) -> StoreError {
    StoreError::S3 {
        op,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message: e.to_string(),
    }
}

/// An S3 client for dr's bucket. Credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, or the usual AWS chain).
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    bucket: String,
    prefix: String,
}

/// Builds an S3 client for a region and optional custom endpoint.
pub async fn s3_client(region: &str, endpoint: Option<&str>, path_style: bool) -> Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await;
    let mut b = aws_sdk_s3::config::Builder::from(&shared).force_path_style(path_style);
    if let Some(e) = endpoint {
        b = b.endpoint_url(e);
    }
    Client::from_conf(b.build())
}

fn join(prefix: &str, rest: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        rest.to_owned()
    } else {
        format!("{p}/{rest}")
    }
}

impl Store {
    /// A store for dr's configured bucket.
    pub async fn new(cfg: &StoreConfig) -> Store {
        let endpoint = cfg.endpoint.as_ref().map(|u| u.0.as_str().to_owned());
        let path_style = cfg.path_style.unwrap_or(endpoint.is_some());
        Store {
            client: s3_client(&cfg.region, endpoint.as_deref(), path_style).await,
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.clone(),
        }
    }

    /// A store over an existing client (credentials and endpoint already set).
    pub fn from_client(client: Client, bucket: &str, prefix: &str) -> Store {
        Store {
            client,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    /// The key of a policy's bundle for a tick.
    pub fn bundle_key(&self, policy: &str, tick: chrono::DateTime<chrono::Utc>) -> String {
        join(
            &self.prefix,
            &format!(
                "dr/bundles/{policy}/{}.json",
                tick.format("%Y-%m-%dT%H%M%SZ")
            ),
        )
    }

    /// The key of a policy's point file for a tick, beside its bundle:
    /// `dr/points/<policy>/<tick>.json` (see [`crate::point_file`]).
    pub fn point_key(&self, policy: &str, tick: chrono::DateTime<chrono::Utc>) -> String {
        join(
            &self.prefix,
            &format!(
                "dr/points/{policy}/{}.json",
                tick.format("%Y-%m-%dT%H%M%SZ")
            ),
        )
    }

    /// Stores a point's file (overwriting the same tick's: a resumed tick
    /// writes it again with what it found).
    pub async fn put_point(&self, p: &PointFile) -> Result<(), StoreError> {
        let key = self.point_key(&p.policy, p.tick);
        let body =
            serde_json::to_vec_pretty(p).map_err(|e| s3_err("encode", &self.bucket, &key, e))?;
        self.put_json(&key, body).await
    }

    /// Reads a point's file back; `None` when the point has none (points
    /// made before dr wrote them).
    pub async fn get_point(
        &self,
        policy: &str,
        tick: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<PointFile>, StoreError> {
        self.get_point_at(&self.point_key(policy, tick)).await
    }

    /// Reads the point file at `key`; `None` when it is not there.
    pub async fn get_point_at(&self, key: &str) -> Result<Option<PointFile>, StoreError> {
        let key = key.to_owned();
        let bytes = match get_bytes(&self.client, &self.bucket, &key).await {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                bucket: self.bucket.clone(),
                key,
                message: e.to_string(),
            })
    }

    /// Keys of a policy's point files, oldest first.
    pub async fn list_points(&self, policy: &str) -> Result<Vec<String>, StoreError> {
        let prefix = join(&self.prefix, &format!("dr/points/{policy}/"));
        let mut keys = list_keys(&self.client, &self.bucket, &prefix).await?;
        keys.sort();
        Ok(keys)
    }

    /// Deletes a point's file (one already gone succeeds).
    pub async fn delete_point(
        &self,
        policy: &str,
        tick: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.delete_bundle(&self.point_key(policy, tick)).await
    }

    /// Stores a bundle (overwriting the same tick's: the write is idempotent).
    pub async fn put_bundle(&self, b: &Bundle, key: &str) -> Result<(), StoreError> {
        let body =
            serde_json::to_vec_pretty(b).map_err(|e| s3_err("encode", &self.bucket, key, e))?;
        self.put_json(key, body).await
    }

    async fn put_json(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| {
                s3_err(
                    "put",
                    &self.bucket,
                    key,
                    aws_sdk_s3::error::DisplayErrorContext(e),
                )
            })?;
        Ok(())
    }

    /// Reads a bundle back.
    pub async fn get_bundle(&self, key: &str) -> Result<Bundle, StoreError> {
        let bytes = get_bytes(&self.client, &self.bucket, key).await?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message: e.to_string(),
        })
    }

    /// Deletes a bundle (deleting one already gone succeeds: S3's
    /// DeleteObject is idempotent).
    pub async fn delete_bundle(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                s3_err(
                    "delete",
                    &self.bucket,
                    key,
                    aws_sdk_s3::error::DisplayErrorContext(e),
                )
            })?;
        Ok(())
    }

    /// Keys of a policy's bundles, oldest first.
    pub async fn list_bundles(&self, policy: &str) -> Result<Vec<String>, StoreError> {
        let prefix = join(&self.prefix, &format!("dr/bundles/{policy}/"));
        let mut keys = list_keys(&self.client, &self.bucket, &prefix).await?;
        keys.sort();
        Ok(keys)
    }
}

async fn get_bytes(client: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, StoreError> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            if e.as_service_error().is_some_and(|se| se.is_no_such_key()) {
                return StoreError::NotFound {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                };
            }
            s3_err(
                "get",
                bucket,
                key,
                aws_sdk_s3::error::DisplayErrorContext(e),
            )
        })?;
    let data = out
        .body
        .collect()
        .await
        .map_err(|e| s3_err("read", bucket, key, e))?;
    Ok(data.into_bytes().to_vec())
}

/// Every key under `prefix` in `bucket` (all pages).
pub async fn list_keys(
    client: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, StoreError> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.clone())
            .send()
            .await
            .map_err(|e| {
                s3_err(
                    "list",
                    bucket,
                    prefix,
                    aws_sdk_s3::error::DisplayErrorContext(e),
                )
            })?;
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(keys)
}

/// Where a Longhorn backup target keeps its store: `s3://bucket@region/path/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupTargetUrl {
    pub bucket: String,
    pub region: Option<String>,
    pub path: String,
}

impl BackupTargetUrl {
    /// Parses Longhorn's S3 target form (`s3://bucket@region/path/` or `s3://bucket/path/`);
    /// a backup URL (with `?backup=…&volume=…`) is accepted too.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::TargetUrl(url.to_owned());
        let rest = url.strip_prefix("s3://").ok_or_else(bad)?;
        let rest = rest.split('?').next().unwrap_or("");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (bucket, region) = match host.split_once('@') {
            Some((b, r)) => (b, Some(r.to_owned())),
            None => (host, None),
        };
        if bucket.is_empty() {
            return Err(bad());
        }
        Ok(BackupTargetUrl {
            bucket: bucket.to_owned(),
            region,
            path: path.trim_matches('/').to_owned(),
        })
    }

    /// The key prefix of a volume's directory in the store.
    pub fn volume_prefix(&self, volume: &str) -> String {
        let h = hex::encode(Sha512::digest(volume.as_bytes()));
        join(
            &self.path,
            &format!("backupstore/volumes/{}/{}/{volume}/", &h[0..2], &h[2..4]),
        )
    }

    /// The key of a backup's `.cfg`.
    pub fn backup_cfg_key(&self, volume: &str, backup: &str) -> String {
        format!("{}backups/backup_{backup}.cfg", self.volume_prefix(volume))
    }

    /// The key of a data block.
    pub fn block_key(&self, volume: &str, checksum: &str) -> String {
        let (c1, c2) = (
            checksum.get(0..2).unwrap_or("00"),
            checksum.get(2..4).unwrap_or("00"),
        );
        format!(
            "{}blocks/{c1}/{c2}/{checksum}.blk",
            self.volume_prefix(volume)
        )
    }
}

/// The parts of Longhorn's `backup_<name>.cfg` dr checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupCfg {
    pub name: String,
    pub volume_name: String,
    #[serde(default)]
    pub snapshot_name: String,
    #[serde(default)]
    pub snapshot_created_at: String,
    /// Empty while the upload is in progress.
    #[serde(default)]
    pub created_time: String,
    #[serde(default)]
    pub size: String,
    #[serde(default)]
    pub parameters: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub blocks: Option<Vec<BlockRef>>,
}

/// One block of a backup.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockRef {
    pub offset: u64,
    pub block_checksum: String,
}

/// The outcome of checking one backup in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The `.cfg` is complete and every block it lists exists.
    Intact { blocks: usize, size: u64 },
    /// Something is missing or inconsistent; the reason says what.
    Broken(String),
}

/// Pure part of the check: a backup's cfg against the set of block
/// checksums present in the store.
pub fn check_cfg(cfg: &BackupCfg, present: &BTreeSet<String>, expect_backup: &str) -> Check {
    if cfg.name != expect_backup {
        return Check::Broken(format!("the .cfg names backup {:?}", cfg.name));
    }
    if cfg.created_time.is_empty() {
        return Check::Broken(
            "the backup is still in progress in the store (empty CreatedTime)".into(),
        );
    }
    let blocks = cfg.blocks.clone().unwrap_or_default();
    let block_size = match block_size_of(cfg) {
        Ok(b) => b,
        Err(message) => return Check::Broken(message),
    };
    let missing: Vec<&str> = blocks
        .iter()
        .map(|b| b.block_checksum.as_str())
        .filter(|c| !present.contains(*c))
        .collect();
    if !missing.is_empty() {
        return Check::Broken(format!(
            "{} of {} blocks missing (first: {})",
            missing.len(),
            blocks.len(),
            missing[0]
        ));
    }
    let size: u64 = match cfg.size.parse() {
        Ok(s) => s,
        Err(_) => return Check::Broken(format!("Size {:?} is not a number", cfg.size)),
    };
    let expected = u64::try_from(blocks.len())
        .ok()
        .and_then(|n| n.checked_mul(block_size));
    if expected != Some(size) {
        return Check::Broken(format!(
            "Size {size} disagrees with {} blocks of {block_size} bytes ({})",
            blocks.len(),
            expected.map_or_else(|| "more than 2^64 bytes".into(), |e| e.to_string())
        ));
    }
    Check::Intact {
        blocks: blocks.len(),
        size,
    }
}

/// Longhorn's default block size, 2 MiB (backupstore types.go
/// `DEFAULT_BLOCK_SIZE`).
const DEFAULT_BLOCK_SIZE: u64 = 2 * 1024 * 1024;

/// A backup's block size, from its `Parameters["backup-block-size"]` as the
/// backupstore reads it (util.go `getBlockSizeFromParameters`): no
/// parameters, no key, an empty value or a zero quantity all mean the 2 MiB
/// default; a value that is not a quantity is refused naming it (Longhorn
/// refuses it too), never read as the default.
fn block_size_of(cfg: &BackupCfg) -> Result<u64, String> {
    let Some(s) = cfg
        .parameters
        .as_ref()
        .and_then(|p| p.get("backup-block-size"))
    else {
        return Ok(DEFAULT_BLOCK_SIZE);
    };
    match parse_block_size(s) {
        Some(0) => Ok(DEFAULT_BLOCK_SIZE),
        Some(b) => Ok(b),
        None => Err(format!(
            "backup-block-size {s:?} is not a size dr can read; the backupstore writes bytes or a quantity such as 2Mi or 16Mi"
        )),
    }
}

/// A Kubernetes quantity of bytes without fraction or exponent: digits,
/// optionally with a binary (Ki, Mi, Gi, Ti) or decimal (k, M, G, T)
/// suffix; empty is zero. `None` for anything else or past `u64`.
fn parse_block_size(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits);
    let unit: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    if number.is_empty() {
        return None;
    }
    number.parse::<u64>().ok()?.checked_mul(unit)
}

/// Checks a completed backup in Longhorn's store through S3, without
/// trusting Longhorn: its `.cfg` exists and is complete, and every block it
/// lists is present.
pub async fn verify_backup(
    client: &Client,
    target: &BackupTargetUrl,
    volume: &str,
    backup: &str,
) -> Result<Check, StoreError> {
    let cfg_key = target.backup_cfg_key(volume, backup);
    let bytes = match get_bytes(client, &target.bucket, &cfg_key).await {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => {
            return Ok(Check::Broken(format!("{cfg_key} does not exist")));
        }
        Err(StoreError::S3 { message, .. })
            if message.contains("NoSuchKey")
                || message.contains("NotFound")
                || message.contains("404") =>
        {
            return Ok(Check::Broken(format!("{cfg_key} does not exist")));
        }
        Err(e) => return Err(e),
    };
    let cfg: BackupCfg = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => return Ok(Check::Broken(format!("{cfg_key} is not a backup cfg: {e}"))),
    };
    let blocks_prefix = format!("{}blocks/", target.volume_prefix(volume));
    let present: BTreeSet<String> = list_keys(client, &target.bucket, &blocks_prefix)
        .await?
        .into_iter()
        .filter_map(|k| {
            k.rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".blk"))
                .map(str::to_owned)
        })
        .collect();
    Ok(check_cfg(&cfg, &present, backup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls() {
        let t = BackupTargetUrl::parse("s3://backups@us-east-1/lh/").expect("url");
        assert_eq!(t.bucket, "backups");
        assert_eq!(t.region.as_deref(), Some("us-east-1"));
        assert_eq!(t.path, "lh");
        let t = BackupTargetUrl::parse("s3://b@r/?backup=backup-1&volume=v").expect("url");
        assert_eq!(t.path, "");
        assert!(BackupTargetUrl::parse("nfs://server:/x").is_err());
    }

    #[test]
    fn layout_matches_longhorn() {
        // The reference's example: sha512("pvc-0123abcd-test") starts a79b.
        let t = BackupTargetUrl::parse("s3://b@r/").expect("url");
        assert_eq!(
            t.volume_prefix("pvc-0123abcd-test"),
            "backupstore/volumes/a7/9b/pvc-0123abcd-test/"
        );
        let t = BackupTargetUrl::parse("s3://b@r/lh/").expect("url");
        assert!(
            t.backup_cfg_key("v", "backup-1")
                .starts_with("lh/backupstore/volumes/")
        );
        assert!(
            t.backup_cfg_key("v", "backup-1")
                .ends_with("/v/backups/backup_backup-1.cfg")
        );
        assert!(
            t.block_key("v", "abcdef")
                .ends_with("/v/blocks/ab/cd/abcdef.blk")
        );
    }

    fn cfg(created: &str, size: &str, blocks: &[&str]) -> BackupCfg {
        BackupCfg {
            name: "backup-1".into(),
            volume_name: "v".into(),
            snapshot_name: "s".into(),
            snapshot_created_at: "2026-11-24T09:45:00Z".into(),
            created_time: created.into(),
            size: size.into(),
            parameters: None,
            blocks: Some(
                blocks
                    .iter()
                    .enumerate()
                    .map(|(i, c)| BlockRef {
                        offset: i as u64 * 2 * 1024 * 1024,
                        block_checksum: (*c).into(),
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn checks() {
        let present: BTreeSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let ok = cfg("2026-11-24T09:46:00Z", "4194304", &["a", "b"]);
        assert_eq!(
            check_cfg(&ok, &present, "backup-1"),
            Check::Intact {
                blocks: 2,
                size: 4194304
            }
        );
        let missing = cfg("2026-11-24T09:46:00Z", "6291456", &["a", "b", "c"]);
        assert!(
            matches!(check_cfg(&missing, &present, "backup-1"), Check::Broken(m) if m.contains("1 of 3 blocks missing"))
        );
        let in_progress = cfg("", "4194304", &["a", "b"]);
        assert!(
            matches!(check_cfg(&in_progress, &present, "backup-1"), Check::Broken(m) if m.contains("in progress"))
        );
        let bad_size = cfg("2026-11-24T09:46:00Z", "1", &["a"]);
        assert!(
            matches!(check_cfg(&bad_size, &present, "backup-1"), Check::Broken(m) if m.contains("disagrees"))
        );
        assert!(matches!(
            check_cfg(&ok, &present, "backup-2"),
            Check::Broken(_)
        ));
    }

    #[test]
    fn a_zero_or_missing_block_size_is_the_2_mib_default() {
        let present: BTreeSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let with = |size: Option<&str>| {
            let mut c = cfg("2026-11-24T09:46:00Z", "4194304", &["a", "b"]);
            c.parameters = size.map(|s| [("backup-block-size".to_string(), s.to_string())].into());
            check_cfg(&c, &present, "backup-1")
        };
        let intact = Check::Intact {
            blocks: 2,
            size: 4194304,
        };
        for size in [None, Some("0"), Some(""), Some("2097152"), Some("2Mi")] {
            assert_eq!(with(size), intact, "{size:?}");
        }
        assert!(
            matches!(with(Some("16Mi")), Check::Broken(m) if m.contains("16777216")),
            "16 MiB blocks make another size"
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    const UNITS: [(&str, u128); 9] = [
        ("", 1),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
    ];

    fn cfg(size: String, block_size: Option<String>, blocks: usize) -> BackupCfg {
        BackupCfg {
            name: "backup-1".into(),
            volume_name: "v".into(),
            snapshot_name: "s".into(),
            snapshot_created_at: String::new(),
            created_time: "2026-11-24T09:46:00Z".into(),
            size,
            parameters: block_size.map(|b| [("backup-block-size".to_owned(), b)].into()),
            blocks: Some(
                (0..blocks)
                    .map(|i| BlockRef {
                        offset: 0,
                        block_checksum: format!("c{i}"),
                    })
                    .collect(),
            ),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Quantities of any size: exactly number times unit, or refused
        /// past u64; never wrapped.
        #[test]
        fn block_sizes_are_exact_or_refused(n in prop_oneof![0u64..100, any::<u64>()], unit in 0..UNITS.len()) {
            let (suffix, size) = UNITS[unit];
            let want = u64::try_from(u128::from(n) * size).ok();
            prop_assert_eq!(parse_block_size(&format!("{n}{suffix}")), want);
        }

        /// Any text as a block size, any Size, any number of blocks: a
        /// verdict, intact exactly when Size is blocks times block size.
        #[test]
        fn any_cfg_gets_a_verdict(
            size in prop_oneof!["[0-9]{1,21}", "\\PC{0,8}"],
            block in prop::option::of(prop_oneof!["[0-9]{1,21}(Ki|Mi|Gi|Ti|k|M|G|T)?", "\\PC{0,8}"]),
            blocks in 0usize..4,
        ) {
            let c = cfg(size.clone(), block.clone(), blocks);
            let present: BTreeSet<String> = (0..blocks).map(|i| format!("c{i}")).collect();
            let want = match block_size_of(&c) {
                Ok(b) => size.parse::<u64>().ok().filter(|s| u128::from(*s) == blocks as u128 * u128::from(b)),
                Err(m) => {
                    prop_assert!(m.contains(&format!("{:?}", block.unwrap_or_default())), "{m}");
                    None
                }
            };
            match check_cfg(&c, &present, "backup-1") {
                Check::Intact { size: s, blocks: n } => {
                    prop_assert_eq!(Some(s), want);
                    prop_assert_eq!(n, blocks);
                }
                Check::Broken(_) => prop_assert_eq!(want, None),
            }
        }

        /// Target URLs: parsed into exactly their parts, or refused quoting them.
        #[test]
        fn target_urls_are_split_exactly(
            bucket in "[a-z0-9.-]{0,12}",
            region in prop::option::of("[a-z0-9-]{0,12}"),
            path in "(/[a-z0-9]{1,6}){0,3}/?",
            query in prop::option::of("[a-z=&]{0,12}"),
        ) {
            let at = region.as_ref().map(|r| format!("@{r}")).unwrap_or_default();
            let q = query.as_ref().map(|q| format!("?{q}")).unwrap_or_default();
            let url = format!("s3://{bucket}{at}{path}{q}");
            match BackupTargetUrl::parse(&url) {
                Ok(t) => {
                    prop_assert_eq!(&t.bucket, &bucket);
                    prop_assert_eq!(&t.region, &region);
                    prop_assert_eq!(t.path.as_str(), path.trim_matches('/'));
                    // Layout keys from any names, without a panic.
                    let _ = t.block_key("v", "");
                    let _ = t.block_key("pvc-ü", "é");
                }
                Err(e) => {
                    prop_assert!(bucket.is_empty(), "{url}: {e}");
                    prop_assert!(e.to_string().contains(&format!("{url:?}")), "{e}");
                }
            }
        }

        /// Any text as a target URL: parsed or refused, never a panic.
        #[test]
        fn any_text_is_a_target_or_refused(s in "\\PC{0,30}|s3://[ -~]{0,20}") {
            if let Ok(t) = BackupTargetUrl::parse(&s) {
                prop_assert!(!t.bucket.is_empty());
                let _ = t.backup_cfg_key(&s, &s);
                let _ = t.block_key(&s, &s);
            }
        }
    }
}
