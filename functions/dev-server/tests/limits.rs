//! A slow or greedy client cannot hold the dev server: request heads and
//! bodies must arrive in time, and connections beyond the cap wait for a
//! free one instead of piling up. A shutdown signal stops it gracefully.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use std::sync::Arc;
use std::time::Duration;

use connector_core::adapters::memory::{FixedClock, MemorySecrets, MemoryStore};
use connector_core::app::App;
use connector_core::config::Config;
use dev_server::{DevServer, Limits};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start(
    limits: Limits,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let app = App::new(
        Config::from_lookup(|_| None).unwrap(),
        Arc::new(MemoryStore::default()),
        Arc::new(MemorySecrets::default()),
        Arc::new(FixedClock::at(1_800_000_000)),
    );
    let server = DevServer::with_limits(app, SecretString::from("dev_limits".to_string()), limits);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve_until(listener, async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

fn short() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        max_connections: 2,
        ..Limits::default()
    }
}

/// Reads until the server closes the connection; answers what it sent.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off() {
    let (addr, _stop, _task) = start(short()).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // No blank line: the head never ends. The server closes within its
    // header timeout instead of holding the connection forever.
    let answer = read_to_close(&mut slow, Duration::from_secs(5)).await;
    assert!(answer.is_some(), "the connection was still held after 5 s");
}

#[tokio::test]
async fn a_body_that_never_arrives_is_408_in_json() {
    let (addr, _stop, _task) = start(short()).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /webhooks/conn_abc HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{\"id\":",
    )
    .await
    .unwrap();
    let answer = read_to_close(&mut slow, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_one() {
    let (addr, _stop, _task) = start(Limits {
        header_read_timeout: Duration::from_secs(30),
        ..short()
    })
    .await;
    // Two clients hold both places (a head begun, never finished).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ask = || async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        s
    };
    let mut third = ask().await;
    assert!(
        read_to_close(&mut third, Duration::from_millis(500))
            .await
            .is_none(),
        "a third connection was served while two held the cap"
    );
    // One place frees up: the waiting connection is served.
    drop(held.pop());
    let answer = read_to_close(&mut third, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_stop_signal_ends_the_server_after_what_is_in_flight() {
    let (addr, stop, task) = start(short()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(12), task)
        .await
        .expect("the server stopped")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}
