//! Finding the entries of a push that Loki refused, as a pure state machine over
//! "send this subset → accepted, or refused (these)". Loki stores every valid entry of
//! a push and drops exact repeats of stored ones, so re-sending entries is harmless:
//! the machine re-sends what it is unsure of and never has to "undo" anything.
//!
//! Entries are numbered positions. The first subset is the whole push. After a
//! refusal, the entries the answer names are refused for certain; if the answer also
//! says how many of the others were refused (and that is none), the subset is done.
//! Otherwise the rest is re-sent whole when the answer named something (the next answer
//! names more), or split in halves when it named nothing, until each refused entry is
//! alone. What is known of a half is carried down so that halves need not always be
//! sent: the second half of a refused subset holds a refused entry for certain when the
//! first half was accepted, and holds exactly `total − found` when the count is known.
//!
//! Extra requests (after the first): at most `k · (2⌈log₂ n⌉ + 1)` for `k` refused
//! entries among `n`, and `k · (⌈log₂ n⌉ + 1)` when Loki's answers carry counts (the
//! property test below checks both).

/// What Loki answered to one subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<R> {
    /// A 2xx: every entry was stored.
    Accepted,
    /// Refused in part (a 400): `named` are refused for certain, each with its reason;
    /// `unnamed` is how many of the other entries were refused, when the answer tells
    /// (`Some(0)`: it named them all). `reason` is recorded for entries later found
    /// refused without an answer naming them.
    Refused {
        named: Vec<(usize, R)>,
        unnamed: Option<usize>,
        reason: R,
    },
    /// Too large as a whole (a 413): no entry is known to be at fault.
    TooLarge { reason: R },
    /// Refused whole, for a cause splitting cannot remove (401, 403, …).
    RefusedAll { reason: R },
}

/// What is known about the refused entries in a set not sent yet.
#[derive(Debug, Clone, Copy)]
enum Known {
    Nothing,
    AtLeastOne,
    Exactly(usize),
}

enum Task<R> {
    /// Send these entries and read the answer.
    Send(Vec<usize>),
    /// The second half of a split: what it holds follows from its parent and from what
    /// the first half turned out to hold (all of which is settled when this comes up).
    SecondHalf {
        positions: Vec<usize>,
        parent: Known,
        refused_before: usize,
        hint: R,
    },
}

/// The isolation of one push's refused entries.
pub struct Isolation<R> {
    /// Depth first: the top is done next.
    tasks: Vec<Task<R>>,
    /// The subset returned by the last [`next_probe`](Self::next_probe), awaiting its answer.
    sent: Option<Vec<usize>>,
    refused: Vec<(usize, R)>,
}

impl<R: Copy> Isolation<R> {
    /// Starts with `positions` (ascending) to send as one push.
    pub fn new(positions: Vec<usize>) -> Self {
        let tasks = if positions.is_empty() {
            Vec::new()
        } else {
            vec![Task::Send(positions)]
        };
        Isolation {
            tasks,
            sent: None,
            refused: Vec::new(),
        }
    }

    /// The entries to send next, or `None` once every entry is settled. Each subset
    /// returned must get its [`answer`](Self::answer) before the next call.
    pub fn next_probe(&mut self) -> Option<&[usize]> {
        self.sent = None;
        loop {
            match self.tasks.pop()? {
                Task::Send(positions) => {
                    self.sent = Some(positions);
                    return self.sent.as_deref();
                }
                Task::SecondHalf {
                    positions,
                    parent,
                    refused_before,
                    hint,
                } => {
                    let found = self.refused.len() - refused_before;
                    let known = match parent {
                        Known::Exactly(total) => Known::Exactly(total.saturating_sub(found)),
                        Known::AtLeastOne if found == 0 => Known::AtLeastOne,
                        _ => Known::Nothing,
                    };
                    self.settle_known(positions, known, hint);
                }
            }
        }
    }

    /// Records Loki's answer to the subset last returned by `next_probe`.
    pub fn answer(&mut self, answer: Answer<R>) {
        let Some(sent) = self.sent.take() else {
            return;
        };
        match answer {
            Answer::Accepted => {}
            Answer::RefusedAll { reason } => self.refuse_all(&sent, reason),
            Answer::TooLarge { reason } => {
                if sent.len() == 1 {
                    self.refuse_all(&sent, reason);
                } else {
                    let (first, second) = halves(sent);
                    self.tasks.push(Task::Send(second));
                    self.tasks.push(Task::Send(first));
                }
            }
            Answer::Refused {
                mut named,
                unnamed,
                reason,
            } => {
                named.sort_unstable_by_key(|(position, _)| *position);
                named.dedup_by_key(|(position, _)| *position);
                named.retain(|(position, _)| sent.binary_search(position).is_ok());
                let rest: Vec<usize> = sent
                    .iter()
                    .copied()
                    .filter(|p| named.binary_search_by_key(p, |(q, _)| *q).is_err())
                    .collect();
                let named_any = !named.is_empty();
                self.refused.extend(named);
                if rest.is_empty() {
                    return;
                }
                if named_any {
                    match unnamed {
                        Some(0) => {}
                        Some(count) if count >= rest.len() => self.refuse_all(&rest, reason),
                        _ => self.tasks.push(Task::Send(rest)),
                    }
                } else {
                    let known = match unnamed {
                        Some(count) if count > 0 => Known::Exactly(count),
                        _ => Known::AtLeastOne,
                    };
                    self.settle_known(rest, known, reason);
                }
            }
        }
    }

