//! Secrets in the config: never printed (Debug shows `***`), given inline (usually as
//! `${ENV}`) or through a `*_file` option naming a file that holds only the secret.

use std::fmt;
use std::path::{Path, PathBuf};

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

/// A secret option the component cannot run without, given once: inline as `name`
/// or in `{name}_file`.
pub struct RequiredSecret {
    /// What it is, for errors ("the API key").
    what: &'static str,
    name: &'static str,
    /// How it is usually given, for errors (`"${MY_API_KEY}"`).
    example: &'static str,
}

impl RequiredSecret {
    pub const fn new(what: &'static str, name: &'static str, example: &'static str) -> Self {
        RequiredSecret {
            what,
            name,
            example,
        }
    }

    /// Checks, with the other options, that it is given once.
    pub fn check(&self, inline: &Option<Secret>, file: &Option<PathBuf>) -> Result<(), String> {
        let name = self.name;
        match (inline, file) {
            (None, None) => Err(format!(
                "give {} with `{name}` (e.g. \"{}\") or `{name}_file`",
                self.what, self.example
            )),
            (Some(_), Some(_)) => Err(format!("give either `{name}` or `{name}_file`, not both")),
            _ => Ok(()),
        }
    }

    /// The secret, read from its file if it is given there: [`resolve_secret`], and
    /// its absence an error naming both ways to give it.
    pub fn resolve(
        &self,
        inline: &Option<Secret>,
        file: &Option<PathBuf>,
    ) -> anyhow::Result<Secret> {
        let name = self.name;
        resolve_secret(name, inline.as_ref(), file.as_deref())
            .map_err(anyhow::Error::msg)?
            .ok_or_else(|| anyhow::anyhow!("no `{name}`: set `{name}` or `{name}_file`"))
    }
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
