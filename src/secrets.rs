//! Secrets that survive the cluster: a policy's Secrets sealed with
//! [age](https://age-encryption.org) to the recipients the policy names, so
//! a recovery point in the bucket holds their values without anyone who
//! reads the bucket being able to read them; opened at restore with the
//! operator's identity, kept outside the cluster.
//!
//! Sealed text is age's ASCII-armored format (`-----BEGIN AGE ENCRYPTED
//! FILE-----`), X25519 recipients (`age1…`) only: the `age` CLI opens it
//! (`age -d -i key.txt`), and `age-keygen` makes the identity files dr reads
//! (`AGE-SECRET-KEY-1…` lines, `#` comments and blank lines ignored).
//! Pure apart from reading the identity file.

use age::secrecy::ExposeSecret as _;
use serde_json::Value;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("no recipients to seal to; name at least one in the policy's secrets.recipients")]
    NoRecipients,
    #[error("cannot seal the Secrets: {0}")]
    Seal(String),
    #[error("cannot read the secrets identity file {}: {source}", path.display())]
    ReadIdentity {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: line {line} is not an age X25519 identity; use a file made by age-keygen (lines AGE-SECRET-KEY-1…, # comments)",
        path.display()
    )]
    BadIdentity { path: PathBuf, line: usize },
    #[error(
        "{} holds no identity; use a file made by age-keygen (lines AGE-SECRET-KEY-1…)",
        path.display()
    )]
    EmptyIdentity { path: PathBuf },
    #[error("the identity {} is not one the Secrets were sealed to", path.display())]
    WrongIdentity { path: PathBuf },
    #[error("the sealed Secrets are damaged or were altered ({0}); they cannot be opened")]
    Damaged(String),
    #[error("the sealed Secrets open to something that is not a list of Secrets: {0}")]
    NotSecrets(String),
}

/// An X25519 age recipient (`age1…`), validated.
#[derive(Clone, PartialEq, Eq)]
pub struct Recipient(age::x25519::Recipient);

/// What [`Recipient`] accepts, for errors.
pub const RECIPIENT_FORM: &str =
    "use an age X25519 recipient, \"age1\" and 58 characters, as age-keygen prints it";

impl FromStr for Recipient {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.trim()
            .parse::<age::x25519::Recipient>()
            .map(Recipient)
            .map_err(|_| format!("{s:?} is not an age recipient; {RECIPIENT_FORM}"))
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.0)
    }
}

impl TryFrom<String> for Recipient {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Recipient> for String {
    fn from(r: Recipient) -> String {
        r.to_string()
    }
}

impl serde::Serialize for Recipient {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Recipient {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The operator's identity: the X25519 keys of an age identity file. Its
/// `Debug` shows the path only.
#[derive(Clone)]
pub struct Identity {
    path: PathBuf,
    keys: Vec<age::x25519::Identity>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.path.display())
    }
}

impl Identity {
    /// Reads an identity file (as `age-keygen -o FILE` writes it).
    pub fn load(path: &Path) -> Result<Identity, SecretsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretsError::ReadIdentity {
            path: path.to_owned(),
            source,
        })?;
        Identity::parse(&text, path)
    }

    /// Parses identity-file text; `path` names it in errors. Lines that are
    /// not keys are refused by number, never echoed (they may be secret).
    pub fn parse(text: &str, path: &Path) -> Result<Identity, SecretsError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key =
                line.parse::<age::x25519::Identity>()
                    .map_err(|_| SecretsError::BadIdentity {
                        path: path.to_owned(),
                        line: i + 1,
                    })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(SecretsError::EmptyIdentity {
                path: path.to_owned(),
            });
        }
        Ok(Identity {
            path: path.to_owned(),
            keys,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recipients of its keys (what a policy names to seal to it).
    pub fn recipients(&self) -> Vec<Recipient> {
        self.keys.iter().map(|k| Recipient(k.to_public())).collect()
    }

    /// A new identity (one key) and its file text, for tests and demos.
    pub fn generate(path: &Path) -> (Identity, String) {
        let key = age::x25519::Identity::generate();
        let text = format!(
            "# public key: {}\n{}\n",
            key.to_public(),
            key.to_string().expose_secret()
        );
        (
            Identity {
                path: path.to_owned(),
                keys: vec![key],
            },
            text,
        )
    }
}

/// Encrypts `plaintext` to every recipient, as armored age text.
pub fn seal(plaintext: &[u8], recipients: &[Recipient]) -> Result<String, SecretsError> {
    if recipients.is_empty() {
        return Err(SecretsError::NoRecipients);
    }
    let seal_err = |e: &dyn fmt::Display| SecretsError::Seal(e.to_string());
    let enc = age::Encryptor::with_recipients(recipients.iter().map(|r| &r.0 as _))
        .map_err(|e| seal_err(&e))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| seal_err(&e))?;
    let mut w = enc.wrap_output(armor).map_err(|e| seal_err(&e))?;
    w.write_all(plaintext).map_err(|e| seal_err(&e))?;
    w.finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| seal_err(&e))?;
    String::from_utf8(out).map_err(|e| seal_err(&e))
}

