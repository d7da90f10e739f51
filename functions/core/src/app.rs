//! The application: config, ports and the Stripe HTTP client, built once per
//! process (per Lambda cold start, or once by the dev server).

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::adapters::cached_secrets::CachedSecrets;
use crate::adapters::dynamo::DynamoStore;
use crate::adapters::local_queue::LocalQueue;
use crate::adapters::secrets_manager::SecretsManagerStore;
use crate::adapters::sqs::SqsQueue;
use crate::config::{Config, ConfigError};
use crate::metrics::{EmfMetrics, Metrics, NoMetrics};
use crate::model::Connection;
use crate::ports::{
    Clock, ConnectionStore, EventStore, GateStore, RunQueue, RunStore, SecretStore, SystemClock,
    WorkflowStore,
};
use crate::stripe::{StripeClient, StripeSettings, http_client};

/// How long a Lambda keeps a connection's secrets before reading them again.
pub const SECRETS_CACHE_TTL: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub connections: Arc<dyn ConnectionStore>,
    pub events: Arc<dyn EventStore>,
    pub workflows: Arc<dyn WorkflowStore>,
    pub runs: Arc<dyn RunStore>,
    /// Rate budgets, target caps, breakers: shared by every executor.
    pub gates: Arc<dyn GateStore>,
    /// Where runs wait for an executor (SQS in AWS).
    pub queue: Arc<dyn RunQueue>,
    pub secrets: Arc<dyn SecretStore>,
    pub clock: Arc<dyn Clock>,
    /// Counts what happens ([`crate::metrics`]): EMF lines in AWS.
    pub metrics: Arc<dyn Metrics>,
    /// Made on first use: building it loads the system's trust store
    /// (~5 ms), which functions that never call out (webhook-ingest) skip.
    http: Arc<std::sync::OnceLock<reqwest::Client>>,
    /// For workflow targets: public addresses only, no redirects.
    targets: Arc<std::sync::OnceLock<reqwest::Client>>,
    stripe_settings: Arc<StripeSettings>,
}

impl App {
    /// Every store adapter implements all the record ports; one store
    /// serves them. Runs are queued in process ([`LocalQueue`]) unless
    /// [`App::with_queue`] says otherwise.
    pub fn new<S>(
        config: Config,
        store: Arc<S>,
        secrets: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
    ) -> Self
    where
        S: ConnectionStore + EventStore + WorkflowStore + RunStore + 'static,
    {
        let stripe_settings = Arc::new(config.stripe_settings());
        Self {
            config: Arc::new(config),
            connections: store.clone(),
            events: store.clone(),
            workflows: store.clone(),
            runs: store,
            gates: Arc::new(crate::adapters::memory_gates::MemoryGates::default()),
            queue: LocalQueue::new(clock.clone()),
            secrets,
            clock,
            metrics: Arc::new(NoMetrics),
            http: Arc::default(),
            targets: Arc::default(),
            stripe_settings,
        }
    }

    /// The shared HTTP client (rustls) for Stripe.
    pub fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(http_client)
    }

    /// The client for workflow targets ([`crate::target::client`]).
    pub fn targets(&self) -> &reqwest::Client {
        self.targets
            .get_or_init(|| crate::target::client(self.config.private_targets_allowed()))
    }

    /// Keeps the limits in `gates` (shared by every container in AWS).
    pub fn with_gates(mut self, gates: Arc<dyn GateStore>) -> Self {
        self.gates = gates;
        self
    }

    /// Records measures in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Sends runs to `queue`.
    pub fn with_queue(mut self, queue: Arc<dyn RunQueue>) -> Self {
        self.queue = queue;
        self
    }

    /// Overrides how the app talks to Stripe (tests shorten the backoff).
    pub fn with_stripe_settings(mut self, settings: StripeSettings) -> Self {
        self.stripe_settings = Arc::new(settings);
        self
    }

    /// DynamoDB and Secrets Manager, as deployed. AWS settings come from the
    /// standard SDK environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials).
    pub async fn aws(config: Config) -> Result<Self, ConfigError> {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let metrics = EmfMetrics::new(
            config.metrics_namespace.clone(),
            config.function_name.clone().unwrap_or_default(),
        );
        let app = Self::aws_clients(
            config,
            aws_sdk_dynamodb::Client::new(&sdk),
            aws_sdk_secretsmanager::Client::new(&sdk),
        )?
        .with_metrics(Arc::new(metrics));
        // Only the functions that queue runs are given the queue's URL.
        match app.config.run_queue_url.clone() {
            Some(url) => {
                Ok(app.with_queue(Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url))))
            }
            None => Ok(app.with_queue(Arc::new(crate::adapters::sqs::Unconfigured))),
        }
    }

    /// The deployed app over SDK clients made elsewhere (with interceptors,
    /// say, as the least-privilege test records each call).
    pub fn aws_clients(
        config: Config,
        dynamo: aws_sdk_dynamodb::Client,
        secrets: aws_sdk_secretsmanager::Client,
    ) -> Result<Self, ConfigError> {
        let table = config.table_name.clone().ok_or(ConfigError {
            name: "TABLE_NAME",
            reason: "required".into(),
        })?;
        let store = Arc::new(DynamoStore::new(dynamo, table));
        let secrets = CachedSecrets::new(
            SecretsManagerStore::new(secrets, config.secret_prefix.clone()),
            SECRETS_CACHE_TTL,
        );
        Ok(Self::new(
            config,
            store.clone(),
            Arc::new(secrets),
            Arc::new(SystemClock),
        )
        .with_gates(store))
    }

    /// A Stripe client for one key, pinned to a version.
    pub fn stripe(&self, key: &SecretString, api_version: &str) -> StripeClient {
        StripeClient::new(
            self.http().clone(),
            self.stripe_settings.clone(),
            key.clone(),
        )
        .with_api_version(api_version)
    }

    /// A connection's Stripe client: as [`App::stripe`], its calls counted
    /// under the connection's id.
    pub fn stripe_for(&self, connection: &Connection, key: &SecretString) -> StripeClient {
        self.stripe(key, &connection.api_version)
            .with_meter(self.metrics.clone(), &connection.id)
    }
}
