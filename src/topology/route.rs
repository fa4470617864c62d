//! A source's route: the transforms fused into its task and the channels its
//! batches go to. A reload replaces the route of a source that keeps running, so
//! the source keeps its connection and cursor while its events take the new graph.
//! A batch already on its way finishes on the route it started on.

use std::sync::Mutex;

use super::{Chain, Fanout};
use crate::event::Event;

pub struct Route {
    current: Mutex<(Chain, Fanout)>,
}

impl Route {
    pub fn new(chain: Chain, fanout: Fanout) -> Route {
        Route {
            current: Mutex::new((chain, fanout)),
        }
    }

    /// Runs the route's transforms on `events`; returns where to send what is left.
    pub fn apply(&self, events: &mut Vec<Event>) -> Fanout {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.0.apply(events);
        current.1.clone()
    }

    /// Sends the source's next batches through `chain` to `fanout`. The old route is
    /// dropped here, so the components it fed see their input end once the batches
    /// already on it are through.
    pub fn replace(&self, chain: Chain, fanout: Fanout) {
        let old = {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *current, (chain, fanout))
        };
        drop(old);
    }
}
