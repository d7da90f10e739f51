//! The run queue of a single process (the dev server, tests): SQS's model in
//! memory — delayed messages, a receive count per message, at-least-once
//! delivery to whichever worker asks first. Messages are lost with the
//! process; the dev server sweeps the store's due runs when it starts, so a
//! run whose message was lost is queued again.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::ports::{Clock, QueueError, RunQueue, RunRef};

/// Most messages held at once: far above any backlog a dev server sees,
/// and a bound on its memory (about 200 bytes a message).
pub const MAX_MESSAGES: usize = 1_000_000;

/// A message as a worker receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub run: RunRef,
    /// How often it was received before, this time included (SQS's
    /// `ApproximateReceiveCount`).
    pub receives: u32,
}

#[derive(Default)]
struct Inner {
    /// (visible at, sequence) → message; the sequence keeps FIFO order
    /// among messages visible at the same second.
    heap: BinaryHeap<Reverse<(i64, u64, Slot)>>,
    next_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    run: RunRef,
    receives: u32,
}

pub struct LocalQueue {
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    ready: Notify,
}

impl LocalQueue {
    /// Delays are counted on `clock` (tests move a fixed clock forward).
    pub fn new(clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            clock,
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts a message back (a failed receive): visible again after `delay_secs`.
    pub fn put(&self, message: Message, delay_secs: u32) -> Result<(), QueueError> {
        let visible_at =
            self.clock.now() + i64::from(delay_secs.min(crate::ports::MAX_QUEUE_DELAY));
        {
            let mut inner = self.lock();
            if inner.heap.len() >= MAX_MESSAGES {
                return Err(QueueError(format!(
                    "the in-process queue holds {MAX_MESSAGES} messages"
                )));
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.heap.push(Reverse((
                visible_at,
                seq,
                Slot {
                    run: message.run,
                    receives: message.receives,
                },
            )));
        }
        self.ready.notify_one();
        Ok(())
    }

    /// A message visible now, if any; its receive count goes up by one.
    pub fn try_recv(&self) -> Option<Message> {
        let now = self.clock.now();
        let mut inner = self.lock();
        match inner.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {}
            _ => return None,
        }
        let Reverse((_, _, slot)) = inner.heap.pop()?;
        Some(Message {
            run: slot.run,
            receives: slot.receives + 1,
        })
    }

    /// Waits for a visible message.
    pub async fn recv(&self) -> Message {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(m) = self.try_recv() {
                return m;
            }
            // Delayed messages are looked at again within a quarter second.
            let wait = if self.is_empty() {
                Duration::from_secs(3600)
            } else {
                Duration::from_millis(250)
            };
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Messages held, visible or delayed.
    pub fn len(&self) -> usize {
        self.lock().heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl RunQueue for LocalQueue {
    async fn send(&self, runs: &[RunRef], delay_secs: u32) -> Result<(), QueueError> {
        for run in runs {
            self.put(
                Message {
                    run: run.clone(),
                    receives: 0,
                },
                delay_secs,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::adapters::memory::FixedClock;

    fn r(e: &str) -> RunRef {
        RunRef {
            connection_id: "conn_a".into(),
            event_id: e.into(),
            run_key: "wf_a".into(),
        }
    }

    #[tokio::test]
    async fn delayed_messages_wait_and_receives_are_counted() {
        let clock = Arc::new(FixedClock::at(100));
        let q = LocalQueue::new(clock.clone());
        q.send(&[r("evt_2")], 10).await.unwrap();
        q.send(&[r("evt_1")], 0).await.unwrap();
        let first = q.try_recv().unwrap();
        assert_eq!((first.run.event_id.as_str(), first.receives), ("evt_1", 1));
        assert_eq!(q.try_recv(), None, "evt_2 is not visible before 110");
        clock.set(110);
        let second = q.recv().await;
        assert_eq!(second.run.event_id, "evt_2");
        q.put(second, 0).unwrap();
        assert_eq!(q.try_recv().unwrap().receives, 2);
        assert!(q.is_empty());
    }
}
