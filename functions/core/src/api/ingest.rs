//! `POST /webhooks/{connection_id}`: a verified Stripe event, stored once.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::routing::post;

use super::extract::{Path, RawBody};
use super::views::{ErrorBody, Received};
use super::{Reply, ok};
use crate::app::App;
use crate::http::ApiError;
use crate::ids::ConnectionId;
use crate::metrics::Measure;
use crate::service::ingest::{self, VerifiedEvent};

/// Stripe events are far smaller; anything larger is refused unread (413).
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

pub(super) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/webhooks/{connection_id}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY))
}

/// Stripe's delivery of an event: verified against the connection's
/// webhook secrets (`Stripe-Signature`, any `v1`, 300 s tolerance), checked
/// for livemode, stored once. A redelivery is acknowledged as a duplicate.
#[utoipa::path(post, path = "/webhooks/{connection_id}", tag = "webhooks", operation_id = "webhooks_receive",
    params(("connection_id" = String, Path, description = "`conn_…`"),
        ("Stripe-Signature" = String, Header, description = "`t=…,v1=…`")),
    request_body(content = Object, description = "the Stripe event, as Stripe sent it"),
    security(()),
    responses((status = 200, body = Received),
        (status = 400, description = "bad signature, body or livemode", body = ErrorBody),
        (status = 404, description = "unknown connection", body = ErrorBody),
        (status = 413, description = "over 1 MiB", body = ErrorBody)))]
async fn receive(State(app): State<Arc<App>>, verified: Result<Verified, ApiError>) -> Reply {
    let stored = match verified {
        Ok(Verified(event)) => ingest::store(&app, event).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match stored {
        Ok(duplicate) => {
            app.metrics.record(Measure::EventReceived { duplicate });
            Ok(ok(&Received {
                received: true,
                duplicate,
            }))
        }
        Err(e) => {
            app.metrics
                .record(Measure::EventRejected { reason: e.kind });
            Err(e)
        }
    }
}

/// The webhook route's body: a Stripe event whose `Stripe-Signature`
/// matched, for a known connection, in its mode.
pub(super) struct Verified(VerifiedEvent);

impl FromRequest<Arc<App>> for Verified {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let Path(id) =
            <Path<ConnectionId> as axum::extract::FromRequestParts<Arc<App>>>::from_request_parts(
                &mut parts, app,
            )
            .await?;
        let signature = parts.headers.get("stripe-signature").cloned();
        let RawBody(body) = RawBody::from_request(Request::from_parts(parts, body), app).await?;
        Ok(Verified(
            ingest::verify(app, &id, signature.as_ref(), body).await?,
        ))
    }
}
