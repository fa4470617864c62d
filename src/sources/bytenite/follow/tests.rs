//! Polls of a growing job, through the decoder and the dedupe cursors, with any
//! budget, order of answers, restarts and crashes: every line is shipped, as often
//! as the job holds it, in time order per sub-stream.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat};
use proptest::prelude::*;

use super::*;
use crate::sources::bytenite::answer::{LINE_OVERHEAD, Selection, decode};

/// The sub-streams of the test job: (service key in the answer, task, container).
const STREAMS: [(&str, &str, &str); 4] = [
    ("partitioner", "", "partitioner"),
    ("assembler", "", "assembler"),
    ("taskrunner", "t1", "app"),
    ("taskrunner", "t1", "sidecar"),
];

/// A line of the job: sub-stream, time (s), text.
type JobLine = (usize, i64, String);

/// The job's answer, as ByteNite gives it: every line so far, newest first (or
/// oldest first).
fn render(lines: &[JobLine], newest_first: bool) -> String {
    let entry = |(stream, time, log): &JobLine| {
        let timestamp =
            DateTime::from_timestamp_nanos(1_750_000_000_000_000_000 + time * 1_000_000_000)
                .to_rfc3339_opts(SecondsFormat::Secs, true);
        serde_json::json!({"log": log, "timestamp": timestamp, "container": STREAMS[*stream].2, "level": "INFO"})
    };
    let section = |wanted: &dyn Fn(usize) -> bool| {
        let mut entries: Vec<&JobLine> = lines.iter().filter(|l| wanted(l.0)).collect();
        if newest_first {
            // Loki's backward order: by time, newest first; the last written first.
            entries.reverse();
            entries.sort_by_key(|l| std::cmp::Reverse(l.1));
        } else {
            entries.sort_by_key(|l| l.1);
        }
        entries.into_iter().map(entry).collect::<Vec<_>>()
    };
    serde_json::json!({
        "partitioner": section(&|s| s == 0),
        "assembler": section(&|s| s == 1),
        "taskrunner": {"t1": {"logs": section(&|s| s >= 2)}},
    })
    .to_string()
}

/// Committed cursors, by checkpoint key.
type Committed = BTreeMap<String, Value>;

/// The (sub-stream key, log) of every line shipped by one poll and its
/// immediate re-polls, sending pieces of `piece` lines; `committed` gets the
/// cursors of each piece as it would be committed, and `commits` the number of
/// lines shipped and the committed cursors at each commit.
fn poll(
    answer: &str,
    cursors: &mut HashMap<String, DedupeCursor>,
    budget: usize,
    piece: usize,
    committed: &mut Committed,
    commits: &mut Vec<(usize, Committed)>,
) -> Vec<(String, String)> {
    let mut shipped = Vec::new();
    loop {
        let selection = Selection {
            marks: cursors.iter().map(|(k, c)| (k.clone(), c.time())).collect(),
            budget,
            max_line_bytes: 1 << 10,
            ..Selection::default()
        };
        let answer = decode(answer.as_bytes(), &selection).unwrap();
        let more = answer.more;
        let mut shipment = Shipment::new(answer, cursors);
        let mut in_piece = 0;
        while let Some((line, index)) = shipment.next_new() {
            shipped.push((shipment.stream(index).key.clone(), line.log));
            in_piece += 1;
            if in_piece == piece {
                committed.extend(shipment.cursors("job"));
                commits.push((shipped.len(), committed.clone()));
                in_piece = 0;
            }
        }
        committed.extend(shipment.cursors("job"));
        commits.push((shipped.len(), committed.clone()));
        if !more {
            return shipped;
        }
    }
}

/// The job's lines in the order each sub-stream must ship them.
fn expected(lines: &[JobLine]) -> BTreeMap<String, Vec<String>> {
    let mut sorted: Vec<&JobLine> = lines.iter().collect();
    sorted.sort_by_key(|l| l.1);
    let mut by_stream: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (stream, _, log) in sorted {
        let (service, task, container) = STREAMS[*stream];
        by_stream
            .entry(format!("{service}/{task}/{container}"))
            .or_default()
            .push(log.clone());
    }
    by_stream
}

fn restored(committed: &Committed) -> HashMap<String, DedupeCursor> {
    committed
        .iter()
        .map(|(key, value)| {
            let key = key.trim_start_matches("job/").to_string();
            (key, serde_json::from_value(value.clone()).unwrap())
        })
        .collect()
}

fn sorted(mut by_stream: BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    by_stream.values_mut().for_each(|logs| logs.sort());
    by_stream
}

fn by_stream(shipped: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut by_stream: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, log) in shipped {
        by_stream.entry(key.clone()).or_default().push(log.clone());
    }
    by_stream
}

/// Lines per sub-stream in time order (ties allowed), with repeated texts.
fn job_lines() -> impl Strategy<Value = Vec<JobLine>> {
    prop::collection::vec((0usize..4, 0i64..3, "[ab]{1,2}"), 1..60).prop_map(|steps| {
        let mut clock = [0i64; 4];
        steps
            .into_iter()
            .map(|(stream, step, log)| {
                clock[stream] += step;
                (stream, clock[stream], log)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn every_line_ships_once_whatever_the_polls(
        lines in job_lines(),
        cuts in prop::collection::vec(0usize..60, 0..6),
        budget_lines in 1usize..8,
        piece in 1usize..5,
        newest_first: bool,
        restarts in prop::collection::vec(any::<bool>(), 8),
    ) {
        let budget = budget_lines * (2 + LINE_OVERHEAD);
        let mut seen: Vec<usize> = cuts.into_iter().map(|c| c.min(lines.len())).collect();
        seen.sort_unstable();
        seen.push(lines.len());
        let mut cursors = HashMap::new();
        let mut committed = BTreeMap::new();
        let mut shipped = Vec::new();
        for (n, upto) in seen.into_iter().enumerate() {
            if restarts[n % restarts.len()] {
                // A restart: only what was committed is known.
                cursors = restored(&committed);
            }
            let answer = render(&lines[..upto], newest_first);
            shipped.extend(poll(&answer, &mut cursors, budget, piece, &mut committed, &mut Vec::new()));
        }
        if newest_first {
            prop_assert_eq!(by_stream(&shipped), expected(&lines));
        } else {
            // Oldest first, lines that share a time may come out in another order.
            prop_assert_eq!(sorted(by_stream(&shipped)), sorted(expected(&lines)));
        }
    }

    #[test]
    fn a_crash_resumes_from_the_last_commit(
        lines in job_lines(),
        budget_lines in 1usize..8,
        piece in 1usize..5,
        crash_at in any::<prop::sample::Index>(),
    ) {
        let budget = budget_lines * (2 + LINE_OVERHEAD);
        let answer = render(&lines, true);
        let mut commits = Vec::new();
        let first = poll(&answer, &mut HashMap::new(), budget, piece, &mut BTreeMap::new(), &mut commits);
        // The crash loses what was shipped after the last commit it saw.
        let (kept, committed) = commits[crash_at.index(commits.len())].clone();
        let mut cursors = restored(&committed);
        let mut shipped = first[..kept].to_vec();
        shipped.extend(poll(&answer, &mut cursors, budget, piece, &mut BTreeMap::new(), &mut Vec::new()));
        prop_assert_eq!(by_stream(&shipped), expected(&lines));
    }
}
