//! Secrets in the config: never printed (Debug shows `***`), given inline (usually as
//! `${ENV}`) or through a `*_file` option naming a file that holds only the secret.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it (an auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Picks the secret option `name` from its inline form or its `name_file` form.
/// Giving both is an error; giving neither returns `None`. A file's content is
/// trimmed of surrounding whitespace (editors add a final newline).
pub fn resolve_secret(
    name: &str,
    inline: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("give either `{name}` or `{name}_file`, not both")),
        (Some(secret), None) => Ok(Some(secret.clone())),
        (None, Some(path)) => {
            let content = std::fs::read_to_string(path).map_err(|e| {
                format!("cannot read `{name}_file` {}: {}", path.display(), e.kind())
            })?;
            let trimmed = content.trim();
            if trimmed.is_empty() {
                return Err(format!("`{name}_file` {} is empty", path.display()));
            }
            Ok(Some(Secret(trimmed.to_string())))
        }
        (None, None) => Ok(None),
    }
}

/// Checks, with the other options, that a secret the component cannot run without
/// is given once: inline as `name` or in `{name}_file`. `what` says what it is
/// ("the API key") and `example` how it is usually given (`"${MY_API_KEY}"`).
pub fn check_secret_given(
    what: &str,
    name: &str,
    example: &str,
    inline: Option<&Secret>,
    file: Option<&Path>,
) -> Result<(), String> {
    match (inline, file) {
        (None, None) => Err(format!(
            "give {what} with `{name}` (e.g. \"{example}\") or `{name}_file`"
        )),
        (Some(_), Some(_)) => Err(format!("give either `{name}` or `{name}_file`, not both")),
        _ => Ok(()),
    }
}

/// [`resolve_secret`] for a secret the component cannot run without: its absence is
/// an error naming both ways to give it.
pub fn require_secret(
    name: &str,
    inline: Option<&Secret>,
    file: Option<&Path>,
) -> anyhow::Result<Secret> {
    resolve_secret(name, inline, file)
        .map_err(anyhow::Error::msg)?
        .ok_or_else(|| anyhow::anyhow!("no `{name}`: set `{name}` or `{name}_file`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_files_are_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cr3t\n").unwrap();
        let secret = resolve_secret("token", None, Some(&path)).unwrap().unwrap();
        assert_eq!(secret.expose(), "s3cr3t");
        assert_eq!(format!("{secret:?}"), "***");
        let both = resolve_secret("token", Some(&Secret::new("x")), Some(&path));
        assert!(both.unwrap_err().contains("not both"));
        let missing = resolve_secret("token", None, Some(&dir.path().join("nope")));
        assert!(missing.unwrap_err().contains("token_file"));
        assert_eq!(resolve_secret("token", None, None).unwrap(), None);
    }
}
