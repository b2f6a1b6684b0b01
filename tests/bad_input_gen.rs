//! Bad input for every function of the C API, generated from `include/photon.h`
//! so that a new function cannot be left out.
//!
//! The test parses every prototype in the header (name, return type, each
//! parameter's type and name) and crosses it with [`TABLE`], which says for
//! each function what its bad inputs are and what photon.h promises for them.
//! A function of the header missing from the table, a function of the table
//! missing from the header, a parameter renamed, added or left without a bad
//! value (a pointer without a NULL case, an fd without -1, a `size_t` without
//! `SIZE_MAX`, an `off_t` without a negative value, any other parameter
//! without bad values or a `none: <why>`), or a function with no bad input
//! and no `nobad: <why>`, fails the test naming it.
//!
//! Cases come from the table in three ways:
//! - generic ones derived from each parameter's type (`auto`): handles and
//!   pointers NULL (thread handles also forged and stale), fds -1, 1<<30 and
//!   a closed one, `off_t` -1 and `INT64_MIN`; plus the explicit bad values
//!   the table lists (huge and negative sizes and counts, unknown flags and
//!   engines, dead keys, ...), each with the other arguments valid;
//! - every function called with valid arguments in each context: on a vcpu
//!   (V), in a plain pthread while main is a vcpu (P), in a process that
//!   never called `photon_init` (N), and after `photon_fini` (F): a function
//!   of class `vcpu` must fail with `EPERM` off a vcpu, one of class `any`
//!   must behave as on a vcpu, unless the table says otherwise per context;
//! - semantic cases written out in the table (`case`): join twice, unlock by
//!   a non-owner, free a held lock, close twice, the 1025th key, ...
//!
//! They are written into one C file (`CASES[]`, one setup and one call
//! function per case, plus `tests/bad_input_gen/harness*.h`), compiled with
//! `-std=c11 -Wall -Wextra -Werror -pedantic` and linked to the libphoton.so
//! cargo built, and run under each engine. The program runs each case in a
//! forked child with a deadline and prints one line per case,
//! `#N C call -> ret errno=E ok|WRONG (want W)`, or the parent's
//! `CRASH signal S` / `HANG` line for it; the test fails on any line that is
//! not `ok`, listing them.
//!
//! Table format (one function per unindented line, its details indented):
//!
//! ```text
//! NAME CLASS [valid=EXP] [V=EXP] [P=EXP] [N=EXP] [F=EXP] [home=C]
//!   PARAM: VALID | RULE ; RULE ...
//!   setup: C statements run before each of this function's calls
//!   case C | label | C setup statements | C call expression | EXP
//!   nobad: why the function has no bad input
//! ```
//!
//! CLASS is `vcpu` (off a vcpu: `EPERM`) or `any` (works on any OS thread).
//! `valid` is what the call with every argument valid gives in its home
//! context (V unless `home=`); V/P/N/F override a context's expectation.
//! RULE is `auto` (the generic bad values of the parameter's type),
//! `none: why` (no value is bad), `nullok: why` (NULL is allowed: expect
//! `valid`), or `VALUE => EXP`. EXP is `ok` (>= 0, non-NULL, or returned),
//! a number (exact; `/keep`: and errno untouched), `E1|E2` (-1 or NULL with
//! one of these errnos), `err` (-1 or NULL, any errno), `any` (must only
//! return) or `libc` (the same result and errno as the libc function of the
//! same name without `photon_`, called first with the same arguments less
//! `timeout_us`). VALUE and VALID are C expressions over the fixtures of
//! `tests/bad_input_gen/harness.h`.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Each run of the generated program (one engine) is killed, and the test
/// failed, after this long. Each case has its own 5 s deadline inside.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The bad inputs of every function of photon.h, and what the header's doc
/// comments promise for them. See the module doc for the format.
const TABLE: &str = r#"
# ---- lifecycle
photon_init any home=N valid=0 V=EALREADY P=0 F=0
  event_engine: PHOTON_EVENT_DEFAULT | 3 => EINVAL ; 99 => EINVAL ; UINT64_MAX => EINVAL
  flags: 0 | 2 => EINVAL ; 6 => EINVAL ; UINT64_MAX => EINVAL
  case V | init twice, naming an engine | | photon_init(PHOTON_EVENT_EPOLL, 0) | EALREADY
photon_fini vcpu valid=0
  case T | fini from a photon thread that is not the vcpu's main one | | photon_fini() | EPERM
photon_engine_name vcpu valid=ok
  nobad: takes no arguments; off a vcpu (P, N, F) it must give NULL/EPERM
photon_version any valid=ok
  nobad: takes no arguments and works anywhere
photon_in_thread any valid=1/keep P=0/keep N=0/keep F=0/keep
  case T | in a photon thread main created | | photon_in_thread() | 1/keep
  nobad: takes no arguments; 1 on a vcpu, 0 elsewhere, errno untouched
photon_thread_number any valid=1/keep P=0/keep N=0/keep F=0/keep
  is_main: NULL | nullok: the flag is optional
  case V | main reports itself as a vcpu's main thread | G.n = 0; | (photon_thread_number(&G.n) == 1 && G.n == 1) | 1/keep
  case T | a photon thread main created is not main | G.n = 1; | (photon_thread_number(&G.n) > 1 && G.n == 0) | 1/keep
photon_tls_isolate any valid=0
  module: "*" | auto ; "" => EINVAL ; "libno-such-module-here" => ENOENT ; "libc.so" => EPERM ; "libphoton" => EPERM
photon_tls_rescan any valid=ok
  nobad: takes no arguments and works anywhere
photon_tls_atexit vcpu valid=ENOENT
  dtor: DTOR | auto
  obj: BUF() | nullok: not in an isolated block, so ENOENT as with any such address
photon_preload_active any valid=0/keep
  nobad: takes no arguments; 0 without the preload shim
photon_now_us any valid=ok
  nobad: takes no arguments and works anywhere

# ---- threads
photon_thread_create vcpu valid=ok
  entry: ENTRY | auto
  arg: BUF() | nullok: passed to entry untouched
  stack_size: 0 | SIZE_MAX => EINVAL ; HUGE_SIZE => any ; (size_t)1 << 62 => EINVAL|ENOMEM ; 1 => ok
photon_thread_enable_join any valid=0 P=any N=ESRCH|EINVAL F=ESRCH
  th: TH() | auto
  case V | enable_join of a joined thread | G.th = DONE_JTH(); photon_thread_join(G.th, NULL); | photon_thread_enable_join(G.th) | ESRCH
photon_thread_join vcpu valid=0 N=EPERM|ESRCH|EINVAL F=EPERM|ESRCH
  th: DONE_JTH() | auto ; TH() => EINVAL
  retval: RETVAL() | nullok: photon.h says retval may be NULL
  case V | join twice | G.th = DONE_JTH(); photon_thread_join(G.th, NULL); | photon_thread_join(G.th, NULL) | EINVAL
  case V | join after enable_join + detach | G.th = JTH(); photon_thread_detach(G.th); | photon_thread_join(G.th, NULL) | EINVAL
  case V | join while another join is under way | G.th = JTH(); photon_thread_create(join_arg, G.th, 0); photon_thread_yield(); | photon_thread_join(G.th, NULL) | EINVAL
  case T | join oneself | | photon_thread_join(photon_thread_self(), NULL) | EINVAL
photon_thread_detach any valid=0 P=any N=ESRCH|EINVAL F=any
  th: JTH() | auto ; TH() => EINVAL
  case V | detach twice | G.th = JTH(); photon_thread_detach(G.th); | photon_thread_detach(G.th) | EINVAL
  case V | detach while a join is under way | G.th = JTH(); photon_thread_create(join_arg, G.th, 0); photon_thread_yield(); | photon_thread_detach(G.th) | EINVAL
  case V | detach a joined thread | G.th = DONE_JTH(); photon_thread_join(G.th, NULL); | photon_thread_detach(G.th) | ESRCH
photon_thread_self vcpu valid=ok
  nobad: takes no arguments; off a vcpu (P, N, F) it must give NULL/EPERM
