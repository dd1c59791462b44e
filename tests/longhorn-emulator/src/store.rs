//! The backup store on S3, in Longhorn's exact layout (reference section 7):
//!
//! ```text
//! <prefix>/backupstore/volumes/<h1>/<h2>/<vol>/volume.cfg
//!                                          backups/backup_<name>.cfg
//!                                          blocks/<c1>/<c2>/<sha512 first 64 hex>.blk   (lz4 frame)
//! ```
//! `<h1><h2>` are the first four hex digits of SHA-512(volume name).

use std::collections::{BTreeMap, HashSet};
use std::io::{Read as _, Write as _};
use std::sync::Arc;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use crate::config::StoreConfig;
use crate::state::{BLOCK, Blocks, VolumeLocks};

/// A failed backup-store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("S3 {op} of {key} failed: {message}")]
    S3 {
        op: &'static str,
        key: String,
        message: String,
    },
    #[error("{key} is not valid JSON: {source}")]
    Decode {
        key: String,
        source: serde_json::Error,
    },
    #[error("backup {backup} of volume {volume} is not in the backup store")]
    MissingBackup { volume: String, backup: String },
    #[error("block {checksum} at offset {offset}: {problem}")]
    Block {
        offset: u64,
        checksum: String,
        problem: String,
    },
}

/// `volume.cfg` (Go field names and order; the last five strings double-encoded).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeCfg {
    pub name: String,
    pub size: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub created_time: String,
    pub last_backup_name: String,
    pub last_backup_at: String,
    pub block_count: String,
    pub backing_image_name: String,
    pub backing_image_checksum: String,
    pub compression_method: String,
    pub storage_class_name: String,
    pub data_engine: String,
}

/// `backups/backup_<name>.cfg`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BackupCfg {
    pub name: String,
    pub volume_name: String,
    pub snapshot_name: String,
    pub snapshot_created_at: String,
    pub created_time: String,
    pub size: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub parameters: Option<BTreeMap<String, String>>,
    pub is_incremental: bool,
    pub compression_method: String,
    pub newly_uploaded_data_size: String,
    pub re_uploaded_data_size: String,
    pub processing_blocks: Option<serde_json::Value>,
    pub blocks: Option<Vec<BlockMapping>>,
    pub single_file: SingleFile,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockMapping {
    pub offset: u64,
    pub block_checksum: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SingleFile {
    pub file_path: String,
}

/// A Go `json:",string"` string field: a JSON string holding a quoted string.
pub fn double_encode(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// The inverse of [`double_encode`]; plain strings pass through.
pub fn double_decode(s: &str) -> String {
    serde_json::from_str::<String>(s).unwrap_or_else(|_| s.to_owned())
}

/// Lowercase hex SHA-512 (aws-lc's assembly: fast even in debug builds, where
/// the pure-Rust sha2 takes ~175 ms per 2 MiB block).
pub fn sha512_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, data).as_ref())
}

/// A block ready for upload: checksum of the raw data and its lz4 frame.
pub struct PreparedBlock {
    pub checksum: String,
    pub compressed: Vec<u8>,
}

/// Checksums and compresses one block.
pub fn prepare_block(offset: u64, data: &[u8]) -> Result<PreparedBlock, StoreError> {
    let checksum = sha512_hex(data)[..64].to_owned();
    let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
    let compressed = enc
        .write_all(data)
        .map_err(|e| e.to_string())
        .and_then(|()| enc.finish().map_err(|e| e.to_string()))
        .map_err(|problem| StoreError::Block {
            offset,
            checksum: checksum.clone(),
            problem: format!("lz4 compression failed: {problem}"),
        })?;
    Ok(PreparedBlock {
        checksum,
        compressed,
    })
}

/// Decompresses a block and checks its checksum.
pub fn open_block(offset: u64, checksum: &str, compressed: &[u8]) -> Result<Vec<u8>, StoreError> {
    let bad = |problem: String| StoreError::Block {
        offset,
        checksum: checksum.to_owned(),
        problem,
    };
    let mut out = Vec::with_capacity(BLOCK as usize);
    lz4_flex::frame::FrameDecoder::new(compressed)
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("lz4 decompression failed: {e}")))?;
    let got = sha512_hex(&out);
    if !got.starts_with(checksum) || checksum.len() != 64 {
        return Err(bad(format!(
            "checksum mismatch: data hashes to {}",
            &got[..64]
        )));
    }
    Ok(out)
}

