//! The generic configuration layer, which knows no component: TOML read with
//! positions, `${VAR}` interpolation, options deserialized with their full path, and
//! errors that say `PATH:LINE:COL: message` with did-you-mean suggestions. The
//! pipeline's own config (which sources, transforms and sinks, and how they connect)
//! is built on it in [`crate::topology::config`].

pub mod defaults;
mod error;
mod interpolate;
mod options;
mod reader;

pub use error::{ConfigError, line_column};
pub use interpolate::interpolate;
pub use options::{OptionError, OptionsDeserializer, did_you_mean, quoted_list, read_table};
pub use reader::{Component, Reader, split_table, table_value};