photon_thread_exit vcpu valid=EPERM
  retval: BUF() | nullok: handed to a joiner untouched (every value is valid)
  case V | ends a joinable photon thread with its value | G.th = photon_thread_create(exit_with_arg, (void *)7, 0); photon_thread_enable_join(G.th); | (photon_thread_join(G.th, RETVAL()) == 0 && retval_out == (void *)7) | 1
photon_thread_on_end vcpu valid=EPERM
  f: count_on_end | auto
  arg: BUF() | nullok: passed to f untouched
  case V | runs when a photon thread ends | on_end_calls = 0; G.th = photon_thread_create(register_on_end, NULL, 0); photon_thread_enable_join(G.th); photon_thread_join(G.th, NULL); | on_end_calls | 1
  case T | a photon thread main created may register | | photon_thread_on_end(count_on_end, NULL) | 0
photon_thread_yield any valid=ok
  nobad: takes no arguments; off a vcpu it returns at once
photon_thread_usleep vcpu valid=0
  us: 1000 | none: every value is valid (PHOTON_FOREVER sleeps until interrupted: see the case)
  case V | PHOTON_FOREVER with an interrupt pending | photon_thread_interrupt(photon_thread_self(), EINTR); | photon_thread_usleep(PHOTON_FOREVER) | EINTR
photon_thread_sleep vcpu valid=0
  seconds: 0 | none: every value is valid (huge ones saturate to forever: see the case)
  case V | UINT64_MAX seconds with an interrupt pending | photon_thread_interrupt(photon_thread_self(), EINTR); | photon_thread_sleep(UINT64_MAX) | EINTR
photon_thread_interrupt any valid=0 N=ESRCH|EINVAL F=ESRCH
  th: TH() | auto
  error_number: EINTR | 0 => EINVAL ; -1 => EINVAL ; INT_MIN => EINVAL
  case V | interrupt a joined thread | G.th = DONE_JTH(); photon_thread_join(G.th, NULL); | photon_thread_interrupt(G.th, EINTR) | ESRCH
  case V | interrupt a joinable thread that has ended | G.th = DONE_JTH(); photon_thread_usleep(2000); | photon_thread_interrupt(G.th, EINTR) | ESRCH

# ---- keys
photon_key_create any valid=0
  key: KEYP() | auto
  destructor: DTOR | nullok: photon.h says destructor may be NULL
  case V | the 1025th live key | for (G.n = 0; G.n < 1024; G.n++) photon_key_create(&G.key, NULL); | photon_key_create(KEYP(), NULL) | EAGAIN
photon_key_delete any valid=0
  key: KEY() | DEAD_KEY() => EINVAL ; UINT32_MAX => EINVAL ; 1024 => EINVAL
photon_getspecific vcpu valid=0/keep
  key: KEY() | DEAD_KEY() => EINVAL ; UINT32_MAX => EINVAL
photon_setspecific vcpu valid=0
  key: KEY() | DEAD_KEY() => EINVAL ; UINT32_MAX => EINVAL
  value: BUF() | nullok: NULL is a value like any other

# ---- locks
photon_mutex_new any valid=ok
  nobad: takes no arguments; works anywhere
photon_mutex_free any valid=0
  m: MUTEX() | NULL => 0
  case V | free a locked mutex | | photon_mutex_free(LOCKED_MUTEX()) | EBUSY
photon_mutex_lock vcpu valid=0
  m: MUTEX() | auto
  timeout_us: T | none: every timeout is valid
  case V | lock a mutex the caller holds | G.m = LOCKED_MUTEX(); | photon_mutex_lock(G.m, T) | EDEADLK
  case V | lock a mutex the caller holds, no timeout | G.m = LOCKED_MUTEX(); | photon_mutex_lock(G.m, PHOTON_FOREVER) | EDEADLK
  case V | held by another thread, 1 ms timeout | G.m = MUTEX(); photon_thread_create(lock_mutex_and_sleep, G.m, 0); photon_thread_yield(); | photon_mutex_lock(G.m, T) | ETIMEDOUT
photon_mutex_trylock vcpu valid=0
  m: MUTEX() | auto
  case V | trylock of a mutex the caller holds | G.m = LOCKED_MUTEX(); | photon_mutex_trylock(G.m) | EBUSY
  case V | trylock of a mutex another thread holds | G.m = MUTEX(); photon_thread_create(lock_mutex_and_sleep, G.m, 0); photon_thread_yield(); | photon_mutex_trylock(G.m) | EBUSY
photon_mutex_unlock any valid=0 P=EINVAL N=EINVAL F=any
  m: LOCKED_MUTEX() | auto
  case V | unlock an unlocked mutex | | photon_mutex_unlock(MUTEX()) | EINVAL
  case V | unlock twice | G.m = LOCKED_MUTEX(); photon_mutex_unlock(G.m); | photon_mutex_unlock(G.m) | EINVAL
  case V | unlock by a non-owner (another photon thread holds it) | G.m = MUTEX(); photon_thread_create(lock_mutex_and_sleep, G.m, 0); photon_thread_yield(); | photon_mutex_unlock(G.m) | EINVAL
  case T | unlock by a non-owner (main holds it) | G.m = LOCKED_MUTEX(); | photon_mutex_unlock(G.m) | EINVAL
photon_cond_new any valid=ok
  nobad: takes no arguments; works anywhere
photon_cond_free any valid=0
  c: COND() | NULL => 0
  case V | free a cond a thread waits on | cond_wait_mutex = MUTEX(); G.c = COND(); photon_thread_create(cond_wait_forever, G.c, 0); photon_thread_yield(); | photon_cond_free(G.c) | EBUSY
photon_cond_wait vcpu valid=ETIMEDOUT
  c: COND() | auto
  m: LOCKED_MUTEX() | auto ; MUTEX() => EINVAL
  timeout_us: T | none: every timeout is valid
  case V | with a mutex another thread holds | G.m = MUTEX(); photon_thread_create(lock_mutex_and_sleep, G.m, 0); photon_thread_yield(); | photon_cond_wait(COND(), G.m, T) | EINVAL
photon_cond_notify_one any valid=0
  c: COND() | auto
photon_cond_notify_all any valid=0
  c: COND() | auto
photon_sem_new any valid=ok
  count: 1 | 0 => ok ; UINT64_MAX => ok
photon_sem_free any valid=0
  s: SEM() | NULL => 0
  case V | free a semaphore a thread waits on | G.s = SEM(); photon_thread_create(sem_wait_forever, G.s, 0); photon_thread_yield(); | photon_sem_free(G.s) | EBUSY
photon_sem_wait vcpu valid=0
  s: SEM() | auto
  count: 1 | 0 => EINVAL ; UINT64_MAX => ETIMEDOUT
  timeout_us: T | none: every timeout is valid
photon_sem_signal any valid=0
  s: SEM() | auto
  count: 1 | UINT64_MAX => EOVERFLOW
photon_rwlock_new any valid=ok
  nobad: takes no arguments; works anywhere
photon_rwlock_free any valid=0
  l: RWLOCK() | NULL => 0
  case V | free a write-locked rwlock | | photon_rwlock_free(WRLOCKED_RW()) | EBUSY
  case V | free a read-locked rwlock | | photon_rwlock_free(RDLOCKED_RW()) | EBUSY
photon_rwlock_rdlock vcpu valid=0
  l: RWLOCK() | auto
  timeout_us: T | none: every timeout is valid
  case V | rdlock under one's own wrlock | G.l = WRLOCKED_RW(); | photon_rwlock_rdlock(G.l, T) | EDEADLK
  case V | write-locked by another thread, 1 ms timeout | G.l = RWLOCK(); photon_thread_create(wrlock_and_sleep, G.l, 0); photon_thread_yield(); | photon_rwlock_rdlock(G.l, T) | ETIMEDOUT
photon_rwlock_wrlock vcpu valid=0
  l: RWLOCK() | auto
  timeout_us: T | none: every timeout is valid
  case V | wrlock twice | G.l = WRLOCKED_RW(); | photon_rwlock_wrlock(G.l, T) | EDEADLK
  case V | wrlock twice, no timeout | G.l = WRLOCKED_RW(); | photon_rwlock_wrlock(G.l, PHOTON_FOREVER) | EDEADLK
