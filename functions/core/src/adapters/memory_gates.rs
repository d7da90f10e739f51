//! Gates held in one process's memory: what a single process (the dev
//! server, tests) shares between its own workers. In AWS the same rules
//! run on DynamoDB, shared by every container.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{GateStore, StoreError};
use crate::workflow::breaker::Breaker;

/// Windows older than this many seconds are dropped as new ones come.
const KEEP_WINDOWS: i64 = 10;

#[derive(Default)]
pub struct MemoryGates {
    /// (key, window) → uses counted.
    windows: Mutex<HashMap<(String, i64), u32>>,
    /// (key, slot) → (owner, until).
    slots: Mutex<HashMap<(String, u32), (String, i64)>>,
    breakers: Mutex<HashMap<String, Breaker>>,
    marks: Mutex<HashMap<String, i64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl GateStore for MemoryGates {
    async fn count_in_window(&self, key: &str, window: i64) -> Result<u32, StoreError> {
        let mut windows = lock(&self.windows);
        if windows.len() > 10_000 {
            windows.retain(|(_, w), _| *w > window - KEEP_WINDOWS);
        }
        let n = windows.entry((key.to_string(), window)).or_insert(0);
        *n = n.saturating_add(1);
        Ok(*n)
    }

    async fn take_slot(
        &self,
        key: &str,
        slots: u32,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<u32>, StoreError> {
        let mut held = lock(&self.slots);
        if held.len() > 10_000 {
            held.retain(|_, (_, u)| *u >= now);
        }
        for slot in 0..slots {
            let free = match held.get(&(key.to_string(), slot)) {
                None => true,
                Some((o, u)) => *u < now || o == owner,
            };
            if free {
                held.insert((key.to_string(), slot), (owner.to_string(), until));
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    async fn release_slot(&self, key: &str, slot: u32, owner: &str) -> Result<(), StoreError> {
        let mut held = lock(&self.slots);
        if held
            .get(&(key.to_string(), slot))
            .is_some_and(|(o, _)| o == owner)
        {
            held.remove(&(key.to_string(), slot));
        }
        Ok(())
    }

    async fn get_breaker(&self, key: &str) -> Result<Option<Breaker>, StoreError> {
        Ok(lock(&self.breakers).get(key).cloned())
    }

    async fn save_breaker(&self, key: &str, breaker: &Breaker) -> Result<(), StoreError> {
        let mut map = lock(&self.breakers);
        let stored = map.get(key).map_or(0, |b| b.version);
        if stored + 1 != breaker.version {
            return Err(StoreError::Conflict);
        }
        map.insert(key.to_string(), breaker.clone());
        Ok(())
    }

    async fn get_mark(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(lock(&self.marks).get(name).copied())
    }

    async fn set_mark(
        &self,
        name: &str,
        expected: Option<i64>,
        value: i64,
    ) -> Result<bool, StoreError> {
        let mut marks = lock(&self.marks);
        if marks.get(name).copied() != expected {
            return Ok(false);
        }
        marks.insert(name.to_string(), value);
        Ok(true)
    }
}
