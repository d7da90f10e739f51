//! The noisy-neighbour load (issue 12): `infra/bench.sh noisy [--host dev|moto]
//! [--connections 10] [--events 1000] [--executors 8] [--rate 200] [--faults off]`.
//!
//! Connection 0's target hangs past the delivery timeout, connection 1's
//! answers 500, connection 2's steps get 429 from Stripe on 20% of calls;
//! the others are healthy. Prints what a healthy tenant sees (latency from
//! webhook accepted to target received, time to drain), what the failing
//! ones cost (attempts, breaker transitions), how late retries started, and
//! fails unless every healthy (event, workflow) was delivered once, every
//! step written once, and no connection's key went over its Stripe budget
//! in any second.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a harness: failing loudly is the point

use std::time::Duration;

use connector_testkit::noisy::{Host, Observer, Plan, run};

#[tokio::main]
async fn main() {
    let mut plan = Plan::default();
    let mut host = "dev".to_string();
    let mut executors = 8;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--host" => host = value,
            "--connections" => plan.connections = value.parse().expect("--connections N"),
            "--events" => plan.events = value.parse().expect("--events N"),
            "--executors" => executors = value.parse().expect("--executors N"),
            "--senders" => plan.senders = value.parse().expect("--senders N"),
            // The control: every tenant healthy.
            "--faults" => plan.faults = value != "off",
            // Events a second across connections; 0: as fast as possible.
            "--rate" => {
                let rate: f64 = value.parse().expect("--rate N");
                plan.rate = (rate > 0.0).then_some(rate);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    plan.deadline = Duration::from_secs(900);
    let observer = Observer::install();
    let dir = tempfile::tempdir().unwrap();
    let target = match host.as_str() {
        "dev" => Host::Dev {
            data_dir: dir.path().to_path_buf(),
        },
        "moto" => Host::Moto { executors },
        other => panic!("--host dev or moto, not {other}"),
    };
    let report = run(plan.clone(), target, Some(&observer)).await;
    println!(
        "host {host}: {} connections × {} events × 2 workflows, sent at {}",
        plan.connections,
        plan.events,
        plan.rate
            .map_or("full speed".to_string(), |r| format!("{r} events/s"))
    );
    println!(
        "ingest: {} events in {:.1} s",
        report.events,
        report.ingest.as_secs_f64()
    );
    println!(
        "healthy tenants: delivery latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; deliveries drained in {:.1} s; all steps drained in {:.1} s",
        report.healthy_p50.as_secs_f64() * 1000.0,
        report.healthy_p99.as_secs_f64() * 1000.0,
        report.healthy_max.as_secs_f64() * 1000.0,
        report.healthy_drain.as_secs_f64(),
        report.steps_drain.as_secs_f64()
    );
    println!(
        "hanging target: {} deliveries tried; failing target: {} deliveries tried; Stripe 429s: {}",
        report.hanging_attempts, report.failing_attempts, report.stripe_429
    );
    println!(
        "retries started: {}, the latest {} s after its due time; any attempt (put-back runs too) at most {} s late",
        report.retries, report.max_retry_late_secs, report.max_late_secs
    );
    println!(
        "Stripe: at most {} requests in one second from one key (budget {})",
        report.max_stripe_per_second, report.budget
    );
    println!("breaker transitions:");
    for t in &report.transitions {
        println!("  {t}");
    }
    report.check(&plan);
    println!("exactly once: every healthy delivery once, every step written once");
}
