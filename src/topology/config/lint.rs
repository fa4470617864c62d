//! Advice about a config that is valid but probably not what the operator meant,
//! printed by `ferry validate` (which still exits 0) and logged by `ferry run`.

use std::collections::{BTreeMap, BTreeSet};

use super::Config;
use crate::transforms::TransformConfig;

impl Config {
    /// Every warning about this config, one line each.
    pub fn warnings(&self) -> Vec<String> {
        unredacted_parse_paths(self)
    }
}

/// When a config redacts anything, every sink that receives parsed events should get
/// them through a `redact`: parsed fields carry the same secrets as the line. Warns
/// for each (parse, sink) pair joined by a path with no `redact` on it.
fn unredacted_parse_paths(config: &Config) -> Vec<String> {
    let is = |id: &str, pick: fn(&TransformConfig) -> bool| {
        config.transforms.get(id).is_some_and(|t| pick(&t.config))
    };
    let redacts: Vec<&str> = config
        .transforms
        .keys()
        .map(String::as_str)
        .filter(|id| is(id, |t| matches!(t, TransformConfig::Redact(_))))
        .collect();
    if redacts.is_empty() {
        return Vec::new();
    }
    let mut consumers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let inputs = config
        .transforms
        .iter()
        .map(|(id, spec)| (id, &spec.inputs))
        .chain(config.sinks.iter().map(|(id, spec)| (id, &spec.inputs)));
    for (id, inputs) in inputs {
        for input in inputs {
            consumers.entry(input).or_default().push(id);
        }
    }
    let mut warnings = Vec::new();
    let parses = config
        .transforms
        .keys()
        .filter(|id| is(id, |t| matches!(t, TransformConfig::Parse(_))));
    for parse in parses {
        let mut seen = BTreeSet::new();
        let mut next = vec![parse.as_str()];
        while let Some(id) = next.pop() {
            for &consumer in consumers.get(id).into_iter().flatten() {
                if !seen.insert(consumer) || redacts.contains(&consumer) {
                    continue;
                }
                if config.sinks.contains_key(consumer) {
                    warnings.push(format!(
                        "sinks.{consumer} receives events parsed by transforms.{parse} that pass no redact \
                         (this config redacts elsewhere: transforms.{}); parsed fields carry the same \
                         secrets as the line, so put a redact after the parse on this path too",
                        redacts.join(", transforms.")
                    ));
                } else {
                    next.push(consumer);
                }
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn warnings(pipeline: &str) -> Vec<String> {
        let text = format!(
            "[sources.in]\ntype = \"stdin\"\n{pipeline}\n[sinks.out]\ntype = \"console\"\ninputs = [\"clean\"]\n"
        );
        crate::topology::config::parse(&text, Path::new("t.toml"), |_| None)
            .expect("valid")
            .warnings()
    }

    #[test]
    fn warns_only_for_parsed_paths_that_skip_every_redact() {
        let redacted = "[transforms.p]\ntype = \"parse\"\ninputs = [\"in\"]\nformat = \"json\"\n\
                        [transforms.clean]\ntype = \"redact\"\ninputs = [\"p\"]\n";
        assert!(warnings(redacted).is_empty());

        let bypass = format!(
            "{redacted}[sinks.raw]\ntype = \"console\"\ninputs = [\"p\"]\n\
             [transforms.lvl]\ntype = \"level\"\ninputs = [\"p\"]\n\
             [sinks.tagged]\ntype = \"console\"\ninputs = [\"lvl\"]\n"
        );
        let found = warnings(&bypass);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("sinks.raw receives events parsed by transforms.p"));
        assert!(found[0].contains("transforms.clean"));
        assert!(found[1].starts_with("sinks.tagged receives events parsed by transforms.p"));

        let no_redact =
            "[transforms.clean]\ntype = \"parse\"\ninputs = [\"in\"]\nformat = \"json\"\n";
        assert!(
            warnings(no_redact).is_empty(),
            "no redact anywhere: nothing to advise"
        );
    }
}
