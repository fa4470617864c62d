//! A provider source's config: the provider's own options, which its folder
//! declares with [`options!`], and the [`StreamOptions`] every provider shares,
//! which the config layer reads from the same table. The registry and validation
//! see the pair; a provider reads its own options through `Deref`.

use std::ops::Deref;

use serde::Deserialize;

use super::Provider;
use crate::http::stream::StreamOptions;
use crate::sources::SourceOptions;

#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Config<P> {
    /// The provider's own options.
    pub own: P,
    /// The shared options (`idle_timeout`, `request_timeout`, backoff, …), set by
    /// the config layer.
    #[serde(skip)]
    pub stream: StreamOptions,
}

impl<P> Deref for Config<P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.own
    }
}

/// The checks of the options every provider's API takes, then the provider's own,
/// then those of the stream options.
impl<P: Provider> SourceOptions for Config<P> {
    fn validate(&self) -> Result<(), String> {
        self.own.check_access()?;
        self.own.validate()?;
        self.stream.validate()
    }
}

/// The options every provider's API takes, which [`options!`] declares first in a
/// provider's options: `endpoint`, with the provider's default, and the secret the
/// API wants, given inline or in a file.
pub trait Access {
    /// Checks `endpoint`, then that the secret is given once.
    fn check_access(&self) -> Result<(), String>;
}

/// Declares a provider's options struct: first what its API takes — `endpoint`
/// with the provider's default, and the secret it needs as `name` or `name_file`
/// (either left out where the provider has its own: Scalingo's API follows its
/// region, DC/OS takes one of several credentials) — then the provider's own
/// fields as written. It implements [`Access`], which checks them before
/// [`Provider::validate`], and gives the struct `secret()`, the secret read from
/// wherever it is given:
///
/// ```ignore
/// provider::options! {
///     /// API base URL. Default `https://api.example.com`.
///     endpoint: DEFAULT_ENDPOINT,
///     /// The API key, usually `"${EXAMPLE_API_KEY}"`.
///     secret: api_key / api_key_file ("the API key", "${EXAMPLE_API_KEY}"),
///     pub struct ExampleConfig {
///         /// The account whose logs to follow.
///         pub account: String,
///     }
/// }
/// ```
///
/// The secret's attributes (its doc, a serde `alias`) go before `secret:`, its
/// file's after the `/`; the file's doc is written from the secret's description.
macro_rules! options {
    // The endpoint, first if it is given.
    (@parse [] []
        $(#[$endpoint_doc:meta])+
        endpoint: $default:expr,
        $($rest:tt)*
    ) => {
        $crate::sources::provider::options!(@parse
            [$(#[$endpoint_doc])+ default = $default;] [] $($rest)*
        );
    };
    // The secret, next if it is given.
    (@parse [$($endpoint:tt)*] []
        $(#[$secret_attr:meta])+
        secret: $secret:ident / $(#[$file_attr:meta])* $file:ident ($what:literal, $example:literal),
        $($rest:tt)*
    ) => {
        $crate::sources::provider::options!(@parse
            [$($endpoint)*] [$(#[$secret_attr])+ $secret / $(#[$file_attr])* $file ($what, $example)]
            $($rest)*
        );
    };
    // The struct, with whichever of the two were given.
    (@parse
        [$($(#[$endpoint_doc:meta])+ default = $default:expr;)?]
        [$($(#[$secret_attr:meta])+ $secret:ident / $(#[$file_attr:meta])* $file:ident ($what:literal, $example:literal))?]
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($fields:tt)*
        }
    ) => {
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        $(#[$meta])*
        pub struct $name {
            $(
                $(#[$endpoint_doc])+
                #[serde(default = "default_endpoint")]
                pub endpoint: String,
            )?
            $(
                $(#[$secret_attr])+
                pub $secret: Option<$crate::secret::Secret>,
                #[doc = concat!(
                    "A file holding only ", $what, " (instead of `", stringify!($secret), "`)."
                )]
                $(#[$file_attr])*
                pub $file: Option<std::path::PathBuf>,
            )?
            $($fields)*
        }

        $(
            fn default_endpoint() -> String {
                $default.into()
            }
        )?

        $(
            impl $name {
                const SECRET: $crate::secret::RequiredSecret =
                    $crate::secret::RequiredSecret::new($what, stringify!($secret), $example);

                /// The secret, read from its file if it is given there.
                fn secret(&self) -> anyhow::Result<$crate::secret::Secret> {
                    Self::SECRET.resolve(&self.$secret, &self.$file)
                }
            }
        )?

        impl $crate::sources::provider::Access for $name {
            fn check_access(&self) -> Result<(), String> {
                $($crate::sources::provider::options!(@endpoint self, $default);)?
                $(Self::SECRET.check(&self.$secret, &self.$file)?;)?
                Ok(())
            }
        }
    };
    // The endpoint's check, for a provider that declares one (with its default).
    (@endpoint $self:ident, $default:expr) => {
        $crate::http::client::validate_endpoint(&$self.endpoint)?
    };
    ($($declaration:tt)*) => {
        $crate::sources::provider::options!(@parse [] [] $($declaration)*);
    };
}
pub(crate) use options;

#[cfg(test)]
mod tests {
    use super::Access;

    const DEFAULT_ENDPOINT: &str = "https://api.example.com";

    super::options! {
        /// API base URL.
        endpoint: DEFAULT_ENDPOINT,
        /// The API key.
        #[serde(alias = "key")]
        secret: api_key / #[serde(alias = "key_file")] api_key_file
            ("the API key", "${EXAMPLE_API_KEY}"),
        pub struct ExampleConfig {
            /// The account whose logs to follow.
            pub account: String,
        }
    }

    fn example(table: &str) -> ExampleConfig {
        toml::from_str(&format!("{table}\naccount = \"a\"")).unwrap()
    }

    #[test]
    fn the_endpoint_has_its_default_and_the_secret_is_given_once() {
        let given = example("key = \"k3y\"");
        assert_eq!(given.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(format!("{:?}", given.api_key), "Some(***)");
        assert_eq!(given.account, "a");
        given.check_access().unwrap();
        assert_eq!(given.secret().unwrap().expose(), "k3y");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "k3y\n").unwrap();
        let in_file = example(&format!("api_key_file = {:?}", path.display().to_string()));
        in_file.check_access().unwrap();
        assert_eq!(in_file.secret().unwrap().expose(), "k3y");

        for (table, expected) in [
            (
                "",
                "give the API key with `api_key` (e.g. \"${EXAMPLE_API_KEY}\") or `api_key_file`",
            ),
            (
                "api_key = \"k\"\napi_key_file = \"/k\"",
                "give either `api_key` or `api_key_file`, not both",
            ),
            (
                "endpoint = \"ftp://x\"",
                "`endpoint` \"ftp://x\" must be an http:// or https:// URL",
            ),
        ] {
            assert_eq!(example(table).check_access().unwrap_err(), expected);
        }
    }
}
