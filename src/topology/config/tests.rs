//! Parsing tests that need the whole config: option groups split off by the config
//! layer and handed to the right components.

use std::path::Path;
use std::time::Duration;

use super::parse;
use crate::sources::SourceConfig;

fn env(_: &str) -> Option<String> {
    None
}

#[test]
fn stream_options_reach_streaming_sources_only() {
    let text = r#"
[sources.g]
type = "ionet"
api_key = "k"
deployment_id = "d"
idle_timeout = "5s"
max_event_bytes = 4096
batch_max_events = 10

[sinks.o]
type = "console"
inputs = ["g"]
"#;
    let config = parse(text, Path::new("t.toml"), env).unwrap();
    let spec = &config.sources["g"];
    assert_eq!(spec.common.batch_max_events, 10);
    let SourceConfig::Ionet(ionet) = &spec.config else {
        panic!("an ionet source");
    };
    assert_eq!(ionet.stream.idle_timeout, Duration::from_secs(5));
    assert_eq!(ionet.stream.max_event_bytes, 4096);
    assert_eq!(
        ionet.stream.connect_timeout,
        Duration::from_secs(10),
        "defaults stay"
    );

    let demo = "[sources.d]\ntype = \"demo\"\nidle_timeout = \"5s\"\n[sinks.o]\ntype = \"console\"\ninputs = [\"d\"]\n";
    let error = parse(demo, Path::new("t.toml"), env).unwrap_err();
    assert_eq!(error.position, Some((3, 1)));
    assert!(
        error
            .message
            .contains("sources.d.idle_timeout: unknown option"),
        "{error}"
    );
}
