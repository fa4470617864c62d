//! The TOML configuration: the model, loading with `${ENV}` interpolation, and the
//! validation that refuses a broken pipeline before anything starts. Every error says
//! `PATH:LINE:COL: message`.
//!
//! Component tables are read in two steps: the keys every component of a kind shares
//! (`type`, `inputs`, buffer and batch limits) are taken out first, then the rest is
//! deserialized into the type's own config struct with unknown keys refused. That is
//! the `#[serde(tag = "type")]` shape, done by hand so errors keep their position.

mod error;
mod interpolate;
mod lint;
mod options;
mod secret;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

pub use error::{ConfigError, line_column};
pub use interpolate::interpolate;
pub use options::{OptionsDeserializer, did_you_mean, quoted_list, read_table};
pub use secret::{Secret, require_secret, resolve_secret};

use crate::buffer::BufferConfig;
use crate::http::stream::StreamOptions;
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::transforms::TransformConfig;

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceCommon {
    /// Batches sent but not yet committed. Bounds what a crash replays.
    pub max_in_flight_batches: usize,
    /// Bytes the batches sent and not yet delivered may hold (what the events really
    /// hold in memory, after the transforms fused into the source). Bounds memory.
    pub max_in_flight_bytes: usize,
    /// Most events in one batch.
    pub batch_max_events: usize,
    /// Most message bytes in one batch.
    pub batch_max_bytes: usize,
}

impl Default for SourceCommon {
    fn default() -> Self {
        SourceCommon {
            max_in_flight_batches: 32,
            max_in_flight_bytes: 8 << 20,
            batch_max_events: 1000,
            batch_max_bytes: 1 << 20,
        }
    }
}

impl SourceCommon {
    const KEYS: &[&str] = &[
        "max_in_flight_batches",
        "max_in_flight_bytes",
        "batch_max_events",
        "batch_max_bytes",
    ];
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
            buffer_max_bytes: 8 << 20,
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
    let reader = Reader {
        text,
        path,
        from_env: RefCell::new(Vec::new()),
    };
    let mut root = DeTable::parse(text).map_err(|e| ConfigError::from_toml(path, text, &e, ""))?;
    reader.interpolate_table(root.get_mut(), &env)?;
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

/// One `[kind.id]` table, with its `type` taken out.
struct Component<'i> {
    id: String,
    id_span: Range<usize>,
    span: Range<usize>,
    type_name: Spanned<String>,
    entries: Vec<(Spanned<DeString<'i>>, Spanned<DeValue<'i>>)>,
}

impl<'i> Component<'i> {
    /// Splits the entries into (type-specific, shared) tables; `inputs` stays out of both.
    fn split(&self, shared: &[&str]) -> (Spanned<DeValue<'i>>, Spanned<DeValue<'i>>) {
        let entries = self
            .entries
            .iter()
            .filter(|(k, _)| &**k.get_ref() != "inputs")
            .cloned()
            .collect();
        split_entries(self.span.clone(), entries, shared)
    }

    /// The type and every option but `inputs`, without positions.
    fn settings(&self) -> toml::Table {
        let mut settings = toml::Table::new();
        settings.insert("type".into(), self.type_name.get_ref().clone().into());
        for (key, value) in &self.entries {
            if &**key.get_ref() != "inputs"
                && let Ok(value) =
                    toml::Value::deserialize(OptionsDeserializer::new(value.clone(), String::new()))
            {
                settings.insert(key.get_ref().to_string(), value);
            }
        }
        settings
    }
}

/// Splits a table's entries into (the other keys, the keys in `keys`), both tables
/// keeping the table's span for errors about missing options.
fn split_entries<'i>(
    span: Range<usize>,
    entries: Vec<(Spanned<DeString<'i>>, Spanned<DeValue<'i>>)>,
    keys: &[&str],
) -> (Spanned<DeValue<'i>>, Spanned<DeValue<'i>>) {
    let (taken, rest): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(k, _)| keys.contains(&&**k.get_ref()));
    (table_value(span.clone(), rest), table_value(span, taken))
}

/// Takes the keys in `keys` out of a table value: (the rest, the taken keys).
fn split_table<'i>(
    table: Spanned<DeValue<'i>>,
    keys: &[&str],
) -> (Spanned<DeValue<'i>>, Spanned<DeValue<'i>>) {
    let span = table.span();
    let entries = match table.into_inner() {
        DeValue::Table(table) => table.into_iter().collect(),
        _ => Vec::new(),
    };
    split_entries(span, entries, keys)
}

fn table_value<'i>(
    span: Range<usize>,
    entries: Vec<(Spanned<DeString<'i>>, Spanned<DeValue<'i>>)>,
) -> Spanned<DeValue<'i>> {
    let mut table = DeTable::new();
    for (k, v) in entries {
        table.insert(k, v);
    }
    Spanned::new(span, DeValue::Table(table))
}

struct Reader<'a> {
    text: &'a str,
    path: &'a Path,
    /// The values `${VAR}`s were replaced with: secrets, often, that no error may echo.
    from_env: RefCell<Vec<String>>,
}

