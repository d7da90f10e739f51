//! Records every AWS call a client makes: the IAM action it needs, the
//! resource it touches and, for writes, the size of the item written. The
//! least-privilege test compares the actions with template.yaml; the cost
//! model counts write units from the sizes.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::operation::{
    delete_item::DeleteItemInput, get_item::GetItemInput, put_item::PutItemInput,
    query::QueryInput, update_item::UpdateItemInput,
};
use aws_sdk_secretsmanager::operation::{
    create_secret::CreateSecretInput, delete_secret::DeleteSecretInput,
    get_secret_value::GetSecretValueInput, put_secret_value::PutSecretValueInput,
};
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchInput;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_types::config_bag::ConfigBag;

/// One AWS call.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    /// The IAM action, e.g. `dynamodb:PutItem`.
    pub action: String,
    /// The table, `table/index/gsi1`, or the secret's name.
    pub resource: String,
    /// For `PutItem`: the item's billed size in bytes.
    pub item_bytes: Option<usize>,
    /// For `PutItem`: the item's key (`pk`/`sk`) and whether the item is in
    /// the `gsi1` index (a write to the index costs its own write units).
    pub item_key: Option<String>,
    pub indexed: bool,
    /// For `PutItem`: how many other indexes hold a copy (runs are in
    /// `gsi2`, which lists them newest first).
    pub other_indexes: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    /// The IAM service prefix of the client this copy is attached to.
    service: &'static str,
}

impl Recorder {
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().expect("recorder"))
    }

    /// An SQS client from `sdk` that records here.
    pub fn sqs_client(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
        let conf = aws_sdk_sqs::config::Builder::from(sdk)
            .interceptor(Self {
                service: "sqs",
                ..self.clone()
            })
            .build();
        aws_sdk_sqs::Client::from_conf(conf)
    }

    /// DynamoDB and Secrets Manager clients from `sdk` that record here.
    pub fn clients(
        &self,
        sdk: &aws_config::SdkConfig,
    ) -> (aws_sdk_dynamodb::Client, aws_sdk_secretsmanager::Client) {
        let dynamo = aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(Self {
                service: "dynamodb",
                ..self.clone()
            })
            .build();
        let secrets = aws_sdk_secretsmanager::config::Builder::from(sdk)
            .interceptor(Self {
                service: "secretsmanager",
                ..self.clone()
            })
            .build();
        (
            aws_sdk_dynamodb::Client::from_conf(dynamo),
            aws_sdk_secretsmanager::Client::from_conf(secrets),
        )
    }
}

fn table_of(table: Option<&str>, index: Option<&str>) -> String {
    match index {
        Some(index) => format!("{}/index/{index}", table.unwrap_or("?")),
        None => table.unwrap_or("?").to_string(),
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "CallRecorder"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        // The operation: from the SDK's metadata when the config bag has it,
        // else from the input's type name (`PutItemInput { .. }`).
        // The operation from the input's type name (`PutItemInput { .. }`);
        // the SDK's own metadata is not in the config bag this early. Only
        // the name is kept (sensitive fields print redacted anyway).
        let debug = format!("{input:?}");
        let mut operation = debug
            .split(|c: char| !c.is_ascii_alphanumeric())
            .find(|w| w.len() > "Input".len() && w.ends_with("Input"))
            .unwrap_or("UnknownInput")
            .trim_end_matches("Input")
            .to_string();
        let (mut item_bytes, mut item_key, mut indexed, mut other_indexes) = (None, None, false, 0);
        let resource = if let Some(i) = input.downcast_ref::<GetItemInput>() {
            table_of(i.table_name(), None)
        } else if let Some(i) = input.downcast_ref::<PutItemInput>() {
            item_bytes = i.item().map(connector_core::adapters::dynamo::item_size);
            if let Some(item) = i.item() {
                let key = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                item_key = Some(format!(
                    "{}/{}",
                    key("pk").unwrap_or_default(),
                    key("sk").unwrap_or_default()
                ));
                indexed = item.contains_key("gsi1pk");
                other_indexes = usize::from(item.contains_key("gsi2pk"));
            }
            table_of(i.table_name(), None)
        } else if let Some(i) = input.downcast_ref::<DeleteItemInput>() {
            table_of(i.table_name(), None)
        } else if let Some(i) = input.downcast_ref::<UpdateItemInput>() {
            table_of(i.table_name(), None)
        } else if let Some(i) = input.downcast_ref::<QueryInput>() {
            table_of(i.table_name(), i.index_name())
        } else if let Some(i) = input.downcast_ref::<GetSecretValueInput>() {
            i.secret_id().unwrap_or("?").to_string()
        } else if let Some(i) = input.downcast_ref::<PutSecretValueInput>() {
            i.secret_id().unwrap_or("?").to_string()
        } else if let Some(i) = input.downcast_ref::<CreateSecretInput>() {
            i.name().unwrap_or("?").to_string()
        } else if let Some(i) = input.downcast_ref::<DeleteSecretInput>() {
            i.secret_id().unwrap_or("?").to_string()
        } else if let Some(i) = input.downcast_ref::<SendMessageBatchInput>() {
            // IAM authorizes SendMessageBatch as sqs:SendMessage.
            operation = "SendMessage".into();
            i.queue_url().unwrap_or("?").to_string()
        } else {
            "?".to_string()
        };
        self.calls.lock().expect("recorder").push(Call {
            action: format!("{}:{operation}", self.service),
            resource,
            item_bytes,
            item_key,
            indexed,
            other_indexes,
        });
        Ok(())
    }
}
