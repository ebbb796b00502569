//! Where the tag database lives when the operator does not say.
//!
//! systemd's `StateDirectory=` wins so a packaged service writes under `/var/lib/...` without
//! extra configuration; a plain invocation falls back to the XDG state directory, which is
//! where per-user state belongs (not `~/.cache`: tags are not disposable).

use std::path::{Path, PathBuf};

/// The file name inside whichever directory is chosen.
pub const DB_FILE_NAME: &str = "ttp.db";

/// None of `STATE_DIRECTORY`, `XDG_STATE_HOME` or `HOME` gave a usable directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot choose a place for the tag database: none of STATE_DIRECTORY, XDG_STATE_HOME or \
     HOME is set to an absolute path; pass --db PATH (or set DECNET_TTP_DB)"
)]
pub struct NoDefaultLocation;

/// `$STATE_DIRECTORY/ttp.db` (first of its `:`-separated entries), else
/// `$XDG_STATE_HOME/ttp-worker/ttp.db`, else `$HOME/.local/state/ttp-worker/ttp.db`.
///
/// Relative or empty values are skipped, as the XDG spec requires: a relative path would
/// depend on the daemon's working directory, which systemd sets to `/`.
pub fn default_db_path(env: impl Fn(&str) -> Option<String>) -> Result<PathBuf, NoDefaultLocation> {
    let absolute = |value: &str| {
        let path = PathBuf::from(value);
        path.is_absolute().then_some(path)
    };
    let systemd = env("STATE_DIRECTORY");
    if let Some(dir) = systemd
        .as_deref()
        .and_then(|d| d.split(':').next())
        .and_then(absolute)
    {
        return Ok(dir.join(DB_FILE_NAME));
    }
    if let Some(dir) = env("XDG_STATE_HOME").as_deref().and_then(absolute) {
        return Ok(dir.join("ttp-worker").join(DB_FILE_NAME));
    }
    if let Some(home) = env("HOME").as_deref().and_then(absolute) {
        return Ok(home
            .join(".local")
            .join("state")
            .join("ttp-worker")
            .join(DB_FILE_NAME));
    }
    Err(NoDefaultLocation)
}

/// `db` with `suffix` appended to its file name (`-wal`, `-shm`, `.lock`).
pub(super) fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn systemd_state_directory_wins_and_only_its_first_entry_counts() {
        let env = env_of(&[
            ("STATE_DIRECTORY", "/var/lib/ttp-worker:/var/lib/other"),
            ("XDG_STATE_HOME", "/home/u/.state"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(
            default_db_path(env),
            Ok(PathBuf::from("/var/lib/ttp-worker/ttp.db"))
        );
    }

    #[test]
    fn xdg_state_home_then_home() {
        let env = env_of(&[("XDG_STATE_HOME", "/home/u/.state"), ("HOME", "/home/u")]);
        assert_eq!(
            default_db_path(env),
            Ok(PathBuf::from("/home/u/.state/ttp-worker/ttp.db"))
        );
        let env = env_of(&[("HOME", "/home/u")]);
        assert_eq!(
            default_db_path(env),
            Ok(PathBuf::from("/home/u/.local/state/ttp-worker/ttp.db"))
        );
    }

    #[test]
    fn empty_or_relative_values_are_skipped() {
        let env = env_of(&[
            ("STATE_DIRECTORY", ""),
            ("XDG_STATE_HOME", "relative/state"),
            ("HOME", "/root"),
        ]);
        assert_eq!(
            default_db_path(env),
            Ok(PathBuf::from("/root/.local/state/ttp-worker/ttp.db"))
        );
        let env = env_of(&[("STATE_DIRECTORY", ":/var/lib/x"), ("HOME", "")]);
        assert_eq!(default_db_path(env), Err(NoDefaultLocation));
        assert!(
            default_db_path(env_of(&[]))
                .unwrap_err()
                .to_string()
                .contains("--db")
        );
    }
}
