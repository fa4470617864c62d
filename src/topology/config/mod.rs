//! The pipeline's config: which sources, transforms and sinks run, with what options,
//! and how they connect; read from the TOML file through the generic layer in
//! [`crate::config`], and validated so a broken pipeline is refused before anything
//! starts.
//!
//! Component tables are read in two steps: the keys every component of a kind shares
//! (`type`, `inputs`, buffer and batch limits) are taken out first, then the rest is
//! deserialized into the type's own config struct with unknown keys refused. That is
//! the `#[serde(tag = "type")]` shape, done by hand so errors keep their position.

mod graph;
mod lint;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use crate::buffer::BufferConfig;
use crate::config::{Component, ConfigError, Reader, split_table, table_value};
use crate::http::stream::StreamOptions;
use crate::sinks::SinkConfig;
use crate::sources::{SourceCommon, SourceConfig};
use crate::transforms::TransformConfig;
use graph::Graph;

/// Where `ferry run` looks when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ferry/ferry.toml";

#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub shutdown_timeout: Duration,
    pub sources: BTreeMap<String, SourceSpec>,
    pub transforms: BTreeMap<String, TransformSpec>,
    pub sinks: BTreeMap<String, SinkSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve `/metrics` and `/health`.
    pub enabled: bool,
    pub address: SocketAddr,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            address: SocketAddr::from(([127, 0, 0, 1], 9598)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopLevel {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default)]
    api: ApiConfig,
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    shutdown_timeout: Duration,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/ferry")
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

/// A source and the options every source shares.
#[derive(Debug)]
pub struct SourceSpec {
    pub config: SourceConfig,
    pub common: SourceCommon,
    /// Every option as given (after `${VAR}`), for a reload to tell whether it changed.
    pub settings: toml::Table,
}

/// Options shared by everything that has `inputs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputCommon {
    /// Byte budget of the channel in front of the component.
    pub buffer_max_bytes: usize,
}

impl Default for InputCommon {
    fn default() -> Self {
        InputCommon {
            buffer_max_bytes: 2 << 20,
        }
    }
}

impl InputCommon {
    const KEYS: &[&str] = &["buffer_max_bytes"];
    /// Every key such a component accepts besides its type's own.
    const KEYS_AND_INPUTS: [&str; 2] = ["buffer_max_bytes", "inputs"];
}

#[derive(Debug)]
pub struct TransformSpec {
    pub inputs: Vec<String>,
    pub config: TransformConfig,
    pub common: InputCommon,
}

#[derive(Debug)]
pub struct SinkSpec {
    pub inputs: Vec<String>,
    pub config: SinkConfig,
    pub common: InputCommon,
    /// Every option but `inputs` as given (after `${VAR}`), for a reload to tell
    /// whether it changed.
    pub settings: toml::Table,
    /// What sits between the sink's channel and the sink (`buffer = { … }`).
    pub buffer: BufferConfig,
}

/// The `buffer` table every sink takes, split off with the other shared keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SinkBuffer {
    buffer: BufferConfig,
}

impl SinkBuffer {
    const KEYS: &[&str] = &["buffer"];
    /// Every key a sink accepts besides its type's own.
    const KEYS_AND_SHARED: [&str; 3] = ["buffer", "buffer_max_bytes", "inputs"];
}

/// Reads and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::whole(path, format!("cannot read config: {e}")))?;
    parse(&text, path, |name| std::env::var(name).ok())
}

