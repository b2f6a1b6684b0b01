//! Moving a photon thread to another vcpu (`photon_thread_migrate`) and
//! the vcpu's list of its threads.

use super::handle::{self, Handle};
use super::remote::{self};
use super::thread::{State, ThreadCtl};
use super::vcpu::*;
use crate::errno::Errno;

/// Takes in a thread that migrated here.
///
/// # Safety
/// `v` is the calling OS thread's vcpu; `th` a Migrating TCB no CPU runs.
pub(super) unsafe fn adopt(v: *mut Vcpu, th: *mut ThreadCtl) {
    // SAFETY: per the contract.
    unsafe {
        handle::set_vcpu((*th).handle, (*v).id);
        (*v).threads.push(th);
        (*th).state = State::Runnable;
        (*v).run_queue.push(th);
    }
}

/// `photon_thread_migrate`: moves `h` (the caller, or a runnable thread of
/// the caller's vcpu) to vcpu `to`. The caller returns running on `to`.
pub(crate) fn migrate(h: Handle, to: u32) -> Result<(), Errno> {
    let v = on_vcpu()?;
    let (vid, th) = handle::resolve(h)?;
    // SAFETY: `v` is live; `th` is dereferenced only after checking it is ours.
    unsafe {
        if vid != (*v).id || th.is_null() || th == (*v).main {
            return Err(Errno::EINVAL); // another vcpu's thread, ended, or a vcpu's main thread
        }
        if to == (*v).id {
            return Ok(());
        }
        if !remote::exists(to) {
            return Err(Errno::EINVAL);
        }
        let cur = (*v).current;
        if th != cur && (*th).state != State::Runnable {
            return Err(Errno(libc::EBUSY)); // blocked: its wait belongs to this vcpu
        }
        (*v).run_queue.remove(th);
        (*v).threads.remove(th);
        (*th).state = State::Migrating;
        (*th).migrate_to = to;
        super::tls::on_leave(v, th);
        if th != cur {
            after_switch(th); // not running: hand it over now
            return Ok(());
        }
        let next = next_to_run(v);
        super::tls::on_switch(v, next);
        (*v).current = next;
        let deferred = switch_stacks(v, cur, &raw mut (*cur).sp, next, cur as usize, false);
        // Resumed on the new vcpu.
        if deferred != 0 {
            after_switch(deferred as *mut ThreadCtl);
        }
    }
    Ok(())
}