photon_rwlock_unlock any valid=0 P=EINVAL N=EINVAL F=any
  l: WRLOCKED_RW() | auto
  case V | unlock an unlocked rwlock | | photon_rwlock_unlock(RWLOCK()) | EINVAL
  case V | unlock twice | G.l = WRLOCKED_RW(); photon_rwlock_unlock(G.l); | photon_rwlock_unlock(G.l) | EINVAL

photon_futex_wait vcpu valid=ETIMEDOUT
  addr: &G.key | auto ; (const uint32_t *)(const void *)((const char *)&G.key + 1) => EINVAL
  expected: 0 | 1 => EAGAIN ; UINT32_MAX => EAGAIN
  timeout_us: T | none: every timeout is valid
  case V | PHOTON_FOREVER with an interrupt pending | photon_thread_interrupt(photon_thread_self(), EINTR); | photon_futex_wait(&G.key, 0, PHOTON_FOREVER) | EINTR
photon_futex_wake any valid=0/keep
  addr: &G.key | auto ; (const uint32_t *)(const void *)((const char *)&G.key + 1) => EINVAL
  n: 1 | 0 => 0/keep ; -1 => 0/keep ; INT_MIN => 0/keep ; INT_MAX => 0/keep
  case V | wakes the photon thread waiting on the word | photon_thread_create(futex_wait_forever, &G.key, 0); photon_thread_yield(); | photon_futex_wake(&G.key, INT_MAX) | 1/keep
  case V | wakes only waiters of that word | photon_thread_create(futex_wait_forever, &G.key, 0); photon_thread_yield(); | photon_futex_wake((const uint32_t *)(const void *)&G.n, 1) | 0/keep
# ---- vcpus, pools, migration, offload
photon_vcpu_current vcpu valid=ok
  nobad: takes no arguments; off a vcpu (P, N, F) it must give NULL/EPERM
photon_workpool_new any valid=ok
  vcpus: 1 | 0 => EINVAL ; 1025 => EINVAL ; UINT32_MAX => EINVAL
  event_engine: PHOTON_EVENT_DEFAULT | 3 => EINVAL ; UINT64_MAX => EINVAL
photon_workpool_free any valid=ok
  p: POOL() | NULL => ok
photon_workpool_vcpu any valid=ok
  p: POOL() | auto
  index: 0 | 1 => EINVAL ; UINT32_MAX => EINVAL
photon_workpool_call any valid=0
  p: POOL() | auto
  fn_: ENTRY | auto
  arg: BUF() | nullok: passed to fn_ untouched
  retval: RETVAL() | nullok: photon.h says retval may be NULL
photon_workpool_spawn any valid=0
  p: POOL() | auto
  fn_: ENTRY | auto
  arg: BUF() | nullok: passed to fn_ untouched
photon_offload any valid=0
  fn_: ENTRY | auto
  arg: BUF() | nullok: passed to fn_ untouched
  retval: RETVAL() | nullok: photon.h says retval may be NULL
photon_thread_migrate vcpu valid=0 N=EPERM|ESRCH|EINVAL F=EPERM|ESRCH|EINVAL
  th: TH() | auto ; SELF() => EINVAL
  to: POOL_VCPU() | auto
  case V | migrate a blocked thread | G.th = TH(); POOL_VCPU(); photon_thread_yield(); | photon_thread_migrate(G.th, POOL_VCPU()) | EBUSY
  case V | migrate a thread of another vcpu | G.th = POOL_TH(); | photon_thread_migrate(G.th, photon_vcpu_current()) | EINVAL

# ---- fd I/O
photon_wait_fd vcpu valid=2
  fd: PIPE_W() | auto
  events: PHOTON_WRITABLE | 0 => EINVAL ; 4 => EINVAL ; UINT32_MAX => EINVAL
  timeout_us: T | none: every timeout is valid
photon_socket any valid=ok
  domain: AF_INET | -1 => libc ; AF_MAX + 10 => libc
  type_: SOCK_STREAM | -1 => libc ; 0 => libc
  protocol: 0 | -1 => libc ; IPPROTO_UDP => libc
photon_connect vcpu valid=0
  fd: NEW_TCP() | auto ; PIPE_R() => ENOTSOCK
  addr: LISTEN_ADDR() | auto
  addrlen: sizeof(struct sockaddr_in) | 0 => EINVAL ; 1 => EINVAL ; UINT32_MAX => EINVAL
  timeout_us: T | none: every timeout is valid
  case V | connect twice | G.fd = NEW_TCP(); photon_connect(G.fd, LISTEN_ADDR(), sizeof(struct sockaddr_in), T); | photon_connect(G.fd, LISTEN_ADDR(), sizeof(struct sockaddr_in), T) | EISCONN
photon_accept vcpu valid=ETIMEDOUT
  fd: LISTEN() | auto ; PIPE_R() => ENOTSOCK ; SOCK() => EINVAL
  addr: SADDR() | nullok: photon.h says addr/addrlen may be NULL
  addrlen: ADDRLEN() | NULL => EINVAL
  timeout_us: T | none: every timeout is valid
  case V | addr and addrlen both NULL | | photon_accept(LISTEN(), NULL, NULL, T) | ETIMEDOUT
photon_read vcpu valid=ETIMEDOUT
  fd: PIPE_R() | auto ; PIPE_W() => EBADF
  buf: BUF() | auto
  count_: 16 | SIZE_MAX => EFAULT|EINVAL ; HUGE_SIZE => ETIMEDOUT
  timeout_us: T | none: every timeout is valid
photon_write vcpu valid=16
  fd: PIPE_W() | auto ; PIPE_R() => EBADF
  buf: BUF() | auto
  count_: 16 | SIZE_MAX => EFAULT|EINVAL ; HUGE_SIZE => any
  timeout_us: T | none: every timeout is valid
photon_readv vcpu valid=ETIMEDOUT
  fd: PIPE_R() | auto
  iov: IOV() | auto ; BIG_IOV() => EINVAL
  iovcnt: 1 | -1 => EINVAL ; 1025 => EINVAL ; INT_MAX => EINVAL
  timeout_us: T | none: every timeout is valid
photon_writev vcpu valid=16
  fd: PIPE_W() | auto
  iov: IOV() | auto ; BIG_IOV() => EINVAL ; HUGE_IOV() => any
  iovcnt: 1 | -1 => EINVAL ; 1025 => EINVAL ; INT_MAX => EINVAL
  timeout_us: T | none: every timeout is valid
photon_recv vcpu valid=ETIMEDOUT
  fd: SOCK() | auto ; PIPE_R() => ENOTSOCK
  buf: BUF() | auto
  len: 16 | SIZE_MAX => ETIMEDOUT ; HUGE_SIZE => ETIMEDOUT
  flags: 0 | -1 => libc
  timeout_us: T | none: every timeout is valid
photon_send vcpu valid=16
  fd: SOCK() | auto ; PIPE_W() => ENOTSOCK
  buf: BUF() | auto
  len: 16 | SIZE_MAX => any ; HUGE_SIZE => any
  flags: 0 | -1 => any
  timeout_us: T | none: every timeout is valid
  case V | send to a socket whose peer closed (no SIGPIPE) | close(SOCK_PEER()); | photon_send(SOCK(), BUF(), 16, 0, T) | EPIPE
photon_recvfrom vcpu valid=ETIMEDOUT
  fd: UDP() | auto
  buf: BUF() | auto
  len: 16 | SIZE_MAX => ETIMEDOUT ; HUGE_SIZE => ETIMEDOUT
  flags: 0 | -1 => any
  src_addr: SADDR() | nullok: photon.h says src_addr/addrlen may be NULL
  addrlen: ADDRLEN() | nullok: photon.h says src_addr/addrlen may be NULL
  timeout_us: T | none: every timeout is valid
photon_sendto vcpu valid=16
  fd: UDP() | auto
  buf: BUF() | auto
  len: 16 | SIZE_MAX => EMSGSIZE ; HUGE_SIZE => EMSGSIZE
  flags: 0 | -1 => any
  dest_addr: UDP_ADDR() | NULL => EDESTADDRREQ|EINVAL
  addrlen: sizeof(struct sockaddr_in) | 0 => libc ; UINT32_MAX => libc
  timeout_us: T | none: every timeout is valid
