//! SOPS-encrypted manifests (pure): a file whose top-level `sops` metadata names age recipients
//! is decrypted in memory with the identities a sync is given. SOPS's file format is written
//! here; the cryptography is the `age`, `aes-gcm` and `sha2` crates'.
//!
//! What SOPS does, and this follows: a random 32-byte data key, age-encrypted (armored) to each
//! recipient under `sops.age`; every value the rules select (`encrypted_regex`,
//! `unencrypted_regex`, `encrypted_suffix`, `unencrypted_suffix`; all by default) is
//! `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`, AES-256-GCM with a 32-byte IV and, as
//! additional data, the keys on its path joined by `:` with a trailing `:`. The MAC is the
//! upper-case hex SHA-512 of every value in document order (only the encrypted ones with
//! `mac_only_encrypted`), encrypted with `sops.lastmodified` as additional data.

use std::collections::HashMap;
use std::io::Read as _;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine as _;
use sha2::Digest as _;
use yaml_rust2::Yaml;

/// The age identities a sync decrypts with. `Debug` never shows them.
#[derive(Default)]
pub(crate) struct Keys(Vec<age::x25519::Identity>);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} identities)", self.0.len())
    }
}

impl Keys {
    /// The identities in age identity files (`AGE-SECRET-KEY-1…` lines; comments and blank
    /// lines skipped). `name` says where a bad line is, never what it holds.
    ///
    /// # Errors
    /// A line that is not an age identity.
    pub(crate) fn add(&mut self, name: &str, text: &str) -> Result<(), String> {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let identity = line
                .parse::<age::x25519::Identity>()
                .map_err(|_| format!("{name}: line {} is not an age identity", i + 1))?;
            self.0.push(identity);
        }
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether a file's text looks encrypted by SOPS: it has `sops` metadata with a MAC and at
/// least one encrypted value. Decryption checks the rest.
pub(crate) fn is_encrypted(text: &str) -> bool {
    text.contains("sops") && text.contains("mac") && text.contains("ENC[AES256_GCM,")
}

/// The metadata SOPS writes under `sops`.
struct Metadata {
    mac: String,
    last_modified: String,
    recipients: Vec<(String, String)>,
    encrypted_regex: Option<regex::Regex>,
    unencrypted_regex: Option<regex::Regex>,
    encrypted_suffix: Option<String>,
    unencrypted_suffix: String,
    mac_only_encrypted: bool,
}

impl Metadata {
    fn read(sops: &Yaml) -> Result<Self, String> {
        let text = |key: &str| sops[key].as_str().map(str::to_owned);
        let pattern = |key: &str| {
            text(key)
                .map(|p| {
                    regex::Regex::new(&p).map_err(|e| format!("sops.{key} {p:?} is invalid: {e}"))
                })
                .transpose()
        };
        if text("encrypted_comment_regex").is_some() || text("unencrypted_comment_regex").is_some()
        {
            return Err(
                "its values are chosen by comments (encrypted_comment_regex), which berth does \
                 not read; encrypt by key (encrypted_regex, encrypted_suffix) instead"
                    .to_owned(),
            );
        }
        let recipients = sops["age"]
            .as_vec()
            .map(|list| {
                list.iter()
                    .filter_map(|a| {
                        Some((
                            a["recipient"].as_str()?.to_owned(),
                            a["enc"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            mac: text("mac").ok_or("its sops metadata has no mac")?,
            last_modified: text("lastmodified").ok_or("its sops metadata has no lastmodified")?,
            recipients,
            encrypted_regex: pattern("encrypted_regex")?,
            unencrypted_regex: pattern("unencrypted_regex")?,
            encrypted_suffix: text("encrypted_suffix"),
            // SOPS's default when a file sets no rule
            unencrypted_suffix: text("unencrypted_suffix")
                .unwrap_or_else(|| "_unencrypted".to_owned()),
            mac_only_encrypted: sops["mac_only_encrypted"].as_bool().unwrap_or(false),
        })
    }

    /// Whether the value at `path` is encrypted, by SOPS's rules in SOPS's order.
    fn encrypts(&self, path: &[String]) -> bool {
        let mut encrypted = !path.iter().any(|k| k.ends_with(&self.unencrypted_suffix));
        if let Some(suffix) = &self.encrypted_suffix {
            encrypted = path.iter().any(|k| k.ends_with(suffix.as_str()));
        }
        if let Some(re) = &self.unencrypted_regex
            && path.iter().any(|k| re.is_match(k))
        {
            encrypted = false;
        }
        if let Some(re) = &self.encrypted_regex {
            encrypted = path.iter().any(|k| re.is_match(k));
        }
        encrypted
    }
}

/// The 32 random bytes SOPS encrypted to each recipient.
fn data_key(meta: &Metadata, keys: &Keys) -> Result<Vec<u8>, String> {
    if meta.recipients.is_empty() {
        return Err(
            "it has no age recipients (berth decrypts with age keys only, not KMS, PGP or Vault)"
                .to_owned(),
        );
    }
    for (_, enc) in &meta.recipients {
        let reader = age::armor::ArmoredReader::new(enc.as_bytes());
        let Ok(decryptor) = age::Decryptor::new_buffered(reader) else {
            continue;
        };
        let identities = keys.0.iter().map(|i| i as &dyn age::Identity);
        if let Ok(mut stream) = decryptor.decrypt(identities) {
            let mut key = Vec::new();
            if stream.read_to_end(&mut key).is_ok() && key.len() == 32 {
                return Ok(key);
            }
        }
    }
    let names: Vec<&str> = meta.recipients.iter().map(|(r, _)| r.as_str()).collect();
    Err(format!(
        "no key berth was given decrypts it; it is encrypted for {}",
        names.join(", ")
    ))
}

/// One `ENC[…]` value decrypted with `aad`: its plaintext and SOPS's type for it.
fn open(value: &str, key: &[u8], aad: &str) -> Result<(String, String), String> {
    let fail = || "a value is not SOPS's ENC[AES256_GCM,…] format".to_owned();
    let body = value
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(fail)?;
    let mut parts: HashMap<&str, &str> = HashMap::new();
    for part in body.split(',') {
        let (k, v) = part.split_once(':').ok_or_else(fail)?;
        parts.insert(k, v);
    }
    let b64 = |k: &str| {
        let text = parts.get(k).ok_or_else(fail)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| fail())
    };
    let (mut data, iv, tag) = (b64("data")?, b64("iv")?, b64("tag")?);
    let kind = parts.get("type").ok_or_else(fail)?.to_string();
    if iv.len() != 32 {
        return Err("a value's IV is not SOPS's 32 bytes".to_owned());
    }
    data.extend_from_slice(&tag);
    let cipher = AesGcm::<Aes256, U32>::new_from_slice(key).map_err(|_| fail())?;
    let plain = cipher
        .decrypt(
            Nonce::<U32>::from_slice(&iv),
            Payload {
                msg: &data,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| {
            "a value does not decrypt with its data key (the file was changed after it was \
             encrypted)"
                .to_owned()
        })?;
    let text = String::from_utf8(plain).map_err(|_| "a decrypted value is not UTF-8".to_owned())?;
    Ok((text, kind))
}

/// A decrypted value's YAML or JSON token, and the bytes the MAC takes of it.
fn typed(text: &str, kind: &str) -> Result<(String, Vec<u8>), String> {
    Ok(match kind {
        "str" | "bytes" => (
            serde_json::to_string(text).expect("a string serializes"),
            text.as_bytes().to_vec(),
        ),
        "int" => {
            let n: i64 = text
                .parse()
                .map_err(|_| "an int value is not a number".to_owned())?;
            (n.to_string(), n.to_string().into_bytes())
        }
        "float" => {
            let x: f64 = text
                .parse()
                .map_err(|_| "a float value is not a number".to_owned())?;
            (text.to_owned(), format!("{x}").into_bytes())
        }
        "bool" => {
            let b = matches!(text, "true" | "True" | "TRUE" | "1" | "t" | "T");
            (
                b.to_string(),
                if b {
                    b"True".to_vec()
                } else {
                    b"False".to_vec()
                },
            )
        }
        other => {
            return Err(format!(
                "a value has the type {other:?}, which manifests cannot hold"
            ));
        }
    })
}

/// What a walk of the documents found: the MAC's hash and each `ENC[…]` with its token.
struct Walk<'a> {
    meta: &'a Metadata,
    key: &'a [u8],
    hash: sha2::Sha512,
    tokens: Vec<(String, String)>,
    /// The plaintext of every encrypted string.
    plain: Vec<String>,
}

impl Walk<'_> {
    fn node(&mut self, node: &Yaml, path: &mut Vec<String>) -> Result<(), String> {
        match node {
            Yaml::Hash(map) => {
                for (k, v) in map {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => return Err("it has a key that is not a string".to_owned()),
                    };
                    if path.is_empty() && key == "sops" {
                        continue;
                    }
                    path.push(key);
                    self.node(v, path)?;
                    path.pop();
                }
                Ok(())
            }
            Yaml::Array(items) => items.iter().try_for_each(|i| self.node(i, path)),
            Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Ok(()),
            leaf => self.leaf(leaf, path),
        }
    }

    fn leaf(&mut self, leaf: &Yaml, path: &[String]) -> Result<(), String> {
        let encrypted = self.meta.encrypts(path);
        let bytes = match (leaf, encrypted) {
            (Yaml::String(s), true) if s.is_empty() => Vec::new(),
            (Yaml::String(s), true) => {
                let aad = format!("{}:", path.join(":"));
                let (text, kind) = open(s, self.key, &aad)?;
                let (token, bytes) = typed(&text, &kind)?;
                self.tokens.push((s.clone(), token));
                // an object's identity names it everywhere; what it holds is hidden
                let identity = matches!(
                    path.first().map(String::as_str),
                    Some("apiVersion" | "kind" | "metadata")
                );
                if kind == "str" && !identity {
                    self.plain.push(text);
                }
                bytes
            }
            (_, true) => {
                return Err(format!(
                    "{} should be encrypted by its own rules, but is not",
                    path.join(".")
                ));
            }
            (Yaml::String(s), false) => s.as_bytes().to_vec(),
            (Yaml::Integer(i), false) => i.to_string().into_bytes(),
            (Yaml::Real(r), false) => r
                .parse::<f64>()
                .map_or_else(|_| r.clone(), |x| format!("{x}"))
                .into_bytes(),
            (Yaml::Boolean(b), false) => {
                if *b {
                    b"True".to_vec()
                } else {
                    b"False".to_vec()
                }
            }
            _ => Vec::new(),
        };
        if !self.meta.mac_only_encrypted || encrypted {
            self.hash.update(&bytes);
        }
        Ok(())
    }
}

/// SOPS's constant first input to a `mac_only_encrypted` MAC.
const MAC_ONLY_ENCRYPTED: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// A decrypted file: its text, and the values that were encrypted (never to be shown).
#[derive(Debug)]
pub(crate) struct Plain {
    pub text: String,
    pub secrets: Vec<String>,
}

/// The plaintext of a SOPS file, as YAML (or JSON for a `.json` file), with the `sops`
/// metadata removed. YAML keeps every line where it was, so errors still name the right line.
///
/// # Errors
/// No key decrypts it (naming its recipients), its MAC does not match (it was changed after it
/// was encrypted), or it is not SOPS's format.
pub(crate) fn decrypt(text: &str, json: bool, keys: &Keys) -> Result<Plain, String> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text)
        .map_err(|e| format!("it cannot be read as SOPS's format: {e}"))?;
    let sops = docs
        .iter()
        .map(|d| &d["sops"])
        .find(|s| !s.is_badvalue())
        .ok_or("it has no sops metadata")?;
    let meta = Metadata::read(sops)?;
    let key = data_key(&meta, keys)?;
    let mut walk = Walk {
        meta: &meta,
        key: &key,
        hash: sha2::Sha512::new(),
        tokens: Vec::new(),
        plain: Vec::new(),
    };
    if meta.mac_only_encrypted {
        walk.hash.update(MAC_ONLY_ENCRYPTED);
    }
    for doc in &docs {
        walk.node(doc, &mut Vec::new())?;
    }
    let computed = hex::encode_upper(walk.hash.clone().finalize());
    let tampered = || {
        "its MAC does not match its content: the file was changed after it was encrypted".to_owned()
    };
    let (mac, _) = open(&meta.mac, &key, &meta.last_modified).map_err(|_| tampered())?;
    if mac != computed {
        return Err(tampered());
    }
    let secrets = walk.plain.clone();
    let mut plain = text.to_owned();
    for (enc, token) in &walk.tokens {
        for quoted in [format!("\"{enc}\""), format!("'{enc}'"), enc.clone()] {
            plain = plain.replace(&quoted, token);
        }
    }
    if json {
        let mut value: serde_json::Value =
            serde_json::from_str(&plain).map_err(|e| format!("its plaintext is not JSON: {e}"))?;
        if let Some(map) = value.as_object_mut() {
            map.remove("sops");
        }
        let text = serde_json::to_string_pretty(&value).expect("JSON serializes");
        return Ok(Plain { text, secrets });
    }
    Ok(Plain {
        text: without_metadata(&plain),
        secrets,
    })
}

/// YAML text without its top-level `sops:` blocks; the lines before them keep their numbers.
fn without_metadata(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut skipping = false;
    for line in text.split_inclusive('\n') {
        let top = !line.starts_with([' ', '\t', '#', '\n', '\r']);
        if top {
            skipping = line.starts_with("sops:");
        }
        if !skipping {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_select_values_as_sops_does() {
        let meta = |yaml: &str| {
            let doc = &yaml_rust2::YamlLoader::load_from_str(yaml).expect("yaml")[0];
            Metadata::read(doc).expect("metadata")
        };
        let p = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        let all = meta("mac: m\nlastmodified: t\n");
        assert!(all.encrypts(&p("data.password")));
        assert!(!all.encrypts(&p("metadata.name_unencrypted")));
        let regex = meta("mac: m\nlastmodified: t\nencrypted_regex: ^(data|stringData)$\n");
        assert!(regex.encrypts(&p("stringData.password")));
        assert!(!regex.encrypts(&p("metadata.name")));
        let suffix = meta("mac: m\nlastmodified: t\nencrypted_suffix: _secret\n");
        assert!(suffix.encrypts(&p("db.password_secret")));
        assert!(!suffix.encrypts(&p("db.host")));
        let comments = yaml_rust2::YamlLoader::load_from_str(
            "mac: m\nlastmodified: t\nencrypted_comment_regex: x\n",
        )
        .expect("yaml");
        assert!(Metadata::read(&comments[0]).is_err());
    }

    #[test]
    fn the_metadata_block_goes_and_the_lines_before_it_stay() {
        let text = "apiVersion: v1\nkind: Secret\ndata:\n  a: b\nsops:\n  mac: x\n  age:\n    - recipient: r\n";
        assert_eq!(
            without_metadata(text),
            "apiVersion: v1\nkind: Secret\ndata:\n  a: b\n"
        );
    }

    #[test]
    fn values_become_tokens_and_mac_bytes_as_sops_writes_them() {
        assert_eq!(
            typed("hunter2", "str").expect("str"),
            ("\"hunter2\"".to_owned(), b"hunter2".to_vec())
        );
        assert_eq!(typed("5", "int").expect("int").1, b"5".to_vec());
        assert_eq!(
            typed("True", "bool").expect("bool"),
            ("true".to_owned(), b"True".to_vec())
        );
        assert_eq!(typed("1.50", "float").expect("float").1, b"1.5".to_vec());
        assert!(typed("x", "comment").is_err());
    }

    #[test]
    fn identities_are_read_and_never_shown() {
        let mut keys = Keys::default();
        let identity = age::x25519::Identity::generate();
        use age::secrecy::ExposeSecret as _;
        let text = format!("# created: now\n{}\n", identity.to_string().expose_secret());
        keys.add("sops-keys/a.agekey", &text).expect("identity");
        assert!(!keys.is_empty());
        assert_eq!(format!("{keys:?}"), "Keys(1 identities)");
        let err = keys
            .add("sops-keys/b.agekey", "AGE-SECRET-KEY-1NOPE")
            .expect_err("bad");
        assert_eq!(err, "sops-keys/b.agekey: line 1 is not an age identity");
    }

    /// Files SOPS 3.11 encrypted for the fixture key (tests/fixtures/sops).
    fn fixture(name: &str) -> String {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sops/");
        std::fs::read_to_string(format!("{dir}{name}")).expect("fixture")
    }

    fn fixture_keys() -> Keys {
        let mut keys = Keys::default();
        keys.add("test.agekey", &fixture("test.agekey"))
            .expect("key");
        keys
    }

    #[test]
    fn files_sops_wrote_decrypt_with_their_types_and_lines() {
        let keys = fixture_keys();
        let whole = fixture("whole.yaml");
        let plain = decrypt(&whole, false, &keys).expect("whole").text;
        assert!(plain.contains("password: \"hunter2\"\n"), "{plain}");
        assert!(
            plain.contains("port: 5432\n") && plain.contains("enabled: true\n"),
            "{plain}"
        );
        assert!(
            plain.contains("ratio: 1.5\n") && plain.contains("- \"a\"\n"),
            "{plain}"
        );
        assert!(
            !plain.contains("sops") && !plain.contains("ENC["),
            "{plain}"
        );
        // every line before the metadata is where it was
        let lines = |t: &str| t.lines().take(5).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(lines(&plain), lines(&whole));
        let regex = decrypt(&fixture("regex.yaml"), false, &keys)
            .expect("mac_only_encrypted")
            .text;
        assert!(regex.contains("token: \"c2VjcmV0\""), "{regex}");
        let json = decrypt(&fixture("cm.json"), true, &keys)
            .expect("json")
            .text;
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(value["data"]["url"], "postgres://u:p@db/x");
        assert!(value.get("sops").is_none());
    }

    #[test]
    fn a_tampered_file_and_a_foreign_key_are_refused() {
        let keys = fixture_keys();
        let whole = fixture("whole.yaml");
        // an unencrypted value changed: only the MAC can tell
        let changed = whole.replace("name: whole", "name: other");
        let err = decrypt(&changed, false, &keys).expect_err("tampered");
        assert!(err.contains("MAC does not match"), "{err}");
        let mut other = Keys::default();
        use age::secrecy::ExposeSecret as _;
        let stranger = age::x25519::Identity::generate();
        other
            .add("k", stranger.to_string().expose_secret())
            .expect("key");
        let err = decrypt(&whole, false, &other).expect_err("foreign");
        assert!(
            err.contains("no key berth was given decrypts it; it is encrypted for age1"),
            "{err}"
        );
    }
}
