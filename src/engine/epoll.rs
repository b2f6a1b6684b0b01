//! The epoll engine, through mio.

use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Poll, Token, Waker};

use super::{Engine, Notify};
use crate::errno::Errno;

const WAKER: Token = Token(0);

pub(crate) struct EpollEngine {
    poll: Poll,
    events: Events,
    waker: Arc<MioNotify>,
}

struct MioNotify(Waker);

impl Notify for MioNotify {
    fn notify(&self) {
        if let Err(e) = self.0.wake() {
            log::error!("photon: waking an epoll vcpu failed: {e}");
        }
    }
}

impl EpollEngine {
    pub(crate) fn new() -> Result<EpollEngine, Errno> {
        let poll = Poll::new()?;
        let waker = Arc::new(MioNotify(Waker::new(poll.registry(), WAKER)?));
        Ok(EpollEngine {
            poll,
            events: Events::with_capacity(256),
            waker,
        })
    }
}

impl Engine for EpollEngine {
    fn name(&self) -> &'static str {
        "epoll"
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), Errno> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn has_pending(&self) -> bool {
        false
    }

    fn notifier(&self) -> Arc<dyn Notify> {
        self.waker.clone()
    }
}