photon_recvmsg vcpu valid=ETIMEDOUT
  fd: SOCK() | auto
  msg: MSG() | auto ; BIG_MSG() => EMSGSIZE
  flags: 0 | -1 => any
  timeout_us: T | none: every timeout is valid
photon_sendmsg vcpu valid=16
  fd: SOCK() | auto
  msg: MSG() | auto ; BIG_MSG() => EMSGSIZE
  flags: 0 | -1 => any
  timeout_us: T | none: every timeout is valid
photon_read_full vcpu valid=ETIMEDOUT
  fd: PIPE_R() | auto
  buf: BUF() | auto
  count_: 16 | SIZE_MAX => EFAULT|EINVAL ; HUGE_SIZE => ETIMEDOUT
  timeout_us: T | none: every timeout is valid
photon_write_full vcpu valid=16
  fd: PIPE_W() | auto
  buf: BUF() | auto
  count_: 16 | SIZE_MAX => EFAULT|EINVAL ; HUGE_SIZE => any
  timeout_us: T | none: every timeout is valid
photon_close any valid=0
  fd: NEW_TCP() | auto
  case V | close twice | G.fd = NEW_TCP(); photon_close(G.fd); | photon_close(G.fd) | EBADF
photon_fd_forget any valid=0
  fd: SOCK() | -1 => EBADF ; INT_MIN => EBADF ; HUGE_FD => 0 ; CLOSED_FD() => 0

# ---- servers
photon_server_new_tcp any valid=ok
  ip: "127.0.0.1" | NULL => ok ; "" => ok ; "not an ip" => EINVAL ; "999.1.1.1" => EINVAL ; "192.0.2.1" => EADDRNOTAVAIL
  port: 0 | none: every port is valid (0 = any; a port in use: see the case)
  backlog: 0 | -1 => ok ; INT_MIN => ok ; INT_MAX => ok
  case V | a port already in use | G.srv = SERVER(); | photon_server_new_tcp("127.0.0.1", (uint16_t)photon_server_port(G.srv), 0) | EADDRINUSE
photon_server_new_tcp_flags any valid=ok
  ip: "127.0.0.1" | NULL => ok ; "not an ip" => EINVAL
  port: 0 | none: every port is valid (0 = any)
  backlog: 0 | -1 => ok
  flags: PHOTON_SERVER_REUSEPORT | 0 => ok ; 2 => EINVAL ; UINT32_MAX => EINVAL
photon_server_new_unix any valid=ok
  path: UNIX_PATH() | NULL => EINVAL ; "" => EINVAL ; LONG_TEXT() => EINVAL ; "/nonexistent-dir/x.sock" => ENOENT
  backlog: 0 | -1 => ok
photon_server_port any valid=ok
  s: SERVER() | auto
  case V | a Unix server's port | | photon_server_port(UNIX_SERVER()) | 0
photon_server_serve vcpu valid=0
  setup: if (on_vcpu()) photon_thread_create(stop_server_soon, SERVER(), 0);
  s: SERVER() | auto
  handler: HANDLER | auto
  userdata: BUF() | nullok: passed to the handler untouched
  case V | serve a server already serving | G.srv = SERVER(); photon_thread_create(serve_forever, G.srv, 0); photon_thread_yield(); | photon_server_serve(G.srv, HANDLER, NULL) | EBUSY
photon_server_stop any valid=0
  s: SERVER() | auto
  case V | stop twice | G.srv = SERVER(); photon_server_stop(G.srv); | photon_server_stop(G.srv) | 0
photon_server_free any valid=ok
  s: SERVER() | NULL => ok
  case V | free a server while it serves | G.srv = SERVER(); photon_thread_create(serve_forever, G.srv, 0); photon_thread_yield(); | photon_server_free(G.srv) | ok

# ---- files
photon_open vcpu valid=ok
  path: FILE_PATH() | NULL => EINVAL ; "" => ENOENT ; "/nonexistent-dir/x" => ENOENT
  flags: O_RDONLY | -1 => libc
  mode: 0 | none: used only with O_CREAT or O_TMPFILE
photon_pread vcpu valid=16
  fd: FILE_FD() | auto ; PIPE_R() => ESPIPE
  buf: BUF() | auto
  count: 16 | SIZE_MAX => EFAULT|EINVAL ; HUGE_SIZE => libc
  offset: 0 | auto
photon_pwrite vcpu valid=16
  fd: FILE_FD() | auto ; PIPE_R() => ESPIPE ; RO_FD() => EBADF
  buf: BUF() | auto
  count: 16 | SIZE_MAX => EFAULT|EINVAL ; HUGE_SIZE => any
  offset: 0 | auto
photon_preadv vcpu valid=16
  fd: FILE_FD() | auto
  iov: IOV() | auto ; BIG_IOV() => EINVAL
  iovcnt: 1 | -1 => EINVAL ; 1025 => EINVAL ; INT_MAX => EINVAL
  offset: 0 | auto
photon_pwritev vcpu valid=16
  fd: FILE_FD() | auto ; RO_FD() => EBADF
  iov: IOV() | auto ; BIG_IOV() => EINVAL ; HUGE_IOV() => any
  iovcnt: 1 | -1 => EINVAL ; 1025 => EINVAL ; INT_MAX => EINVAL
  offset: 0 | auto
photon_fsync vcpu valid=0
  fd: FILE_FD() | auto ; PIPE_R() => EINVAL
photon_fdatasync vcpu valid=0
  fd: FILE_FD() | auto ; PIPE_R() => EINVAL
photon_fallocate vcpu valid=0
  fd: FILE_FD() | auto ; PIPE_R() => libc ; PIPE_W() => libc ; RO_FD() => EBADF
  mode: 0 | -1 => libc
  offset: 0 | auto
  len: 4096 | 0 => EINVAL ; -1 => EINVAL ; INT64_MAX => libc
photon_ftruncate vcpu valid=0
  fd: FILE_FD() | auto ; PIPE_R() => EINVAL ; RO_FD() => EINVAL
  length: 0 | auto ; INT64_MAX => libc
photon_fstat vcpu valid=0
  fd: FILE_FD() | auto
  st: STAT() | auto
photon_unlink vcpu valid=0
  path: FILE_PATH() | NULL => EINVAL ; "" => ENOENT ; NEW_PATH() => ENOENT ; DIR_PATH() => EISDIR
photon_rename vcpu valid=0
  oldpath: FILE_PATH() | NULL => EINVAL ; "" => ENOENT ; NEW_PATH2() => ENOENT
  newpath: NEW_PATH() | NULL => EINVAL ; "" => ENOENT
photon_mkdir vcpu valid=0
  path: NEW_PATH() | NULL => EINVAL ; "" => ENOENT ; DIR_PATH() => EEXIST
  mode: 0700 | none: every mode is valid

# ---- visibility
photon_stats_get vcpu valid=0
  out: STATS() | auto ; SMALL_STATS() => EINVAL ; ZERO_STATS() => EINVAL
photon_thread_set_name vcpu valid=0 N=EPERM|ESRCH|EINVAL F=EPERM|ESRCH
  th: TH() | auto
  name: "worker" | nullok: photon.h says NULL or "" clears the name ; "" => 0 ; LONG_TEXT() => 0
  case V | a thread of another vcpu | G.th = POOL_TH(); | photon_thread_set_name(G.th, "x") | EINVAL
photon_dump_threads vcpu valid=0
  fd: DEVNULL() | auto ; PIPE_R() => EBADF
"#;

// ------------------------------------------------------------------ header

/// One parameter of a prototype: its declaration as written, its type (the
/// declaration less the name) and its name.
#[derive(Debug, Clone)]
struct Param {
    decl: String,
    ty: String,
    name: String,
}

/// One function prototype of the header.
#[derive(Debug, Clone)]
struct Proto {
    ret: String,
    name: String,
    params: Vec<Param>,
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |end| &after[end + 2..]);
            out.push(' ');
        } else if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |end| &after[end..]);
        } else {
            let ch = rest.chars().next().expect("non-empty");
            out.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The trailing identifier of `s`, with the byte offset where it starts.
fn trailing_ident(s: &str) -> Option<(usize, &str)> {
    let s = s.trim_end();
    let start = s
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_ident_char(c))
        .last()
        .map(|(i, _)| i)?;
    Some((start, &s[start..]))
}

