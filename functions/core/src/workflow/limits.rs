//! The limits every executor keeps, whichever container it runs in: a
//! per-connection Stripe request budget (one-second windows counted in the
//! gate store), a per-target concurrency cap (leased slots) and the target's
//! circuit breaker ([`super::breaker`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::ports::{Clock, GateStore};
use crate::stripe::{Pacer, StripeError};

/// How long a step waits for its connection's budget before its run is put
/// back on the queue (the worker moves on to other tenants' runs).
pub const MAX_BUDGET_WAIT: Duration = Duration::from_secs(1);

/// A connection's Stripe budget: at most `per_second` requests (and
/// `search_per_second` search requests) in any one-second window, counted
/// across every executor.
pub struct StripeBudget {
    pub gates: Arc<dyn GateStore>,
    pub clock: Arc<dyn Clock>,
    pub connection_id: String,
    pub per_second: u32,
    pub search_per_second: u32,
    /// Places taken by [`StripeBudget::reserve`] not yet used: (api, search).
    pub prepaid: [std::sync::atomic::AtomicU32; 2],
}

impl StripeBudget {
    pub fn new(
        gates: Arc<dyn GateStore>,
        clock: Arc<dyn Clock>,
        connection_id: String,
        per_second: u32,
        search_per_second: u32,
    ) -> Self {
        Self {
            gates,
            clock,
            connection_id,
            per_second,
            search_per_second,
            prepaid: Default::default(),
        }
    }

    /// A connection's budget as configured (live or test), shared through
    /// the app's gates by every function that calls Stripe for it.
    pub fn for_connection(
        app: &crate::app::App,
        connection: &crate::model::Connection,
    ) -> Arc<Self> {
        let budget = app.config.stripe_budget;
        Arc::new(Self::new(
            app.gates.clone(),
            app.clock.clone(),
            connection.id.clone(),
            if connection.livemode {
                budget.live
            } else {
                budget.test
            },
            budget.search,
        ))
    }

    fn class(&self, search: bool) -> (&'static str, u32, usize) {
        if search {
            ("search", self.search_per_second.max(1), 1)
        } else {
            ("api", self.per_second.max(1), 0)
        }
    }

