//! Which Longhorn dr talks to: the manager's version, read from its
//! read-only setting `current-longhorn-version` (longhorn-manager
//! types/setting.go `SettingNameCurrentLonghornVersion`, default
//! `meta.Version`), and whether dr supports it.
//!
//! dr needs v1.8.1 or later: it lists a volume's backups with the
//! `backupListByVolume` action, added in v1.8.1 (backported from v1.9.0,
//! longhorn/longhorn#10501); v1.8.0 has only `backupList` by backup volume,
//! whose names are random there. Earlier versions keep backup targets as
//! settings, not as `backuptargets` resources.

use super::{LonghornClient, LonghornError, Result};
use reqwest::Method;
use serde::Deserialize;
use std::fmt;

/// The oldest Longhorn dr supports.
pub const MINIMUM_VERSION: &str = "v1.8.1";
const MINIMUM: (u64, u64, u64) = (1, 8, 1);

/// A manager's version, as its setting says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerVersion {
    /// The setting's value, e.g. `v1.12.1`.
    pub text: String,
    /// major, minor, patch; `None` for a build that names no release
    /// (e.g. `master-head`), which dr cannot judge.
    pub release: Option<(u64, u64, u64)>,
}

impl ManagerVersion {
    /// Reads `v1.12.1`, `1.8.1`, `v1.8.1-rc3` (a pre-release counts as its
    /// release). Each part must be plain digits that fit a `u64`: `v1.+8.1`,
    /// `vv1.8.1` or a 30-digit part name no release (never a wrapped or
    /// guessed one).
    pub fn parse(text: &str) -> ManagerVersion {
        let trimmed = text.trim();
        let core = trimmed.strip_prefix('v').unwrap_or(trimmed);
        let core = core.split(['-', '+']).next().unwrap_or_default();
        let part = |n: &str| {
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                n.parse::<u64>().ok()
            } else {
                None
            }
        };
        let nums: Vec<Option<u64>> = core.split('.').map(part).collect();
        let release = match nums.as_slice() {
            [Some(a), Some(b), Some(c)] => Some((*a, *b, *c)),
            _ => None,
        };
        ManagerVersion {
            text: text.trim().to_owned(),
            release,
        }
    }

    /// Whether dr supports it: `Some(false)` only for a release older than
    /// [`MINIMUM_VERSION`]; `None` when the version names no release.
    pub fn supported(&self) -> Option<bool> {
        self.release.map(|r| r >= MINIMUM)
    }
}

impl fmt::Display for ManagerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Deserialize)]
struct Setting {
    #[serde(default)]
    value: String,
}

impl LonghornClient {
    /// A setting's value (`GET /v1/settings/{name}`, read with retries);
    /// `None` when this manager has no such setting.
    pub async fn setting(&self, name: &str) -> Result<Option<String>> {
        self.read(|| self.setting_once(name)).await
    }

    async fn setting_once(&self, name: &str) -> Result<Option<String>> {
        let path = format!("/v1/settings/{name}");
        let got: Option<Setting> = self
            .json("getSetting", Method::GET, self.url(&path, None), None)
            .await?;
        Ok(got.map(|s| s.value))
    }

    /// The manager's version (`GET /v1/settings/current-longhorn-version`),
    /// read once, without retries when `once`.
    async fn version(&self, once: bool) -> Result<ManagerVersion> {
        let name = "current-longhorn-version";
        let value = if once {
            self.setting_once(name).await?
        } else {
            self.setting(name).await?
        };
        let value = value.ok_or(LonghornError::NotFound {
            what: "setting",
            name: name.into(),
        })?;
        Ok(ManagerVersion::parse(&value))
    }

    /// The manager's version (`GET /v1/settings/current-longhorn-version`).
    pub async fn manager_version(&self) -> Result<ManagerVersion> {
        self.version(false).await
    }

    /// The manager's version if dr supports it; an older release is
    /// [`LonghornError::Unsupported`]. A version that names no release is
    /// accepted with a warning: the routes dr calls then say for themselves
    /// ([`LonghornError::NoSuchRoute`]).
    pub async fn check_supported(&self) -> Result<ManagerVersion> {
        Self::judge(self.version(false).await?)
    }

    /// [`Self::check_supported`] with one attempt only, for a start that
    /// must not wait on an unreachable manager.
    pub async fn check_supported_once(&self) -> Result<ManagerVersion> {
        Self::judge(self.version(true).await?)
    }

    fn judge(v: ManagerVersion) -> Result<ManagerVersion> {
        match v.supported() {
            Some(true) => Ok(v),
            Some(false) => Err(LonghornError::Unsupported { version: v.text }),
            None => {
                tracing::warn!(version = %v, "Longhorn names no release; dr cannot tell whether it is supported");
                Ok(v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_v1_8_1_on_are_supported() {
        let cases = [
            ("v1.12.1", Some(true)),
            ("v1.9.0", Some(true)),
            ("v1.8.1", Some(true)),
            ("v1.8.1-rc3", Some(true)),
            ("1.10.0", Some(true)),
            ("v2.0.0", Some(true)),
            ("v1.8.0", Some(false)),
            ("v1.7.3", Some(false)),
            ("v1.8", None),
            ("master-head", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(ManagerVersion::parse(text).supported(), want, "{text}");
        }
    }

    #[test]
    fn the_refusal_names_the_version_and_the_minimum() {
        let e = LonghornError::Unsupported {
            version: "v1.8.0".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("v1.8.0") && text.contains("v1.8.1 or later"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A release with any numbers and any pre-release or build suffix
        /// reads as exactly those numbers, and is judged against v1.8.1.
        #[test]
        fn releases_read_exactly(
            v in any::<bool>(),
            a in prop_oneof![0u64..3, any::<u64>()],
            b in prop_oneof![0u64..20, any::<u64>()],
            c in prop_oneof![0u64..5, any::<u64>()],
            suffix in "([-+][a-z0-9.]{0,8})?",
        ) {
            let text = format!("{}{a}.{b}.{c}{suffix}", if v { "v" } else { "" });
            let got = ManagerVersion::parse(&format!(" {text}\n"));
            prop_assert_eq!(&got.text, &text);
            prop_assert_eq!(got.release, Some((a, b, c)));
            prop_assert_eq!(got.supported(), Some((a, b, c) >= MINIMUM));
        }

        /// Any text: kept as given (trimmed); a release only when it
        /// starts with three plain numbers.
        #[test]
        fn any_text_is_kept_and_judged_only_when_it_names_a_release(s in "\\PC{0,24}|v?[0-9+.-]{0,30}") {
            let got = ManagerVersion::parse(&s);
            prop_assert_eq!(got.text.as_str(), s.trim());
            prop_assert_eq!(got.to_string(), s.trim());
            if let Some((a, b, c)) = got.release {
                let core = s.trim().strip_prefix('v').unwrap_or(s.trim());
                let parts: Vec<&str> = core.split(['-', '+']).next().unwrap_or("").split('.').collect();
                prop_assert!(parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())), "{s:?}");
                let nums: Vec<Option<u64>> = parts.iter().map(|p| p.parse().ok()).collect();
                prop_assert_eq!(nums, vec![Some(a), Some(b), Some(c)], "{:?}", s);
            }
        }
    }

    #[test]
    fn odd_numbers_name_no_release() {
        for text in [
            "v1.+8.1",
            "vv1.8.1",
            "v1.8.99999999999999999999",
            "v1..8",
            "v1.8.1.2",
        ] {
            assert_eq!(ManagerVersion::parse(text).release, None, "{text}");
        }
    }
}