fn parse_param(p: &str) -> Result<Param, String> {
    let decl = p.trim().to_string();
    if let Some(i) = decl.find("(*") {
        // a function pointer: `void (*destructor)(void*)`
        let after = &decl[i + 2..];
        let end = after
            .find(')')
            .ok_or_else(|| format!("unparsable parameter `{decl}`"))?;
        let name = after[..end].trim().to_string();
        let ty = format!("{}(*){}", &decl[..i], &after[end + 1..]);
        return Ok(Param { decl, ty, name });
    }
    let (start, name) = trailing_ident(&decl).ok_or_else(|| format!("unparsable parameter `{decl}`"))?;
    let ty = decl[..start].trim().to_string();
    if ty.is_empty() {
        return Err(format!("parameter `{decl}` has no name"));
    }
    Ok(Param {
        name: name.to_string(),
        ty,
        decl,
    })
}

/// Every function prototype declared in `text` (a photon.h).
fn parse_header(text: &str) -> Result<Vec<Proto>, String> {
    let code: String = strip_comments(text)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("extern \"C\" {", " ");
    let mut statements = Vec::new();
    let mut cur = String::new();
    let mut depth = 0u32;
    for ch in code.chars() {
        match ch {
            '{' => {
                depth += 1;
                cur.push(ch);
            }
            // the `}` closing `extern "C" {`
            '}' if depth == 0 => {}
            '}' => {
                depth -= 1;
                cur.push(ch);
            }
            ';' if depth == 0 => statements.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    let mut protos = Vec::new();
    for s in statements {
        let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if s.is_empty() || s.starts_with("typedef ") || !s.contains('(') {
            continue;
        }
        let open = s.find('(').expect("has (");
        let (start, name) = trailing_ident(&s[..open]).ok_or_else(|| format!("no function name in `{s}`"))?;
        let ret = s[..start].trim().to_string();
        let mut depth = 0;
        let mut close = None;
        for (i, c) in s[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let close = close.ok_or_else(|| format!("unbalanced parentheses in `{s}`"))?;
        let inner = s[open + 1..close].trim();
        let mut params = Vec::new();
        if !inner.is_empty() && inner != "void" {
            let mut depth = 0;
            let mut cur = String::new();
            for c in inner.chars() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    ',' if depth == 0 => {
                        params.push(parse_param(&cur)?);
                        cur.clear();
                        continue;
                    }
                    _ => {}
                }
                cur.push(c);
            }
            params.push(parse_param(&cur)?);
        }
        if ret.is_empty() {
            return Err(format!("no return type in `{s}`"));
        }
        protos.push(Proto {
            ret,
            name: name.to_string(),
            params,
        });
    }
    Ok(protos)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ret {
    Int,
    Ptr,
    Void,
    U64,
}

fn ret_kind(ret: &str) -> Ret {
    if ret == "void" {
        Ret::Void
    } else if ret.ends_with('*') {
        Ret::Ptr
    } else if ret == "uint64_t" {
        Ret::U64
    } else {
        Ret::Int
    }
}

/// What a parameter is, from its type (and, for fds, its name).
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// `photon_thread *`, `photon_mutex *`, ...: the opaque type's name.
    Handle(String),
    Str,
    Ptr,
    FnPtr,
    Fd,
    Size,
    Offset,
    Timeout,
    Scalar,
}

const HANDLES: [&str; 8] = [
    "photon_thread",
    "photon_mutex",
    "photon_cond",
    "photon_sem",
    "photon_rwlock",
    "photon_server",
    "photon_workpool",
    "photon_vcpu",
];

fn kind(p: &Param) -> Kind {
    let ty = p.ty.as_str();
    if ty.contains("(*)") || ty == "photon_entry" || ty == "photon_conn_handler" {
        Kind::FnPtr
    } else if ty.ends_with('*') {
        let base = ty.trim_end_matches('*').trim().trim_start_matches("const ").trim();
        if HANDLES.contains(&base) {
            Kind::Handle(base.to_string())
        } else if base == "char" {
            Kind::Str
        } else {
            Kind::Ptr
        }
    } else if p.name == "fd" && ty == "int" {
        Kind::Fd
    } else if ty == "size_t" {
        Kind::Size
    } else if ty == "off_t" {
        Kind::Offset
    } else if p.name == "timeout_us" {
        Kind::Timeout
    } else {
        Kind::Scalar
    }
}

fn is_pointer(k: &Kind) -> bool {
    matches!(k, Kind::Handle(_) | Kind::Str | Kind::Ptr | Kind::FnPtr)
}

// ------------------------------------------------------------------ table

/// An expected result.
#[derive(Debug, Clone, PartialEq)]
enum Exp {
    Ok,
    /// Exactly this value; `true`: and errno untouched.
    Val(i64, bool),
    /// -1 or NULL with one of these errnos.
    Err(Vec<String>),
    ErrAny,
    Any,
    Libc,
}

impl Exp {
    fn parse(s: &str) -> Result<Exp, String> {
        let s = s.trim();
        Ok(match s {
            "ok" => Exp::Ok,
            "err" => Exp::ErrAny,
            "any" => Exp::Any,
            "libc" => Exp::Libc,
            _ => {
                let (num, keep) = s.strip_suffix("/keep").map_or((s, false), |n| (n, true));
                if let Ok(v) = num.parse::<i64>() {
                    return Ok(Exp::Val(v, keep));
                }
                let names: Vec<String> = s.split('|').map(|n| n.trim().to_string()).collect();
                let errno_like = |n: &String| {
                    n.len() > 2 && n.starts_with('E') && n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                };
                if !names.iter().all(errno_like) {
                    return Err(format!("bad expectation `{s}`"));
                }
                Exp::Err(names)
            }
        })
    }

    fn describe(&self) -> String {
        match self {
            Exp::Ok => "ok".into(),
            Exp::Val(v, false) => format!("{v}"),
            Exp::Val(v, true) => format!("{v}, errno untouched"),
            Exp::Err(names) => names.join("|"),
            Exp::ErrAny => "-1/NULL, any errno".into(),
            Exp::Any => "any result, no crash".into(),
            Exp::Libc => "as libc".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct ParamSpec {
    name: String,
    valid: String,
    auto: bool,
    none: Option<String>,
    nullok: Option<String>,
    bad: Vec<(String, Exp)>,
}

#[derive(Debug, Clone)]
struct CaseSpec {
    ctx: char,
    label: String,
    setup: String,
    call: String,
    exp: Exp,
}

#[derive(Debug, Clone)]
struct FuncSpec {
    name: String,
    needs_vcpu: bool,
    valid: Exp,
    home: char,
    ctx_exp: BTreeMap<char, Exp>,
    params: Vec<ParamSpec>,
    setup: String,
    cases: Vec<CaseSpec>,
    nobad: Option<String>,
}

const CONTEXTS: [char; 5] = ['V', 'T', 'P', 'N', 'F'];

fn parse_table(text: &str) -> Result<Vec<FuncSpec>, String> {
    let mut funcs: Vec<FuncSpec> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |msg: String| format!("table line {}: {msg}: `{}`", n + 1, line.trim());
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            let mut words = t.split_whitespace();
            let name = words.next().expect("non-empty").to_string();
            let needs_vcpu = match words.next() {
                Some("vcpu") => true,
                Some("any") => false,
                _ => return Err(at("want `NAME vcpu|any ...`".into())),
            };
            let mut f = FuncSpec {
                name,
                needs_vcpu,
                valid: Exp::Ok,
                home: 'V',
                ctx_exp: BTreeMap::new(),
                params: Vec::new(),
                setup: String::new(),
                cases: Vec::new(),
                nobad: None,
            };
            for w in words {
                let (k, v) = w.split_once('=').ok_or_else(|| at(format!("`{w}` is not key=value")))?;
                match k {
                    "valid" => f.valid = Exp::parse(v).map_err(at)?,
                    "home" => {
                        f.home = v
                            .chars()
                            .next()
                            .filter(|c| CONTEXTS.contains(c))
                            .ok_or_else(|| at(format!("bad home `{v}`")))?
                    }
                    _ => {
                        let c = k
                            .chars()
                            .next()
                            .filter(|c| k.len() == 1 && CONTEXTS.contains(c))
                            .ok_or_else(|| at(format!("unknown key `{k}`")))?;
                        f.ctx_exp.insert(c, Exp::parse(v).map_err(at)?);
                    }
                }
            }
            funcs.push(f);
            continue;
        }
        let f = funcs
            .last_mut()
            .ok_or_else(|| at("indented line before any function".into()))?;
        if let Some(rest) = t.strip_prefix("case ") {
            let parts: Vec<&str> = rest.split(" |").map(str::trim).collect();
            let [ctx, label, setup, call, exp] = parts[..] else {
                return Err(at("want `case C | label | setup | call | EXP`".into()));
            };
            let ctx = ctx
                .chars()
                .next()
                .filter(|c| ctx.len() == 1 && CONTEXTS.contains(c))
                .ok_or_else(|| at(format!("bad context `{ctx}`")))?;
            f.cases.push(CaseSpec {
                ctx,
                label: label.to_string(),
                setup: setup.to_string(),
                call: call.to_string(),
                exp: Exp::parse(exp).map_err(at)?,
            });
        } else if let Some(rest) = t.strip_prefix("setup:") {
            f.setup = rest.trim().to_string();
        } else if let Some(rest) = t.strip_prefix("nobad:") {
            f.nobad = Some(rest.trim().to_string());
        } else {
            let (name, rest) = t
                .split_once(':')
                .ok_or_else(|| at("want `PARAM: VALID | RULES`".into()))?;
            let (valid, rules) = rest
                .split_once(" | ")
                .ok_or_else(|| at("want `PARAM: VALID | RULES`".into()))?;
            let mut p = ParamSpec {
                name: name.trim().to_string(),
                valid: valid.trim().to_string(),
                auto: false,
                none: None,
                nullok: None,
                bad: Vec::new(),
            };
            for rule in rules.split(" ; ").map(str::trim) {
                if rule == "auto" {
                    p.auto = true;
                } else if let Some(why) = rule.strip_prefix("none:") {
                    p.none = Some(why.trim().to_string());
                } else if let Some(why) = rule.strip_prefix("nullok:") {
                    p.nullok = Some(why.trim().to_string());
                } else if let Some((value, exp)) = rule.split_once(" => ") {
                    p.bad.push((value.trim().to_string(), Exp::parse(exp).map_err(at)?));
                } else {
                    return Err(at(format!("unknown rule `{rule}`")));
                }
            }
            f.params.push(p);
        }
    }
    Ok(funcs)
}

/// The generic bad values of a parameter kind, for `auto`.
fn auto_values(k: &Kind) -> Option<Vec<(String, Exp)>> {
    let e = |names: &[&str]| Exp::Err(names.iter().map(|s| s.to_string()).collect());
    Some(match k {
        Kind::Handle(h) if h == "photon_thread" => vec![
            ("NULL".into(), e(&["EINVAL"])),
            ("FORGED_TH".into(), e(&["ESRCH", "EINVAL"])),
            ("STALE_TH()".into(), e(&["ESRCH"])),
        ],
        Kind::Handle(h) if h == "photon_vcpu" => {
            vec![("NULL".into(), e(&["EINVAL"])), ("FORGED_VCPU".into(), e(&["EINVAL"]))]
        }
        Kind::Handle(_) | Kind::Str | Kind::Ptr | Kind::FnPtr => vec![("NULL".into(), e(&["EINVAL"]))],
        Kind::Fd => vec![
            ("-1".into(), e(&["EBADF"])),
            ("HUGE_FD".into(), e(&["EBADF"])),
            ("CLOSED_FD()".into(), e(&["EBADF"])),
        ],
        Kind::Offset => vec![("-1".into(), e(&["EINVAL"])), ("INT64_MIN".into(), e(&["EINVAL"]))],
        Kind::Size | Kind::Timeout | Kind::Scalar => return None,
    })
}

/// Every value a parameter is tried with besides its valid one: the
/// generic ones (`auto`), then the table's own (replacing a generic one of
/// the same value), then NULL if `nullok`, with what each should give.
fn param_values(f: &FuncSpec, p: &ParamSpec, k: &Kind) -> Vec<(String, Exp)> {
    let mut values: Vec<(String, Exp)> = if p.auto {
        auto_values(k).unwrap_or_default()
    } else {
        Vec::new()
    };
    for (v, e) in &p.bad {
        match values.iter_mut().find(|(x, _)| x == v) {
            Some(slot) => slot.1 = e.clone(),
            None => values.push((v.clone(), e.clone())),
        }
    }
    if p.nullok.is_some() && !values.iter().any(|(v, _)| v == "NULL") {
        values.push(("NULL".into(), f.valid.clone()));
    }
    values
}

/// Why the table does not cover the header, one message per problem: the
/// test fails unless this is empty.
fn coverage_problems(protos: &[Proto], table: &[FuncSpec]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for f in table {
        if !seen.insert(f.name.as_str()) {
            problems.push(format!("{}: listed twice in the table", f.name));
        }
    }
    let by_name: BTreeMap<&str, &FuncSpec> = table.iter().map(|f| (f.name.as_str(), f)).collect();
    let in_header: BTreeSet<&str> = protos.iter().map(|p| p.name.as_str()).collect();
    for proto in protos {
        let Some(f) = by_name.get(proto.name.as_str()) else {
            problems.push(format!(
                "{}: declared in photon.h but missing from the bad-input table in tests/bad_input_gen.rs: \
                 add it with its bad inputs (or `nobad: <why>`)",
                proto.name
            ));
            continue;
        };
        let header_names: Vec<&str> = proto.params.iter().map(|p| p.name.as_str()).collect();
        let table_names: Vec<&str> = f.params.iter().map(|p| p.name.as_str()).collect();
        if header_names != table_names {
            problems.push(format!(
                "{}: photon.h has parameters ({}) but the table has ({})",
                proto.name,
                header_names.join(", "),
                table_names.join(", ")
            ));
            continue;
        }
        let mut bad_values = 0;
        for (hp, sp) in proto.params.iter().zip(&f.params) {
            let k = kind(hp);
            let what = format!("{}: parameter `{}` ({})", proto.name, hp.name, hp.ty);
            if sp.auto && auto_values(&k).is_none() {
                problems.push(format!(
                    "{what}: `auto` has no generic bad values for this type: list them"
                ));
            }
            let values = param_values(f, sp, &k);
            bad_values += values.len();
            let has = |v: &str| values.iter().any(|(x, _)| x == v);
            let missing = match k {
                _ if is_pointer(&k) && !has("NULL") => Some("a NULL case (`auto`, `NULL => EXP` or `nullok: why`)"),
                Kind::Fd if !has("-1") => Some("a -1 case (`auto` or `-1 => EXP`)"),
                Kind::Size if !has("SIZE_MAX") => Some("a SIZE_MAX case"),
                Kind::Offset if !has("-1") => Some("a negative case (`auto` or `-1 => EXP`)"),
                Kind::Timeout | Kind::Scalar if values.is_empty() && sp.none.is_none() => {
                    Some("bad values, or `none: why` if every value is valid")
                }
                _ => None,
            };
            if let Some(m) = missing {
                problems.push(format!("{what} has no {m}"));
            }
        }
        if bad_values == 0 && f.cases.is_empty() && f.nobad.is_none() {
            problems.push(format!(
                "{}: no bad input listed: list some, or say `nobad: <why>`",
                proto.name
            ));
        }
    }
    for f in table {
        if !in_header.contains(f.name.as_str()) {
            problems.push(format!(
                "{}: in the bad-input table but not declared in photon.h",
                f.name
            ));
        }
    }
    problems
}

// ------------------------------------------------------------------ cases

/// One call the generated program makes.
#[derive(Debug, Clone)]
struct Case {
    func: String,
    ctx: char,
    /// What the bad input is, for the summary ("valid", "fd=-1", a label).
    label: String,
    /// The call as printed: `photon_read(-1, BUF(), 16, T)`.
    text: String,
    exp: Exp,
    ret: Ret,
    setup: String,
    /// Argument values (a generated call), or None for a free-form call.
    args: Option<Vec<String>>,
    call: String,
}

fn generate_cases(protos: &[Proto], table: &[FuncSpec]) -> Vec<Case> {
    let by_name: BTreeMap<&str, &FuncSpec> = table.iter().map(|f| (f.name.as_str(), f)).collect();
    let mut cases = Vec::new();
    for proto in protos {
        let f = by_name[proto.name.as_str()];
        let ret = ret_kind(&proto.ret);
        let valid: Vec<String> = f.params.iter().map(|p| p.valid.clone()).collect();
        let text = |args: &[String]| format!("{}({})", proto.name, args.join(", "));
        let generated = |ctx: char, label: String, args: Vec<String>, exp: Exp| Case {
            func: proto.name.clone(),
            ctx,
            label,
            text: text(&args),
            exp,
            ret,
            setup: f.setup.clone(),
            call: text(&args),
            args: Some(args),
        };
        // valid arguments, in every context
        for ctx in ['V', 'P', 'N', 'F'] {
            let exp = match f.ctx_exp.get(&ctx) {
                Some(e) => e.clone(),
                None if ctx == f.home || !f.needs_vcpu => f.valid.clone(),
                None => Exp::Err(vec!["EPERM".into()]),
            };
            let label = if ctx == f.home {
                "valid".to_string()
            } else {
                format!("valid args, context {ctx}")
            };
            cases.push(generated(ctx, label, valid.clone(), exp));
        }
        // one bad value at a time, in the home context
        for (i, (hp, sp)) in proto.params.iter().zip(&f.params).enumerate() {
            for (value, exp) in param_values(f, sp, &kind(hp)) {
                let mut args = valid.clone();
                args[i] = value.clone();
                cases.push(generated(f.home, format!("{}={value}", hp.name), args, exp));
            }
        }
        for c in &f.cases {
            cases.push(Case {
                func: proto.name.clone(),
                ctx: c.ctx,
                label: c.label.clone(),
                text: format!("{} [{}]", c.call, c.label),
                exp: c.exp.clone(),
                ret,
                setup: format!("{} {}", f.setup, c.setup).trim().to_string(),
                args: None,
                call: c.call.clone(),
            });
        }
    }
    cases
}

fn c_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `decl` with its parameter name replaced by `volatile new`: a static
/// variable of the parameter's type that the compiler cannot see through.
fn volatile_decl(p: &Param, new: &str) -> String {
    let bytes = p.decl.as_bytes();
    let mut at = None;
    let mut from = 0;
    while let Some(i) = p.decl[from..].find(&p.name) {
        let start = from + i;
        let end = start + p.name.len();
        let before_ok = start == 0 || !is_ident_char(bytes[start - 1] as char);
        let after_ok = end == bytes.len() || !is_ident_char(bytes[end] as char);
        if before_ok && after_ok {
            at = Some(start);
        }
        from = end;
    }
    let start = at.expect("a parameter's name is in its declaration");
    format!("{}volatile {new}{}", &p.decl[..start], &p.decl[start + p.name.len()..])
}

fn store_result(ret: Ret, expr: &str) -> String {
    match ret {
        Ret::Int | Ret::U64 => format!("r->ret = (long)({expr});"),
        Ret::Ptr => format!("r->ret = (long)(intptr_t)(const void *)({expr});"),
        Ret::Void => format!("{expr}; r->ret = 0;"),
    }
}

/// The generated C program.
fn render_c(protos: &[Proto], cases: &[Case]) -> String {
    let by_name: BTreeMap<&str, &Proto> = protos.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut out = String::new();
    out.push_str("/* Generated by tests/bad_input_gen.rs from include/photon.h: do not edit. */\n");
    out.push_str("#include \"harness.h\"\n\n");
    let mut entries = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let proto = by_name[c.func.as_str()];
        writeln!(out, "/* #{i} {} [{}] */", c.func, c.label).unwrap();
        let mut libc = "NULL".to_string();
        match &c.args {
            Some(args) => {
                let names: Vec<String> = (0..args.len()).map(|j| format!("c{i}_a{j}")).collect();
                for (p, n) in proto.params.iter().zip(&names) {
                    writeln!(out, "static {};", volatile_decl(p, n)).unwrap();
                }
                write!(out, "static void c{i}_setup(void) {{ {}", c.setup).unwrap();
                for (n, v) in names.iter().zip(args) {
                    write!(out, " {n} = {v};").unwrap();
                }
                out.push_str(" }\n");
                let call = format!("{}({})", c.func, names.join(", "));
                writeln!(
                    out,
                    "static void c{i}_call(struct res *r) {{ {} r->err = errno; }}",
                    store_result(c.ret, &call)
                )
                .unwrap();
                if c.exp == Exp::Libc {
                    let libc_name = c.func.strip_prefix("photon_").expect("photon_ prefix");
                    let libc_args: Vec<&str> = proto
                        .params
                        .iter()
                        .zip(&names)
                        .filter(|(p, _)| p.name != "timeout_us")
                        .map(|(_, n)| n.as_str())
                        .collect();
                    let closes = matches!(libc_name, "open" | "socket");
                    writeln!(
                        out,
                        "static void c{i}_libc(struct res *r) {{ {} r->err = errno;{} }}",
                        store_result(c.ret, &format!("{libc_name}({})", libc_args.join(", "))),
                        if closes {
                            " if (r->ret >= 0) close((int)r->ret);"
                        } else {
                            ""
                        }
                    )
                    .unwrap();
                    libc = format!("c{i}_libc");
                }
            }
            None => {
                writeln!(out, "static void c{i}_setup(void) {{ {} }}", c.setup).unwrap();
                writeln!(
                    out,
                    "static void c{i}_call(struct res *r) {{ {} r->err = errno; }}",
                    store_result(c.ret, &c.call)
                )
                .unwrap();
            }
        }
        let (kind, val, errs) = match &c.exp {
            Exp::Ok => ("EXP_OK", 0, Vec::new()),
            Exp::Val(v, false) => ("EXP_VAL", *v, Vec::new()),
            Exp::Val(v, true) => ("EXP_VAL_KEEP", *v, Vec::new()),
            Exp::Err(names) => ("EXP_ERR", 0, names.clone()),
            Exp::ErrAny => ("EXP_ERR_ANY", 0, Vec::new()),
            Exp::Any => ("EXP_ANY", 0, Vec::new()),
            Exp::Libc => ("EXP_LIBC", 0, Vec::new()),
        };
        assert!(errs.len() <= 6, "at most 6 errnos per expectation");
        let ctx = match c.ctx {
            'V' => "CTX_V",
            'T' => "CTX_T",
            'P' => "CTX_P",
            'N' => "CTX_N",
            _ => "CTX_F",
        };
        let ret = match c.ret {
            Ret::Int => "RET_INT",
            Ret::Ptr => "RET_PTR",
            Ret::Void => "RET_VOID",
            Ret::U64 => "RET_U64",
        };
        let errs_c = if errs.is_empty() {
            "0".to_string()
        } else {
            errs.join(", ")
        };
        entries.push(format!(
            "    {{{}, {}, {ctx}, {ret}, {kind}, {val}L, {{{errs_c}}}, {}, c{i}_setup, c{i}_call, {libc}}},",
            c_string(&c.text),
            c_string(&c.exp.describe()),
            errs.len()
        ));
    }
    out.push_str("\nstatic const struct case_def CASES[] = {\n");
    out.push_str(&entries.join("\n"));
    out.push_str("\n};\n\n#include \"harness_main.h\"\n");
    out
}

// ------------------------------------------------------------------ build and run

fn support_dir() -> PathBuf {
    manifest_dir().join("tests").join("bad_input_gen")
}

fn out_dir() -> PathBuf {
    let dir = profile_dir().join("bad-input-gen");
    fs::create_dir_all(&dir).expect("create target/<profile>/bad-input-gen");
    dir
}

/// Writes the generated program and compiles it against libphoton.so.
fn compile(source: &str) -> PathBuf {
    let dir = out_dir();
    let src = dir.join("bad_input_gen.c");
    let tmp = private_name(&src);
    fs::write(&tmp, source).expect("write the generated C file");
    fs::rename(&tmp, &src).expect("rename the generated C file");
    // kept (under a stable name) to rerun by hand: `bad_input_gen [first [end]]`
    compile_c(&src, &dir.join("bad_input_gen"), C11_FLAGS, &[&support_dir()], &[])
}

fn header_text() -> String {
    let path = include_dir().join("photon.h");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn table() -> Vec<FuncSpec> {
    parse_table(TABLE).unwrap_or_else(|e| panic!("{e}"))
}

/// The compact list of what is tried, one line per function.
fn case_list(protos: &[Proto], table: &[FuncSpec], cases: &[Case]) -> String {
    let by_name: BTreeMap<&str, &FuncSpec> = table.iter().map(|f| (f.name.as_str(), f)).collect();
    let mut out = String::new();
    for proto in protos {
        let f = by_name[proto.name.as_str()];
        let mine: Vec<&Case> = cases.iter().filter(|c| c.func == proto.name).collect();
        let mut parts = Vec::new();
        for hp in &proto.params {
            let prefix = format!("{}=", hp.name);
            let vals: Vec<String> = mine
                .iter()
                .filter_map(|c| {
                    c.label
                        .strip_prefix(&prefix)
                        .map(|v| format!("{v}->{}", c.exp.describe()))
                })
                .collect();
            if !vals.is_empty() {
                parts.push(format!("{}: {}", hp.name, vals.join(", ")));
            }
        }
        let ctxs: Vec<String> = mine
            .iter()
            .filter(|c| c.label.starts_with("valid"))
            .map(|c| format!("{}->{}", c.ctx, c.exp.describe()))
            .collect();
        parts.push(format!("contexts {}", ctxs.join(", ")));
        for c in &f.cases {
            parts.push(format!("[{}] {}->{}", c.ctx, c.label, c.exp.describe()));
        }
        if let Some(why) = &f.nobad {
            parts.push(format!("no bad input: {why}"));
        }
        writeln!(out, "  {} ({} cases): {}", proto.name, mine.len(), parts.join("; ")).unwrap();
    }
    out
}

#[test]
fn bad_input_of_every_function_in_photon_h() {
    let started = Instant::now();
    let protos = parse_header(&header_text()).unwrap_or_else(|e| panic!("parsing photon.h: {e}"));
    let table = table();
    let problems = coverage_problems(&protos, &table);
    assert!(
        problems.is_empty(),
        "the bad-input table does not cover photon.h:\n  {}",
        problems.join("\n  ")
    );
    let cases = generate_cases(&protos, &table);
    let exe = compile(&render_c(&protos, &cases));

    let mut by_ctx: BTreeMap<char, usize> = BTreeMap::new();
    for c in &cases {
        *by_ctx.entry(c.ctx).or_default() += 1;
    }
    println!(
        "bad_input_gen: {} functions of photon.h, {} cases per engine ({}), engines {:?}",
        protos.len(),
        cases.len(),
        by_ctx
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        ENGINES
    );
    println!(
        "cases by function (value->expected; contexts V vcpu, T photon thread, P pthread, N no init, F after fini):"
    );
    print!("{}", case_list(&protos, &table, &cases));

    // failing lines, by line text, with the engines that gave them
    let mut failures: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for engine in ENGINES {
        let run = run_program(&exe, &[], engine, &[], RUN_TIMEOUT);
        let summary = run
            .stdout
            .lines()
            .find(|l| l.starts_with("SUMMARY"))
            .unwrap_or("(no SUMMARY line)");
        println!("{engine}: {summary} in {:.2?}", run.elapsed);
        let mut ok = 0;
        let loose: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| l.starts_with('#') && (l.contains("(want any result") || l.contains("(want as libc")))
            .collect();
        println!("{engine}: what the cases with a loose expectation (any result, or as libc) gave:");
        for line in loose {
            println!("  {line}");
        }
        for line in run.stdout.lines() {
            if line.starts_with('#') && line.contains(" ok (want ") {
                ok += 1;
            } else if line.starts_with('#') || line.starts_with("SETUP FAILED") {
                failures.entry(line.to_string()).or_default().push(engine);
            }
        }
        if run.status.is_none() || (ok != cases.len() && failures.is_empty()) {
            failures
                .entry(format!("the program did not finish: {}", run.describe()))
                .or_default()
                .push(engine);
        }
    }
    println!("total {:.2?}", started.elapsed());
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(line, engines)| format!("[{}] {line}", engines.join("+")))
            .collect();
        panic!(
            "{} bad-input cases did not give what photon.h documents (or crashed or hung):\n{}",
            list.len(),
            list.join("\n")
        );
    }
}