impl<'a> Reader<'a> {
    fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let mut message = message.into();
        for value in self.from_env.borrow().iter().filter(|v| v.len() >= 4) {
            message = message.replace(value.as_str(), "***");
        }
        ConfigError::at(self.path, self.text, span, message)
    }

    /// Reads the table or value at option path `path`; `more_keys` are the keys the
    /// table also accepts that were taken out of it to be read elsewhere.
    fn deserialize<'i, T: Deserialize<'i>>(
        &self,
        value: Spanned<DeValue<'i>>,
        path: &str,
        more_keys: &[&str],
    ) -> Result<T, ConfigError> {
        T::deserialize(OptionsDeserializer::new(value, path.to_string()))
            .map_err(|e| self.error(e.span(), e.describe(path, more_keys)))
    }

    fn interpolate_table(
        &self,
        table: &mut DeTable<'_>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for (_, value) in table.iter_mut() {
            self.interpolate_value(value, env)?;
        }
        Ok(())
    }

    fn interpolate_value(
        &self,
        value: &mut Spanned<DeValue<'_>>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let span = value.span();
        match value.get_mut() {
            DeValue::String(s) if s.contains('$') => {
                let recording_env = |name: &str| {
                    let value = env(name);
                    self.from_env.borrow_mut().extend(value.clone());
                    value
                };
                let replaced =
                    interpolate(s, recording_env).map_err(|m| self.error(Some(span), m))?;
                *s = DeString::Owned(replaced);
            }
            DeValue::Array(items) => {
                for item in items.iter_mut() {
                    self.interpolate_value(item, env)?;
                }
            }
            DeValue::Table(table) => self.interpolate_table(table, env)?,
            _ => {}
        }
        Ok(())
    }

    fn components<'i>(
        &self,
        section: Option<Spanned<DeValue<'i>>>,
        kind: &str,
    ) -> Result<Vec<Component<'i>>, ConfigError> {
        let Some(section) = section else {
            return Ok(Vec::new());
        };
        let section_span = section.span();
        let DeValue::Table(table) = section.into_inner() else {
            return Err(self.error(
                Some(section_span),
                format!("`{kind}` must be a table of components, as in [{kind}.my_id]"),
            ));
        };
        let mut components = Vec::new();
        for (key, value) in table {
            let id = key.get_ref().to_string();
            let id_span = key.span();
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(self.error(
                    Some(id_span),
                    format!("invalid component id `{kind}.{id}`: use letters, digits, `_` and `-`"),
                ));
            }
            let span = value.span();
            let DeValue::Table(entries) = value.into_inner() else {
                return Err(self.error(
                    Some(span),
                    format!("`{kind}.{id}` must be a table with a `type`"),
                ));
            };
            let mut type_name = None;
            let mut rest = Vec::new();
            for (k, v) in entries {
                if &**k.get_ref() == "type" {
                    let v_span = v.span();
                    match v.into_inner() {
                        DeValue::String(s) => {
                            type_name = Some(Spanned::new(v_span, s.into_owned()))
                        }
                        _ => {
                            return Err(self.error(
                                Some(v_span),
                                format!("{kind}.{id}: `type` must be a string"),
                            ));
                        }
                    }
                } else {
                    rest.push((k, v));
                }
            }
            let Some(type_name) = type_name else {
                return Err(self.error(
                    Some(id_span),
                    format!("{kind}.{id}: missing required option `type`"),
                ));
            };
            components.push(Component {
                id,
                id_span,
                span,
                type_name,
                entries: rest,
            });
        }
        Ok(components)
    }

    fn inputs(
        &self,
        component: &Component,
        context: &str,
    ) -> Result<Vec<Spanned<String>>, ConfigError> {
        let Some((_, value)) = component
            .entries
            .iter()
            .find(|(k, _)| &**k.get_ref() == "inputs")
        else {
            return Err(self.error(
                Some(component.id_span.clone()),
                format!("{context}: missing required option `inputs` (the ids of the components that feed it)"),
            ));
        };
        let not_ids = |span| {
            self.error(
                Some(span),
                format!(
                    "{context}.inputs: expected an array of component ids, as in [\"my_source\"]"
                ),
            )
        };
        let DeValue::Array(items) = value.get_ref() else {
            return Err(not_ids(value.span()));
        };
        let inputs = items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(id) => Ok(Spanned::new(item.span(), id.to_string())),
                _ => Err(not_ids(item.span())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if inputs.is_empty() {
            return Err(self.error(
                Some(value.span()),
                format!("{context}: `inputs` is empty; name at least one source or transform"),
            ));
        }
        Ok(inputs)
    }

    /// Reads a component's own options by its `type`; `shared` are the keys every
    /// component of its kind accepts, read elsewhere.
    fn typed<'i, T>(
        &self,
        component: &Component<'i>,
        specific: Spanned<DeValue<'i>>,
        (context, shared): (&str, &[&str]),
        types: &[&str],
        deserialize: impl FnOnce(
            &str,
            OptionsDeserializer<'i>,
        ) -> Option<Result<T, options::OptionError>>,
    ) -> Result<T, ConfigError> {
        let type_name = component.type_name.get_ref();
        match deserialize(
            type_name,
            OptionsDeserializer::new(specific, context.to_string()),
        ) {
            None => Err(self.error(
                Some(component.type_name.span()),
                format!(
                    "{context}.type: unknown type `{type_name}`{}: {}",
                    did_you_mean(type_name, types, '`'),
                    quoted_list(types, '`')
                ),
            )),
            Some(result) => result.map_err(|e| self.error(e.span(), e.describe(context, shared))),
        }
    }
}

