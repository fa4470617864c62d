use proptest::prelude::*;

use super::*;

fn selection() -> Selection {
    Selection {
        budget: 1 << 20,
        max_line_bytes: 1 << 10,
        ..Selection::default()
    }
}

fn decode_str(json: &str, selection: &Selection) -> Answer {
    decode(json.as_bytes(), selection).expect("a valid answer")
}

/// (key, log, time, level) of the kept lines, oldest first.
fn kept(answer: &Answer) -> Vec<(String, String, i64, LogLevel)> {
    let mut lines = answer.lines.clone();
    lines.sort();
    lines
        .into_iter()
        .map(|l| {
            let key = answer.streams[l.stream as usize].key.clone();
            (key, l.log, l.time, l.level)
        })
        .collect()
}

const DOCUMENTED: &str = r#"{
  "partitioner": [ {"log":"split input into 4 chunks","timestamp":"2025-06-24T16:19:02.101Z","level":"INFO","container":"partitioner"} ],
  "assembler":   [ {"log":"merging 4 chunks","timestamp":"2025-06-24T16:21:40.5Z","level":"INFO","container":"assembler"} ],
  "taskrunner": {
    "3e1f-task-0": {"logs":[{"log":"processing chunk 0","timestamp":"2025-06-24T16:19:10.000000001Z","level":"INFO","container":"app"}]},
    "3e1f-task-1": {"logs":[{"log":"Traceback ...","timestamp":"2025-06-24T16:19:12Z","level":"ERROR","container":"app"}]}
  }
}"#;

#[test]
fn an_answer_read_as_it_arrives_decodes_as_one_read_whole() {
    for whole in [0, 1, DOCUMENTED.len() - 1, DOCUMENTED.len(), usize::MAX] {
        let answer = decode_whole_up_to(DOCUMENTED.as_bytes(), &selection(), whole).unwrap();
        assert_eq!(kept(&answer), kept(&decode_str(DOCUMENTED, &selection())));
        assert_eq!(answer.streams.len(), 4);
    }
    let cut = &DOCUMENTED[..DOCUMENTED.len() / 2];
    for whole in [0, cut.len(), usize::MAX] {
        let error = decode_whole_up_to(cut.as_bytes(), &selection(), whole).unwrap_err();
        assert!(error.is_eof(), "{error}");
    }
}

#[test]
fn the_documented_answer_flattens_into_sub_streams() {
    let answer = decode_str(DOCUMENTED, &selection());
    let second = 1_750_781_942_000_000_000;
    assert_eq!(
        kept(&answer),
        [
            (
                "partitioner//partitioner".into(),
                "split input into 4 chunks".into(),
                second + 101_000_000,
                LogLevel::Info
            ),
            (
                "taskrunner/3e1f-task-0/app".into(),
                "processing chunk 0".into(),
                second + 8_000_000_001,
                LogLevel::Info
            ),
            (
                "taskrunner/3e1f-task-1/app".into(),
                "Traceback ...".into(),
                second + 10_000_000_000,
                LogLevel::Error
            ),
            (
                "assembler//assembler".into(),
                "merging 4 chunks".into(),
                second + 158_500_000_000,
                LogLevel::Info
            ),
        ]
    );
    let task = &answer.streams[2];
    assert_eq!(
        (task.service, task.task.as_str(), task.container.as_str()),
        (Service::TaskRunner, "3e1f-task-0", "app")
    );
    assert_eq!(answer.total, 4);
    assert!(!answer.more);
}

#[test]
fn omitted_fields_are_empty_and_levels_may_be_numbers() {
    let json = r#"{"taskrunner":{"t1":[{"log":"bare array","level":5},{}],"t2":null,
        "t3":{"logs":[{"log":null,"timestamp":"2025-06-24T16:19:02Z","level":"7","container":null,"extra":{"a":[1]}}]}},
        "partitioner":null,"scheduler":[{"log":"unknown service"}],"assembler":{"logs":[{"log":"x","level":"LOG_LEVEL_WARN"}]}}"#;
    let answer = decode_str(json, &selection());
    let lines = kept(&answer);
    assert_eq!(lines.len(), 4, "{lines:?}");
    let find = |log: &str| lines.iter().find(|l| l.1 == log).unwrap().clone();
    assert_eq!(find("bare array").3, LogLevel::Error);
    assert_eq!(find("x").3, LogLevel::Warn);
    let empty = lines.iter().find(|l| l.1.is_empty() && l.2 == 0).unwrap();
    assert_eq!(empty.0, "taskrunner/t1/");
    assert_eq!(empty.3, LogLevel::Unknown);
    let panic = lines.iter().find(|l| l.2 > 0).unwrap();
    assert_eq!(
        (panic.0.as_str(), panic.3),
        ("taskrunner/t3/", LogLevel::Panic)
    );
    let untimed = answer.lines.iter().filter(|l| !l.timed).count();
    assert_eq!(untimed, 3);
}

#[test]
fn answers_newest_first_are_recognised() {
    let newest_first = r#"{"partitioner":[
        {"log":"c","timestamp":"2025-06-24T16:19:03Z"},
        {"log":"b","timestamp":"2025-06-24T16:19:02Z"},
        {"log":"a","timestamp":"2025-06-24T16:19:01Z"}]}"#;
    assert!(decode_str(newest_first, &selection()).newest_first);
    let oldest_first = newest_first.replace("03Z", "00Z").replace("01Z", "09Z");
    assert!(!decode_str(&oldest_first, &selection()).newest_first);
    let undecided = r#"{"partitioner":[{"log":"a","timestamp":"2025-06-24T16:19:03Z"}]}"#;
    assert!(
        decode_str(undecided, &selection()).newest_first,
        "as documented"
    );
}

