//! Work pools: OS threads that are vcpus, running photon threads that any
//! OS thread hands them (`photon_workpool_*`).
//!
//! Each pool vcpu's main photon thread only sleeps until the pool ends;
//! work arrives as messages in the vcpu's inbox and becomes photon threads.
//! `call` waits for the result: as a photon thread (parking) when the caller
//! is one, on a condition variable otherwise.

use core::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::remote::{self, Msg};
use super::thread::Entry;
use super::{FOREVER, Handle, vcpu};
use crate::errno::Errno;

/// A set of vcpus on their own OS threads.
pub struct WorkPool {
    vcpus: Vec<(u32, Handle)>,
    threads: Vec<JoinHandle<()>>,
    quit: Arc<AtomicBool>,
    next: AtomicUsize,
}

impl WorkPool {
    /// Starts `n` vcpus on engine `engine` (a `PHOTON_EVENT_*` code).
    pub fn new(n: u32, engine: u64) -> Result<WorkPool, Errno> {
        if n == 0 || n > 1024 {
            return Err(Errno::EINVAL);
        }
        let mut pool = WorkPool {
            vcpus: Vec::new(),
            threads: Vec::new(),
            quit: Arc::new(AtomicBool::new(false)),
            next: AtomicUsize::new(0),
        };
        for i in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            let quit = pool.quit.clone();
            let t = std::thread::Builder::new()
                .name(format!("photon-vcpu-{i}"))
                .spawn(move || {
                    if let Err(e) = vcpu::init(engine, 0) {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    let me = vcpu::self_handle().expect("a vcpu's main thread has a handle");
                    let _ = tx.send(Ok((vcpu::current_id(), me)));
                    while !quit.load(Acquire) {
                        let _ = vcpu::sleep_us(FOREVER);
                    }
                    if let Err(e) = vcpu::fini() {
                        log::error!("photon: work pool vcpu {i} did not end cleanly: {e}");
                    }
                })
                .map_err(Errno::from)?;
            pool.threads.push(t);
            match rx.recv() {
                Ok(Ok(v)) => pool.vcpus.push(v),
                Ok(Err(e)) => return Err(e), // Drop ends the vcpus started so far
                Err(_) => return Err(Errno::ENOTRECOVERABLE),
            }
        }
        Ok(pool)
    }

    /// The id of vcpu `i`.
    pub fn vcpu(&self, i: usize) -> Option<u32> {
        self.vcpus.get(i).map(|v| v.0)
    }

    fn pick(&self) -> u32 {
        self.vcpus[self.next.fetch_add(1, Relaxed) % self.vcpus.len()].0
    }

    /// Runs `entry(arg)` in a new photon thread on one of the pool's vcpus
    /// (round robin) and returns at once.
    pub fn spawn(&self, entry: Entry, arg: *mut c_void) -> Result<(), Errno> {
        remote::post(
            self.pick(),
            Msg::Spawn {
                entry,
                arg: arg as usize,
            },
        )
    }

    /// Runs `entry(arg)` on one of the pool's vcpus and waits for its result.
    /// A photon caller parks (interruptible: the work still runs to its
    /// end); any other OS thread blocks.
    pub fn call(&self, entry: Entry, arg: *mut c_void) -> Result<*mut c_void, Errno> {
        let reply = Arc::new(Reply::default());
        let job = Box::into_raw(Box::new(CallJob {
            entry,
            arg,
            reply: reply.clone(),
        }));
        if let Err(e) = remote::post(
            self.pick(),
            Msg::Spawn {
                entry: call_main,
                arg: job as usize,
            },
        ) {
            // SAFETY: the job was not handed to anyone.
            drop(unsafe { Box::from_raw(job) });
            return Err(e);
        }
        reply.wait()
    }
}

impl Drop for WorkPool {
    fn drop(&mut self) {
        self.quit.store(true, Release);
        for &(_, main) in &self.vcpus {
            let _ = vcpu::interrupt(main, libc::ECANCELED);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct CallJob {
    entry: Entry,
    arg: *mut c_void,
    reply: Arc<Reply>,
}

#[derive(Default)]
struct ReplyState {
    result: Option<usize>,
    /// A photon caller parked for the result.
    waiter: Option<(Handle, u64)>,
}

#[derive(Default)]
struct Reply {
    state: Mutex<ReplyState>,
    cv: Condvar,
}

impl Reply {
    fn wait(&self) -> Result<*mut c_void, Errno> {
        let lock = || self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Ok((h, seq)) = vcpu::next_wait_seq() else {
            let mut st = lock();
            loop {
                if let Some(r) = st.result {
                    return Ok(r as *mut c_void);
                }
                st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        {
            let mut st = lock();
            if let Some(r) = st.result {
                return Ok(r as *mut c_void);
            }
            st.waiter = Some((h, seq));
        }
        let woke = vcpu::block_on(FOREVER, super::thread::Wait::Call);
        let mut st = lock();
        st.waiter = None;
        match (st.result, woke) {
            (Some(r), _) => Ok(r as *mut c_void),
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(Errno(libc::EINTR)),
        }
    }

    /// [`Reply::wait`] that outlasts interrupts: the first one stays
    /// pending for the caller's next blocking call.
    fn wait_through_interrupts(&self) -> *mut c_void {
        let mut interrupted = None;
        loop {
            match self.wait() {
                Ok(r) => {
                    if let Some(e) = interrupted {
                        vcpu::keep_interrupt(e);
                    }
                    return r;
                }
                Err(e) => {
                    interrupted.get_or_insert(e);
                }
            }
        }
    }

    fn set(&self, r: *mut c_void) {
        let waiter = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.result = Some(r as usize);
            st.waiter.take()
        };
        match waiter {
            Some((h, seq)) => vcpu::wake(h, seq, 0),
            None => self.cv.notify_all(),
        }
    }
}

/// `photon_offload`: runs `entry(arg)` on a helper OS thread of the offload
/// pool (not a vcpu, so blocking there blocks nobody else) and waits for its
/// result. A photon caller parks; any other OS thread blocks. The wait is
/// not interruptible, because `entry` may use the caller's memory: an
/// interrupt stays pending for the caller's next blocking call.
pub fn offload_call(entry: Entry, arg: *mut c_void) -> *mut c_void {
    let reply = Arc::new(Reply::default());
    let done = reply.clone();
    let arg = arg as usize;
    crate::engine::run_task(Box::new(move || {
        // SAFETY: the caller's function with the caller's argument; the
        // caller waits for this to finish.
        let r = unsafe { entry(arg as *mut c_void) };
        done.set(r);
    }));
    reply.wait_through_interrupts()
}

unsafe extern "C" fn call_main(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `arg` is the Box<CallJob> posted by `call`, handed over once.
    let job = unsafe { Box::from_raw(arg.cast::<CallJob>()) };
    // SAFETY: the caller's function with the caller's argument.
    let r = unsafe { (job.entry)(job.arg) };
    job.reply.set(r);
    core::ptr::null_mut()
}
