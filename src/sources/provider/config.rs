//! A provider source's config: the provider's own options, which its folder
//! declares, and the [`StreamOptions`] every provider shares, which the config
//! layer reads from the same table. The registry and validation see the pair; a
//! provider reads its own options through `Deref`.

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

/// The provider's checks, then those of the stream options.
impl<P: Provider> SourceOptions for Config<P> {
    fn validate(&self) -> Result<(), String> {
        self.own.validate()?;
        self.stream.validate()
    }
}
