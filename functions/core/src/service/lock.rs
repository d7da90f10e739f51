//! The connection lease: every read-modify-write of a connection, its
//! secrets or its Stripe endpoint runs while holding it, on state read
//! fresh under it (a consistent read, the secrets past any cache). Secrets
//! Manager has no compare-and-swap and Stripe's endpoint creation is a side
//! effect, so optimistic versions alone could not keep two writers from
//! both acting; the lease serializes them, and the connection's version
//! still guards its record. A request that finds the lease held waits for
//! it (with jittered back-off) instead of failing: concurrent changes all
//! succeed, one after another. A holder that dies loses the lease after
//! [`LEASE_SECS`].

use std::time::Duration;

use super::{Error, Result};
use crate::app::App;
use crate::ids;
use crate::model::{Connection, ConnectionSecrets};

/// How long a lease lasts if its holder never gives it back. It must
/// outlast any request that can hold it, since a change keeps it across its
/// Stripe calls (each up to `STRIPE_TIMEOUT_SECS` a try, with retries): in
/// AWS connections-api stops at 29 s, but the dev server has no such cap.
/// The cost of a long lease is only paid when a holder dies: changes of that
/// one connection wait (then answer 503) until it runs out.
pub const LEASE_SECS: i64 = 120;
/// How long a request waits for the lease before answering 503.
pub const WAIT: Duration = Duration::from_secs(20);

/// A held lease, with the connection and its secrets as stored now.
pub struct Locked<'a> {
    app: &'a App,
    owner: String,
    pub connection: Connection,
    pub secrets: Option<ConnectionSecrets>,
}

/// Waits for the connection's lease (up to [`WAIT`]), then reads it fresh,
/// with its secrets when `with_secrets`.
async fn lock<'a>(app: &'a App, id: &str, with_secrets: bool) -> Result<Locked<'a>> {
    let owner = ids::new_id("lease_");
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        let now = app.clock.now();
        if app
            .connections
            .lock_connection(id, &owner, now, now + LEASE_SECS)
            .await?
        {
            break;
        }
        if app.connections.get_connection(id).await?.is_none() {
            return Err(Error::NotFound("connection"));
        }
        if started.elapsed() >= WAIT {
            return Err(Error::Busy);
        }
        let jitter = Duration::from_millis(rand::random::<u64>() % 10);
        tokio::time::sleep(pause + jitter).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
    let (connection, secrets) = tokio::join!(app.connections.get_connection(id), async {
        if with_secrets {
            app.secrets.get_secrets_fresh(id).await
        } else {
            Ok(None)
        }
    });
    let locked = match (connection, secrets) {
        (Ok(Some(connection)), Ok(secrets)) => Locked {
            app,
            owner,
            connection,
            secrets,
        },
        (connection, secrets) => {
            let _ = app.connections.unlock_connection(id, &owner).await;
            connection?;
            secrets?;
            return Err(Error::NotFound("connection"));
        }
    };
    Ok(locked)
}

/// Runs `change` under the connection's lease, on state read fresh, and
/// gives the lease back whatever `change` answered.
pub async fn with_lock<T>(
    app: &App,
    id: &str,
    change: impl AsyncFnOnce(&mut Locked<'_>) -> Result<T>,
) -> Result<T> {
    under_lease(app, id, true, change).await
}

/// As [`with_lock`], for a change of the connection record alone: its
/// secrets are not read (`Locked::secrets` is `None`), which saves a
/// Secrets Manager call where none is needed.
pub async fn with_record_lock<T>(
    app: &App,
    id: &str,
    change: impl AsyncFnOnce(&mut Locked<'_>) -> Result<T>,
) -> Result<T> {
    under_lease(app, id, false, change).await
}

async fn under_lease<T>(
    app: &App,
    id: &str,
    with_secrets: bool,
    change: impl AsyncFnOnce(&mut Locked<'_>) -> Result<T>,
) -> Result<T> {
    let mut locked = lock(app, id, with_secrets).await?;
    let result = change(&mut locked).await;
    locked.release().await;
    result
}

impl<'a> Locked<'a> {
    /// The app the lease was taken through.
    pub fn app(&self) -> &'a App {
        self.app
    }
}

impl Locked<'_> {
    /// The secrets, which every connection has (made before its record).
    pub fn secrets(&self) -> Result<&ConnectionSecrets> {
        self.secrets.as_ref().ok_or_else(|| {
            Error::Internal(format!("connection {} has no secrets", self.connection.id))
        })
    }

    /// Writes the connection back as the next version.
    pub async fn save(&mut self) -> Result<()> {
        self.connection.version += 1;
        self.connection.updated_at = self.app.clock.now();
        if let Err(e) = self
            .app
            .connections
            .update_connection(&self.connection)
            .await
        {
            self.connection.version -= 1;
            return Err(e.into());
        }
        Ok(())
    }

    /// Writes changed secrets (only when they changed: every write is a new
    /// Secrets Manager version).
    pub async fn save_secrets(&mut self, secrets: ConnectionSecrets) -> Result<()> {
        self.app
            .secrets
            .put_secrets(&self.connection.id, &secrets)
            .await?;
        self.secrets = Some(secrets);
        Ok(())
    }

    /// Gives the lease back; a failure is logged (the lease runs out).
    pub async fn release(self) {
        if let Err(e) = self
            .app
            .connections
            .unlock_connection(&self.connection.id, &self.owner)
            .await
        {
            tracing::warn!(connection = %self.connection.id, error = %e, "lease not released; it runs out");
        }
    }
}
