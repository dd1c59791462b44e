//! Typed names at the boundary: policy names, Kubernetes namespaces and label
//! selectors, each validated once when parsed so no bare strings cross modules.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a name was refused; the message says what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{value:?} is not a valid {what}: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: String,
    },
}

fn invalid(what: &'static str, value: &str, why: impl Into<String>) -> NameError {
    NameError::Invalid {
        what,
        value: value.to_owned(),
        why: why.into(),
    }
}

/// Checks an RFC 1123 DNS label (what Kubernetes requires of namespace names):
/// lower-case letters, digits and '-', starting and ending with a letter or digit.
fn check_dns_label(what: &'static str, s: &str, max: usize) -> Result<(), NameError> {
    let rule = format!(
        "use 1-{max} characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
    );
    if s.is_empty() || s.len() > max {
        return Err(invalid(what, s, rule));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let first = s.chars().next().is_some_and(alnum);
    let last = s.chars().last().is_some_and(alnum);
    if !s.chars().all(ok_char) || !first || !last {
        return Err(invalid(what, s, rule));
    }
    Ok(())
}

macro_rules! string_name {
    ($(#[$m:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The validated name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                check_dns_label($what, s, $max)?;
                Ok(Self(s.to_owned()))
            }
        }
        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                s.parse()
            }
        }
        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_name!(
    /// A protection policy's name. A DNS label of at most 40 characters, so
    /// that drill namespaces `dr-drill-<policy>-<8 hex>` stay within 63.
    PolicyName,
    "policy name",
    40
);
string_name!(
    /// A Kubernetes namespace name (RFC 1123 label, at most 63 characters).
    Namespace,
    "namespace",
    63
);

/// A Kubernetes label selector in its string form (`a=b,c!=d,e,!f,g in (x,y)`),
/// checked for syntax. The empty selector selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Selector(String);

impl Selector {
    /// The selector as Kubernetes expects it in `labelSelector=`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_label_key(sel: &str, key: &str) -> Result<(), NameError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty() && p.len() <= 253 && p.split('.').all(|l| check_dns_label("x", l, 63).is_ok())
    });
    if name_ok && prefix_ok {
        Ok(())
    } else {
        Err(invalid(
            "label selector",
            sel,
            format!(
                "label key {key:?} must be [prefix/]name, name of 1-63 of A-Z a-z 0-9 - _ . starting and ending alphanumeric"
            ),
        ))
    }
}

fn check_label_value(sel: &str, v: &str) -> Result<(), NameError> {
    let ok = v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "label selector",
            sel,
            format!(
                "label value {v:?} must be at most 63 of A-Z a-z 0-9 - _ . starting and ending alphanumeric"
            ),
        ))
    }
}

/// Splits on commas that are not inside `( … )`.
fn split_requirements(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

impl FromStr for Selector {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Ok(Self(String::new()));
        }
        for req in split_requirements(trimmed) {
            let req = req.trim();
            if req.is_empty() {
                return Err(invalid(
                    "label selector",
                    s,
                    "empty requirement; use key=value[,key2!=value2]",
                ));
            }
            let words: Vec<&str> = req.split_whitespace().collect();
            if let Some((k, v)) = req.split_once("!=") {
                check_label_key(s, k.trim())?;
                check_label_value(s, v.trim())?;
            } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
                check_label_key(s, k.trim())?;
                check_label_value(s, v.trim())?;
            } else if words.len() >= 2 && matches!(words[1], "in" | "notin") {
                check_label_key(s, words[0])?;
                let rest = req[req.find('(').unwrap_or(req.len())..].trim();
                let inner = rest
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| invalid("label selector", s, "use key in (a,b)"))?;
                for v in inner.split(',') {
                    check_label_value(s, v.trim())?;
                }
            } else if let Some(k) = req.strip_prefix('!') {
                check_label_key(s, k.trim())?;
            } else if words.len() == 1 {
                check_label_key(s, req)?;
            } else {
                return Err(invalid(
                    "label selector",
                    s,
                    "use key=value, key!=value, key, !key or key in (a,b), joined by commas",
                ));
            }
        }
        Ok(Self(trimmed.to_owned()))
    }
}

