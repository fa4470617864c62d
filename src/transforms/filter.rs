//! The `filter` transform: keeps (or drops) the events that meet a condition on the
//! level, a value's equality, a regex match, a value's existence, and `any` / `all`
//! / `not` combinations. Values are read as [`Event::lookup`] reads them, so the
//! built-in names (`app`, `stream`, `level` …) and parsed fields (`http.status`)
//! both work. Dropped events are counted with reason `filter`.

use std::cmp::Ordering;

use serde::{Deserialize, Deserializer};

use super::pattern::Pattern;
use super::{Transform, drop_counter};
use crate::event::{Event, Level};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Pass the events that meet the condition; drop the others.
    #[default]
    Keep,
    /// Drop the events that meet the condition; pass the others.
    Drop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Default `keep`.
    #[serde(default)]
    pub action: Action,
    pub condition: Condition,
}

/// One test on an event, written as a table with exactly one test in it:
/// `{ level = ">= warn" }`, `{ field = "app", equals = "shop" }` (or a list of
/// accepted values), `{ field = "path", matches = "^/api/" }`,
/// `{ field = "user", exists = true }`, `{ any = [...] }`, `{ all = [...] }`,
/// `{ not = {...} }`.
#[derive(Debug, Clone)]
pub enum Condition {
    /// The event's level compared with a level; an unknown level never matches.
    Level(Comparison, Level),
    Equals {
        field: String,
        values: Vec<String>,
    },
    Matches {
        field: String,
        pattern: Pattern,
    },
    Exists {
        field: String,
        exists: bool,
    },
    Any(Vec<Condition>),
    All(Vec<Condition>),
    Not(Box<Condition>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Comparison {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Ge => ordering.is_ge(),
            Comparison::Gt => ordering.is_gt(),
            Comparison::Le => ordering.is_le(),
            Comparison::Lt => ordering.is_lt(),
            Comparison::Eq => ordering.is_eq(),
            Comparison::Ne => ordering.is_ne(),
        }
    }
}

impl Condition {
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Condition::Level(cmp, level) => event.level.is_some_and(|l| cmp.holds(l.cmp(level))),
            Condition::Equals { field, values } => event
                .lookup(field)
                .is_some_and(|v| values.iter().any(|want| *want == v)),
            Condition::Matches { field, pattern } => {
                event.lookup(field).is_some_and(|v| pattern.is_match(&v))
            }
            Condition::Exists { field, exists } => event.lookup(field).is_some() == *exists,
            Condition::Any(all) => all.iter().any(|c| c.matches(event)),
            Condition::All(all) => all.iter().all(|c| c.matches(event)),
            Condition::Not(inner) => !inner.matches(event),
        }
    }
}

/// A value `equals` compares with, written as TOML writes it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Text(s) => s,
            Scalar::Integer(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Scalar),
    Many(Vec<Scalar>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    level: Option<String>,
    field: Option<String>,
    equals: Option<OneOrMany>,
    matches: Option<Pattern>,
    exists: Option<bool>,
    any: Option<Vec<Condition>>,
    all: Option<Vec<Condition>>,
    not: Option<Box<Condition>>,
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawCondition::deserialize(deserializer)?;
        raw.into_condition().map_err(serde::de::Error::custom)
    }
}

impl RawCondition {
    fn into_condition(self) -> Result<Condition, String> {
        let field_tests = [
            self.equals.is_some(),
            self.matches.is_some(),
            self.exists.is_some(),
        ]
        .iter()
        .filter(|t| **t)
        .count();
        let tests = field_tests
            + [
                self.level.is_some(),
                self.any.is_some(),
                self.all.is_some(),
                self.not.is_some(),
            ]
            .iter()
            .filter(|t| **t)
            .count();
        if tests != 1 {
            return Err("a condition holds exactly one of `level`, `equals`, `matches`, `exists`, `any`, `all`, `not`".into());
        }
        if self.field.is_some() != (field_tests == 1) {
            return Err(
                "`field` goes with `equals`, `matches` or `exists`, and they need it".into(),
            );
        }
        let field = self.field.unwrap_or_default();
        Ok(if let Some(level) = self.level {
            let (cmp, level) = parse_level_test(&level)?;
            Condition::Level(cmp, level)
        } else if let Some(equals) = self.equals {
            let values = match equals {
                OneOrMany::One(v) => vec![v.into_text()],
                OneOrMany::Many(vs) => vs.into_iter().map(Scalar::into_text).collect(),
            };
            Condition::Equals { field, values }
        } else if let Some(pattern) = self.matches {
            Condition::Matches { field, pattern }
        } else if let Some(exists) = self.exists {
            Condition::Exists { field, exists }
        } else if let Some(any) = self.any {
            Condition::Any(any)
        } else if let Some(all) = self.all {
            Condition::All(all)
        } else {
            Condition::Not(self.not.ok_or("missing condition")?)
        })
    }
}