#[test]
fn lines_before_the_mark_are_dropped_and_the_mark_is_reached() {
    let json = r#"{"partitioner":[
        {"log":"new","timestamp":"2025-06-24T16:19:03Z"},
        {"log":"at mark","timestamp":"2025-06-24T16:19:02Z"},
        {"log":"old","timestamp":"2025-06-24T16:19:01Z"}],
      "assembler":[{"log":"only new","timestamp":"2025-06-24T16:19:09Z"}]}"#;
    let mut selection = selection();
    let mark = parse_timestamp("2025-06-24T16:19:02Z").unwrap();
    selection.marks.insert("partitioner//".into(), mark);
    selection.marks.insert("assembler//".into(), mark);
    let answer = decode_str(json, &selection);
    let logs: Vec<String> = kept(&answer).into_iter().map(|l| l.1).collect();
    assert_eq!(logs, ["at mark", "new", "only new"]);
    assert!(answer.streams[0].reached);
    assert!(
        !answer.streams[1].reached,
        "a gap: nothing at or before the mark"
    );
    assert_eq!(answer.streams[1].mark, mark);
}

fn numbered(count: usize, newest_first: bool) -> String {
    let mut entries: Vec<String> = (0..count)
        .map(|n| {
            format!(
                r#"{{"log":"line {n:04}","timestamp":"2025-06-24T16:{:02}:{:02}Z","container":"c{}"}}"#,
                n / 60,
                n % 60,
                n % 2
            )
        })
        .collect();
    if newest_first {
        entries.reverse();
    }
    format!(
        r#"{{"taskrunner":{{"t1":{{"logs":[{}]}}}}}}"#,
        entries.join(",")
    )
}

#[test]
fn the_budget_keeps_the_oldest_lines_of_every_sub_stream() {
    let mut selection = selection();
    selection.budget = 10 * (9 + LINE_OVERHEAD);
    let answer = decode_str(&numbered(100, true), &selection);
    assert!(answer.more);
    let logs: Vec<String> = kept(&answer).into_iter().map(|l| l.1).collect();
    let expected: Vec<String> = (0..10).map(|n| format!("line {n:04}")).collect();
    assert_eq!(logs, expected);
    assert_eq!(answer.streams.len(), 2, "a sub-stream per container");

    selection.budget = 0;
    let one = decode_str(&numbered(100, false), &selection);
    assert_eq!(kept(&one).len(), 1, "at least one line, for progress");
    assert!(one.more);
}

#[test]
fn filters_apply_to_services_tasks_and_levels() {
    let json = r#"{"partitioner":[{"log":"p","level":"INFO"}],
        "taskrunner":{"t1":{"logs":[{"log":"t1 info","level":"INFO"},{"log":"t1 error","level":"ERROR"}]},
                      "t2":{"logs":[{"log":"t2 error","level":3}]}}}"#;
    let mut selection = selection();
    selection.services = vec![Service::TaskRunner];
    selection.task_ids = ["t1".to_string()].into();
    selection.levels = vec![LogLevel::Error];
    let logs: Vec<String> = kept(&decode_str(json, &selection))
        .into_iter()
        .map(|l| l.1)
        .collect();
    assert_eq!(logs, ["t1 error"]);
}

#[test]
fn long_lines_are_cut_on_a_character_boundary() {
    let json = r#"{"assembler":[{"log":"héllo wörld"}]}"#;
    let mut selection = selection();
    selection.max_line_bytes = 2;
    let answer = decode_str(json, &selection);
    assert_eq!(answer.lines[0].log, "h");
    assert!(answer.lines[0].truncated);
}

#[test]
fn malformed_answers_are_errors() {
    for bad in [
        "",
        "null",
        "[]",
        r#"{"partitioner":[{"log":"x"}"#,
        r#"{"partitioner":"text"}"#,
        r#"{"partitioner":[{"log":1}]}"#,
        r#"{"taskrunner":[1]}"#,
        r#"{"partitioner":[]} trailing"#,
    ] {
        assert!(decode(bad.as_bytes(), &selection()).is_err(), "{bad:?}");
    }
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_within_the_budget(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        budget in 0usize..2000,
    ) {
        let selection = Selection { budget, max_line_bytes: 64, ..Selection::default() };
        if let Ok(answer) = decode(&bytes[..], &selection) {
            let past: usize = answer.lines.iter().filter(|l| l.time > 0).map(Line::cost).sum();
            prop_assert!(past <= budget.max(64 + LINE_OVERHEAD));
        }
    }

    #[test]
    fn any_budget_keeps_a_time_prefix(count in 1usize..120, budget in 0usize..4000, newest_first: bool) {
        let selection = Selection { budget, max_line_bytes: 64, ..Selection::default() };
        let answer = decode_str(&numbered(count, newest_first), &selection);
        let logs: Vec<String> = kept(&answer).into_iter().map(|l| l.1).collect();
        let expected: Vec<String> = (0..logs.len()).map(|n| format!("line {n:04}")).collect();
        prop_assert!(!logs.is_empty());
        prop_assert_eq!(&logs, &expected);
        prop_assert_eq!(answer.more, logs.len() < count);
    }
}
