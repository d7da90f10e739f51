//! `cargo run -p dev-server`: the connector on 127.0.0.1:3000 with its
//! embedded store under ./.connector. No AWS account, no Stripe key needed to start.

use connector_core::config::Config;
use secrecy::ExposeSecret;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();

    let mut config = Config::from_env()?;
    // The dev server's targets are local services: private addresses are
    // allowed unless CONNECTOR_ALLOW_PRIVATE_TARGETS=false says otherwise.
    config.allow_private_targets.get_or_insert(true);
    let listener = tokio::net::TcpListener::bind(&config.addr).await?;
    let addr = listener.local_addr()?;
    if config.public_base_url.is_none() {
        config.public_base_url = Some(format!("http://{addr}"));
    }
    let token = match config.api_token.clone() {
        Some(t) => t,
        None => {
            let t = dev_server::generate_token();
            // The one place a secret is printed: the dev server's own token, to its operator.
            println!(
                "API token (set CONNECTOR_API_TOKEN to choose one): {}",
                t.expose_secret()
            );
            t
        }
    };
    let data_dir = config.data_dir.clone();
    let (app, store) = connector_embedded::app_and_store(config)?;
    // Events and runs are kept 30 days, as DynamoDB's TTL keeps them in AWS.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            let now = connector_core::ports::Clock::now(&connector_core::ports::SystemClock);
            if let Err(e) = store.purge_expired(now).await {
                tracing::warn!(error = %e, "purging expired events and runs failed");
            }
        }
    });
    println!(
        "stripe-connector dev server on http://{addr} (data in {})",
        data_dir.display()
    );
    let server = dev_server::DevServer::new(app, token);
    server.serve_until(listener, stop_signal()).await;
    Ok(())
}

/// Ctrl-C or SIGTERM: stop accepting, finish what is in flight.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    println!("stopping");
}
