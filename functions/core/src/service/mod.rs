//! The use cases, free of HTTP requests: connect an account, keep its
//! endpoint in sync, manage workflows, ingest, list, replay. Handlers in
//! [`crate::api`] only extract, call one of these and map the answer.

pub mod alerts;
pub mod connections;
pub mod endpoint;
pub mod events;
pub mod health;
pub mod ingest;
pub mod lock;
pub mod reconcile;
pub mod runs;
pub mod samples;
pub mod upgrade;
pub mod workflows;

use crate::app::App;
use crate::catalog::InvalidInput;
use crate::model::{Connection, ConnectionSecrets};
use crate::ports::{SecretsError, StoreError};
use crate::stripe::StripeError;
use crate::webhook::SignatureError;

/// Why a use case failed, by cause. The HTTP status of each is chosen in
/// one place: `From<service::Error> for ApiError` (http.rs).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What was named does not exist (a malformed id names nothing too).
    #[error("unknown {0}")]
    NotFound(&'static str),
    /// A field breaks a rule; nothing was written or sent.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Stripe refused the API key (or it belongs to another account).
    #[error("{message}")]
    KeyRefused {
        message: String,
        stripe: Option<Box<StripeError>>,
    },
    /// The account's state forbids it (16 endpoints already).
    #[error("{message}")]
    Conflict {
        kind: &'static str,
        message: String,
        stripe: Option<Box<StripeError>>,
    },
    /// Stripe could not remove the managed endpoint, so the connection is
    /// kept (retry, or force).
    #[error("could not delete the Stripe webhook endpoint")]
    EndpointNotDeleted(Box<StripeError>),
    /// Stripe answered something the connector cannot use.
    #[error("{0}")]
    UnexpectedStripeAnswer(&'static str),
    #[error(transparent)]
    Stripe(Box<StripeError>),
    #[error(transparent)]
    Action(Box<crate::actions::ActionError>),
    /// A webhook delivery's signature did not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// A signed delivery is not a Stripe event the connector can store.
    #[error("{message}")]
    InvalidEvent {
        param: Option<&'static str>,
        message: String,
    },
    /// A live event for a test connection, or the reverse.
    #[error("{0}")]
    LivemodeMismatch(String),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("the secret store failed: {0}")]
    Secrets(#[from] SecretsError),
    /// Another request kept the connection's lease for longer than a
    /// request waits for it.
    #[error("the connection is being changed by another request")]
    Busy,
    /// Ours: a state that should not be (a connection without secrets).
    #[error("{0}")]
    Internal(String),
}

// Stripe's errors are boxed: they are large and rare, and keep every
// `Result<_, Error>` small.
impl From<StripeError> for Error {
    fn from(e: StripeError) -> Self {
        Error::Stripe(Box::new(e))
    }
}

impl From<crate::actions::ActionError> for Error {
    fn from(e: crate::actions::ActionError) -> Self {
        Error::Action(Box::new(e))
    }
}

/// A use case's answer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection and its secrets, read together (one round trip, not two).
pub async fn load(app: &App, id: &str) -> Result<(Connection, ConnectionSecrets)> {
    let (connection, secrets) = tokio::join!(
        app.connections.get_connection(id),
        app.secrets.get_secrets(id)
    );
    let connection = connection?.ok_or(Error::NotFound("connection"))?;
    let secrets =
        secrets?.ok_or_else(|| Error::Internal(format!("connection {id} has no secrets")))?;
    Ok((connection, secrets))
}

/// A connection that must exist (for routes that need no secret).
pub async fn connection(app: &App, id: &str) -> Result<Connection> {
    app.connections
        .get_connection(id)
        .await?
        .ok_or(Error::NotFound("connection"))
}
