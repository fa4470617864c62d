//! Reading a TOML document with positions: `${VAR}` interpolation that remembers what
//! it put in (secrets, often, that no error may echo), `[kind.id]` component tables
//! split into their `type`, `inputs` and options, and options deserialized with their
//! full path so every error reads `PATH:LINE:COL: option: what was wrong`.

use std::cell::RefCell;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::{
    ConfigError, OptionError, OptionsDeserializer, did_you_mean, interpolate, quoted_list,
};

/// One `[kind.id]` table, with its `type` taken out.
pub struct Component<'i> {
    pub id: String,
    pub id_span: Range<usize>,
    pub span: Range<usize>,
    pub type_name: Spanned<String>,
    entries: Vec<(Spanned<DeString<'i>>, Spanned<DeValue<'i>>)>,
}

impl<'i> Component<'i> {
    /// Splits the entries into (type-specific, shared) tables; `inputs` stays out of both.
    pub fn split(&self, shared: &[&str]) -> (Spanned<DeValue<'i>>, Spanned<DeValue<'i>>) {
        let entries = self
            .entries
            .iter()
            .filter(|(k, _)| &**k.get_ref() != "inputs")
            .cloned()
            .collect();
        split_entries(self.span.clone(), entries, shared)
    }

    /// The type and every option but `inputs`, without positions.
    pub fn settings(&self) -> toml::Table {
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
pub fn split_table<'i>(
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

pub fn table_value<'i>(
    span: Range<usize>,
    entries: Vec<(Spanned<DeString<'i>>, Spanned<DeValue<'i>>)>,
) -> Spanned<DeValue<'i>> {
    let mut table = DeTable::new();
    for (k, v) in entries {
        table.insert(k, v);
    }
    Spanned::new(span, DeValue::Table(table))
}

/// One document being read: its text and path for positioned errors.
pub struct Reader<'a> {
    text: &'a str,
    path: &'a Path,
    /// The values `${VAR}`s were replaced with: secrets, often, that no error may echo.
    from_env: RefCell<Vec<String>>,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str, path: &'a Path) -> Self {
        Reader {
            text,
            path,
            from_env: RefCell::new(Vec::new()),
        }
    }

    /// Parses the document and replaces every `${VAR}` in its strings, looking
    /// variables up with `env`.
    pub fn parse(
        &self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Spanned<DeTable<'a>>, ConfigError> {
        let mut root = DeTable::parse(self.text)
            .map_err(|e| ConfigError::from_toml(self.path, self.text, &e, ""))?;
        self.interpolate_table(root.get_mut(), env)?;
        Ok(root)
    }

    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let mut message = message.into();
        for value in self.from_env.borrow().iter().filter(|v| v.len() >= 4) {
            message = message.replace(value.as_str(), "***");
        }
        ConfigError::at(self.path, self.text, span, message)
    }

    /// Reads the table or value at option path `path`; `more_keys` are the keys the
    /// table also accepts that were taken out of it to be read elsewhere.
    pub fn deserialize<'i, T: Deserialize<'i>>(
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

    pub fn components<'i>(
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

    pub fn inputs(
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
    pub fn typed<'i, T>(
        &self,
        component: &Component<'i>,
        specific: Spanned<DeValue<'i>>,
        (context, shared): (&str, &[&str]),
        types: &[&str],
        deserialize: impl FnOnce(&str, OptionsDeserializer<'i>) -> Option<Result<T, OptionError>>,
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
