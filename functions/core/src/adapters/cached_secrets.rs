//! Secrets cached per process for a short time: one Secrets Manager call per
//! connection per TTL instead of one per webhook, and a rotation made
//! elsewhere is seen within the TTL. Writes through this cache update it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::model::ConnectionSecrets;
use crate::ports::{SecretStore, SecretsError};

pub struct CachedSecrets<S> {
    inner: S,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Option<ConnectionSecrets>)>>,
}

impl<S> CachedSecrets<S> {
    pub fn new(inner: S, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, id: &str, value: Option<ConnectionSecrets>) {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.insert(id.to_string(), (Instant::now(), value));
    }
}

#[async_trait]
impl<S: SecretStore> SecretStore for CachedSecrets<S> {
    async fn get_secrets(&self, id: &str) -> Result<Option<ConnectionSecrets>, SecretsError> {
        {
            let cache = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, value)) = cache.get(id)
                && at.elapsed() < self.ttl
            {
                return Ok(value.clone());
            }
        }
        let value = self.inner.get_secrets(id).await?;
        self.remember(id, value.clone());
        Ok(value)
    }

    /// Past the cache: a change is computed from what is stored now, never
    /// from what this container saw up to a TTL ago.
    async fn get_secrets_fresh(&self, id: &str) -> Result<Option<ConnectionSecrets>, SecretsError> {
        let value = self.inner.get_secrets_fresh(id).await?;
        self.remember(id, value.clone());
        Ok(value)
    }

    async fn put_secrets(&self, id: &str, secrets: &ConnectionSecrets) -> Result<(), SecretsError> {
        self.inner.put_secrets(id, secrets).await?;
        self.remember(id, Some(secrets.clone()));
        Ok(())
    }

    async fn delete_secrets(&self, id: &str) -> Result<(), SecretsError> {
        self.inner.delete_secrets(id).await?;
        self.remember(id, None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemorySecrets;
    use secrecy::{ExposeSecret, SecretString};
    use std::sync::Arc;

    fn secrets(key: &str) -> ConnectionSecrets {
        ConnectionSecrets {
            target_secrets: Default::default(),
            api_key: SecretString::from(key.to_string()),
            webhook_secrets: vec![],
        }
    }

    async fn key_of(store: &impl SecretStore, id: &str) -> Option<String> {
        let secrets = store.get_secrets(id).await.unwrap()?;
        Some(secrets.api_key.expose_secret().to_string())
    }

    #[tokio::test]
    async fn serves_from_cache_until_the_ttl_then_sees_a_rotation() {
        let backing = Arc::new(MemorySecrets::default());
        backing
            .put_secrets("conn_a", &secrets("sk_test_old"))
            .await
            .unwrap();
        let cached = CachedSecrets::new(backing.clone(), Duration::from_millis(100));
        assert_eq!(
            key_of(&cached, "conn_a").await.as_deref(),
            Some("sk_test_old")
        );
        // Rotated elsewhere (another Lambda instance).
        backing
            .put_secrets("conn_a", &secrets("sk_test_new"))
            .await
            .unwrap();
        assert_eq!(
            key_of(&cached, "conn_a").await.as_deref(),
            Some("sk_test_old")
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            key_of(&cached, "conn_a").await.as_deref(),
            Some("sk_test_new")
        );
        // Written through this cache: seen at once.
        cached
            .put_secrets("conn_a", &secrets("sk_test_third"))
            .await
            .unwrap();
        assert_eq!(
            key_of(&cached, "conn_a").await.as_deref(),
            Some("sk_test_third")
        );
        cached.delete_secrets("conn_a").await.unwrap();
        assert!(cached.get_secrets("conn_a").await.unwrap().is_none());
    }
}
