//! Handle casting: the one place where a C handle becomes a Rust value.
//!
//! Every opaque C type (`photon_mutex`, `photon_server`, `photon_thread`,
//! ...) implements `Castable`, naming the Rust type behind it and how the
//! handle relates to that value (in the manner of rustls-ffi's `Castable`):
//!
//! - `BoxOwned` (methods of `Boxed`): the handle is a `Box<RustType>` given to C by `publish` and
//!   taken back once by `free`; in between, `borrow` lends it;
//! - `ArcOwned` (methods of `Shared`): the handle is one reference of an `Arc<RustType>`:
//!   `clone_arc` takes another (so a call keeps the value alive even if
//!   another thread frees the handle meanwhile), `release` drops C's one;
//! - `ValueEncoded` (methods of `Encoded`): the handle is a number (a thread handle, a vcpu id), never
//!   an address: `encode` and `decode` convert, and a stale number is
//!   detected by whoever looks it up, not followed.
//!
//! The functions are methods of the C type, and their pointer argument is
//! `*mut Self`: the Rust type and the ownership come from the C type, not
//! from the caller, so a wrong pairing does not compile:
//!
//! ```
//! use photon::ffi::handle::{Boxed, Shared};
//! use photon::ffi::{photon_cond, photon_mutex, photon_server};
//! let m = photon_mutex::publish(photon::sync::Mutex::new());
//! let _: &photon::sync::Mutex = photon_mutex::borrow(m).unwrap();
//! let _ = photon_cond::borrow(core::ptr::null_mut());
//! let _ = photon_server::clone_arc(core::ptr::null_mut());
//! assert_eq!(photon_mutex::free(m, |_| false), Ok(0));
//! ```
//!
//! Each of the following is that program with one wrong pairing, and does
//! not compile (stable rustdoc does not check the error code: the programs
//! differ from the one above only in the marked line):
//!
//! ```compile_fail,E0308
//! use photon::ffi::handle::{Boxed, Shared};
//! use photon::ffi::{photon_cond, photon_mutex, photon_server};
//! let m = photon_mutex::publish(photon::sync::Mutex::new());
//! let _: &photon::sync::Cond = photon_mutex::borrow(m).unwrap(); // wrong: a mutex is no condition variable
//! let _ = photon_cond::borrow(core::ptr::null_mut());
//! let _ = photon_server::clone_arc(core::ptr::null_mut());
//! assert_eq!(photon_mutex::free(m, |_| false), Ok(0));
//! ```
//!
//! ```compile_fail,E0308
//! use photon::ffi::handle::{Boxed, Shared};
//! use photon::ffi::{photon_cond, photon_mutex, photon_server};
//! let m = photon_mutex::publish(photon::sync::Mutex::new());
//! let _: &photon::sync::Mutex = photon_mutex::borrow(m).unwrap();
//! let _ = photon_cond::borrow(m); // wrong: a photon_mutex* is no photon_cond*
//! let _ = photon_server::clone_arc(core::ptr::null_mut());
//! assert_eq!(photon_mutex::free(m, |_| false), Ok(0));
//! ```
//!
//! ```compile_fail,E0271
//! use photon::ffi::handle::{Boxed, Shared};
//! use photon::ffi::{photon_cond, photon_mutex, photon_server};
//! let m = photon_mutex::publish(photon::sync::Mutex::new());
//! let _: &photon::sync::Mutex = photon_mutex::borrow(m).unwrap();
//! let _ = photon_cond::borrow(core::ptr::null_mut());
//! let _ = photon_server::borrow(core::ptr::null_mut()); // wrong: a server is shared (an Arc), never boxed
//! assert_eq!(photon_mutex::free(m, |_| false), Ok(0));
//! ```
//!
//! ```compile_fail,E0599
//! use photon::ffi::handle::{Boxed, Shared};
//! use photon::ffi::{photon_cond, photon_mutex, photon_server};
//! let m = photon_mutex::publish(photon::sync::Mutex::new());
//! let _: &photon::sync::Mutex = photon_mutex::borrow(m).unwrap();
//! let _ = photon_cond::borrow(core::ptr::null_mut());
//! let _ = photon_mutex::clone_arc(m); // wrong: a mutex is boxed, not shared
//! assert_eq!(photon_mutex::free(m, |_| false), Ok(0));
//! ```
//!
//! Safety rests on the C caller's side of the contract (DESIGN.md, the
//! conventions in `ffi/mod.rs`): a non-NULL pointer it passes came from the
//! matching constructor and was not freed. NULL is checked here (`EINVAL`).

use std::sync::Arc;

use crate::errno::Errno;

/// A C handle type: the Rust value behind it and the handle's ownership
/// (`BoxOwned`, `ArcOwned` or `ValueEncoded`).
pub trait Castable {
    /// `BoxOwned`, `ArcOwned` or `ValueEncoded`.
    type Ownership;
    /// The value a handle stands for.
    type RustType;
}

/// Ownership of a handle that is a `Box<RustType>` (one owner: C).
pub enum BoxOwned {}
/// Ownership of a handle that is one reference of an `Arc<RustType>`.
pub enum ArcOwned {}
/// Ownership of a handle that encodes a value (no memory behind it).
pub enum ValueEncoded {}

