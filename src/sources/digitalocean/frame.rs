//! The messages of App Platform's live log socket: text messages holding a JSON
//! object `{"data": "<lines>"}` (doctl decodes exactly this), the lines escaped the
//! way Go's encoder does it (`\u003c`, `\n`, …). `data` may carry one line with
//! its trailing `\n` or several lines. A message that is not such an object is
//! taken as plain text lines, so nothing the server sends is thrown away.

use std::borrow::Cow;

use serde::Deserialize;

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
}

/// What one websocket message holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The `data` of a `{"data": …}` message.
    Data(Cow<'a, str>),
    /// A JSON object without `data` (nothing to ship).
    Empty,
    /// Not a JSON object: the message text itself, as lines.
    Text(&'a str),
}

/// Decodes one websocket message.
pub fn decode(message: &str) -> Decoded<'_> {
    let trimmed = message.trim_start();
    if !trimmed.starts_with('{') {
        return Decoded::Text(message);
    }
    match serde_json::from_str::<Message<'_>>(message) {
        Ok(Message { data: Some(data) }) => Decoded::Data(data),
        Ok(Message { data: None }) => Decoded::Empty,
        Err(_) => Decoded::Text(message),
    }
}

pub use crate::http::connection::text_lines as lines;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn data_frames_decode_to_their_lines() {
        let one = r#"{"data":"web 2024-05-01T12:00:00.123456789Z Listening on :8080\n"}"#;
        let Decoded::Data(data) = decode(one) else {
            panic!("not data")
        };
        assert_eq!(
            lines(&data).collect::<Vec<_>>(),
            ["web 2024-05-01T12:00:00.123456789Z Listening on :8080"]
        );
        let go = r#"{"data":"web 2024-05-01T12:00:00Z \u003cb\u003e \u0026 caf\u00e9\r\napi 2024-05-01T12:00:01Z two\n\n"}"#;
        let Decoded::Data(data) = decode(go) else {
            panic!("not data")
        };
        assert_eq!(
            lines(&data).collect::<Vec<_>>(),
            [
                "web 2024-05-01T12:00:00Z <b> & café",
                "api 2024-05-01T12:00:01Z two"
            ]
        );
        assert_eq!(decode(r#"{"type":"ping"}"#), Decoded::Empty);
        assert_eq!(
            decode("web 2024-05-01T12:00:00Z plain"),
            Decoded::Text("web 2024-05-01T12:00:00Z plain")
        );
        assert_eq!(decode(r#"{"data":"cut"#), Decoded::Text(r#"{"data":"cut"#));
        assert_eq!(decode(r#"{"data":7}"#), Decoded::Text(r#"{"data":7}"#));
    }

    proptest! {
        /// Whatever lines are sent, encoded as JSON, in one message or several,
        /// come back as the same non-empty lines.
        #[test]
        fn encoded_lines_come_back(
            sent in proptest::collection::vec("[^\n\r]{0,40}", 1..8),
            per_message in 1usize..4,
        ) {
            let mut got = Vec::new();
            for chunk in sent.chunks(per_message) {
                let data: String = chunk.iter().map(|l| format!("{l}\n")).collect();
                let message = serde_json::json!({ "data": data }).to_string();
                let Decoded::Data(data) = decode(&message) else {
                    panic!("not data: {message}")
                };
                got.extend(lines(&data).map(str::to_string));
            }
            let expected: Vec<&String> = sent.iter().filter(|l| !l.is_empty()).collect();
            prop_assert_eq!(got.iter().collect::<Vec<_>>(), expected);
        }

        /// Any message decodes to something; text is never lost.
        #[test]
        fn any_message_decodes(message in "\\PC{0,80}") {
            match decode(&message) {
                Decoded::Text(text) => prop_assert_eq!(text, message.as_str()),
                Decoded::Data(_) | Decoded::Empty => {
                    prop_assert!(message.trim_start().starts_with('{'), "not an object: {}", message);
                }
            }
        }
    }
}