/// Decrypts armored (or binary) age text with `identity`.
pub fn open(sealed: &str, identity: &Identity) -> Result<Vec<u8>, SecretsError> {
    let damaged = |e: &dyn fmt::Display| SecretsError::Damaged(e.to_string());
    let reader = age::armor::ArmoredReader::new(sealed.as_bytes());
    let dec = age::Decryptor::new(reader).map_err(|e| damaged(&e))?;
    let mut r = dec
        .decrypt(identity.keys.iter().map(|k| k as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => SecretsError::WrongIdentity {
                path: identity.path.clone(),
            },
            other => damaged(&other),
        })?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| damaged(&e))?;
    Ok(out)
}

/// Seals whole Secret objects (data intact) as one armored text.
pub fn seal_objects(secrets: &[Value], recipients: &[Recipient]) -> Result<String, SecretsError> {
    let json = serde_json::to_vec(secrets).map_err(|e| SecretsError::Seal(e.to_string()))?;
    seal(&json, recipients)
}

/// Opens what [`seal_objects`] sealed: the Secret objects.
pub fn open_objects(sealed: &str, identity: &Identity) -> Result<Vec<Value>, SecretsError> {
    let json = open(sealed, identity)?;
    let v: Vec<Value> =
        serde_json::from_slice(&json).map_err(|e| SecretsError::NotSecrets(e.to_string()))?;
    if let Some(bad) = v.iter().find(|o| o["kind"] != "Secret") {
        return Err(SecretsError::NotSecrets(format!(
            "an object of kind {} is among them",
            bad["kind"]
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(name: &str) -> Identity {
        Identity::generate(Path::new(name)).0
    }

    fn secret() -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "postgres-credentials"},
               "data": {"password": "aHVudGVyMi1zM2NyZXQ="}})
    }

    #[test]
    fn sealed_secrets_open_with_the_identity_and_hold_no_plaintext() {
        let (a, b) = (id("a.txt"), id("b.txt"));
        let to = [a.recipients(), b.recipients()].concat();
        let sealed = seal_objects(&[secret()], &to).unwrap();
        assert!(
            sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
            "{sealed}"
        );
        for plain in [
            "aHVudGVyMi1zM2NyZXQ",
            "hunter2",
            "postgres-credentials",
            "password",
        ] {
            assert!(!sealed.contains(plain), "{plain} is in the sealed text");
        }
        // Every recipient opens it.
        assert_eq!(open_objects(&sealed, &a).unwrap(), vec![secret()]);
        assert_eq!(open_objects(&sealed, &b).unwrap(), vec![secret()]);
    }

    #[test]
    fn a_wrong_identity_is_named() {
        let sealed = seal_objects(&[secret()], &id("a.txt").recipients()).unwrap();
        let e = open_objects(&sealed, &id("other.txt")).unwrap_err();
        assert!(matches!(e, SecretsError::WrongIdentity { .. }), "{e:?}");
        assert!(e.to_string().contains("other.txt"), "{e}");
    }

    #[test]
    fn tampered_text_is_refused() {
        let a = id("a.txt");
        let sealed = seal(b"some secret bytes, long enough", &a.recipients()).unwrap();
        // Flip one character of the armored payload (not the header lines).
        let mut lines: Vec<String> = sealed.lines().map(str::to_owned).collect();
        let last_body = lines.len() - 2;
        let line = &mut lines[last_body];
        let c = if line.starts_with('A') { 'B' } else { 'A' };
        line.replace_range(0..1, &c.to_string());
        let tampered = lines.join("\n") + "\n";
        let e = open(&tampered, &a).unwrap_err();
        assert!(matches!(e, SecretsError::Damaged(_)), "{e:?}");
        let e = open("not age at all", &a).unwrap_err();
        assert!(matches!(e, SecretsError::Damaged(_)), "{e:?}");
    }

    #[test]
    fn no_recipients_is_refused() {
        assert!(matches!(seal(b"x", &[]), Err(SecretsError::NoRecipients)));
    }

    #[test]
    fn identity_files_as_age_keygen_writes_them() {
        let (a, text) = Identity::generate(Path::new("k.txt"));
        let back =
            Identity::parse(&format!("# created: now\n\n{text}"), Path::new("k.txt")).unwrap();
        assert_eq!(back.recipients(), a.recipients());
        assert!(format!("{back:?}").contains("k.txt"));
        assert!(!format!("{back:?}").contains("AGE-SECRET-KEY"));
        let e = Identity::parse("# x\nAGE-SECRET-KEY-1NOPE\n", Path::new("k.txt")).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(!e.to_string().contains("NOPE"), "{e}");
        let e = Identity::parse("# only comments\n", Path::new("k.txt")).unwrap_err();
        assert!(matches!(e, SecretsError::EmptyIdentity { .. }), "{e:?}");
    }

    #[test]
    fn recipients_parse_or_say_what_is_accepted() {
        let r = id("a").recipients().remove(0);
        let s = r.to_string();
        assert!(s.starts_with("age1"));
        assert_eq!(s.parse::<Recipient>().unwrap(), r);
        let e = "age1nope".parse::<Recipient>().unwrap_err();
        assert!(e.contains("age1nope") && e.contains("X25519"), "{e}");
        assert!("ssh-ed25519 AAAA".parse::<Recipient>().is_err());
    }
}
