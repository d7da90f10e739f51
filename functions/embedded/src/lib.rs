//! The dev server's storage: an embedded SQLite store for connections,
//! events, workflows and runs, and a local secrets file. A crate of its own
//! so that no Lambda compiles or links SQLite.

pub mod local_secrets;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;

use connector_core::app::App;
use connector_core::config::Config;
use connector_core::ports::{StoreError, SystemClock};

pub use local_secrets::LocalSecretsFile;
pub use sqlite::SqliteStore;

/// The dev server's app: the embedded store (`connector.db`) and the
/// secrets file (`secrets.json`) under the data directory, which is made
/// (or kept) readable by its owner only, like the files in it.
pub fn app(config: Config) -> Result<App, StoreError> {
    app_and_store(config).map(|(app, _)| app)
}

/// As [`app`], also answering the store (the dev server purges it).
pub fn app_and_store(config: Config) -> Result<(App, Arc<SqliteStore>), StoreError> {
    let dir = config.data_dir.clone();
    owner_only_dir(&dir).map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
    let store = Arc::new(SqliteStore::open(&dir.join("connector.db"))?);
    let secrets = Arc::new(LocalSecretsFile::new(dir.join("secrets.json")));
    let app = App::new(config, store.clone(), secrets, Arc::new(SystemClock));
    Ok((app, store))
}

/// Creates `dir` if needed, mode 0700 on Unix.
fn owner_only_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Creates `path` if needed, mode 0600 on Unix, keeping its contents.
pub(crate) fn owner_only_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        options.open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    options.open(path).map(|_| ())
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn the_data_dir_and_store_are_readable_by_their_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        // An existing, too open directory and database are closed too.
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("connector.db"), b"").unwrap();
        std::fs::set_permissions(
            dir.join("connector.db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let d = dir.display().to_string();
        let config =
            Config::from_lookup(|k| (k == "CONNECTOR_DATA_DIR").then(|| d.clone())).unwrap();
        let app = app(config).unwrap();
        app.connections.list_connections().await.unwrap();
        assert_eq!(mode(&dir), 0o700);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}
