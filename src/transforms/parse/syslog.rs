//! Syslog lines, RFC 5424 and RFC 3164 (read by `syslog_loose`). A 3164 time has no
//! year: it gets the current one, or the previous one when that would put it more
//! than a day in the future (a December line read in January).

use chrono::{Datelike, NaiveDate, Utc};
use serde_json::{Map, Value};
use syslog_loose::{IncompleteDate, Variant};

use super::Parsed;

pub fn parse(line: &str) -> Result<Parsed, String> {
    if !has_priority(line) {
        return Err("missing <PRI> header".into());
    }
    let message =
        syslog_loose::parse_message_with_year_exact_tz(line, year_for, Some(Utc), Variant::Either)?;
    let mut fields = Map::new();
    if let Some(facility) = message.facility {
        fields.insert("facility".into(), Value::String(facility.as_str().into()));
    }
    if let Some(severity) = message.severity {
        fields.insert("severity".into(), Value::String(severity.as_str().into()));
    }
    if let Some(appname) = message.appname {
        fields.insert("appname".into(), Value::String(appname.into()));
    }
    if let Some(procid) = &message.procid {
        fields.insert("procid".into(), Value::String(procid.to_string()));
    }
    if let Some(msgid) = message.msgid {
        fields.insert("msgid".into(), Value::String(msgid.into()));
    }
    if !message.structured_data.is_empty() {
        let mut data = Map::new();
        for element in &message.structured_data {
            let params = element
                .params()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect();
            data.insert(element.id.to_string(), Value::Object(params));
        }
        fields.insert("structured_data".into(), Value::Object(data));
    }
    Ok(Parsed {
        fields: fields.into(),
        message: Some(message.msg.to_string()),
        timestamp: message.timestamp.and_then(|t| t.timestamp_nanos_opt()),
        component: message.appname.map(str::to_string),
        host: message.hostname.map(str::to_string),
        ..Parsed::default()
    })
}

/// `<N>` with one to three digits opens every syslog line ferry accepts.
pub fn has_priority(line: &str) -> bool {
    let bytes = line.trim_start().as_bytes();
    let digits = bytes
        .iter()
        .skip(1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    bytes.first() == Some(&b'<')
        && (1..=3).contains(&digits)
        && bytes.get(1 + digits) == Some(&b'>')
}

fn year_for((month, day, _, _, _): IncompleteDate) -> i32 {
    let now = Utc::now();
    let year = now.year();
    let tomorrow = now.date_naive().succ_opt().unwrap_or(NaiveDate::MAX);
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(date) if date > tomorrow => year - 1,
        _ => year,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_rfc5424_with_structured_data() {
        let line = r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 42 ID47 [exampleSDID@32473 iut="3" eventSource="Application"] An application event"#;
        let parsed = parse(line).unwrap();
        assert_eq!(parsed.message.as_deref(), Some("An application event"));
        assert_eq!(parsed.host.as_deref(), Some("mymachine.example.com"));
        assert_eq!(parsed.component.as_deref(), Some("evntslog"));
        assert_eq!(parsed.timestamp, Some(1_065_910_455_003_000_000));
        assert_eq!(parsed.fields["severity"], "notice");
        assert_eq!(parsed.fields["facility"], "local4");
        assert_eq!(parsed.fields["procid"], "42");
        assert_eq!(parsed.fields["msgid"], "ID47");
        assert_eq!(
            parsed.fields["structured_data"],
            json!({"exampleSDID@32473": {"iut": "3", "eventSource": "Application"}})
        );
    }

    #[test]
    fn reads_rfc3164_without_a_year() {
        let parsed = parse("<34>Oct 11 22:14:15 mymachine su[99]: 'su root' failed").unwrap();
        assert_eq!(parsed.message.as_deref(), Some("'su root' failed"));
        assert_eq!(parsed.host.as_deref(), Some("mymachine"));
        assert_eq!(parsed.component.as_deref(), Some("su"));
        assert_eq!(parsed.fields["severity"], "crit");
        assert_eq!(parsed.fields["procid"], "99");
        let t = chrono::DateTime::from_timestamp_nanos(parsed.timestamp.unwrap());
        assert_eq!((t.month(), t.day()), (10, 11));
        let this_year = Utc::now().year();
        assert!(t.year() == this_year || t.year() == this_year - 1);
    }

    #[test]
    fn a_year_ahead_means_last_year() {
        let now = Utc::now();
        let later = now + chrono::Duration::days(40);
        let year = year_for((later.month(), later.day(), 0, 0, 0));
        assert_eq!(
            year,
            if later.year() > now.year() {
                now.year()
            } else {
                now.year() - 1
            }
        );
        assert_eq!(year_for((now.month(), now.day(), 0, 0, 0)), now.year());
    }

    #[test]
    fn refuses_lines_without_priority() {
        for line in [
            "Oct 11 22:14:15 host app: hi",
            "",
            "<>x",
            "<1234>1 x",
            "<12",
        ] {
            assert!(parse(line).is_err(), "{line:?}");
        }
    }
}