#[test]
fn the_header_parses_into_every_prototype() {
    let protos = parse_header(&header_text()).unwrap_or_else(|e| panic!("{e}"));
    let declared = header_text().matches("\nint photon_").count()
        + header_text().matches("\nssize_t photon_").count()
        + header_text().matches("\nvoid photon_").count()
        + header_text().matches("\nvoid *photon_").count()
        + header_text().matches("\nuint64_t photon_").count()
        + header_text().matches("\nuint32_t photon_").count()
        + header_text().matches("\nconst char *photon_").count()
        + header_text().matches("\nphoton_").count();
    assert_eq!(protos.len(), declared, "every prototype line of photon.h parsed");
    let key_create = protos
        .iter()
        .find(|p| p.name == "photon_key_create")
        .expect("photon_key_create");
    assert_eq!(key_create.params[1].name, "destructor");
    assert_eq!(kind(&key_create.params[1]), Kind::FnPtr);
    let recvfrom = protos
        .iter()
        .find(|p| p.name == "photon_recvfrom")
        .expect("photon_recvfrom");
    let names: Vec<&str> = recvfrom.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["fd", "buf", "len", "flags", "src_addr", "addrlen", "timeout_us"]
    );
    assert_eq!(kind(&recvfrom.params[0]), Kind::Fd);
    assert_eq!(kind(&recvfrom.params[2]), Kind::Size);
    assert_eq!(ret_kind(&recvfrom.ret), Ret::Int);
    let create = protos
        .iter()
        .find(|p| p.name == "photon_thread_create")
        .expect("photon_thread_create");
    assert_eq!(ret_kind(&create.ret), Ret::Ptr);
    assert_eq!(kind(&create.params[0]), Kind::FnPtr);
    assert!(protos.iter().any(|p| p.name == "photon_version" && p.params.is_empty()));
}