/// The component graph, checked for unknown inputs, cycles and dangling parts.
#[derive(Default)]
struct Graph {
    kinds: BTreeMap<String, (&'static str, Range<usize>)>,
    edges: Vec<(String, Spanned<String>, String)>,
}

impl Graph {
    fn add(
        &mut self,
        reader: &Reader,
        component: &Component,
        context: &str,
        inputs: Option<&[Spanned<String>]>,
    ) -> Result<(), ConfigError> {
        let kind = match inputs {
            None => "source",
            Some(_) if context.starts_with("transforms.") => "transform",
            Some(_) => "sink",
        };
        if let Some((other, _)) = self.kinds.get(&component.id) {
            return Err(reader.error(
                Some(component.id_span.clone()),
                format!("{context}: the id `{}` is already used by a {other}; ids must be unique across sources, transforms and sinks", component.id),
            ));
        }
        self.kinds
            .insert(component.id.clone(), (kind, component.id_span.clone()));
        for input in inputs.unwrap_or_default() {
            self.edges
                .push((component.id.clone(), input.clone(), context.to_string()));
        }
        Ok(())
    }

    fn check(&self, reader: &Reader, config: &Config) -> Result<(), ConfigError> {
        if config.sources.is_empty() {
            return Err(reader.error(None, "no sources: add at least one [sources.ID] table"));
        }
        if config.sinks.is_empty() {
            return Err(reader.error(None, "no sinks: add at least one [sinks.ID] table"));
        }
        for (_, input, context) in &self.edges {
            match self.kinds.get(input.get_ref()) {
                None => {
                    let known: Vec<&str> = self
                        .kinds
                        .iter()
                        .filter(|(_, (k, _))| *k != "sink")
                        .map(|(id, _)| id.as_str())
                        .collect();
                    return Err(reader.error(
                        Some(input.span()),
                        format!(
                            "{context}: unknown input `{}`; known sources and transforms: {}",
                            input.get_ref(),
                            known.join(", ")
                        ),
                    ));
                }
                Some(("sink", _)) => {
                    return Err(reader.error(
                        Some(input.span()),
                        format!(
                            "{context}: input `{}` is a sink; sinks have no output",
                            input.get_ref()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        self.check_cycles(reader)?;
        let consumed: BTreeSet<&str> = self
            .edges
            .iter()
            .map(|(_, i, _)| i.get_ref().as_str())
            .collect();
        for (id, (kind, _)) in &self.kinds {
            if *kind != "sink" && !consumed.contains(id.as_str()) {
                tracing::warn!("{kind} `{id}` feeds no sink or transform; its events go nowhere");
            }
        }
        Ok(())
    }

    /// Depth-first search over transform → input edges.
    fn check_cycles(&self, reader: &Reader) -> Result<(), ConfigError> {
        let mut inputs_of: BTreeMap<&str, Vec<&Spanned<String>>> = BTreeMap::new();
        for (id, input, _) in &self.edges {
            inputs_of.entry(id.as_str()).or_default().push(input);
        }
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        fn visit<'g>(
            node: &'g str,
            inputs_of: &BTreeMap<&'g str, Vec<&'g Spanned<String>>>,
            marks: &mut BTreeMap<&'g str, Mark>,
            path: &mut Vec<&'g str>,
        ) -> Option<(Vec<String>, Range<usize>)> {
            marks.insert(node, Mark::Visiting);
            path.push(node);
            for input in inputs_of.get(node).into_iter().flatten() {
                let name = input.get_ref().as_str();
                match marks.get(name) {
                    Some(Mark::Visiting) => {
                        let start = path.iter().position(|n| *n == name).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            path[start..].iter().map(|s| s.to_string()).collect();
                        cycle.push(name.to_string());
                        return Some((cycle, input.span()));
                    }
                    Some(Mark::Done) => {}
                    None => {
                        if let Some(found) = visit(name, inputs_of, marks, path) {
                            return Some(found);
                        }
                    }
                }
            }
            path.pop();
            marks.insert(node, Mark::Done);
            None
        }
        let mut marks = BTreeMap::new();
        for node in inputs_of.keys() {
            if !marks.contains_key(node) {
                let mut path = Vec::new();
                if let Some((cycle, span)) = visit(node, &inputs_of, &mut marks, &mut path) {
                    return Err(reader.error(
                        Some(span),
                        format!("cycle in the pipeline: {}", cycle.join(" -> ")),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