/// Parses and validates config `text` (named `path` in errors), looking variables up
/// with `env`.
pub fn parse(
    text: &str,
    path: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let reader = Reader::new(text, path);
    let mut root = reader.parse(&env)?;
    let root_span = root.span();
    let mut top = Vec::new();
    let mut sections: BTreeMap<&'static str, Spanned<DeValue>> = BTreeMap::new();
    for (key, value) in std::mem::take(root.get_mut()) {
        match &**key.get_ref() {
            "sources" => sections.insert("sources", value),
            "transforms" => sections.insert("transforms", value),
            "sinks" => sections.insert("sinks", value),
            _ => {
                top.push((key, value));
                None
            }
        };
    }
    let top: TopLevel = reader.deserialize(
        table_value(root_span.clone(), top),
        "",
        &["sources", "transforms", "sinks"],
    )?;

    let sources = reader.components(sections.remove("sources"), "sources")?;
    let transforms = reader.components(sections.remove("transforms"), "transforms")?;
    let sinks = reader.components(sections.remove("sinks"), "sinks")?;

    let mut config = Config {
        path: path.to_path_buf(),
        data_dir: top.data_dir,
        api: top.api,
        shutdown_timeout: top.shutdown_timeout,
        sources: BTreeMap::new(),
        transforms: BTreeMap::new(),
        sinks: BTreeMap::new(),
    };
    let mut graph = Graph::default();

    for component in sources {
        let context = format!("sources.{}", component.id);
        let (specific, common) = component.split(SourceCommon::KEYS);
        let common: SourceCommon = reader.deserialize(common, &context, &[])?;
        let streaming = SourceConfig::streams(component.type_name.get_ref());
        let mut shared = SourceCommon::KEYS.to_vec();
        let (specific, stream) = match streaming {
            true => {
                shared.extend(StreamOptions::KEYS);
                let (specific, stream) = split_table(specific, StreamOptions::KEYS);
                (
                    specific,
                    Some(reader.deserialize::<StreamOptions>(stream, &context, &[])?),
                )
            }
            false => (specific, None),
        };
        let mut source = reader.typed(
            &component,
            specific,
            (&context, &shared),
            SourceConfig::TYPES,
            SourceConfig::deserialize_type,
        )?;
        if let Some(stream) = stream {
            source.set_stream_options(stream);
        }
        graph.add(&reader, &component, &context, None)?;
        config_ok(&reader, &component, &context, source.validate())?;
        config.sources.insert(
            component.id.clone(),
            SourceSpec {
                config: source,
                common,
                settings: component.settings(),
            },
        );
    }
    for component in transforms {
        let context = format!("transforms.{}", component.id);
        let (specific, common) = component.split(InputCommon::KEYS);
        let common: InputCommon = reader.deserialize(common, &context, &[])?;
        let inputs = reader.inputs(&component, &context)?;
        let transform = reader.typed(
            &component,
            specific,
            (&context, &InputCommon::KEYS_AND_INPUTS),
            TransformConfig::TYPES,
            TransformConfig::deserialize_type,
        )?;
        graph.add(&reader, &component, &context, Some(&inputs))?;
        config_ok(&reader, &component, &context, transform.validate())?;
        config.transforms.insert(
            component.id.clone(),
            TransformSpec {
                inputs: inputs.into_iter().map(Spanned::into_inner).collect(),
                config: transform,
                common,
            },
        );
    }
    for component in sinks {
        let context = format!("sinks.{}", component.id);
        let (specific, common) = component.split(&[InputCommon::KEYS, SinkBuffer::KEYS].concat());
        let (common, buffer) = split_table(common, SinkBuffer::KEYS);
        let common: InputCommon = reader.deserialize(common, &context, &[])?;
        let SinkBuffer { buffer } = reader.deserialize(buffer, &context, &[])?;
        let inputs = reader.inputs(&component, &context)?;
        let sink = reader.typed(
            &component,
            specific,
            (&context, &SinkBuffer::KEYS_AND_SHARED),
            SinkConfig::TYPES,
            SinkConfig::deserialize_type,
        )?;
        graph.add(&reader, &component, &context, Some(&inputs))?;
        config_ok(&reader, &component, &context, sink.validate())?;
        config_ok(&reader, &component, &context, buffer.validate())?;
        config.sinks.insert(
            component.id.clone(),
            SinkSpec {
                inputs: inputs.into_iter().map(Spanned::into_inner).collect(),
                config: sink,
                common,
                settings: component.settings(),
                buffer,
            },
        );
    }
    graph.check(&reader, &config)?;
    Ok(config)
}

fn config_ok(
    reader: &Reader,
    component: &Component,
    context: &str,
    result: Result<(), String>,
) -> Result<(), ConfigError> {
    result.map_err(|message| {
        reader.error(
            Some(component.span.clone()),
            format!("{context}: {message}"),
        )
    })
}

#[cfg(test)]
mod tests;
