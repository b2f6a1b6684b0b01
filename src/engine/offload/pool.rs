//! The helper-thread pool: plain OS threads (never vcpus) that run
//! blocking jobs, started on demand up to [`MAX_THREADS`] (process-wide),
//! each ending after [`IDLE_EXIT`] without work.
//!
//! Helper threads share the program's fd table (they make its calls), and
//! while any thread shares it the kernel counts a file reference on every
//! fd call of every thread (see sched/private_fds.rs): a one-vcpu server
//! that opened one file through the pool paid that on each `recv` and
//! `send` for the rest of its life. Ending idle threads gives the table
//! back to the vcpu alone.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::*, fence};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// Most helper threads at once (process-wide).
pub(crate) const MAX_THREADS: usize = 64;

/// How long a helper thread waits for work before it ends (the next job
/// starts one again: about 50 us on the vcpu that submits it).
const IDLE_EXIT: Duration = Duration::from_secs(1);

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
    /// [`IDLE_EXIT`] (shorter in tests).
    idle_exit: Duration,
    /// Tests only: how long an idle thread waits between its wait's end
    /// and its last look at the queue, to put a submission there.
    exit_pause: Duration,
}

static POOL: OnceLock<Pool> = OnceLock::new();

pub(super) fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool::new(MAX_THREADS, IDLE_EXIT, Duration::ZERO))
}

impl Pool {
    fn new(max: usize, idle_exit: Duration, exit_pause: Duration) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool {
            tx,
            rx,
            threads: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            max,
            idle_exit,
            exit_pause,
        }
    }

    /// Reserves a thread slot by one compare-and-swap, so callers at the
    /// same moment cannot start more than `max` threads between them.
    fn reserve(&self) -> bool {
        self.threads
            .fetch_update(SeqCst, SeqCst, |n| (n < self.max).then_some(n + 1))
            .is_ok()
    }

    pub(super) fn run(&'static self, task: Task) {
        // The task first, then the count of waiting threads. A thread that
        // ends for idleness stops counting itself before its last look at
        // the queue (see `worker`), so either it sees this task or this
        // sees no waiting thread and starts one.
        // The receiver lives in the pool forever: send cannot fail.
        let _ = self.tx.send(task);
        fence(SeqCst);
        if self.idle.load(SeqCst) == 0 && self.reserve() {
            let spawned = crate::sys::spawn_service_thread("photon-offload", 256 << 10, move || self.worker());
            if let Err(e) = spawned {
                self.threads.fetch_sub(1, SeqCst);
                log::warn!("photon: cannot start an offload thread: {e}");
            }
        }
    }

    fn worker(&self) {
        loop {
            self.idle.fetch_add(1, SeqCst);
            let task = self.rx.recv_timeout(self.idle_exit);
            self.idle.fetch_sub(1, SeqCst);
            let task = match task {
                Ok(task) => task,
                Err(RecvTimeoutError::Timeout) => {
                    // Idle: end, unless a task came after the wait ended
                    // (its sender may have counted this thread as waiting
                    // and started none); then stay if the cap allows (else
                    // a thread started meanwhile takes it).
                    if !self.exit_pause.is_zero() {
                        std::thread::sleep(self.exit_pause);
                    }
                    self.threads.fetch_sub(1, SeqCst);
                    fence(SeqCst);
                    if self.rx.is_empty() || !self.reserve() {
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.threads.fetch_sub(1, SeqCst);
                    return;
                }
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
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(MAX, IDLE_EXIT, Duration::ZERO)));
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
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(MAX, IDLE_EXIT, Duration::ZERO)));
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

    /// Idle threads end after the pool's idle time, and a job submitted
    /// after is still run, also one submitted while the only thread (at the
    /// cap) is ending: its submitter starts none (the cap is reached, no
    /// thread waits), so the ending thread must see it and stay.
    #[test]
    fn idle_threads_end_and_jobs_still_run() {
        const EXIT: Duration = Duration::from_millis(20);
        const PAUSE: Duration = Duration::from_millis(40);
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(1, EXIT, PAUSE)));
        let (tx, rx) = mpsc::channel();
        let job = |tx: &mpsc::Sender<()>| {
            let tx = tx.clone();
            Task::Call(Box::new(move || tx.send(()).unwrap()))
        };
        for round in 0..3 {
            pool.run(job(&tx));
            rx.recv_timeout(Duration::from_secs(10)).expect("the job runs");
            // The thread's wait ends at 20 ms; it looks at the queue at 60.
            std::thread::sleep(EXIT + PAUSE / 2);
            assert_eq!(pool.idle.load(SeqCst), 0, "round {round}: the thread is ending");
            pool.run(job(&tx));
            rx.recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("round {round}: a job was left queued with no thread to run it"));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.threads.load(SeqCst) != 0 {
            assert!(std::time::Instant::now() < deadline, "the idle thread did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        pool.run(job(&tx));
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a job after the thread ended runs");
    }
}