/// The "cannot be left out" property, shown on copies of the header: a new
/// function, a function gone, a parameter added or renamed, each fails the
/// coverage check naming it.
#[test]
fn the_coverage_check_names_what_the_table_lacks() {
    let header = header_text();
    let table = table();
    let anchor = "#ifdef __cplusplus\n}";
    assert!(
        header.contains(anchor),
        "photon.h ends its extern \"C\" block as expected"
    );

    let added = header.replacen(
        anchor,
        &format!("/** A new function. */\nint photon_frobnicate(photon_mutex *m, int fd, size_t n);\n\n{anchor}"),
        1,
    );
    let problems = coverage_problems(&parse_header(&added).expect("parses"), &table);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("photon_frobnicate: declared in photon.h but missing"),
        "{problems:?}"
    );

    let removed = header.replace("int photon_dump_threads(int fd);", "");
    let problems = coverage_problems(&parse_header(&removed).expect("parses"), &table);
    assert_eq!(
        problems,
        ["photon_dump_threads: in the bad-input table but not declared in photon.h"]
    );

    let extended = header.replace("int photon_fsync(int fd);", "int photon_fsync(int fd, uint32_t flags);");
    let problems = coverage_problems(&parse_header(&extended).expect("parses"), &table);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("photon_fsync: photon.h has parameters (fd, flags)"),
        "{problems:?}"
    );

    // a table entry that gives a new pointer parameter no NULL case
    let mut table2 = table.clone();
    let fstat = table2
        .iter_mut()
        .find(|f| f.name == "photon_fstat")
        .expect("photon_fstat");
    fstat.params[1].auto = false;
    fstat.params[1].none = Some("oops".into());
    let problems = coverage_problems(&parse_header(&header).expect("parses"), &table2);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("parameter `st`") && problems[0].contains("NULL case"),
        "{problems:?}"
    );

    // and the real header is covered
    assert_eq!(
        coverage_problems(&parse_header(&header).expect("parses"), &table),
        Vec::<String>::new()
    );
}
