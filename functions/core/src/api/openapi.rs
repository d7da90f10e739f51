//! The connector's own OpenAPI 3.1 document, generated from the handlers'
//! annotations and the request and answer types they use, served at
//! `GET /openapi.json` and committed as docs/openapi.json (a test keeps the
//! two equal). Action routes are added per group from the catalog, each
//! operation's input schema the catalog's own.

use utoipa::openapi::path::{Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HttpMethod, ObjectBuilder, PathItem, Ref, Required, ResponseBuilder,
    SecurityRequirement, Type,
};
use utoipa::{Modify, OpenApi};

use super::views::{
    ConnectionOut, Deleted, ErrorBody, ErrorDetail, EventOut, Health, ListOf, Received, RunOut,
    StepOut, TargetHealth, TargetOut, WebhookOut, WorkflowOut,
};
use crate::catalog;
use crate::service::connections::{
    NewApiKey, NewConnection, NewWebhookSecret, TriggerSet, WebhookSetting,
};
use crate::service::workflows::{NewWorkflow, StepBody, TargetBody, TestRun, WorkflowPatch};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "stripe-connector",
        description = "Stripe triggers and actions for workflow automation: connections, workflows, events, runs, actions and the Stripe webhook. Every route but /health and the webhook needs authentication: IAM (SigV4) through API Gateway in AWS, a bearer token on the dev server. Errors are {\"error\": {\"type\", \"message\", \"param\"?, \"stripe\"?}}; a path id that is malformed is 404 like an unknown one; a known path with another method is 405.",
        license(name = "Apache-2.0"),
    ),
    paths(
        super::health,
        super::catalog_json,
        super::openapi_json,
        super::connections::create,
        super::connections::list,
        super::connections::read,
        super::connections::delete,
        super::connections::rotate_key,
        super::connections::set_webhook_secret,
        super::connections::set_triggers,
        super::workflows::create,
        super::workflows::list,
        super::workflows::read,
        super::workflows::patch,
        super::workflows::delete,
        super::workflows::test,
        super::events::list,
        super::events::read,
        super::events::replay,
        super::events::sample,
        super::runs::list,
        super::watch::read_health,
        super::watch::reconcile_now,
        super::watch::set_api_version,
        super::watch::set_alerts,
        super::watch::remove_alerts,
        super::ingest::receive,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, Health, ConnectionOut, WebhookOut, Deleted, WorkflowOut,
        TargetOut, TargetHealth, crate::workflow::breaker::BreakerState, StepOut, EventOut, RunOut, Received, NewConnection, WebhookSetting,
        NewApiKey, NewWebhookSecret, TriggerSet, NewWorkflow, StepBody, TargetBody,
        WorkflowPatch, TestRun, ListOf<ConnectionOut>, ListOf<WorkflowOut>,
        ListOf<EventOut>, ListOf<RunOut>, crate::service::samples::Sample, crate::service::samples::SampleSource,
        crate::service::health::ConnectionHealth, crate::service::health::EndpointHealth,
        crate::service::health::LastEvent, crate::service::health::ReconcileHealth,
        crate::service::health::RunCounts, crate::service::reconcile::PassReport,
        crate::service::upgrade::NewApiVersion, crate::service::alerts::AlertSetting,
        super::watch::AlertTargetOut, crate::model::Gap, crate::model::Repair, crate::model::Upgrade,
        crate::model::WebhookMode,
    )),
    modifiers(&Security, &Actions, &StoreErrors),
    security(("sigv4" = []), ("bearer" = [])),
)]
pub struct ApiDoc;

/// The document as served and committed: pretty JSON, stable order.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_string())
}

/// IAM (SigV4) in AWS, a bearer token on the dev server; `/health` (on the
/// dev server) and the webhook route need neither.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let sigv4 = ApiKey::Header(ApiKeyValue::with_description(
            "Authorization",
            "AWS Signature Version 4: API Gateway's IAM authorization (AWS)",
        ));
        components.add_security_scheme("sigv4", SecurityScheme::ApiKey(sigv4));
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "the dev server's token (CONNECTOR_API_TOKEN, or printed at start)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every route that reads or writes the store or the secret store may
/// answer 503 when one of them fails (a retry is safe).
struct StoreErrors;

impl Modify for StoreErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut doc.paths.paths {
            if !(path.starts_with("/connections") || path.starts_with("/webhooks/")) {
                continue;
            }
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.responses.responses.insert(
                    "503".into(),
                    utoipa::openapi::RefOr::T(error_response(
                        "the store or the secret store failed; try again",
                    )),
                );
            }
        }
    }
}

/// `POST /connections/{connection_id}/actions/{group}/{operation}`, one path
/// per group (one Lambda each), its operations an enum and each
/// operation's input schema in the description's place: the catalog's.
struct Actions;

impl Modify for Actions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for group in catalog::GROUPS {
            let operations: Vec<&str> = catalog::ACTIONS
                .iter()
                .filter(|a| a.group == group)
                .map(|a| a.operation)
                .collect();
            let path = format!("/connections/{{connection_id}}/actions/{group}/{{operation}}");
            doc.paths.paths.insert(
                path,
                PathItem::new(HttpMethod::Post, action_operation(group, &operations)),
            );
        }
    }
}

/// An error answer: [`ErrorBody`] as JSON.
fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

fn action_operation(group: &str, operations: &[&str]) -> Operation {
    let error = error_response;
    OperationBuilder::new()
        .tag("actions")
        .operation_id(Some(format!("actions_{group}")))
        .summary(Some(format!("Run a {group} action")))
        .description(Some(format!(
            "Runs one {group} action ({}) with a JSON input, checked against the action's input schema (GET /catalog) before anything is sent to Stripe. An Idempotency-Key header is passed on to Stripe.",
            operations.join(", ")
        )))
        .parameter(
            ParameterBuilder::new()
                .name("connection_id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("`conn_…`"))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        )
        .parameter(
            ParameterBuilder::new()
                .name("operation")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(operations.iter().copied())),
                )),
        )
        .parameter(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some("1 to 255 printable ASCII characters; passed to Stripe"))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        )
        .request_body(Some(
            RequestBodyBuilder::new()
                .description(Some("the action's input (GET /catalog has its JSON Schema)"))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                        .build(),
                )
                .build(),
        ))
        .response(
            "200",
            ResponseBuilder::new()
                .description("the Stripe object (search and find by email: {\"data\", \"has_more\", \"next_page\"?})")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                        .build(),
                )
                .build(),
        )
        .response("400", error("the input is malformed (param names the field)"))
        .response("402", error("Stripe refused a card"))
        .response("404", error("unknown connection, action or Stripe object"))
        .response("409", error("a state or idempotency conflict in Stripe"))
        .response("429", error("Stripe's rate limit, after retries"))
        .response("502", error("Stripe failed or could not be reached"))
        .securities(Some([
            SecurityRequirement::new("sigv4", Vec::<String>::new()),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]))
        .build()
}
