//! The dev server's secrets: one JSON file, created with 0600 permissions and
//! replaced atomically on every write. Reads keep the parsed file and parse
//! it again only when the file changed (another inode, size or mtime), so a
//! webhook costs one `stat`, not a read and a parse.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::sync::Mutex;

use connector_core::model::ConnectionSecrets;
use connector_core::ports::{SecretStore, SecretsError};

pub struct LocalSecretsFile {
    path: PathBuf,
    lock: Mutex<()>,
    cache: std::sync::Mutex<Option<(Stamp, Arc<SecretsMap>)>>,
}

/// The file's contents: connection id → its secrets as JSON.
type SecretsMap = BTreeMap<String, String>;

/// What identifies one version of the file.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            inode,
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

impl LocalSecretsFile {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
            cache: std::sync::Mutex::new(None),
        }
    }

    /// The file's contents, parsed again only if it changed since last time.
    fn cached(&self) -> Result<Arc<SecretsMap>, SecretsError> {
        let stamp = match std::fs::metadata(&self.path) {
            Ok(meta) => Some(Stamp::of(&meta)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(SecretsError::Unavailable(e.to_string())),
        };
        let Some(stamp) = stamp else {
            return Ok(Arc::default());
        };
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen, map)) = cache.as_ref()
            && *seen == stamp
        {
            return Ok(map.clone());
        }
        let map = Arc::new(self.read()?);
        *cache = Some((stamp, map.clone()));
        Ok(map)
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
        self.cached()?
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
