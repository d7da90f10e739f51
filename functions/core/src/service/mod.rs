//! The use cases, free of HTTP requests: connect an account, keep its
//! endpoint in sync, manage workflows, ingest, list, replay. Handlers in
//! [`crate::api`] only extract, call one of these and map the answer.

pub mod connections;
pub mod endpoint;
pub mod events;
pub mod ingest;
pub mod runs;
pub mod workflows;

use crate::app::App;
use crate::http::ApiError;
use crate::model::{Connection, ConnectionSecrets};
use crate::ports::{SecretsError, StoreError};

pub(crate) fn store_error(e: StoreError) -> ApiError {
    ApiError::service_unavailable("the connection store failed", &e)
}

pub(crate) fn secrets_error(e: SecretsError) -> ApiError {
    ApiError::service_unavailable("the secret store failed", &e)
}

/// A connection and its secrets, read together (one round trip, not two).
pub async fn load(app: &App, id: &str) -> Result<(Connection, ConnectionSecrets), ApiError> {
    let (connection, secrets) = tokio::join!(
        app.connections.get_connection(id),
        app.secrets.get_secrets(id)
    );
    let connection = connection
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found("unknown connection"))?;
    let secrets = secrets
        .map_err(secrets_error)?
        .ok_or_else(|| ApiError::internal("the connection has no secrets", &id))?;
    Ok((connection, secrets))
}

/// A connection that must exist (for routes that need no secret).
pub async fn connection(app: &App, id: &str) -> Result<Connection, ApiError> {
    app.connections
        .get_connection(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found("unknown connection"))
}
