//! The helper-thread pool: plain OS threads (never vcpus) that run
//! blocking jobs, started on demand up to [`MAX_THREADS`] (process-wide).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::*};

use crossbeam_channel::{Receiver, Sender};

/// Most helper threads at once (process-wide).
pub(crate) const MAX_THREADS: usize = 64;

/// What a helper thread runs.
pub(super) enum Task {
    /// An offloaded operation and the posting of its completion: the job
    /// itself travels through the queue, nothing is boxed.
    Job(Box<super::Job>),
    /// A [`run_task`] call.
    Call(Box<dyn FnOnce() + Send>),
}

pub(super) struct Pool {
    tx: Sender<Task>,
    rx: Receiver<Task>,
    /// Helper threads started and not ended: never above `max`.
    threads: AtomicUsize,
    idle: AtomicUsize,
    max: usize,
}

static POOL: OnceLock<Pool> = OnceLock::new();

pub(super) fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool::new(MAX_THREADS))
}

impl Pool {
    fn new(max: usize) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool {
            tx,
            rx,
            threads: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            max,
        }
    }

    pub(super) fn run(&'static self, task: Task) {
        // A thread slot is reserved by one compare-and-swap, so callers at
        // the same moment cannot start more than `max` threads between them.
        let reserved = self.idle.load(Acquire) == 0
            && self
                .threads
                .fetch_update(AcqRel, Acquire, |n| (n < self.max).then_some(n + 1))
                .is_ok();
        if reserved {
            let spawned = crate::sys::spawn_service_thread("photon-offload", 256 << 10, move || self.worker());
            if let Err(e) = spawned {
                self.threads.fetch_sub(1, AcqRel);
                log::warn!("photon: cannot start an offload thread: {e}");
            }
        }
        // The receiver lives in the pool forever: send cannot fail.
        let _ = self.tx.send(task);
    }

    fn worker(&self) {
        loop {
            self.idle.fetch_add(1, AcqRel);
            let task = self.rx.recv();
            self.idle.fetch_sub(1, AcqRel);
            let Ok(task) = task else {
                self.threads.fetch_sub(1, AcqRel);
                return;
            };
            // A panicking job must not end the thread: its slot would stay
            // counted for good, and at `max` such ends nothing would run.
            let run = move || match task {
                Task::Job(job) => job.run(),
                Task::Call(f) => f(),
            };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err() {
                log::error!("photon: an offloaded job panicked (caught; the helper thread goes on)");
            }
        }
    }
}

/// In a forked child (which has none of the parent's helper threads): the
/// pool starts over with no threads, and the parent's queued tasks are
/// dropped unrun (the parent runs them; running them here too would repeat
/// the parent's writes).
pub(crate) fn after_fork_in_child() {
    if let Some(p) = POOL.get() {
        p.threads.store(0, Relaxed);
        p.idle.store(0, Relaxed);
        while p.rx.try_recv().is_ok() {}
    }
}

/// Runs `task` on one of the pool's helper threads (plain OS threads, never
/// vcpus), started on demand up to [`MAX_THREADS`]; beyond that it queues.
pub(crate) fn run_task(task: Box<dyn FnOnce() + Send>) {
    pool().run(Task::Call(task));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Barrier, mpsc};
    use std::time::Duration;

    /// Many callers at once never start more than `max` threads, and never
    /// run more than `max` jobs at a time.
    #[test]
    fn thread_cap_holds_under_concurrent_callers() {
        const MAX: usize = 3;
        const CALLERS: usize = 16;
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(MAX)));
        let running: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let most: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let start = Arc::new(Barrier::new(CALLERS));
        let (done_tx, done_rx) = mpsc::channel();
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let start = start.clone();
                let done = done_tx.clone();
                std::thread::spawn(move || {
                    start.wait();
                    pool.run(Task::Call(Box::new(move || {
                        let now = running.fetch_add(1, AcqRel) + 1;
                        most.fetch_max(now, AcqRel);
                        std::thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, AcqRel);
                        done.send(()).unwrap();
                    })));
                })
            })
            .collect();
        for c in callers {
            c.join().unwrap();
        }
        for _ in 0..CALLERS {
            done_rx.recv_timeout(Duration::from_secs(10)).expect("every job runs");
        }
        assert!(
            pool.threads.load(Acquire) <= MAX,
            "{} threads",
            pool.threads.load(Acquire)
        );
        assert!(most.load(Acquire) <= MAX, "{} jobs ran at once", most.load(Acquire));
    }

    /// Panicking jobs leave the thread count right, and later jobs run.
    #[test]
    fn panicking_job_keeps_the_count() {
        const MAX: usize = 2;
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(MAX)));
        let (tx, rx) = mpsc::channel();
        for _ in 0..(3 * MAX) {
            let tx = tx.clone();
            pool.run(Task::Call(Box::new(move || {
                tx.send(()).unwrap();
                panic!("a job that panics (expected by this test)");
            })));
        }
        for _ in 0..(3 * MAX) {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("the panicking jobs run");
        }
        for _ in 0..(3 * MAX) {
            let tx = tx.clone();
            pool.run(Task::Call(Box::new(move || tx.send(()).unwrap())));
        }
        for _ in 0..(3 * MAX) {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("jobs after panicking ones still run");
        }
        // Every started thread is alive and goes back to waiting.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.idle.load(Acquire) != pool.threads.load(Acquire) {
            assert!(std::time::Instant::now() < deadline, "helper threads did not go idle");
            std::thread::sleep(Duration::from_millis(1));
        }
        let threads = pool.threads.load(Acquire);
        assert!((1..=MAX).contains(&threads), "{threads} threads counted");
    }
}