/// Handles that are boxes: publish, borrow, free.
pub trait Boxed: Castable<Ownership = BoxOwned> + Sized {
    /// Gives `v` to C as a new handle.
    fn publish(v: Self::RustType) -> *mut Self {
        Box::into_raw(Box::new(v)).cast()
    }

    /// Lends the value behind `p` (`EINVAL` if NULL).
    fn borrow<'a>(p: *mut Self) -> Result<&'a Self::RustType, Errno> {
        // SAFETY: a non-NULL handle came from publish() (a Box<RustType>)
        // and is not yet freed (the C caller's contract).
        (!p.is_null())
            .then(|| unsafe { &*p.cast::<Self::RustType>() })
            .ok_or(Errno::EINVAL)
    }

    /// Frees the value behind `p` (NULL: nothing, 0), unless `in_use` says
    /// it is: then -1/`EBUSY` and nothing freed.
    fn free(p: *mut Self, in_use: impl FnOnce(&Self::RustType) -> bool) -> Result<libc::c_int, Errno> {
        if p.is_null() {
            return Ok(0);
        }
        if in_use(Self::borrow(p)?) {
            return Err(Errno(libc::EBUSY));
        }
        drop(Self::take(p));
        Ok(0)
    }

    /// Takes the value behind `p` back from C (None for NULL); the handle
    /// is dead afterwards.
    fn take(p: *mut Self) -> Option<Box<Self::RustType>> {
        // SAFETY: made by publish() as Box<RustType>; C gives it back once.
        (!p.is_null()).then(|| unsafe { Box::from_raw(p.cast::<Self::RustType>()) })
    }
}

impl<T: Castable<Ownership = BoxOwned>> Boxed for T {}

/// Handles that are `Arc` references: publish, clone, release.
pub trait Shared: Castable<Ownership = ArcOwned> + Sized {
    /// Gives `v` to C as a new handle holding one reference.
    fn publish(v: Self::RustType) -> *mut Self {
        Arc::into_raw(Arc::new(v)).cast_mut().cast()
    }

    /// A new reference to the value behind `p` (`EINVAL` if NULL): it stays
    /// alive while the caller holds it, even if C releases the handle.
    fn clone_arc(p: *mut Self) -> Result<Arc<Self::RustType>, Errno> {
        if p.is_null() {
            return Err(Errno::EINVAL);
        }
        let r = p.cast_const().cast::<Self::RustType>();
        // SAFETY: a non-NULL handle came from publish() (Arc::into_raw) and
        // C has not released it; we add one reference and own it.
        unsafe {
            Arc::increment_strong_count(r);
            Ok(Arc::from_raw(r))
        }
    }

    /// Takes C's reference back (None for NULL); the handle is dead
    /// afterwards, the value lives while other references do.
    fn release(p: *mut Self) -> Option<Arc<Self::RustType>> {
        // SAFETY: made by publish() (Arc::into_raw); C releases it once.
        (!p.is_null()).then(|| unsafe { Arc::from_raw(p.cast_const().cast::<Self::RustType>()) })
    }
}

impl<T: Castable<Ownership = ArcOwned>> Shared for T {}

/// Handles that encode a value in the pointer's bits: each type says how.
pub trait Encoded: Castable<Ownership = ValueEncoded> + Sized {
    /// The handle's bits for `v` (never 0).
    fn to_bits(v: Self::RustType) -> usize;
    /// The value of non-zero bits `b`, or None if no value has them.
    fn from_bits(b: usize) -> Option<Self::RustType>;

    /// The handle of `v`.
    fn encode(v: Self::RustType) -> *mut Self {
        core::ptr::without_provenance_mut(Self::to_bits(v))
    }

    /// The value of handle `p`: `EINVAL` for NULL or bits no value has.
    fn decode(p: *mut Self) -> Result<Self::RustType, Errno> {
        match p.addr() {
            0 => Err(Errno::EINVAL),
            b => Self::from_bits(b).ok_or(Errno::EINVAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{photon_mutex, photon_server, photon_thread, photon_vcpu};
    use crate::sched::Handle;

    #[test]
    fn boxed_round_trip_and_busy_free() {
        let m = photon_mutex::publish(crate::sync::Mutex::new());
        assert!(photon_mutex::borrow(m).is_ok());
        assert_eq!(photon_mutex::free(m, |_| true), Err(Errno(libc::EBUSY)));
        assert_eq!(photon_mutex::free(m, |_| false), Ok(0));
        assert_eq!(photon_mutex::free(core::ptr::null_mut(), |_| true), Ok(0));
        assert_eq!(photon_mutex::borrow(core::ptr::null_mut()).err(), Some(Errno::EINVAL));
    }

    #[test]
    fn encoded_null_and_out_of_range() {
        assert_eq!(photon_thread::decode(core::ptr::null_mut()), Err(Errno::EINVAL));
        let h = Handle((7 << 32) | 3);
        assert_eq!(photon_thread::decode(photon_thread::encode(h)), Ok(h));
        assert_eq!(photon_vcpu::decode(photon_vcpu::encode(5)), Ok(5));
        // a vcpu id is 32 bits: wider bits are no vcpu
        assert_eq!(
            photon_vcpu::decode(core::ptr::without_provenance_mut(1 << 40)),
            Err(Errno::EINVAL)
        );
        assert!(photon_server::clone_arc(core::ptr::null_mut()).is_err());
        assert!(photon_server::release(core::ptr::null_mut()).is_none());
    }
}
