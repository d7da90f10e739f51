//! Secrets Manager adapter: one secret per connection, named
//! `{prefix}{connection id}`, holding the API key and webhook secrets as JSON.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;

use crate::model::ConnectionSecrets;
use crate::ports::{SecretStore, SecretsError};

pub struct SecretsManagerStore {
    client: Client,
    prefix: String,
}

impl SecretsManagerStore {
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
        }
    }

    fn name(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }
}

fn unavailable(e: impl std::error::Error) -> SecretsError {
    SecretsError::Unavailable(DisplayErrorContext(&e).to_string())
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn get_secrets(&self, id: &str) -> Result<Option<ConnectionSecrets>, SecretsError> {
        match self
            .client
            .get_secret_value()
            .secret_id(self.name(id))
            .send()
            .await
        {
            Ok(out) => {
                let text = out.secret_string().ok_or(SecretsError::Corrupt)?;
                ConnectionSecrets::from_json(text)
                    .map(Some)
                    .map_err(|_| SecretsError::Corrupt)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError::is_resource_not_found_exception) =>
            {
                Ok(None)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn put_secrets(&self, id: &str, secrets: &ConnectionSecrets) -> Result<(), SecretsError> {
        let value = secrets.to_json();
        // Update first (the common case); create when there is none yet; if a
        // concurrent create won, update again.
        for _ in 0..2 {
            match self
                .client
                .put_secret_value()
                .secret_id(self.name(id))
                .secret_string(&value)
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError::is_resource_not_found_exception) => {}
                Err(e) => return Err(unavailable(e)),
            }
            match self
                .client
                .create_secret()
                .name(self.name(id))
                .description(
                    "stripe-connector: Stripe API key and webhook secrets of one connection",
                )
                .secret_string(&value)
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(aws_sdk_secretsmanager::operation::create_secret::CreateSecretError::is_resource_exists_exception) =>
                {
                    continue;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(SecretsError::Unavailable(
            "secret kept changing while being written".into(),
        ))
    }

    async fn delete_secrets(&self, id: &str) -> Result<(), SecretsError> {
        match self
            .client
            .delete_secret()
            .secret_id(self.name(id))
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(aws_sdk_secretsmanager::operation::delete_secret::DeleteSecretError::is_resource_not_found_exception) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}
