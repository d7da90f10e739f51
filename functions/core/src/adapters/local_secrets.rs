//! The dev server's secrets: one JSON file, created with 0600 permissions and
//! replaced atomically on every write.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::model::ConnectionSecrets;
use crate::ports::{SecretStore, SecretsError};

pub struct LocalSecretsFile {
    path: PathBuf,
    lock: Mutex<()>,
}

impl LocalSecretsFile {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
        }
    }

    fn read(&self) -> Result<BTreeMap<String, String>, SecretsError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|_| SecretsError::Corrupt),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(SecretsError::Unavailable(e.to_string())),
        }
    }

    fn write(&self, map: &BTreeMap<String, String>) -> Result<(), SecretsError> {
        let io = |e: std::io::Error| SecretsError::Unavailable(e.to_string());
        let tmp = self.path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io)?;
        let text = serde_json::to_vec_pretty(map).map_err(|_| SecretsError::Corrupt)?;
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[async_trait]
impl SecretStore for LocalSecretsFile {
    async fn get_secrets(&self, id: &str) -> Result<Option<ConnectionSecrets>, SecretsError> {
        let _guard = self.lock.lock().await;
        self.read()?
            .get(id)
            .map(|s| ConnectionSecrets::from_json(s).map_err(|_| SecretsError::Corrupt))
            .transpose()
    }

    async fn put_secrets(&self, id: &str, secrets: &ConnectionSecrets) -> Result<(), SecretsError> {
        let _guard = self.lock.lock().await;
        let mut map = self.read()?;
        map.insert(id.to_string(), secrets.to_json());
        self.write(&map)
    }

    async fn delete_secrets(&self, id: &str) -> Result<(), SecretsError> {
        let _guard = self.lock.lock().await;
        let mut map = self.read()?;
        if map.remove(id).is_some() {
            self.write(&map)?;
        }
        Ok(())
    }
}
