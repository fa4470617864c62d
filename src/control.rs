//! The commands that talk to a running agent over its API (`[api] address`):
//! `ferry tap`, which prints a live sample of the events at one component, and
//! `ferry reload`, which makes the agent apply its config file and says how it went.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::topology::config::ApiConfig;

/// How `ferry reload` ended.
pub enum ReloadOutcome {
    Applied,
    /// The agent kept its running pipeline; the reason was printed.
    Rejected,
}

/// The address of the running agent's API: `address` if given, else `[api]` of the
/// config at `path` (read without resolving secrets, so `ferry tap` works from a
/// shell that lacks the service's environment).
pub fn api_address(path: &Path, address: Option<SocketAddr>) -> Result<SocketAddr> {
    if let Some(address) = address {
        return Ok(address);
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (or pass --address)", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("{} is not valid TOML (or pass --address)", path.display()))?;
    let api: ApiConfig = match table.get("api") {
        Some(api) => api
            .clone()
            .try_into()
            .with_context(|| format!("{}: [api] is invalid", path.display()))?,
        None => ApiConfig::default(),
    };
    if !api.enabled {
        bail!(
            "{}: the API is disabled ([api] enabled = false); enable it to tap or reload through it (SIGHUP also reloads)",
            path.display()
        );
    }
    Ok(api.address)
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("cannot set up the HTTP client")
}

/// Streams the sample of the events at `component` to `out` as JSON lines until
/// `limit` events were shown or the agent stops.
pub async fn tap(
    address: SocketAddr,
    component: &str,
    limit: Option<u64>,
    rate: f64,
    out: &mut impl Write,
) -> Result<()> {
    let mut url = reqwest::Url::parse(&format!("http://{address}/tap/"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("bad API address {address}"))?
        .pop_if_empty()
        .push(component);
    url.query_pairs_mut().append_pair("rate", &rate.to_string());
    if let Some(limit) = limit {
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
    }
    let mut response = client()?
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach ferry's API at {address}; is ferry running?"))?;
    if !response.status().is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("{}", body.trim_end());
    }
    while let Some(chunk) = response.chunk().await.context("the tap stream broke off")? {
        out.write_all(&chunk)?;
        out.flush()?;
    }
    Ok(())
}

/// Asks the agent at `address` to reload its config and prints how it went.
pub async fn reload(address: SocketAddr) -> Result<ReloadOutcome> {
    let response = client()?
        .post(format!("http://{address}/reload"))
        .send()
        .await
        .with_context(|| format!("cannot reach ferry's API at {address}; is ferry running?"))?;
    let status = response.status();
    let body: serde_json::Value = match response.text().await {
        Ok(text) => serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        Err(error) => bail!("no answer to the reload: {error}"),
    };
    if status.is_success() {
        println!("reloaded");
        return Ok(ReloadOutcome::Applied);
    }
    match body.get("error").and_then(|e| e.as_str()) {
        Some(error) if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY => {
            eprintln!("reload rejected; ferry keeps running the previous config:\n{error}");
            Ok(ReloadOutcome::Rejected)
        }
        _ => bail!("reload failed ({status}): {body}"),
    }
}