impl TryFrom<String> for Selector {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        s.parse()
    }
}
impl From<Selector> for String {
    fn from(s: Selector) -> String {
        s.0
    }
}
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Longhorn volume name (e.g. `pvc-0b6c…`): 1–253 of a-z, 0-9, '-', '.', '_',
/// starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VolumeName(String);

impl VolumeName {
    /// The validated name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for VolumeName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_')
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(
                "volume name",
                s,
                "use 1-253 of a-z, 0-9, '-', '.', '_', starting with a letter or digit",
            ))
        }
    }
}
impl TryFrom<String> for VolumeName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        s.parse()
    }
}
impl From<VolumeName> for String {
    fn from(n: VolumeName) -> String {
        n.0
    }
}
impl fmt::Display for VolumeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A kind named in a policy's `kinds: {include, exclude}`: a kind
/// (`Deployment`), a resource (`deployments`), or either qualified by its API
/// group (`deployments.apps`, `widgets.example.com`). Without a group it
/// names the kind in every group; names match case-insensitively, as
/// `kubectl get` matches them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KindRef(String);

impl KindRef {
    /// The entry as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Whether this entry names the resource `plural` (kind `kind`) of API
    /// group `group` (`""` for the core group).
    pub fn matches(&self, kind: &str, plural: &str, group: &str) -> bool {
        let (name, want_group) = match self.0.split_once('.') {
            Some((n, g)) => (n, Some(g)),
            None => (self.0.as_str(), None),
        };
        (name.eq_ignore_ascii_case(kind) || name.eq_ignore_ascii_case(plural))
            && want_group.is_none_or(|g| g.eq_ignore_ascii_case(group))
    }
}

