//! The line formats of log providers: Scalingo (`2015-02-16 02:02:43.930163178 +0000
//! UTC [web-1] message`, read with the `scalingo` source's parser), DigitalOcean App
//! Platform (`<component> <RFC3339Nano> <message>`) and DC/OS journal entries (JSON
//! with `fields.MESSAGE`, `PRIORITY`, `realtime_timestamp` in µs).

use serde_json::{Map, Value};

use super::Parsed;

/// `2015-02-16 02:02:43.930163178 +0000 UTC [web-1] message`: the time, the
/// container (`instance`, and its type as `component`: `web` from `web-1`), the
/// text. The `scalingo` source reads its lines with the same parser.
pub fn scalingo(line: &str) -> Result<Parsed, String> {
    let line = crate::sources::scalingo::line::parse(line)?;
    Ok(Parsed {
        message: Some(line.message.to_string()),
        timestamp: Some(line.time),
        component: Some(line.component().to_string()),
        instance: Some(line.container.to_string()),
        ..Parsed::default()
    })
}

/// True for `YYYY-MM-DD HH:MM:SS… +HHMM ZONE [`.
pub fn looks_like_scalingo(line: &str) -> bool {
    crate::sources::scalingo::line::looks_like(line)
}

/// `<component> <RFC3339Nano> <message>`: the `digitalocean` source's line format,
/// parsed by the source's own parser.
pub fn digitalocean(line: &str) -> Result<Parsed, String> {
    let line = crate::sources::digitalocean::line::parse(line)?;
    Ok(Parsed {
        message: Some(line.message.to_string()),
        timestamp: Some(line.timestamp),
        component: Some(line.component.to_string()),
        ..Parsed::default()
    })
}

pub use crate::sources::digitalocean::line::looks_like as looks_like_digitalocean;

/// A DC/OS logging API entry: `{"fields": {"MESSAGE": …, "PRIORITY": "6", …},
/// "realtime_timestamp": µs, …}`. `MESSAGE` becomes the text; the other journald
/// fields are kept; the unit names the component, `_HOSTNAME` (or a task's
/// `AGENT_ID`) the host, a task's `CONTAINER_ID` the instance and `FILE` the stream.
pub fn dcos(mut entry: Map<String, Value>) -> Result<Parsed, String> {
    let Some(Value::Object(mut fields)) = entry.remove("fields") else {
        return Err("no `fields` object".into());
    };
    let message = match fields.remove("MESSAGE") {
        Some(Value::String(s)) => s,
        Some(_) => return Err("`fields.MESSAGE` is not a string".into()),
        None => return Err("no `fields.MESSAGE`".into()),
    };
    let micros = entry
        .get("realtime_timestamp")
        .and_then(Value::as_i64)
        .or_else(|| {
            fields
                .get("_SOURCE_REALTIME_TIMESTAMP")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
        });
    let text = |fields: &Map<String, Value>, names: &[&str]| {
        names
            .iter()
            .find_map(|n| fields.get(*n).and_then(Value::as_str).map(str::to_string))
    };
    let stream = text(&fields, &["FILE"]).filter(|f| f == "stdout" || f == "stderr");
    Ok(Parsed {
        message: Some(message),
        timestamp: micros.and_then(|us| us.checked_mul(1_000)),
        component: text(&fields, &["UNIT", "_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER"]),
        instance: text(&fields, &["CONTAINER_ID"]),
        host: text(&fields, &["_HOSTNAME", "AGENT_ID"]),
        stream,
        fields: fields.into(),
    })
}

/// True for a JSON object that carries a journald `MESSAGE`.
pub fn looks_like_dcos(entry: &Map<String, Value>) -> bool {
    matches!(entry.get("fields"), Some(Value::Object(f)) if f.contains_key("MESSAGE"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalingo_lines() {
        let p = scalingo("2015-02-16 02:02:43.930163178 +0000 UTC [web-1] [martini] Started GET /")
            .unwrap();
        assert_eq!(p.message.as_deref(), Some("[martini] Started GET /"));
        assert_eq!(p.timestamp, Some(1_424_052_163_930_163_178));
        assert_eq!(p.component.as_deref(), Some("web"));
        assert_eq!(p.instance.as_deref(), Some("web-1"));
        assert!(scalingo("2015-02-16 02:02:43 +0000 UTC web-1 x").is_err());
        assert!(looks_like_scalingo(
            "2015-02-16 02:02:43.930163178 +0000 UTC [web-1] x"
        ));
    }

    #[test]
    fn digitalocean_lines() {
        let p = digitalocean("api 2024-05-01T12:00:00.123456789Z GET /health 200").unwrap();
        assert_eq!(p.component.as_deref(), Some("api"));
        assert_eq!(p.message.as_deref(), Some("GET /health 200"));
        assert_eq!(p.timestamp, Some(1_714_564_800_123_456_789));
        assert!(digitalocean("api yesterday hello").is_err());
    }

    #[test]
    fn dcos_entries() {
        let entry = json!({"fields":{"MESSAGE":"Started.","PRIORITY":"6","SYSLOG_IDENTIFIER":"systemd","UNIT":"tmp.timer","_HOSTNAME":"a60c"},"cursor":"s=1","realtime_timestamp":1476253700204926u64});
        let Value::Object(entry) = entry else {
            unreachable!()
        };
        assert!(looks_like_dcos(&entry));
        let p = dcos(entry).unwrap();
        assert_eq!(p.message.as_deref(), Some("Started."));
        assert_eq!(p.timestamp, Some(1_476_253_700_204_926_000));
        assert_eq!(p.component.as_deref(), Some("tmp.timer"));
        assert_eq!(p.host.as_deref(), Some("a60c"));
        assert_eq!(p.fields["PRIORITY"], "6");
        assert!(!p.fields.contains_key("MESSAGE"));

        let task = json!({"fields":{"AGENT_ID":"S1","CONTAINER_ID":"c1f5","FILE":"stderr","MESSAGE":"two"}});
        let Value::Object(task) = task else {
            unreachable!()
        };
        let p = dcos(task).unwrap();
        assert_eq!(
            (p.host.as_deref(), p.instance.as_deref()),
            (Some("S1"), Some("c1f5"))
        );
        assert_eq!(p.stream.as_deref(), Some("stderr"));
        assert_eq!(p.timestamp, None);

        for bad in [
            json!({}),
            json!({"fields": {"MESSAGE": 3}}),
            json!({"fields": {}}),
        ] {
            let Value::Object(bad) = bad else {
                unreachable!()
            };
            assert!(dcos(bad).is_err());
        }
    }
}