    /// Takes a place in the current second for a run's first Stripe call,
    /// before the run is claimed: `Err(wait)` when the second is full, so
    /// the run is put back for its place without a claim (no write spent),
    /// never waiting in the worker. The place taken is used by the next
    /// request of that class through [`Pacer::pace`], within this second.
    pub async fn reserve(&self, search: bool) -> Result<(), Duration> {
        let (class, limit, slot) = self.class(search);
        match self.take_place(class).await {
            Some(place) if place > limit => Err(wait_for(place, limit)),
            Some(_) => {
                self.prepaid[slot].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts one request of `class` in the current second — never in its
    /// last 50 ms, where a request could reach Stripe in the next second on
    /// top of that second's own budget — and answers its place there.
    /// `None` when the store failed: the budget protects, it must not stop
    /// work; the request goes unpaced and Stripe's own 429 still guards
    /// the account.
    async fn take_place(&self, class: &str) -> Option<u32> {
        if let Some(wait) = window_closing() {
            tokio::time::sleep(wait).await;
        }
        let key = format!("stripe#{}#{class}", self.connection_id);
        match self.gates.count_in_window(&key, self.clock.now()).await {
            Ok(place) => Some(place),
            Err(e) => {
                tracing::warn!(connection = %self.connection_id, error = %e, "Stripe budget unavailable; request sent unpaced");
                None
            }
        }
    }
}

/// How long a request at `place` (past `limit`) waits: the seconds until a
/// window has room for its place, plus up to one at random.
fn wait_for(place: u32, limit: u32) -> Duration {
    let behind = u64::from((place - 1) / limit);
    Duration::from_secs(behind + rand::random::<u64>() % 2)
}

#[async_trait]
impl Pacer for StripeBudget {
    /// Counts the request in the current second's window. Within the
    /// limit it goes; one place past it (the next second has room) it waits
    /// for that second; further back it is refused with the wait its place
    /// implies (`Budget`), so the run is put back for then and frees its
    /// worker for other tenants — a burst of one connection spreads over
    /// the seconds its budget needs instead of holding every executor.
    async fn pace(&self, search: bool) -> Result<(), StripeError> {
        let (class, limit, slot) = self.class(search);
        let prepaid = self.prepaid[slot].fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
        if prepaid.is_ok() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        loop {
            let Some(place) = self.take_place(class).await else {
                return Ok(());
            };
            if place <= limit {
                return Ok(());
            }
            if (place - 1) / limit > 1 || started.elapsed() >= MAX_BUDGET_WAIT {
                return Err(StripeError::Budget(wait_for(place, limit)));
            }
            tokio::time::sleep(until_next_second()).await;
        }
    }
}

/// While a second's last 50 ms run: the time to the next second.
fn window_closing() -> Option<Duration> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let into_second = u64::from(now.subsec_millis());
    (into_second >= 950).then(|| Duration::from_millis(1000 - into_second))
}

/// From now to the next whole second, plus a few milliseconds at random so
/// waiters do not all come back at once.
fn until_next_second() -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let into_second = u64::from(now.subsec_millis());
    Duration::from_millis(1000 - into_second + rand::random::<u64>() % 20)
}

/// The key of a target's gates: per connection (tenants never share a
/// breaker), per target URL, hashed (URLs can be long and hold tokens).
pub fn target_key(connection_id: &str, url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    format!("target#{connection_id}#{}", hex::encode(&digest[..8]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::adapters::memory::FixedClock;
    use crate::adapters::memory_gates::MemoryGates;

    #[tokio::test]
    async fn a_spent_budget_holds_calls_back_then_refuses() {
        let budget = StripeBudget::new(
            Arc::new(MemoryGates::default()),
            // A clock that never moves: the window never ends.
            Arc::new(FixedClock::at(7)),
            "conn_a".into(),
            3,
            1,
        );
        for _ in 0..3 {
            budget.pace(false).await.unwrap();
        }
        budget.pace(true).await.unwrap();
        // The 4th waits for the next window (on this clock it never comes).
        let started = std::time::Instant::now();
        assert!(matches!(
            budget.pace(false).await,
            Err(StripeError::Budget(_))
        ));
        assert!(started.elapsed() >= MAX_BUDGET_WAIT);
        // Far back in line: refused at once, with the wait its place implies.
        for _ in 0..6 {
            let _ = budget.pace(false).await;
        }
        let started = std::time::Instant::now();
        match budget.pace(false).await {
            Err(StripeError::Budget(wait)) => assert!(wait >= Duration::from_secs(3), "{wait:?}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < MAX_BUDGET_WAIT);
    }

    #[tokio::test]
    async fn a_reserved_place_is_used_by_the_next_call_and_a_full_second_refuses() {
        let budget = StripeBudget::new(
            Arc::new(MemoryGates::default()),
            Arc::new(FixedClock::at(7)),
            "conn_a".into(),
            2,
            1,
        );
        budget.reserve(false).await.unwrap();
        budget.pace(false).await.unwrap(); // the reserved place
        budget.pace(false).await.unwrap(); // the second's other place
        let started = std::time::Instant::now();
        let wait = budget.reserve(false).await.unwrap_err();
        assert!(wait >= Duration::from_secs(1));
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "never waits"
        );
    }

    #[test]
    fn target_keys_are_per_connection_and_hide_the_url() {
        let a = target_key("conn_a", "https://x.example/hook?token=secret");
        assert_ne!(
            a,
            target_key("conn_b", "https://x.example/hook?token=secret")
        );
        assert!(!a.contains("secret"));
    }
}
