//! The component graph of a pipeline config, checked for unknown inputs, cycles and
//! dangling parts.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use toml::Spanned;

use super::Config;
use crate::config::{Component, ConfigError, Reader};

/// The component graph, checked for unknown inputs, cycles and dangling parts.
#[derive(Default)]
pub(super) struct Graph {
    kinds: BTreeMap<String, (&'static str, Range<usize>)>,
    edges: Vec<(String, Spanned<String>, String)>,
}

impl Graph {
    pub(super) fn add(
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

    pub(super) fn check(&self, reader: &Reader, config: &Config) -> Result<(), ConfigError> {
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
