//! NATS authentication and TLS: the secrets the connection presents, and reading them from
//! their files.
//!
//! Secrets are only ever given as files so that none sits in a unit file, an environment
//! listing or `ps`. They are read once at start; an error names what is wrong with the file
//! and never a byte of what it holds. Which setting named the file is the caller's to say.

use std::path::{Path, PathBuf};

/// A secret read from a file: its `Debug` never shows it, and nothing else prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself, for the NATS client and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How the worker proves who it is to the NATS server (at most one way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BusAuth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: Secret,
    },
    Token(Secret),
    /// The text of a `.creds` file: user JWT and nkey seed.
    Credentials(Secret),
    /// A user nkey seed (`SU...`).
    NKey(Secret),
}

/// TLS for the NATS connection; any setting here makes TLS required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusTls {
    /// PEM CA certificate(s) the server must chain to, instead of the system roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate and private key.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl BusTls {
    pub fn required(&self) -> bool {
        self.ca.is_some() || self.client_cert.is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusSecurity {
    pub auth: BusAuth,
    pub tls: BusTls,
}

/// What is wrong with a secret or certificate file. The text is the problem alone, so the
/// caller can put the setting and the path in front of it.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("empty path")]
    EmptyPath,
    #[error("no such file")]
    NotFound,
    #[error("permission denied")]
    PermissionDenied,
    #[error("cannot read it: {0}")]
    Unreadable(std::io::Error),
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("the file is empty")]
    Empty,
    #[error("not a PEM file")]
    NotPem,
    #[error("not a NATS credentials file (a user JWT and an nkey seed)")]
    NotCredentials,
    #[error("the file does not hold a user nkey seed (SU...)")]
    NotUserSeed,
}

/// A password file: the whole line; a trailing line break is not part of it.
pub fn read_password(path: &str) -> Result<Secret, SecretFileError> {
    let text = read_text(path)?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    non_empty(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// A token file: one word; surrounding white space is not part of it.
pub fn read_token(path: &str) -> Result<Secret, SecretFileError> {
    non_empty(read_text(path)?.trim().to_owned())
}

/// A `.creds` file as it is, checked to be one the client can use.
pub fn read_credentials(path: &str) -> Result<Secret, SecretFileError> {
    let secret = non_empty(read_text(path)?)?;
    if nats::Options::with_static_credentials(secret.expose()).is_err() {
        return Err(SecretFileError::NotCredentials);
    }
    Ok(secret)
}

/// A user nkey seed file, checked to hold a user's seed rather than an account's.
pub fn read_user_seed(path: &str) -> Result<Secret, SecretFileError> {
    let seed = read_token(path)?;
    match nkeys::KeyPair::from_seed(seed.expose()) {
        Ok(_) if seed.expose().starts_with("SU") => Ok(seed),
        _ => Err(SecretFileError::NotUserSeed),
    }
}

/// A PEM certificate or key: only checked here, so a wrong path stops the worker at start
/// instead of failing every connection attempt; the TLS library reads it itself.
pub fn check_pem(path: &str) -> Result<PathBuf, SecretFileError> {
    if read_text(path)?.contains("-----BEGIN ") {
        Ok(Path::new(path).to_owned())
    } else {
        Err(SecretFileError::NotPem)
    }
}

fn read_text(path: &str) -> Result<String, SecretFileError> {
    if path.trim().is_empty() {
        return Err(SecretFileError::EmptyPath);
    }
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SecretFileError::NotFound,
        std::io::ErrorKind::PermissionDenied => SecretFileError::PermissionDenied,
        _ => SecretFileError::Unreadable(e),
    })?;
    String::from_utf8(bytes).map_err(|_| SecretFileError::NotUtf8)
}

fn non_empty(value: String) -> Result<Secret, SecretFileError> {
    if value.trim().is_empty() {
        Err(SecretFileError::Empty)
    } else {
        Ok(Secret::new(value))
    }
}
