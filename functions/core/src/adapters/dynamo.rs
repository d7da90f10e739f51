//! DynamoDB adapter: one table, `pk`/`sk` keys, `gsi1` for newest-first
//! listings, a stream of new images for fan-out, `expires_at` as TTL.
//!
//! Connection `CONN#{id}` / `CONN`; event `CONN#{id}` / `EVT#{event id}`.
//! Every write is conditional, so a retry or a duplicate is harmless.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use serde_json::Value;

use crate::model::{Connection, InsertOutcome, StoredEvent, Workflow};
use crate::ports::{
    ConnectionStore, EventQuery, EventStore, GateStore, MAX_RUNS_SCANNED, RunCursor, RunPage,
    RunQuery, RunStore, StoreError, WorkflowStore, page_runs,
};
use crate::workflow::breaker::Breaker;
use crate::workflow::run::Run;

/// Bodies are stored deflated (`body_z`): a typical 2–4 KB Stripe event
/// shrinks to a third or less, so its item fits one or two write units
/// instead of three to five. Items written as text (`body`) still read.
fn compress(body: &str) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = z.write_all(body.as_bytes());
    z.finish().unwrap_or_default()
}

fn decompress(z: &[u8]) -> Result<String, StoreError> {
    use std::io::Read;
    let mut body = String::new();
    flate2::read::DeflateDecoder::new(z)
        .take(MAX_BODY_INFLATED)
        .read_to_string(&mut body)
        .map_err(|e| StoreError::Corrupt(format!("event body: {e}")))?;
    Ok(body)
}

/// No stored body inflates past the largest body ingest accepts.
const MAX_BODY_INFLATED: u64 = 1024 * 1024;

/// An event body larger than this is not stored (DynamoDB items are at most
/// 400 KB); the event is marked for fetching from Stripe instead.
pub const MAX_STORED_BODY: usize = 350 * 1024;

pub const GSI1: &str = "gsi1";
const CONNECTIONS_INDEX_PK: &str = "CONNS";

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn version(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn conn_pk(id: &str) -> String {
    format!("CONN#{id}")
}

const GSI2: &str = "gsi2";

fn runs_pk(connection_id: &str) -> String {
    format!("RUNS#{connection_id}")
}

/// A run's sort key in gsi2: its cursor's order as a string (ids never
/// hold `#`, which sorts before every id character).
fn run_position(c: &RunCursor) -> String {
    sort_time(c.created_at, &format!("{}#{}", c.event_id, c.run_key))
}

fn sort_time(t: i64, id: &str) -> String {
    format!("{:012}#{id}", t.max(0))
}

/// A conditional update's answer: `true` done, `false` its condition did
/// not hold.
fn updated<O, R: std::fmt::Debug>(
    result: Result<
        O,
        aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::update_item::UpdateItemError,
            R,
        >,
    >,
) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error().is_some_and(
                aws_sdk_dynamodb::operation::update_item::UpdateItemError::is_conditional_check_failed_exception,
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(sdk_error(e)),
    }
}

fn sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(&e).to_string())
}

fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, key: &str) -> Option<i64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn get_bool(item: &Item, key: &str) -> bool {
    item.get(key)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn connection_item(c: &Connection) -> Result<Item, StoreError> {
        let record = serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(HashMap::from([
            ("pk".into(), s(conn_pk(&c.id))),
            ("sk".into(), s("CONN")),
            ("gsi1pk".into(), s(CONNECTIONS_INDEX_PK)),
            ("gsi1sk".into(), s(sort_time(c.created_at, &c.id))),
            ("record".into(), s(record)),
            ("version".into(), version(c.version)),
        ]))
    }

    fn connection_from(item: &Item) -> Result<Connection, StoreError> {
        let text = get_s(item, "record")
            .ok_or_else(|| StoreError::Corrupt("connection without record".into()))?;
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// The item an event is stored as; the fan-out reads the same attributes
    /// from the stream.
    pub fn event_item(e: &StoredEvent) -> Item {
        let mut item = HashMap::from([
            ("pk".into(), s(conn_pk(&e.connection_id))),
            ("sk".into(), s(format!("EVT#{}", e.event_id))),
            ("gsi1pk".into(), s(format!("EVTS#{}", e.connection_id))),
            ("gsi1sk".into(), s(sort_time(e.created, &e.event_id))),
            ("kind".into(), s("event")),
            ("connection_id".into(), s(&e.connection_id)),
            ("event_id".into(), s(&e.event_id)),
            ("event_type".into(), s(&e.event_type)),
            ("created".into(), n(e.created)),
            ("livemode".into(), AttributeValue::Bool(e.livemode)),
            ("body_omitted".into(), AttributeValue::Bool(e.body_omitted)),
            ("received_at".into(), n(e.received_at)),
            ("expires_at".into(), n(e.expires_at)),
        ]);
        if e.recovered {
            item.insert("recovered".into(), AttributeValue::Bool(true));
        }
        if let Some(v) = &e.api_version {
            item.insert("api_version".into(), s(v));
        }
        if let Some(v) = &e.account {
            item.insert("account".into(), s(v));
        }
        if let Some(body) = &e.body {
            item.insert(
                "body_z".into(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(compress(body))),
            );
        }
        item
    }

    /// An event from a stream record's new image (the trigger-fanout's input).
    pub fn event_from_image(image: serde_dynamo::Item) -> Result<StoredEvent, StoreError> {
        let item: Item = image.into();
        Self::event_from(&item)
    }

    pub fn event_from(item: &Item) -> Result<StoredEvent, StoreError> {
        let req = |k: &str| {
            get_s(item, k)
                .map(str::to_string)
                .ok_or_else(|| StoreError::Corrupt(format!("event without {k}")))
        };
        Ok(StoredEvent {
            connection_id: req("connection_id")?,
            event_id: req("event_id")?,
            event_type: req("event_type")?,
            created: get_n(item, "created").unwrap_or(0),
            livemode: get_bool(item, "livemode"),
            api_version: get_s(item, "api_version").map(str::to_string),
            account: get_s(item, "account").map(str::to_string),
            body: match item.get("body_z") {
                Some(AttributeValue::B(z)) => Some(decompress(z.as_ref())?),
                _ => get_s(item, "body").map(str::to_string),
            },
            body_omitted: get_bool(item, "body_omitted"),
            received_at: get_n(item, "received_at").unwrap_or(0),
            expires_at: get_n(item, "expires_at").unwrap_or(0),
            recovered: get_bool(item, "recovered"),
        })
    }

    async fn get_item(&self, pk: String, sk: String) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.item)
    }
}

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn insert_connection(&self, c: &Connection) -> Result<(), StoreError> {
        self.put_or_conflict(Self::connection_item(c)?, "attribute_not_exists(pk)")
            .await
    }

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        self.get_item(conn_pk(id), "CONN".into())
            .await?
            .map(|i| Self::connection_from(&i))
            .transpose()
    }

    async fn list_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :p")
                .expression_attribute_values(":p", s(CONNECTIONS_INDEX_PK))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in page.items() {
                out.push(Self::connection_from(item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// An update, not a put: the lease attributes on the item survive it.
    async fn update_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let record = serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let previous = c.version.checked_sub(1).ok_or(StoreError::Conflict)?;
        // Items written before connections had versions count as version 0.
        let condition = if previous == 0 {
            "attribute_exists(pk) AND (attribute_not_exists(version) OR version = :previous)"
        } else {
            "attribute_exists(pk) AND version = :previous"
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(conn_pk(&c.id)))
            .key("sk", s("CONN"))
            .update_expression("SET #record = :record, version = :version")
            .condition_expression(condition)
            .expression_attribute_names("#record", "record")
            .expression_attribute_values(":record", s(record))
            .expression_attribute_values(":version", version(c.version))
            .expression_attribute_values(":previous", version(previous))
            .send()
            .await;
        if updated(result)? {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn lock_connection(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(conn_pk(id)))
            .key("sk", s("CONN"))
            .update_expression("SET lock_owner = :owner, lock_until = :until")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(lock_until) OR lock_until < :now OR lock_owner = :owner)",
            )
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        updated(result)
    }

    async fn unlock_connection(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(conn_pk(id)))
            .key("sk", s("CONN"))
            .update_expression("REMOVE lock_owner, lock_until")
            .condition_expression("lock_owner = :owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        // `false`: taken over after it ran out, or the connection is gone.
        updated(result).map(|_| ())
    }

    async fn delete_connection(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(conn_pk(id)))
            .key("sk", s("CONN"))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn insert_event(&self, e: &StoredEvent) -> Result<InsertOutcome, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::event_item(e)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(InsertOutcome::Inserted),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(aws_sdk_dynamodb::operation::put_item::PutItemError::is_conditional_check_failed_exception) =>
            {
                Ok(InsertOutcome::Duplicate)
            }
            Err(err) => Err(sdk_error(err)),
        }
    }

    async fn get_event(
        &self,
        connection_id: &str,
        event_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        self.get_item(conn_pk(connection_id), format!("EVT#{event_id}"))
            .await?
            .map(|i| Self::event_from(&i))
            .transpose()
    }

    async fn list_events(
        &self,
        connection_id: &str,
        query: &EventQuery,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut start: Option<Item> = None;
        if let Some(after) = &query.starting_after {
            let Some(cursor) = self.get_event(connection_id, after).await? else {
                return Ok(Vec::new());
            };
            start = Some(HashMap::from([
                ("pk".into(), s(conn_pk(connection_id))),
                ("sk".into(), s(format!("EVT#{after}"))),
                ("gsi1pk".into(), s(format!("EVTS#{connection_id}"))),
                ("gsi1sk".into(), s(sort_time(cursor.created, after))),
            ]));
        }
        let mut out = Vec::new();
        while out.len() < query.limit {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :p")
                .expression_attribute_values(":p", s(format!("EVTS#{connection_id}")))
                .scan_index_forward(false)
                .limit(i32::try_from((query.limit - out.len()).clamp(1, 100)).unwrap_or(100))
                .set_exclusive_start_key(start.take());
            if let Some(t) = &query.event_type {
                q = q
                    .filter_expression("event_type = :t")
                    .expression_attribute_values(":t", s(t));
            }
            let page = q.send().await.map_err(sdk_error)?;
            for item in page.items() {
                out.push(Self::event_from(item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.truncate(query.limit);
        Ok(out)
    }
}

const DUE_INDEX_PK: &str = "DUE";

fn record<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(s)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_record<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let text =
        get_s(item, "record").ok_or_else(|| StoreError::Corrupt("item without record".into()))?;
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn run_sk(event_id: &str, workflow_id: &str) -> String {
    format!("RUN#{event_id}#{workflow_id}")
}

impl DynamoStore {
    /// A run item. While it awaits a worker it is in the sparse `DUE` entry
    /// of gsi1, sorted by when it is due; finished runs leave the index.
    fn run_item(run: &Run) -> Result<Item, StoreError> {
        let mut item = HashMap::from([
            ("pk".into(), s(conn_pk(&run.connection_id))),
            ("sk".into(), s(run_sk(&run.event_id, &run.run_key()))),
            ("kind".into(), s("run")),
            ("version".into(), n(run.version as i64)),
            ("record".into(), record(run)?),
            // Listed newest first through gsi2.
            ("gsi2pk".into(), s(runs_pk(&run.connection_id))),
            ("gsi2sk".into(), s(run_position(&RunCursor::of(run)))),
            // Kept as long as events are; DynamoDB's TTL removes them after.
            (
                "expires_at".into(),
                n(run.created_at + crate::service::ingest::EVENT_RETENTION_SECS),
            ),
        ]);
        if let Some(due) = run.due_at() {
            item.insert("gsi1pk".into(), s(DUE_INDEX_PK));
            item.insert(
                "gsi1sk".into(),
                s(format!(
                    "{}#{}#{}#{}",
                    sort_time(due, ""),
                    run.connection_id,
                    run.event_id,
                    run.run_key()
                )),
            );
        }
        Ok(item)
    }

    async fn query_prefix(&self, pk: String, prefix: String) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p AND begins_with(sk, :s)")
                .expression_attribute_values(":p", s(pk.clone()))
                .expression_attribute_values(":s", s(prefix.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    fn workflow_item(w: &Workflow) -> Result<Item, StoreError> {
        Ok(HashMap::from([
            ("pk".into(), s(conn_pk(&w.connection_id))),
            ("sk".into(), s(format!("WF#{}", w.id))),
            ("kind".into(), s("workflow")),
            ("record".into(), record(w)?),
        ]))
    }

    /// A conditional put whose failed condition means `Conflict`.
    async fn put_or_conflict(&self, item: Item, condition: &str) -> Result<(), StoreError> {
        if self.conditional_put(item, condition, None).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn conditional_put(
        &self,
        item: Item,
        condition: &str,
        values: Option<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition);
        if let Some((name, value)) = values {
            req = req.expression_attribute_values(name, value);
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(aws_sdk_dynamodb::operation::put_item::PutItemError::is_conditional_check_failed_exception) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error(e)),
        }
    }
}

#[async_trait]
impl WorkflowStore for DynamoStore {
    async fn insert_workflow(&self, w: &Workflow) -> Result<(), StoreError> {
        self.put_or_conflict(Self::workflow_item(w)?, "attribute_not_exists(pk)")
            .await
    }

    async fn get_workflow(
        &self,
        connection_id: &str,
        id: &str,
    ) -> Result<Option<Workflow>, StoreError> {
        self.get_item(conn_pk(connection_id), format!("WF#{id}"))
            .await?
            .map(|i| from_record(&i))
            .transpose()
    }

    async fn list_workflows(&self, connection_id: &str) -> Result<Vec<Workflow>, StoreError> {
        let items = self
            .query_prefix(conn_pk(connection_id), "WF#".into())
            .await?;
        let mut all = items
            .iter()
            .map(from_record)
            .collect::<Result<Vec<Workflow>, _>>()?;
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    async fn update_workflow(&self, w: &Workflow) -> Result<(), StoreError> {
        self.put_or_conflict(Self::workflow_item(w)?, "attribute_exists(pk)")
            .await
    }

    async fn delete_workflow(&self, connection_id: &str, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(conn_pk(connection_id)))
            .key("sk", s(format!("WF#{id}")))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}

#[async_trait]
impl RunStore for DynamoStore {
    async fn create_run(&self, run: &Run) -> Result<bool, StoreError> {
        self.conditional_put(Self::run_item(run)?, "attribute_not_exists(pk)", None)
            .await
    }

    async fn get_run(
        &self,
        connection_id: &str,
        event_id: &str,
        workflow_id: &str,
    ) -> Result<Option<Run>, StoreError> {
        self.get_item(conn_pk(connection_id), run_sk(event_id, workflow_id))
            .await?
            .map(|i| from_record(&i))
            .transpose()
    }

    async fn save_run(&self, run: &Run, expected_version: u64) -> Result<(), StoreError> {
        let written = self
            .conditional_put(
                Self::run_item(run)?,
                "version = :v",
                Some((":v", n(expected_version as i64))),
            )
            .await?;
        if written {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    /// By event: the event's runs (a handful) from the base table. Else
    /// newest first from gsi2, a page of 100 at a time, until the page is
    /// full or [`MAX_RUNS_SCANNED`] runs were looked at.
    async fn list_runs(
        &self,
        connection_id: &str,
        query: &RunQuery,
    ) -> Result<RunPage, StoreError> {
        if let Some(event_id) = &query.event_id {
            let items = self
                .query_prefix(conn_pk(connection_id), format!("RUN#{event_id}#"))
                .await?;
            let mut runs = items
                .iter()
                .map(from_record)
                .collect::<Result<Vec<Run>, _>>()?;
            runs.retain(|r| query.starting_after.as_ref().is_none_or(|c| c.precedes(r)));
            runs.sort_by_key(|r| std::cmp::Reverse(RunCursor::of(r)));
            return Ok(page_runs(runs, query, false));
        }
        let mut scanned: Vec<Run> = Vec::new();
        let mut start: Option<Item> = query.starting_after.as_ref().map(|c| {
            HashMap::from([
                ("pk".into(), s(conn_pk(connection_id))),
                ("sk".into(), s(run_sk(&c.event_id, &c.run_key))),
                ("gsi2pk".into(), s(runs_pk(connection_id))),
                ("gsi2sk".into(), s(run_position(c))),
            ])
        });
        let mut more = true;
        while more && scanned.len() < MAX_RUNS_SCANNED {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI2)
                .key_condition_expression("gsi2pk = :p")
                .expression_attribute_values(":p", s(runs_pk(connection_id)))
                .scan_index_forward(false)
                .limit(100)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in page.items() {
                scanned.push(from_record(item)?);
            }
            start = page.last_evaluated_key().cloned();
            more = start.is_some();
            let wanted = scanned
                .iter()
                .filter(|r| {
                    query.status.is_none_or(|s| r.status == s)
                        && query
                            .workflow_id
                            .as_deref()
                            .is_none_or(|w| r.workflow_id == w)
                })
                .count();
            if wanted > query.limit {
                break;
            }
        }
        Ok(page_runs(scanned, query, more))
    }

    /// A small item per (workflow, object), written only forward in time.
    async fn advance_object(
        &self,
        connection_id: &str,
        workflow_id: &str,
        object_id: &str,
        created: i64,
    ) -> Result<bool, StoreError> {
        let item = HashMap::from([
            ("pk".into(), s(conn_pk(connection_id))),
            ("sk".into(), s(format!("OBJ#{workflow_id}#{object_id}"))),
            ("created".into(), n(created)),
            // Kept as long as the runs that read it.
            (
                "expires_at".into(),
                n(created + crate::service::ingest::EVENT_RETENTION_SECS),
            ),
        ]);
        self.conditional_put(
            item,
            "attribute_not_exists(pk) OR created <= :created",
            Some((":created", n(created))),
        )
        .await
    }

    async fn due_runs(&self, from: i64, until: i64, limit: usize) -> Result<Vec<Run>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("gsi1pk = :p AND gsi1sk BETWEEN :f AND :t")
            .expression_attribute_values(":p", s(DUE_INDEX_PK))
            .expression_attribute_values(":f", s(sort_time(from, "")))
            // Every key due at `until` sorts before "{until}#~" ('~' follows id characters).
            .expression_attribute_values(":t", s(format!("{}~", sort_time(until, ""))))
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .send()
            .await
            .map_err(sdk_error)?;
        page.items().iter().map(from_record).collect()
    }
}

fn gate_pk(key: &str) -> String {
    format!("GATE#{key}")
}

/// Gates: small items under `GATE#{key}`, each with a TTL, so none outlives
/// its use. A rate window is one counter item per second (one atomic `ADD`
/// per Stripe call, no read); a target slot is a lease item; a breaker and
/// a mark are one versioned item each.
#[async_trait]
impl GateStore for DynamoStore {
    async fn count_in_window(&self, key: &str, window: i64) -> Result<u32, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(gate_pk(key)))
            .key("sk", s(format!("W#{window}")))
            .update_expression("ADD uses :one SET expires_at = :ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", n(window + 3600))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk_error)?;
        out.attributes()
            .and_then(|a| get_n(a, "uses"))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| StoreError::Corrupt("a rate window without its count".into()))
    }

    async fn take_slot(
        &self,
        key: &str,
        slots: u32,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<u32>, StoreError> {
        // From a random slot, so takers do not all contend for slot 0.
        let start = rand::random::<u32>() % slots.max(1);
        for i in 0..slots {
            let slot = (start + i) % slots;
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(gate_pk(key)))
                .key("sk", s(format!("SLOT#{slot}")))
                .update_expression(
                    "SET slot_owner = :owner, slot_until = :until, expires_at = :ttl",
                )
                .condition_expression(
                    "attribute_not_exists(slot_until) OR slot_until < :now OR slot_owner = :owner",
                )
                .expression_attribute_values(":owner", s(owner))
                .expression_attribute_values(":until", n(until))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":ttl", n(until + 3600))
                .send()
                .await;
            if updated(result)? {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    async fn release_slot(&self, key: &str, slot: u32, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(gate_pk(key)))
            .key("sk", s(format!("SLOT#{slot}")))
            .condition_expression("slot_owner = :owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Taken over after its lease ran out: nothing to give back.
            Err(e)
                if e.as_service_error().is_some_and(
                    aws_sdk_dynamodb::operation::delete_item::DeleteItemError::is_conditional_check_failed_exception,
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn get_breaker(&self, key: &str) -> Result<Option<Breaker>, StoreError> {
        self.get_item(gate_pk(key), "BREAKER".into())
            .await?
            .map(|i| from_record(&i))
            .transpose()
    }

    async fn save_breaker(&self, key: &str, breaker: &Breaker) -> Result<(), StoreError> {
        let item = HashMap::from([
            ("pk".into(), s(gate_pk(key))),
            ("sk".into(), s("BREAKER")),
            ("version".into(), version(breaker.version)),
            ("record".into(), record(breaker)?),
            (
                "expires_at".into(),
                n(crate::ports::Clock::now(&crate::ports::SystemClock)
                    + crate::service::ingest::EVENT_RETENTION_SECS),
            ),
        ]);
        let written = if breaker.version <= 1 {
            self.conditional_put(item, "attribute_not_exists(pk)", None)
                .await?
        } else {
            self.conditional_put(
                item,
                "version = :v",
                Some((":v", version(breaker.version - 1))),
            )
            .await?
        };
        if written {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn get_mark(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .get_item(gate_pk("MARK"), name.into())
            .await?
            .and_then(|i| get_n(&i, "mark")))
    }

    async fn set_mark(
        &self,
        name: &str,
        expected: Option<i64>,
        value: i64,
    ) -> Result<bool, StoreError> {
        let item = HashMap::from([
            ("pk".into(), s(gate_pk("MARK"))),
            ("sk".into(), s(name)),
            ("mark".into(), n(value)),
        ]);
        match expected {
            None => {
                self.conditional_put(item, "attribute_not_exists(pk)", None)
                    .await
            }
            Some(old) => {
                self.conditional_put(item, "mark = :old", Some((":old", n(old))))
                    .await
            }
        }
    }
}

/// The table definition shared by tests and local set-up (infra/table.json).
pub const TABLE_DEFINITION: &str = include_str!("../../../../infra/table.json");

/// Creates a table from infra/table.json and switches on its TTL. For tests
/// and local set-up; in AWS the table comes from template.yaml.
pub async fn create_table(client: &Client, name: &str) -> Result<(), StoreError> {
    let def: Value =
        serde_json::from_str(TABLE_DEFINITION).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let key = |k: &Value| {
        KeySchemaElement::builder()
            .attribute_name(k["AttributeName"].as_str().unwrap_or_default())
            .key_type(KeyType::from(k["KeyType"].as_str().unwrap_or_default()))
            .build()
    };
    let bad = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt(e.to_string());
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for a in def["AttributeDefinitions"].as_array().into_iter().flatten() {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a["AttributeName"].as_str().unwrap_or_default())
                .attribute_type(ScalarAttributeType::from(
                    a["AttributeType"].as_str().unwrap_or_default(),
                ))
                .build()
                .map_err(bad)?,
        );
    }
    for k in def["KeySchema"].as_array().into_iter().flatten() {
        req = req.key_schema(key(k).map_err(bad)?);
    }
    for g in def["GlobalSecondaryIndexes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let mut gsi = GlobalSecondaryIndex::builder()
            .index_name(g["IndexName"].as_str().unwrap_or_default())
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            );
        for k in g["KeySchema"].as_array().into_iter().flatten() {
            gsi = gsi.key_schema(key(k).map_err(bad)?);
        }
        req = req.global_secondary_indexes(gsi.build().map_err(bad)?);
    }
    req = req.stream_specification(
        StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::NewImage)
            .build()
            .map_err(bad)?,
    );
    req.send().await.map_err(sdk_error)?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(def["TimeToLiveAttribute"].as_str().unwrap_or("expires_at"))
                .build()
                .map_err(bad)?,
        )
        .send()
        .await
        .map_err(sdk_error)?;
    Ok(())
}

/// An item's size as DynamoDB bills it: attribute names plus values
/// (strings and binaries by length, numbers ~1 byte per two digits plus
/// one, booleans one byte). One write unit covers 1 KB.
pub fn item_size(item: &Item) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value(v)).sum::<usize>(),
            AttributeValue::M(m) => {
                3 + m.iter().map(|(k, v)| 1 + k.len() + value(v)).sum::<usize>()
            }
            AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
            AttributeValue::Ns(s) => s.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
            AttributeValue::Bs(s) => s.iter().map(|b| b.as_ref().len()).sum(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: Option<String>) -> StoredEvent {
        StoredEvent {
            connection_id: "conn_0123456789abcdefghijklmn".into(),
            event_id: "evt_1PfixtureInvoiceCreated0000".into(),
            event_type: "invoice.created".into(),
            created: 1_795_000_000,
            livemode: false,
            api_version: Some("2023-08-16".into()),
            account: None,
            body,
            body_omitted: false,
            received_at: 1_795_000_001,
            expires_at: 1_797_592_001,
            recovered: false,
        }
    }

    /// Stripe's sample invoice.created event, as Stripe sends it (pretty-printed).
    fn sample_body() -> String {
        serde_json::to_string_pretty(&crate::catalog::sample_event("invoice.created")).unwrap()
    }

    #[test]
    fn bodies_are_stored_deflated_and_read_back_whole() {
        let body = sample_body();
        let item = DynamoStore::event_item(&event(Some(body.clone())));
        assert!(!item.contains_key("body"));
        let Some(AttributeValue::B(z)) = item.get("body_z") else {
            panic!("body_z is binary")
        };
        assert!(
            z.as_ref().len() * 3 < body.len(),
            "{} of {}",
            z.as_ref().len(),
            body.len()
        );
        assert_eq!(DynamoStore::event_from(&item).unwrap(), event(Some(body)));
    }

    #[test]
    fn a_typical_invoice_event_item_costs_two_write_units_not_five() {
        let body = sample_body();
        assert!(
            body.len() > 4096,
            "the sample is a full invoice: {}",
            body.len()
        );
        let item = DynamoStore::event_item(&event(Some(body.clone())));
        let size = item_size(&item);
        let mut as_text = item.clone();
        as_text.remove("body_z");
        as_text.insert("body".into(), s(&body));
        assert!(size <= 2048, "{size} bytes");
        assert!(item_size(&as_text) > 4096, "{}", item_size(&as_text));
    }

    #[test]
    fn items_stored_with_a_text_body_still_read() {
        let mut item = DynamoStore::event_item(&event(None));
        item.insert("body".into(), s("{\"id\":\"evt_x\"}"));
        assert_eq!(
            DynamoStore::event_from(&item).unwrap().body.as_deref(),
            Some("{\"id\":\"evt_x\"}")
        );
    }

    #[test]
    fn a_damaged_body_is_reported_corrupt() {
        let mut item = DynamoStore::event_item(&event(None));
        item.insert(
            "body_z".into(),
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0xff; 16])),
        );
        assert!(matches!(
            DynamoStore::event_from(&item),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn item_size_counts_names_and_values() {
        let item: Item = HashMap::from([
            ("pk".to_string(), s("CONN#a")),
            ("n".to_string(), n(12345)),
            ("b".to_string(), AttributeValue::Bool(true)),
        ]);
        assert_eq!(item_size(&item), 2 + 6 + 1 + 4 + 1 + 1);
    }
}