/// `">= warn"`, `"<info"`, `"== error"`, or a bare level meaning `>=`.
fn parse_level_test(text: &str) -> Result<(Comparison, Level), String> {
    let text = text.trim();
    let (cmp, rest) = [
        (">=", Comparison::Ge),
        ("<=", Comparison::Le),
        ("==", Comparison::Eq),
        ("!=", Comparison::Ne),
        (">", Comparison::Gt),
        ("<", Comparison::Lt),
    ]
    .into_iter()
    .find_map(|(op, cmp)| text.strip_prefix(op).map(|rest| (cmp, rest)))
    .unwrap_or((Comparison::Ge, text));
    let name = rest.trim();
    let level = Level::from_name(name)
        .ok_or_else(|| format!("unknown level `{name}` in `{text}`, expected e.g. \">= warn\""))?;
    Ok((cmp, level))
}

#[derive(Clone)]
pub struct Filter {
    keep_matching: bool,
    condition: Condition,
    dropped: metrics::Counter,
}

impl Filter {
    pub fn new(id: &str, config: &FilterConfig) -> Self {
        Filter {
            keep_matching: config.action == Action::Keep,
            condition: config.condition.clone(),
            dropped: drop_counter(id, "filter"),
        }
    }
}

impl Transform for Filter {
    fn apply(&mut self, events: &mut Vec<Event>) {
        let before = events.len();
        events.retain(|e| self.condition.matches(e) == self.keep_matching);
        self.dropped.increment((before - events.len()) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn filter(options: &str) -> Filter {
        let config: FilterConfig = toml::from_str(options).expect("valid options");
        Filter::new("test", &config)
    }

    fn sample() -> Vec<Event> {
        let mut events = Vec::new();
        for (i, (level, app, status)) in [
            (Some(Level::Debug), "shop", 200),
            (Some(Level::Warn), "shop", 429),
            (Some(Level::Error), "auth", 500),
            (None, "auth", 200),
        ]
        .into_iter()
        .enumerate()
        {
            let mut e = Event::new("s".into(), "demo".into(), format!("GET /api/{i}"), 0);
            e.level = level;
            e.origin.app = Some(app.into());
            e.fields.insert("http".into(), json!({ "status": status }));
            if i == 2 {
                e.fields.insert("user".into(), json!("bob"));
            }
            events.push(e);
        }
        events
    }

    fn kept(options: &str) -> Vec<usize> {
        let mut events = sample();
        filter(options).apply(&mut events);
        events
            .iter()
            .map(|e| e.message.trim_start_matches("GET /api/").parse().unwrap())
            .collect()
    }

    #[test]
    fn conditions_select_events() {
        let cases: &[(&str, &[usize])] = &[
            (r#"condition = { level = ">= warn" }"#, &[1, 2]),
            (r#"condition = { level = "warn" }"#, &[1, 2]),
            (r#"condition = { level = "< warn" }"#, &[0]),
            (r#"condition = { level = "==error" }"#, &[2]),
            (r#"condition = { level = "!= error" }"#, &[0, 1]),
            (r#"condition = { level = "> debug" }"#, &[1, 2]),
            (r#"condition = { level = "<= warning" }"#, &[0, 1]),
            (r#"condition = { field = "app", equals = "auth" }"#, &[2, 3]),
            (
                r#"condition = { field = "http.status", equals = 500 }"#,
                &[2],
            ),
            (
                r#"condition = { field = "http.status", equals = [429, 500] }"#,
                &[1, 2],
            ),
            (
                r#"condition = { field = "message", matches = "/[02]$" }"#,
                &[0, 2],
            ),
            (r#"condition = { field = "user", exists = true }"#, &[2]),
            (
                r#"condition = { field = "user", exists = false }"#,
                &[0, 1, 3],
            ),
            (r#"condition = { field = "level", exists = false }"#, &[3]),
            (
                r#"condition = { any = [{ level = "error" }, { field = "http.status", equals = 429 }] }"#,
                &[1, 2],
            ),
            (
                r#"condition = { all = [{ field = "app", equals = "auth" }, { not = { level = ">= info" } }] }"#,
                &[3],
            ),
            (r#"condition = { any = [] }"#, &[]),
            (r#"condition = { all = [] }"#, &[0, 1, 2, 3]),
            (
                "action = \"drop\"\ncondition = { level = \"<= debug\" }",
                &[1, 2, 3],
            ),
        ];
        for (options, expected) in cases {
            assert_eq!(kept(options), *expected, "{options}");
        }
    }

    #[test]
    fn malformed_conditions_are_refused() {
        for options in [
            r#"condition = { level = ">= loud" }"#,
            r#"condition = { equals = "x" }"#,
            r#"condition = { field = "x" }"#,
            r#"condition = { field = "x", equals = "a", exists = true }"#,
            r#"condition = { level = "warn", any = [] }"#,
            r#"condition = { field = "x", matches = "(" }"#,
            r#"condition = { field = "x", equals = { a = 1 } }"#,
            r#"condition = { colour = "red" }"#,
            r#"condition = {}"#,
            "action = \"keep\"",
        ] {
            assert!(
                toml::from_str::<FilterConfig>(options).is_err(),
                "{options}"
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics(message in any::<String>(), value in any::<String>()) {
            let mut f = filter(r#"condition = { any = [{ field = "message", matches = "x+" }, { field = "v", equals = "a" }, { level = "info" }] }"#);
            let mut e = Event::new("s".into(), "demo".into(), message, 0);
            e.fields.insert("v".into(), json!(value));
            let mut events = vec![e];
            f.apply(&mut events);
            prop_assert!(events.len() <= 1);
        }
    }
}
