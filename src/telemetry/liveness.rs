//! Liveness of the pipeline's tasks, for the systemd watchdog: every component task
//! runs inside [`Liveness::supervise`], which answers probes from inside that task. A
//! task whose thread is wedged (a blocking call that never returns, a lock that is
//! never released, a loop that never yields) cannot answer, and neither can anything
//! when the runtime itself is stuck; the watchdog then stops pinging and systemd
//! restarts ferry. A task that is merely waiting (for input, for a retry backoff to
//! end, for room downstream) answers at once, so a sink outage never looks wedged.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::watch;

/// The probe generation and the tasks that must answer it.
#[derive(Clone)]
pub struct Liveness {
    inner: Arc<Inner>,
}

struct Inner {
    probe: watch::Sender<u64>,
    tasks: Mutex<Vec<Task>>,
}

struct Task {
    name: Arc<str>,
    answered: Weak<AtomicU64>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            inner: Arc::new(Inner {
                probe: watch::Sender::new(0),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }
}

impl Liveness {
    /// Runs `task` (named `name` in the watchdog's log) so that it answers probes.
    pub fn supervise<F: Future>(
        &self,
        name: &str,
        task: F,
    ) -> impl Future<Output = F::Output> + use<F> {
        let mut probes = self.inner.probe.subscribe();
        let answered = Arc::new(AtomicU64::new(*probes.borrow_and_update()));
        let name: Arc<str> = Arc::from(name);
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            tasks.retain(|task| task.answered.strong_count() > 0);
            tasks.push(Task {
                name: Arc::clone(&name),
                answered: Arc::downgrade(&answered),
            });
        }
        async move {
            tokio::pin!(task);
            loop {
                tokio::select! {
                    biased;
                    output = &mut task => return output,
                    Ok(()) = probes.changed() => {
                        let generation = *probes.borrow_and_update();
                        test_wedge(&name);
                        answered.store(generation, Ordering::Release);
                    }
                }
            }
        }
    }

    /// The running tasks that have not answered the last probe (empty: all alive),
    /// then sends the next probe. Call it once per watchdog interval.
    pub fn check_and_probe(&self) -> Vec<Arc<str>> {
        let current = *self.inner.probe.borrow();
        let silent = match self.inner.tasks.lock() {
            Ok(mut tasks) => {
                tasks.retain(|task| task.answered.strong_count() > 0);
                tasks
                    .iter()
                    .filter(|task| {
                        task.answered
                            .upgrade()
                            .is_some_and(|answered| answered.load(Ordering::Acquire) < current)
                    })
                    .map(|task| Arc::clone(&task.name))
                    .collect()
            }
            Err(_) => vec![Arc::from("liveness registry")],
        };
        self.inner.probe.send_replace(current + 1);
        silent
    }
}

/// A hook for the watchdog test: when `FERRY_TEST_WEDGE` names a file that exists
/// and holds the name of this task (`sinks.out`), the task blocks its thread for
/// good, as a deadlocked component would.
fn test_wedge(name: &str) {
    static WEDGE_FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    let Some(file) =
        WEDGE_FILE.get_or_init(|| std::env::var_os("FERRY_TEST_WEDGE").map(Into::into))
    else {
        return;
    };
    if std::fs::read_to_string(file).is_ok_and(|wanted| wanted.trim() == name) {
        tracing::warn!(task = name, "FERRY_TEST_WEDGE: wedging this task");
        loop {
            std::thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waiting_tasks_answer_and_finished_ones_are_forgotten() {
        let liveness = Liveness::default();
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(liveness.supervise("sinks.out", wait));
        assert!(
            liveness.check_and_probe().is_empty(),
            "a new task owes nothing"
        );
        tokio::time::timeout(Duration::from_secs(10), async {
            while !liveness.check_and_probe().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("a waiting task answers probes");
        release.send(()).unwrap();
        task.await.unwrap().unwrap();
        assert!(liveness.check_and_probe().is_empty());
        assert!(liveness.inner.tasks.lock().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_whose_thread_is_blocked_does_not_answer() {
        let liveness = Liveness::default();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let blocked = tokio::spawn(liveness.supervise("transforms.stuck", async move {
            // A blocking call inside async code: the task cannot be polled again.
            let _ = rx.recv();
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        liveness.check_and_probe();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let silent = liveness.check_and_probe();
        assert_eq!(silent.len(), 1);
        assert_eq!(&*silent[0], "transforms.stuck");
        tx.send(()).unwrap();
        blocked.await.unwrap();
    }
}