    /// Whether every entry is settled (nothing left to send or deduce).
    pub fn is_settled(&self) -> bool {
        self.tasks.is_empty() && self.sent.is_none()
    }

    /// Stops isolating: every entry not settled yet counts as refused with `reason`.
    pub fn give_up(&mut self, reason: R) {
        let mut open: Vec<usize> = self.sent.take().unwrap_or_default();
        for task in self.tasks.drain(..) {
            match task {
                Task::Send(positions) | Task::SecondHalf { positions, .. } => {
                    open.extend(positions);
                }
            }
        }
        self.refused
            .extend(open.into_iter().map(|position| (position, reason)));
    }

    /// The refused entries found, each once, in the order they were found.
    pub fn into_refused(self) -> Vec<(usize, R)> {
        self.refused
    }

    /// Settles a set without sending it where what is known allows.
    fn settle_known(&mut self, positions: Vec<usize>, known: Known, hint: R) {
        match known {
            Known::Nothing => self.tasks.push(Task::Send(positions)),
            Known::Exactly(0) => {}
            Known::Exactly(count) if count >= positions.len() => self.refuse_all(&positions, hint),
            Known::AtLeastOne if positions.len() == 1 => self.refuse_all(&positions, hint),
            Known::AtLeastOne | Known::Exactly(_) => {
                let (first, second) = halves(positions);
                self.tasks.push(Task::SecondHalf {
                    positions: second,
                    parent: known,
                    refused_before: self.refused.len(),
                    hint,
                });
                self.tasks.push(Task::Send(first));
            }
        }
    }

    fn refuse_all(&mut self, positions: &[usize], reason: R) {
        self.refused
            .extend(positions.iter().map(|&position| (position, reason)));
    }
}