/// The S3 bucket and prefix of the backup target.
pub struct Store {
    s3: aws_sdk_s3::Client,
    pub cfg: StoreConfig,
    /// Serializes backup, delete and restore reads per volume.
    pub locks: VolumeLocks,
}

impl Store {
    pub fn new(cfg: StoreConfig) -> Store {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let creds = Credentials::new(&cfg.access_key, &cfg.secret_key, None, None, "emulator");
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .endpoint_url(&cfg.endpoint)
            .credentials_provider(creds)
            .force_path_style(true)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .operation_timeout(std::time::Duration::from_secs(60))
                    .build(),
            )
            .build();
        Store {
            s3: aws_sdk_s3::Client::from_conf(conf),
            cfg,
            locks: VolumeLocks::default(),
        }
    }

    /// `s3://<bucket>@<region>/<prefix>/`.
    pub fn target_url(&self) -> String {
        self.cfg.target_url()
    }

    /// The backup URL: target URL + `?backup=<name>&volume=<vol>`.
    pub fn backup_url(&self, backup: &str, volume: &str) -> String {
        format!("{}?backup={backup}&volume={volume}", self.target_url())
    }

    fn root(&self) -> String {
        let p = self.cfg.prefix.trim_matches('/');
        if p.is_empty() {
            "backupstore".to_owned()
        } else {
            format!("{p}/backupstore")
        }
    }

    /// `<prefix>/backupstore/volumes/<h1>/<h2>/<vol>`.
    pub fn volume_dir(&self, volume: &str) -> String {
        let h = sha512_hex(volume.as_bytes());
        format!("{}/volumes/{}/{}/{volume}", self.root(), &h[0..2], &h[2..4])
    }

    pub fn volume_cfg_key(&self, volume: &str) -> String {
        format!("{}/volume.cfg", self.volume_dir(volume))
    }

    pub fn backup_cfg_key(&self, volume: &str, backup: &str) -> String {
        format!("{}/backups/backup_{backup}.cfg", self.volume_dir(volume))
    }

    pub fn block_key(&self, volume: &str, checksum: &str) -> String {
        format!(
            "{}/blocks/{}/{}/{checksum}.blk",
            self.volume_dir(volume),
            &checksum[0..2],
            &checksum[2..4]
        )
    }

    fn s3_err<E>(op: &'static str, key: &str, e: E) -> StoreError
    where
        E: std::error::Error,
    {
        StoreError::S3 {
            op,
            key: key.to_owned(),
            message: DisplayErrorContext(e).to_string(),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let res = self
            .s3
            .get_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .send()
            .await;
        match res {
            Ok(out) => {
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| Self::s3_err("GetObject", key, e))?;
                Ok(Some(body.into_bytes().to_vec()))
            }
            Err(e) => {
                let svc = e.into_service_error();
                if svc.is_no_such_key() {
                    Ok(None)
                } else {
                    Err(Self::s3_err("GetObject", key, svc))
                }
            }
        }
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.s3
            .put_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| Self::s3_err("PutObject", key, e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.s3
            .delete_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Self::s3_err("DeleteObject", key, e))?;
        Ok(())
    }

    /// Every key under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(&self.cfg.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| Self::s3_err("ListObjectsV2", prefix, e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .map(str::to_owned),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(keys)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.get(key).await? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| StoreError::Decode {
                        key: key.to_owned(),
                        source,
                    })
            }
        }
    }

    async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let body = serde_json::to_vec(value).map_err(|source| StoreError::Decode {
            key: key.to_owned(),
            source,
        })?;
        self.put(key, body).await
    }

    pub async fn read_volume_cfg(&self, volume: &str) -> Result<Option<VolumeCfg>, StoreError> {
        self.get_json(&self.volume_cfg_key(volume)).await
    }

    pub async fn write_volume_cfg(&self, cfg: &VolumeCfg) -> Result<(), StoreError> {
        self.put_json(&self.volume_cfg_key(&cfg.name), cfg).await
    }

    pub async fn read_backup_cfg(
        &self,
        volume: &str,
        backup: &str,
    ) -> Result<Option<BackupCfg>, StoreError> {
        self.get_json(&self.backup_cfg_key(volume, backup)).await
    }

    pub async fn write_backup_cfg(&self, cfg: &BackupCfg) -> Result<(), StoreError> {
        self.put_json(&self.backup_cfg_key(&cfg.volume_name, &cfg.name), cfg)
            .await
    }

    /// Checksums of the block objects stored for `volume`.
    pub async fn existing_blocks(&self, volume: &str) -> Result<HashSet<String>, StoreError> {
        let keys = self
            .list(&format!("{}/blocks/", self.volume_dir(volume)))
            .await?;
        Ok(keys
            .iter()
            .filter_map(|k| k.rsplit('/').next())
            .filter_map(|f| f.strip_suffix(".blk"))
            .map(str::to_owned)
            .collect())
    }

    pub async fn put_block(&self, volume: &str, block: &PreparedBlock) -> Result<(), StoreError> {
        self.put(
            &self.block_key(volume, &block.checksum),
            block.compressed.clone(),
        )
        .await
    }

    /// Names of the backups whose `.cfg` exists for `volume`.
    pub async fn backup_names(&self, volume: &str) -> Result<Vec<String>, StoreError> {
        let keys = self
            .list(&format!("{}/backups/", self.volume_dir(volume)))
            .await?;
        Ok(keys
            .iter()
            .filter_map(|k| k.rsplit('/').next())
            .filter_map(|f| f.strip_prefix("backup_"))
            .filter_map(|f| f.strip_suffix(".cfg"))
            .map(str::to_owned)
            .collect())
    }

    /// Reads a backup back: its `.cfg` and every block, decompressed and verified.
    pub async fn read_backup_data(
        &self,
        volume: &str,
        backup: &str,
    ) -> Result<(BackupCfg, Blocks), StoreError> {
        let cfg = self
            .read_backup_cfg(volume, backup)
            .await?
            .filter(|c| !c.created_time.is_empty())
            .ok_or_else(|| StoreError::MissingBackup {
                volume: volume.to_owned(),
                backup: backup.to_owned(),
            })?;
        let mut blocks = Blocks::new();
        for m in cfg.blocks.iter().flatten() {
            if m.block_checksum.len() != 64 {
                return Err(StoreError::Block {
                    offset: m.offset,
                    checksum: m.block_checksum.clone(),
                    problem: "malformed checksum".to_owned(),
                });
            }
            let key = self.block_key(volume, &m.block_checksum);
            let compressed = self.get(&key).await?.ok_or_else(|| StoreError::Block {
                offset: m.offset,
                checksum: m.block_checksum.clone(),
                problem: format!("object {key} is missing"),
            })?;
            let data = open_block(m.offset, &m.block_checksum, &compressed)?;
            blocks.insert(m.offset / BLOCK, Arc::new(data));
        }
        Ok((cfg, blocks))
    }

    /// Deletes a backup as Longhorn does: its `.cfg`, then `volume.cfg`'s last
    /// backup recomputed, then blocks no remaining backup references (unless a
    /// backup is in progress), then `BlockCount`. Returns the new `volume.cfg`.
    pub async fn delete_backup(
        &self,
        volume: &str,
        backup: &str,
    ) -> Result<Option<VolumeCfg>, StoreError> {
        self.delete(&self.backup_cfg_key(volume, backup)).await?;
        let mut remaining = Vec::new();
        for name in self.backup_names(volume).await? {
            if let Some(cfg) = self.read_backup_cfg(volume, &name).await? {
                remaining.push(cfg);
            }
        }
        let in_progress = remaining.iter().any(|b| b.created_time.is_empty());
        let existing = self.existing_blocks(volume).await?;
        let mut live = existing.len();
        if !in_progress {
            let referenced: HashSet<&str> = remaining
                .iter()
                .flat_map(|b| b.blocks.iter().flatten())
                .map(|m| m.block_checksum.as_str())
                .collect();
            for checksum in existing.iter().filter(|c| !referenced.contains(c.as_str())) {
                self.delete(&self.block_key(volume, checksum)).await?;
                live -= 1;
            }
        }
        let Some(mut vcfg) = self.read_volume_cfg(volume).await? else {
            return Ok(None);
        };
        let newest = remaining
            .iter()
            .filter(|b| !b.created_time.is_empty())
            .max_by(|a, b| a.snapshot_created_at.cmp(&b.snapshot_created_at));
        match newest {
            Some(b) => {
                vcfg.last_backup_name = b.name.clone();
                vcfg.last_backup_at = b.snapshot_created_at.clone();
            }
            None => {
                vcfg.last_backup_name = String::new();
                vcfg.last_backup_at = String::new();
            }
        }
        vcfg.block_count = live.to_string();
        self.write_volume_cfg(&vcfg).await?;
        Ok(Some(vcfg))
    }

    /// Deletes everything stored for `volume` (backup volume deletion).
    pub async fn delete_volume(&self, volume: &str) -> Result<(), StoreError> {
        for key in self.list(&format!("{}/", self.volume_dir(volume))).await? {
            self.delete(&key).await?;
        }
        Ok(())
    }

    /// Every volume in the store with its completed backups (a target sync).
    pub async fn scan(&self) -> Result<Vec<(VolumeCfg, Vec<BackupCfg>)>, StoreError> {
        let keys = self.list(&format!("{}/volumes/", self.root())).await?;
        let mut out = Vec::new();
        for key in keys.iter().filter(|k| k.ends_with("/volume.cfg")) {
            let Some(name) = key
                .strip_suffix("/volume.cfg")
                .and_then(|d| d.rsplit('/').next())
            else {
                continue;
            };
            if let Some(found) = self.scan_volume(name).await? {
                out.push(found);
            }
        }
        Ok(out)
    }

    /// One volume's `volume.cfg` and completed backups (a backup volume sync).
    pub async fn scan_volume(
        &self,
        volume: &str,
    ) -> Result<Option<(VolumeCfg, Vec<BackupCfg>)>, StoreError> {
        let Some(vcfg) = self.read_volume_cfg(volume).await? else {
            return Ok(None);
        };
        let mut backups = Vec::new();
        for name in self.backup_names(volume).await? {
            if let Some(b) = self.read_backup_cfg(volume, &name).await?
                && !b.created_time.is_empty()
            {
                backups.push(b);
            }
        }
        Ok(Some((vcfg, backups)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_encoding_round_trips() {
        assert_eq!(double_encode("lz4"), "\"lz4\"");
        assert_eq!(double_encode(""), "\"\"");
        assert_eq!(double_decode("\"lz4\""), "lz4");
        assert_eq!(double_decode("gzip"), "gzip");
    }

    #[test]
    fn volume_dir_uses_sha512_of_the_name() {
        let store = Store::new(StoreConfig {
            endpoint: "http://127.0.0.1:1".into(),
            region: "us-east-1".into(),
            bucket: "b".into(),
            prefix: "lh".into(),
            access_key: "a".into(),
            secret_key: "s".into(),
        });
        assert_eq!(
            store.volume_dir("pvc-0123abcd-test"),
            "lh/backupstore/volumes/a7/9b/pvc-0123abcd-test"
        );
        assert_eq!(
            store.backup_url("backup-1", "v"),
            "s3://b@us-east-1/lh/?backup=backup-1&volume=v"
        );
    }

    #[test]
    fn blocks_round_trip_and_detect_corruption() {
        let data = vec![7u8; BLOCK as usize];
        let b = prepare_block(0, &data).unwrap();
        assert_eq!(b.checksum.len(), 64);
        assert_eq!(open_block(0, &b.checksum, &b.compressed).unwrap(), data);
        let other = prepare_block(0, &[1u8; 16]).unwrap();
        assert!(open_block(0, &b.checksum, &other.compressed).is_err());
    }
}
