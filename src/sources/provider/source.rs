//! The `Source` every provider is: [`ProviderSource`] builds the provider's
//! [`Api`] when the source is built (so that a missing secret file or an unusable
//! endpoint is an error at start) and runs the provider's driver under
//! [`run`](super::run). A provider implements [`Provider`] on its own options and
//! names `provider::Config<its options>` and `provider::ProviderSource<its options>`
//! in the registry.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Access, Config, Context};
use crate::http::api::Api;
use crate::http::stream::StreamOptions;
use crate::sources::{Source, SourceContext};

/// A provider's own part of its source, implemented on its own options (declared
/// with [`options!`](super::options), which implements [`Access`]).
pub trait Provider: Access + Send + 'static {
    /// The provider's name: the `provider` of every event.
    const NAME: &'static str;

    /// Checks of its options that need more than one option at a time (those of
    /// [`Access`] are checked before these, the shared stream options after).
    fn validate(&self) -> Result<(), String>;

    /// The API every request of the source goes through: its credentials (secrets
    /// resolved here) and rate budget, after any check of the config that needs
    /// more than its own options. See [`Api::connect`].
    fn api(&self, stream: &StreamOptions) -> anyhow::Result<Api>;

    /// The driver: starts the source's streams, discovers new ones if the provider
    /// needs it, and returns once `ctx.stop` fires (see [`run`](super::run)).
    fn drive(self, ctx: Arc<Context>) -> impl Future<Output = ()> + Send + 'static;
}

/// A provider source: its config and the API built from it.
pub struct ProviderSource<P> {
    config: Config<P>,
    api: Api,
}

impl<P: Provider> ProviderSource<P> {
    /// The source of `config`, as the registry builds every source (with
    /// `try_from`, an inherent function here: a generic `TryFrom` impl would
    /// collide with the standard library's blanket one).
    pub fn try_from(config: Config<P>) -> anyhow::Result<Self> {
        Ok(ProviderSource {
            api: config.own.api(&config.stream)?,
            config,
        })
    }
}

#[async_trait]
impl<P: Provider> Source for ProviderSource<P> {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        let ProviderSource {
            config: Config { own, stream },
            api,
        } = *self;
        super::run(ctx, P::NAME, api, stream, |ctx| own.drive(ctx)).await
    }
}