fn halves(mut positions: Vec<usize>) -> (Vec<usize>, Vec<usize>) {
    let second = positions.split_off(positions.len() / 2);
    (positions, second)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// `⌈log₂ n⌉` (0 for n ≤ 1).
    fn ceil_log2(n: usize) -> usize {
        if n <= 1 {
            0
        } else {
            (usize::BITS - (n - 1).leading_zeros()) as usize
        }
    }

    /// Most extra requests isolating `refused` entries among `entries` takes, whatever
    /// Loki's answers say (`counted`: when every answer tells how many it refused).
    fn request_bound(entries: usize, refused: usize, counted: bool) -> usize {
        let per_entry = if counted {
            ceil_log2(entries) + 1
        } else {
            2 * ceil_log2(entries) + 1
        };
        refused * per_entry
    }

    /// How the simulated Loki words its refusals.
    #[derive(Debug, Clone, Copy)]
    enum Style {
        /// A 400 naming nothing and counting nothing (a gateway's own message).
        Opaque,
        /// Names nothing, but says how many it refused.
        Counting,
        /// Names the first `limit` refused entries and says how many it refused (an
        /// ingester's truncated list).
        Naming(usize),
        /// Each answer picks one of the above from the subset's size.
        Mixed,
    }

    /// Loki's answer to `sent` when `truth` are the entries it refuses.
    fn loki(style: Style, sent: &[usize], truth: &BTreeSet<usize>) -> Answer<()> {
        let refused: Vec<usize> = sent.iter().copied().filter(|p| truth.contains(p)).collect();
        if refused.is_empty() {
            return Answer::Accepted;
        }
        let style = match style {
            Style::Mixed => match sent.len() % 3 {
                0 => Style::Opaque,
                1 => Style::Counting,
                _ => Style::Naming(1 + sent.len() % 4),
            },
            other => other,
        };
        match style {
            Style::Opaque | Style::Mixed => Answer::Refused {
                named: Vec::new(),
                unnamed: None,
                reason: (),
            },
            Style::Counting => Answer::Refused {
                named: Vec::new(),
                unnamed: Some(refused.len()),
                reason: (),
            },
            Style::Naming(limit) => {
                let named: Vec<(usize, ())> =
                    refused.iter().take(limit).map(|&p| (p, ())).collect();
                Answer::Refused {
                    unnamed: Some(refused.len() - named.len()),
                    named,
                    reason: (),
                }
            }
        }
    }

    /// Runs an isolation of `entries` against `truth`: (refused found, extra requests).
    fn isolate(entries: usize, truth: &BTreeSet<usize>, style: Style) -> (Vec<usize>, usize) {
        let mut isolation = Isolation::new((0..entries).collect());
        let mut requests = 0usize;
        while let Some(sent) = isolation.next_probe() {
            requests += 1;
            let answer = loki(style, sent, truth);
            isolation.answer(answer);
        }
        let found = isolation
            .into_refused()
            .into_iter()
            .map(|(p, ())| p)
            .collect();
        (found, requests.saturating_sub(1))
    }

    fn style() -> impl Strategy<Value = Style> {
        prop_oneof![
            Just(Style::Opaque),
            Just(Style::Counting),
            (1usize..12).prop_map(Style::Naming),
            Just(Style::Mixed),
        ]
    }

    /// A batch size and a set of refused positions in it.
    fn batch() -> impl Strategy<Value = (usize, BTreeSet<usize>)> {
        (1usize..600).prop_flat_map(|entries| {
            let density = prop_oneof![Just(0.0), Just(0.01), Just(0.1), Just(0.5), Just(1.0)];
            (Just(entries), density, any::<u64>()).prop_map(|(entries, density, seed)| {
                let mut state = seed | 1;
                let truth = (0..entries)
                    .filter(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state % 1000) as f64 / 1000.0 < density
                    })
                    .collect();
                (entries, truth)
            })
        })
    }

    proptest! {
        #[test]
        fn exactly_the_refused_entries_are_found_within_the_bound(
            (entries, truth) in batch(),
            style in style(),
        ) {
            let (found, extra) = isolate(entries, &truth, style);
            let unique: BTreeSet<usize> = found.iter().copied().collect();
            prop_assert_eq!(unique.len(), found.len(), "an entry was refused twice");
            prop_assert_eq!(&unique, &truth);
            let counted = matches!(style, Style::Counting | Style::Naming(_));
            let bound = request_bound(entries, truth.len(), counted);
            prop_assert!(extra <= bound, "{} extra requests, bound {}", extra, bound);
        }
    }

    #[test]
    fn an_accepted_push_needs_no_more_requests() {
        let (found, extra) = isolate(100, &BTreeSet::new(), Style::Opaque);
        assert!(found.is_empty());
        assert_eq!(extra, 0);
    }

    #[test]
    fn a_complete_answer_ends_it_at_once() {
        let truth: BTreeSet<usize> = [3, 50, 99].into();
        let (found, extra) = isolate(100, &truth, Style::Naming(10));
        assert_eq!(found, [3, 50, 99]);
        assert_eq!(extra, 0);
    }

    #[test]
    fn a_lone_refused_entry_costs_about_log2_requests() {
        let truth: BTreeSet<usize> = [777].into();
        let (found, extra) = isolate(1024, &truth, Style::Counting);
        assert_eq!(found, [777]);
        assert_eq!(extra, 10);
    }

    #[test]
    fn too_large_splits_until_it_fits_and_refuses_what_never_does() {
        // Loki takes at most 4 entries per push, and entry 5 is too large on its own.
        let mut isolation = Isolation::new((0..10).collect());
        let mut requests = 0;
        while let Some(sent) = isolation.next_probe() {
            requests += 1;
            let answer = if sent.len() > 4 || sent.contains(&5) {
                Answer::TooLarge { reason: 'L' }
            } else {
                Answer::Accepted
            };
            isolation.answer(answer);
        }
        assert_eq!(isolation.into_refused(), [(5, 'L')]);
        assert!(requests <= 10, "{requests}");
    }

    #[test]
    fn giving_up_refuses_whatever_is_unsettled() {
        let mut isolation = Isolation::new((0..8).collect());
        assert!(isolation.next_probe().is_some());
        isolation.answer(Answer::Refused {
            named: vec![(2, 'a')],
            unnamed: None,
            reason: 'b',
        });
        assert!(isolation.next_probe().is_some());
        isolation.give_up('z');
        let refused = isolation.into_refused();
        assert_eq!(refused[0], (2, 'a'));
        assert_eq!(refused.len(), 8);
    }

    #[test]
    fn ceil_log2_matches_its_definition() {
        assert_eq!(
            [1, 2, 3, 4, 5, 1024, 1025].map(ceil_log2),
            [0, 1, 2, 2, 3, 10, 11]
        );
    }
}
