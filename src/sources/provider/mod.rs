//! The framework every provider source stands on. A provider's own folder holds
//! only its wire facts — URLs, auth header, framing, the mapping to `Event`, how its
//! cursor works — and this module does the rest:
//!
//! - [`ProviderSource`] is the `Source` of every provider: it builds the
//!   provider's [`Api`] from its [`Config`] (the provider's own options, which
//!   implement [`Provider`], and the shared stream options) and runs its driver;
//! - [`run`] is the whole `Source::run` of a provider: it builds the shared
//!   [`Context`], runs the provider's driver (discovery, or a fixed set of
//!   streams) next to the fan-in of every sub-stream into the source's batches,
//!   and stops and joins everything at shutdown;
//! - a [`Follow`] is one followed sub-stream (a container's stdout, a journald
//!   unit, a task file, a job's logs): it opens a connection from its position,
//!   turns frames into events and says what its cursor is; [`Followers`] runs them
//!   in groups that start and finish together (a container, a task, a job);
//! - the follow loop around each one reconnects with backoff, honours
//!   `Retry-After` and SSE `retry:`, applies the idle timeout, reports refused
//!   credentials once, and commits each cursor only after delivery (`merge.rs`);
//! - [`DedupeCursor`] is the resume cursor of sub-streams without a server cursor.
//!
//! The HTTP side (credentials and token renewal, the rate budget, SSE, websocket
//! and plain-text connections) is `crate::http`, reached through [`Context::api`].
//! `docs/provider-framework.md` walks through adding a provider.

mod config;
mod dedupe;
mod follow;
mod followers;
mod merge;
mod source;
pub mod time;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

pub(crate) use self::config::options;
pub use self::config::{Access, Config};
pub use self::dedupe::{DedupeCursor, Feed, MAX_HASHES, sort_by_time};
pub use self::follow::{Follow, Next};
pub use self::followers::Followers;
pub use self::merge::Emitter;
pub use self::source::{Provider, ProviderSource};
use super::SourceContext;
use crate::checkpoint::Cursors;
use crate::event::Event;
use crate::http::api::Api;
use crate::http::stream::{AuthReport, Ended, Reconnect, StreamOptions, sleep_or_cancel};

/// The source is stopping: whatever was being done is abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// Lets `Follow::open` send with `out.send(…).await?`: the loop sees the source
/// stopping and ends without reconnecting.
impl From<Stopped> for Ended {
    fn from(_: Stopped) -> Ended {
        Ended::Closed
    }
}

/// What every task of one provider source shares.
pub struct Context {
    /// The source's id (labels metrics, names the source in logs).
    pub source: Arc<str>,
    /// The provider's name, the `provider` of every event.
    pub provider: Arc<str>,
    pub api: Api,
    pub options: StreamOptions,
    /// The cursors committed by the previous run.
    pub checkpoint: Cursors,
    /// Fires when the source stops.
    pub stop: CancellationToken,
    auth_report: AuthReport,
    pieces: merge::PieceSender,
    max_events: usize,
    max_bytes: usize,
}

impl Context {
    /// An event of this source with `message` at `timestamp` (Unix ns).
    pub fn event(&self, message: String, timestamp: i64) -> Event {
        Event::new(
            Arc::clone(&self.source),
            Arc::clone(&self.provider),
            message,
            timestamp,
        )
    }

    /// The committed cursor under `key`, if there is one of that shape.
    pub fn saved<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        serde_json::from_value(self.checkpoint.get(key)?.clone()).ok()
    }

    /// The reconnect policy for a loop of this source named `what` (a stream, a
    /// discovery poll); refused credentials are reported once per source.
    pub fn reconnect(&self, what: impl Into<Arc<str>>) -> Reconnect {
        Reconnect::new(
            self.options.clone(),
            Arc::clone(&self.source),
            what,
            self.auth_report.clone(),
        )
    }

    /// A new emitter into this source's batches.
    pub fn emitter(&self) -> Emitter {
        Emitter::new(
            self.max_events,
            self.max_bytes,
            self.pieces.clone(),
            self.stop.clone(),
        )
    }

    /// Sleeps for `duration`; `false` if the source stopped first.
    pub async fn sleep(&self, duration: Duration) -> bool {
        sleep_or_cancel(duration, &self.stop).await
    }
}

/// Runs a provider source: `driver` gets the [`Context`] and starts the source's
/// streams (usually with [`Followers`]), polls for new ones if the provider needs
/// discovery, and returns once `ctx.stop` fires. Meanwhile every piece the streams
/// send goes out as batches. The source runs until ferry stops, even if every
/// stream has finished.
pub async fn run<F, Fut>(
    mut source: SourceContext,
    provider: &'static str,
    api: Api,
    options: StreamOptions,
    driver: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Arc<Context>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (pieces, mut received) = merge::channel();
    let ctx = Arc::new(Context {
        source: Arc::clone(&source.id),
        provider: Arc::from(provider),
        api,
        options,
        checkpoint: source.checkpoint.clone(),
        stop: source.shutdown.child_token(),
        auth_report: AuthReport::default(),
        pieces,
        max_events: source.limits.batch_max_events,
        max_bytes: source.limits.batch_max_bytes,
    });
    let driver = tokio::spawn(driver(Arc::clone(&ctx)));
    let result = merge::forward(&mut received, &mut source).await;
    ctx.stop.cancel();
    drop(received);
    let _ = driver.await;
    result
}

/// For a provider's config tests: the `[sources.s]` table of lines `source` (the
/// first on line 2), read in a whole config named `ferry.toml` in which every
/// environment variable is set (`${NAME}` reads `value-of-NAME`); the source's
/// config, or the error.
#[cfg(test)]
pub(crate) fn parse_source(source: &str) -> Result<super::SourceConfig, String> {
    let text =
        format!("[sources.s]\n{source}\n[sinks.out]\ntype = \"console\"\ninputs = [\"s\"]\n");
    let lookup = |name: &str| Some(format!("value-of-{name}"));
    let mut config =
        crate::topology::config::parse(&text, std::path::Path::new("ferry.toml"), lookup)
            .map_err(|e| e.to_string())?;
    Ok(config
        .sources
        .remove("s")
        .expect("the parsed source")
        .config)
}

/// For a provider's config tests: [`parse_source`] for a source of type `C`.
#[cfg(test)]
pub(crate) fn parse_config<C: TryFrom<super::SourceConfig, Error = super::SourceConfig>>(
    source: &str,
) -> Result<C, String> {
    C::try_from(parse_source(source)?)
        .map_err(|other| format!("not this type of source: {}", other.type_name()))
}

/// For a provider's config tests: the valid table `source` as the config of a
/// provider whose options are `P`.
#[cfg(test)]
pub(crate) fn config<P>(source: &str) -> Config<P>
where
    Config<P>: TryFrom<super::SourceConfig, Error = super::SourceConfig>,
{
    parse_config(source).unwrap_or_else(|error| panic!("{source}: {error}"))
}

/// For a provider's config tests: table `base` with each case's lines added is
/// refused, with an error that says the case's text.
#[cfg(test)]
pub(crate) fn assert_refused(base: &str, cases: &[(&str, &str)]) {
    for (lines, expected) in cases {
        let error = parse_source(&format!("{base}\n{lines}")).unwrap_err();
        assert!(error.contains(expected), "{lines}: {error}");
    }
}
