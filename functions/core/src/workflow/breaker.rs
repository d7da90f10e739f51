//! A circuit breaker per (connection, target): after `threshold` failed
//! deliveries in a row within `window`, the target is left alone for a
//! cool-down; its runs are put back on the queue without spending an
//! attempt. After the cool-down one worker sends a probe (half-open); its
//! success closes the breaker, its failure opens it again for twice as long
//! (up to `max_cooldown`). The state is shared by every executor through the
//! store, written with a version condition; the transitions are pure here.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// The shared state of one target's breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    pub state: BreakerState,
    /// Failed deliveries in a row (reset by a success or a quiet `window`).
    pub failures: u32,
    /// When the first of those failures happened.
    pub first_failure_at: i64,
    /// Open: no delivery before this time.
    pub open_until: i64,
    /// Half-open: the probe's worker and how long it may take.
    pub probe_owner: Option<String>,
    pub probe_until: i64,
    /// Opened this many times without a success in between (doubles the cool-down).
    pub trips: u32,
    /// Bumped by every write; the store writes on the version read.
    pub version: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            state: BreakerState::Closed,
            failures: 0,
            first_failure_at: 0,
            open_until: 0,
            probe_owner: None,
            probe_until: 0,
            trips: 0,
            version: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub threshold: u32,
    /// … when they all happen within this many seconds.
    pub window: i64,
    /// The first cool-down, doubled on each failed probe.
    pub cooldown: i64,
    pub max_cooldown: i64,
    /// How long a probe may take before another worker may probe.
    pub probe_lease: i64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            threshold: 5,
            window: 120,
            cooldown: 30,
            max_cooldown: 600,
            // A delivery's timeout and some.
            probe_lease: 30,
        }
    }
}

/// What a worker may do with a run for this target now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Deliver.
    Go,
    /// Deliver as the half-open probe: the breaker must be saved (the
    /// worker takes the probe) before delivering.
    Probe,
    /// Leave the target alone until this time.
    Wait(i64),
}

/// A change worth logging and reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened { failures: u32, until: i64 },
    Reopened { until: i64 },
    Closed,
}

impl Breaker {
    /// Whether a delivery may go now; `Probe` changes `self` (save it).
    pub fn admit(&mut self, worker: &str, now: i64, policy: &BreakerPolicy) -> Admission {
        match self.state {
            BreakerState::Closed => Admission::Go,
            BreakerState::Open if now < self.open_until => Admission::Wait(self.open_until),
            BreakerState::HalfOpen
                if now < self.probe_until && self.probe_owner.as_deref() != Some(worker) =>
            {
                Admission::Wait(self.probe_until)
            }
            // Open and cooled down, or a probe whose worker never came back.
            BreakerState::Open | BreakerState::HalfOpen => {
                self.state = BreakerState::HalfOpen;
                self.probe_owner = Some(worker.to_string());
                self.probe_until = now + policy.probe_lease;
                self.version += 1;
                Admission::Probe
            }
        }
    }

    /// A delivery got an answer that is not the target's fault (2xx, or a
    /// 4xx that says nothing about its health). `None`: nothing to save.
    pub fn on_success(&mut self) -> Option<Transition> {
        if self.state == BreakerState::Closed && self.failures == 0 {
            return None;
        }
        let was_closed = self.state == BreakerState::Closed;
        *self = Self {
            version: self.version + 1,
            ..Self::default()
        };
        (!was_closed).then_some(Transition::Closed)
    }

    /// A delivery timed out, could not connect, or got a 5xx/429.
    pub fn on_failure(&mut self, now: i64, policy: &BreakerPolicy) -> Option<Transition> {
        self.version += 1;
        if self.state == BreakerState::HalfOpen {
            self.trips = self.trips.saturating_add(1);
            self.open(now, policy);
            return Some(Transition::Reopened {
                until: self.open_until,
            });
        }
        if self.failures == 0 || now - self.first_failure_at > policy.window {
            self.failures = 0;
            self.first_failure_at = now;
        }
        self.failures = self.failures.saturating_add(1);
        if self.state == BreakerState::Closed && self.failures >= policy.threshold {
            self.trips = 1;
            self.open(now, policy);
            return Some(Transition::Opened {
                failures: self.failures,
                until: self.open_until,
            });
        }
        None
    }

    fn open(&mut self, now: i64, policy: &BreakerPolicy) {
        let doubling = 1_i64 << self.trips.saturating_sub(1).min(16);
        let cooldown = policy
            .cooldown
            .saturating_mul(doubling)
            .min(policy.max_cooldown);
        self.state = BreakerState::Open;
        self.open_until = now + cooldown;
        self.probe_owner = None;
        self.probe_until = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_probes_and_closes() {
        let p = BreakerPolicy::default();
        let mut b = Breaker::default();
        for i in 0..4 {
            assert_eq!(b.on_failure(100 + i, &p), None);
            assert_eq!(b.admit("w", 100 + i, &p), Admission::Go);
        }
        assert_eq!(
            b.on_failure(104, &p),
            Some(Transition::Opened {
                failures: 5,
                until: 134
            })
        );
        assert_eq!(b.admit("w", 120, &p), Admission::Wait(134));
        // After the cool-down one worker probes; the others wait for it.
        assert_eq!(b.admit("a", 134, &p), Admission::Probe);
        assert_eq!(b.admit("b", 135, &p), Admission::Wait(164));
        // A failed probe opens it for twice as long.
        assert_eq!(
            b.on_failure(140, &p),
            Some(Transition::Reopened { until: 200 })
        );
        assert_eq!(b.admit("b", 199, &p), Admission::Wait(200));
        assert_eq!(b.admit("b", 200, &p), Admission::Probe);
        assert_eq!(b.on_success(), Some(Transition::Closed));
        assert_eq!(b.state, BreakerState::Closed);
        assert_eq!(b.admit("c", 201, &p), Admission::Go);
    }

    #[test]
    fn failures_spread_over_more_than_the_window_do_not_open_it() {
        let p = BreakerPolicy::default();
        let mut b = Breaker::default();
        for i in 0..20 {
            assert_eq!(b.on_failure(i * 40, &p), None, "failure {i}");
            if i % 4 == 3 {
                // The window restarts: never five within 120 s.
                assert!(b.failures <= 4);
            }
        }
        // A success clears the count.
        let mut b = Breaker::default();
        for i in 0..4 {
            b.on_failure(i, &p);
        }
        assert_eq!(b.on_success(), None);
        assert_eq!(b.on_failure(5, &p), None);
        assert_eq!(b.failures, 1);
    }

    #[test]
    fn a_probe_whose_worker_vanished_is_taken_over() {
        let p = BreakerPolicy::default();
        let mut b = Breaker {
            state: BreakerState::HalfOpen,
            probe_owner: Some("gone".into()),
            probe_until: 50,
            ..Breaker::default()
        };
        assert_eq!(b.admit("w", 49, &p), Admission::Wait(50));
        assert_eq!(b.admit("w", 50, &p), Admission::Probe);
        assert_eq!(b.probe_owner.as_deref(), Some("w"));
    }

    #[test]
    fn cool_downs_are_capped() {
        let p = BreakerPolicy::default();
        let mut b = Breaker {
            state: BreakerState::HalfOpen,
            trips: 30,
            ..Breaker::default()
        };
        b.on_failure(0, &p);
        assert_eq!(b.open_until, 600);
    }
}
