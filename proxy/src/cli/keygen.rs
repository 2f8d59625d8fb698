//! `gatehouse keygen`: an Ed25519 key pair for signing grants (or, with
//! `--name seal`, for sealing recorded sessions).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ed25519_dalek::pkcs8::spki::EncodePublicKey as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, KeypairBytes};
use gatehouse_core::grant::SigningKey;

/// The private key's file name in `--out` is `NAME` + this.
pub const PRIVATE_KEY_SUFFIX: &str = ".key";
/// The public key's file name in `--out` is `NAME` + this.
pub const PUBLIC_KEY_SUFFIX: &str = ".pub";

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Directory to write NAME.key and NAME.pub into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The key files' name: `grant` for a grant-signing key, `seal` for the
    /// key that seals recorded sessions (`[store] seal_key`).
    #[arg(long, value_name = "NAME", default_value = "grant", value_parser = key_name)]
    pub name: String,
    /// Overwrite existing key files. Grants signed with the old key stop
    /// verifying once the gateway has the new public key.
    #[arg(long)]
    pub force: bool,
}

/// What [`generate`] wrote.
#[derive(Debug)]
pub struct KeyPair {
    /// The private key file (PKCS#8 PEM, mode 0600).
    pub private_key: PathBuf,
    /// The public key file (SPKI PEM).
    pub public_key: PathBuf,
    /// The key id grants signed with it carry.
    pub kid: String,
}

/// A file name stem: letters, digits, `-` and `_`.
fn key_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(name.to_owned())
    } else {
        Err("use 1 to 64 letters, digits, '-' or '_'".to_owned())
    }
}

pub fn run(args: &KeygenArgs) -> anyhow::Result<()> {
    let pair = generate(args)?;
    if args.name == "seal" {
        println!(
            "wrote {} (private key: keep it secret; name it as [store] seal_key in the \
             gateway's config)",
            pair.private_key.display()
        );
        println!(
            "wrote {} (public key: `gatehouse-audit verify --pubkey` checks seals with it)",
            pair.public_key.display()
        );
    } else {
        println!(
            "wrote {} (private key: keep it secret; `gatehouse grant --key` signs with it)",
            pair.private_key.display()
        );
        println!(
            "wrote {} (public key: list it under [[grants.keys]] in the gateway's config)",
            pair.public_key.display()
        );
    }
    println!("kid: {}", pair.kid);
    Ok(())
}

/// Generates a key pair and writes it into `args.out`.
pub fn generate(args: &KeygenArgs) -> anyhow::Result<KeyPair> {
    let name = key_name(&args.name).map_err(|e| anyhow::anyhow!("--name {:?}: {e}", args.name))?;
    let private_path = args.out.join(format!("{name}{PRIVATE_KEY_SUFFIX}"));
    let public_path = args.out.join(format!("{name}{PUBLIC_KEY_SUFFIX}"));
    if !args.force {
        for path in [&private_path, &public_path] {
            if path.symlink_metadata().is_ok() {
                anyhow::bail!(
                    "{} already exists; pass --force to replace the key pair (grants signed \
                     with the old key then stop verifying)",
                    path.display()
                );
            }
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;

    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    // PKCS#8 v1 (RFC 8410, without the public key), as `openssl genpkey`
    // writes it: OpenSSL 3.0 cannot read the v2 form.
    let private_pem = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .context("encoding the private key")?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encoding the public key")?;
    // Parse back what will be written: the kid comes from the same code
    // that `grant` and `serve` use.
    let kid = SigningKey::from_pkcs8_pem(&private_pem)
        .context("reading back the generated key")?
        .kid()
        .to_owned();

    write_new(&private_path, private_pem.as_bytes(), 0o600, args.force)?;
    if let Err(e) = write_new(&public_path, public_pem.as_bytes(), 0o644, args.force) {
        // Do not leave half a pair behind.
        let _ = std::fs::remove_file(&private_path);
        return Err(e);
    }
    Ok(KeyPair {
        private_key: private_path,
        public_key: public_path,
        kid,
    })
}

/// Creates `path` with `mode` and writes `contents`. With `replace`, an
/// existing file (or symlink) is removed first, so that the new file gets
/// `mode` and nothing is written through a link.
fn write_new(path: &Path, contents: &[u8], mode: u32, replace: bool) -> anyhow::Result<()> {
    if replace {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot replace {}", path.display())),
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).with_context(|| {
        if path.exists() {
            format!(
                "{} already exists; pass --force to replace it",
                path.display()
            )
        } else {
            format!("cannot create {}", path.display())
        }
    })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