impl FromStr for KindRef {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let rule = "use a kind (Deployment), a resource (deployments) or either with its API group (deployments.apps, widgets.example.com)";
        let (name, group) = match s.split_once('.') {
            Some((n, g)) => (n, Some(g)),
            None => (s, None),
        };
        let name_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric())
            && name.len() <= 63;
        let group_ok = group.is_none_or(|g| {
            g.len() <= 253
                && g.split('.').all(|l| {
                    !l.is_empty()
                        && l.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        });
        if !name_ok || !group_ok {
            return Err(invalid("kind", s, rule));
        }
        Ok(KindRef(s.to_owned()))
    }
}
impl TryFrom<String> for KindRef {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        s.parse()
    }
}
impl From<KindRef> for String {
    fn from(k: KindRef) -> String {
        k.0
    }
}
impl fmt::Display for KindRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for ok in ["a", "gic-wesago", "x1", &"a".repeat(63)] {
            assert!(ok.parse::<Namespace>().is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            let e = bad.parse::<Namespace>().unwrap_err().to_string();
            assert!(e.contains("namespace"), "{e}");
        }
    }

    #[test]
    fn kind_refs() {
        let k = |s: &str| s.parse::<KindRef>().unwrap();
        assert!(k("Deployment").matches("Deployment", "deployments", "apps"));
        assert!(k("deployments").matches("Deployment", "deployments", "apps"));
        assert!(k("deployments.apps").matches("Deployment", "deployments", "apps"));
        assert!(!k("deployments.apps").matches("Deployment", "deployments", "apps.example.com"));
        assert!(k("widgets.example.com").matches("Widget", "widgets", "example.com"));
        assert!(k("configmaps").matches("ConfigMap", "configmaps", ""));
        for bad in [
            "",
            "Deploy ment",
            "x.Bad_Group",
            ".apps",
            "a.",
            "-x",
            "deployments.-a",
        ] {
            let e = bad.parse::<KindRef>().unwrap_err().to_string();
            assert!(e.contains("deployments.apps"), "{bad}: {e}");
        }
    }

    #[test]
    fn policy_names_leave_room_for_drill_namespaces() {
        assert!("a".repeat(40).parse::<PolicyName>().is_ok());
        assert!("a".repeat(41).parse::<PolicyName>().is_err());
    }

    #[test]
    fn selectors() {
        for ok in [
            "",
            "app=web",
            "app.kubernetes.io/part-of=wesago",
            "a=b,c!=d",
            "tier in (db, cache)",
            "!legacy",
            "backup",
            "a==b",
        ] {
            assert!(ok.parse::<Selector>().is_ok(), "{ok}");
        }
        for bad in ["a=b,", "=x", "a=b c", "a=-x", "Tier in db", "a b c"] {
            assert!(bad.parse::<Selector>().is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// The rule of RFC 1123 labels, written out independently of the parser.
    fn is_label(s: &str, max: usize) -> bool {
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= max
            && b.iter().all(|c| alnum(c) || *c == b'-')
            && b.first().is_some_and(alnum)
            && b.last().is_some_and(alnum)
    }

    fn name_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,70}",
            "[a-z0-9-]{0,70}",
            "[a-z0-9][a-z0-9-]{0,61}[a-z0-9]",
            "[a-zA-Z0-9._ -]{0,8}",
        ]
    }

    fn label_part() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?"
    }

    /// A syntactically valid selector requirement.
    fn requirement() -> impl Strategy<Value = String> {
        let key = (
            prop::option::of("[a-z0-9]{1,5}(\\.[a-z0-9]{1,5}){0,2}"),
            label_part(),
        )
            .prop_map(|(p, n)| p.map_or(n.clone(), |p| format!("{p}/{n}")));
        let value = prop_oneof![Just(String::new()), label_part()];
        (key, 0..6usize, prop::collection::vec(value, 1..4)).prop_map(|(k, op, vs)| match op {
            0 => format!("{k}={}", vs[0]),
            1 => format!("{k}=={}", vs[0]),
            2 => format!("{k} != {}", vs[0]),
            3 => format!("{k} in ({})", vs.join(", ")),
            4 => format!("{k} notin ({})", vs.join(",")),
            _ => format!("!{k}"),
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Names are accepted exactly when they are labels, unchanged;
        /// refusals quote the name and say what is accepted.
        #[test]
        fn names_are_labels_kept_as_given(s in name_text()) {
            for (max, got) in [
                (40, s.parse::<PolicyName>().map(|n| n.to_string())),
                (63, s.parse::<Namespace>().map(|n| n.to_string())),
            ] {
                match got {
                    Ok(n) => {
                        prop_assert!(is_label(&s, max), "{s:?} accepted");
                        prop_assert_eq!(n, s.clone());
                    }
                    Err(e) => {
                        prop_assert!(!is_label(&s, max), "{s:?} refused: {e}");
                        let text = e.to_string();
                        prop_assert!(text.contains(&format!("{s:?}")), "{text}");
                        let rule = format!("use 1-{max} characters of a-z, 0-9 and '-'");
                        prop_assert!(text.contains(&rule), "{text}");
                    }
                }
            }
        }

        /// Volume names: accepted unchanged, or refused by name with the rule.
        #[test]
        fn volume_names_are_kept_as_given(s in prop_oneof!["\\PC{0,30}", "[a-z0-9._-]{0,260}"]) {
            match s.parse::<VolumeName>() {
                Ok(v) => prop_assert_eq!(v.as_str(), s.as_str()),
                Err(e) => {
                    let text = e.to_string();
                    prop_assert!(text.contains(&format!("{s:?}")) && text.contains("use 1-253"), "{text}");
                }
            }
        }

        /// Any text as a selector: kept as given (trimmed), or refused quoting it.
        #[test]
        fn any_selector_text_is_kept_or_refused_by_name(s in prop_oneof![
            "\\PC{0,40}",
            "[a-z=!,() ]{0,30}",
            "[a-z]{1,4}( (in|notin) )?[(),a-z ]{0,12}",
        ]) {
            match s.parse::<Selector>() {
                Ok(sel) => prop_assert_eq!(sel.as_str(), s.trim()),
                Err(e) => {
                    let text = e.to_string();
                    prop_assert!(text.contains(&format!("{s:?}")), "{text}");
                    prop_assert!(text.contains("is not a valid label selector"), "{text}");
                }
            }
        }

        /// Every well-formed selector is accepted and kept as written.
        #[test]
        fn well_formed_selectors_are_accepted(reqs in prop::collection::vec(requirement(), 1..4)) {
            let s = reqs.join(",");
            match s.parse::<Selector>() {
                Ok(sel) => prop_assert_eq!(sel.as_str(), s.trim()),
                Err(e) => prop_assert!(false, "{s:?}: {e}"),
            }
        }
    }
}
