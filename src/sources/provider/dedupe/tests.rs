use proptest::prelude::*;

use super::*;

/// Runs `lines` (time, text) through `feed`, returning the texts admitted.
fn pass<'a>(cursor: &mut DedupeCursor, lines: &[(i64, &'a str)]) -> Vec<&'a str> {
    let mut feed = Feed::new();
    lines
        .iter()
        .filter(|(time, text)| cursor.admit(&mut feed, *time, text.as_bytes()))
        .map(|(_, text)| *text)
        .collect()
}

#[test]
fn a_replayed_history_is_skipped_and_only_new_lines_pass() {
    let mut cursor = DedupeCursor::default();
    let first = [(1, "a"), (2, "b"), (2, "c")];
    assert_eq!(pass(&mut cursor, &first), ["a", "b", "c"]);
    let replay = [(1, "a"), (2, "b"), (2, "c"), (2, "d"), (3, "e")];
    assert_eq!(pass(&mut cursor, &replay), ["d", "e"]);
    assert_eq!(cursor.time(), 3);
}

#[test]
fn identical_lines_at_one_time_pass_as_often_as_sent() {
    let mut cursor = DedupeCursor::default();
    assert_eq!(pass(&mut cursor, &[(5, "x"), (5, "x")]), ["x", "x"]);
    assert_eq!(
        pass(&mut cursor, &[(5, "x"), (5, "x"), (5, "x")]),
        ["x"],
        "a third copy in the replay is new"
    );
}

#[test]
fn a_live_stream_overlapping_a_dump_is_skipped_where_it_overlaps() {
    let mut cursor = DedupeCursor::default();
    let dump = [(1, "a"), (2, "b"), (3, "c")];
    let live = [(3, "c"), (4, "d")];
    let mut dump_feed = Feed::new();
    let mut live_feed = Feed::new();
    let mut out = Vec::new();
    for (time, text) in dump {
        if cursor.admit(&mut dump_feed, time, text.as_bytes()) {
            out.push(text);
        }
    }
    for (time, text) in live {
        if cursor.admit(&mut live_feed, time, text.as_bytes()) {
            out.push(text);
        }
    }
    assert_eq!(out, ["a", "b", "c", "d"]);
}

#[test]
fn older_lines_are_skipped() {
    let mut cursor = DedupeCursor::default();
    assert_eq!(pass(&mut cursor, &[(10, "late")]), ["late"]);
    assert!(pass(&mut cursor, &[(9, "early")]).is_empty());
}

#[test]
fn the_stored_form_is_a_multiset_and_round_trips() {
    let mut cursor = DedupeCursor::default();
    pass(&mut cursor, &[(7, "x"), (7, "x"), (7, "y")]);
    let stored = serde_json::to_value(&cursor).unwrap();
    assert_eq!(stored["time"], 7);
    assert_eq!(stored["hashes"].as_array().unwrap().len(), 3);
    let restored: DedupeCursor = serde_json::from_value(stored).unwrap();
    assert_eq!(restored, cursor);
    // The form io.net's lifecycle cursor has always had.
    let old: DedupeCursor = serde_json::from_str(r#"{"time":3,"hashes":[1,2]}"#).unwrap();
    assert_eq!(old.time(), 3);
    let empty: DedupeCursor = serde_json::from_str(r#"{"time":0}"#).unwrap();
    assert_eq!(empty, DedupeCursor::default());
}

#[test]
fn past_the_bound_lines_are_duplicated_never_lost() {
    let mut cursor = DedupeCursor::default();
    let lines: Vec<String> = (0..MAX_HASHES + 10).map(|n| format!("l{n}")).collect();
    let at_one_time: Vec<(i64, &str)> = lines.iter().map(|l| (1, l.as_str())).collect();
    assert_eq!(pass(&mut cursor, &at_one_time).len(), lines.len());
    let again = pass(&mut cursor, &at_one_time);
    assert!(
        again.len() >= 10 && again.len() < lines.len(),
        "{}",
        again.len()
    );
    let stored = serde_json::to_value(&cursor).unwrap();
    assert!(stored["hashes"].as_array().unwrap().len() <= MAX_HASHES);
}

#[test]
fn sorting_keeps_the_order_of_equal_times() {
    let mut history = vec![(3, "c"), (1, "a1"), (2, "b"), (1, "a2")];
    sort_by_time(&mut history, |(time, _)| *time);
    assert_eq!(history, [(1, "a1"), (1, "a2"), (2, "b"), (3, "c")]);
}

/// A log in time order, with runs of equal times and repeated texts.
fn log() -> impl Strategy<Value = Vec<(i64, u8)>> {
    proptest::collection::vec((0u8..3, 0u8..3), 1..60).prop_map(|steps| {
        let mut time = 1_000;
        steps
            .into_iter()
            .map(|(step, text)| {
                time += i64::from(step.saturating_sub(1));
                (time, text)
            })
            .collect()
    })
}

/// Where a new feed may start when `tip` lines are delivered: anywhere up to the
/// start of the run at the mark's time, or exactly at `tip` if it ends a run.
fn starts(log: &[(i64, u8)], tip: usize) -> Vec<usize> {
    if tip == 0 {
        return vec![0];
    }
    let mark = log[tip - 1].0;
    let run_start = log.iter().position(|(t, _)| *t == mark).unwrap();
    let mut starts: Vec<usize> = (0..=run_start).collect();
    if tip == log.len() || log[tip].0 != mark {
        starts.push(tip);
    }
    starts
}

proptest! {
    /// Feeds (replays and live connections) interleaved in any order, and
    /// restarts from the stored cursor, deliver the log exactly: each line once,
    /// identical lines as often as sent, in order.
    #[test]
    fn any_interleaving_of_feeds_delivers_each_line_once(
        log in log(),
        ops in proptest::collection::vec((0u8..6, any::<u8>(), 0u8..4), 0..80),
    ) {
        let mut cursor = DedupeCursor::default();
        let mut feeds: Vec<(Feed, usize)> = Vec::new();
        let mut out: Vec<(i64, u8)> = Vec::new();
        let step = |cursor: &mut DedupeCursor, feed: &mut (Feed, usize), out: &mut Vec<(i64, u8)>| {
            let (time, text) = log[feed.1];
            if cursor.admit(&mut feed.0, time, &[text]) {
                out.push((time, text));
            }
            feed.1 += 1;
        };
        for (kind, pick, advance) in ops {
            match kind {
                0 | 1 if feeds.len() < 3 => {
                    let choices = starts(&log, out.len());
                    feeds.push((Feed::new(), choices[pick as usize % choices.len()]));
                }
                5 => {
                    let stored = serde_json::to_string(&cursor).unwrap();
                    cursor = serde_json::from_str(&stored).unwrap();
                    feeds.clear();
                }
                _ if !feeds.is_empty() => {
                    let index = pick as usize % feeds.len();
                    for _ in 0..=advance {
                        if feeds[index].1 < log.len() {
                            step(&mut cursor, &mut feeds[index], &mut out);
                        }
                    }
                }
                _ => {}
            }
            prop_assert_eq!(&out[..], &log[..out.len()], "delivered a prefix of the log");
        }
        let choices = starts(&log, out.len());
        let mut last = (Feed::new(), choices[0]);
        while last.1 < log.len() {
            step(&mut cursor, &mut last, &mut out);
        }
        prop_assert_eq!(out, log);
    }
}
