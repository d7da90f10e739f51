//! A fake of the part of Stripe the reconciler and the endpoint upgrade
//! use, with state: webhook endpoints (16 at most, idempotent creation,
//! secrets shown once, disabled/deleted by the test) and an event log that
//! `GET /v1/events` filters as Stripe documents it (`types[]`,
//! `created[gte|lt]`, `delivery_success=false`, newest first,
//! `starting_after`). It "delivers" an event by signing it with each
//! matching endpoint's secret; the test posts it to the connector, or not
//! (an outage), which is what `delivery_success` then reports.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const MAX_ENDPOINTS: usize = 16;

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub enabled_events: Vec<String>,
    pub api_version: String,
    pub disabled: bool,
    pub secret: String,
    pub metadata: BTreeMap<String, String>,
}

impl Endpoint {
    fn to_json(&self, with_secret: bool) -> Value {
        let mut v = json!({
            "id": self.id, "object": "webhook_endpoint", "url": self.url,
            "enabled_events": self.enabled_events, "api_version": self.api_version,
            "status": if self.disabled { "disabled" } else { "enabled" },
            "metadata": self.metadata,
        });
        if with_secret {
            v["secret"] = json!(self.secret);
        }
        v
    }
}

#[derive(Default)]
pub struct State {
    pub endpoints: BTreeMap<String, Endpoint>,
    /// Every event, in the order made.
    pub events: Vec<Value>,
    /// Events some endpoint has not taken yet (`delivery_success=false`).
    pub undelivered: BTreeSet<String>,
    idempotent: BTreeMap<String, Value>,
    next: u32,
    /// DELETEs of endpoints answered 500 (an interruption), counted down.
    pub fail_deletes: u32,
    /// Every request: method, path and query.
    pub requests: Vec<(String, String, String)>,
}

#[derive(Clone)]
pub struct FakeStripe {
    pub server: Arc<MockServer>,
    pub state: Arc<Mutex<State>>,
}

struct Responder(Arc<Mutex<State>>);

fn error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"error": {"type": "invalid_request_error", "message": message}}))
}

/// `a[0]=x&a[1]=y&b[c]=z` and `a[]=x` pairs, as Stripe reads them.
fn pairs(text: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn list_of(pairs: &[(String, String)], name: &str) -> Option<Vec<String>> {
    let prefix = format!("{name}[");
    let items: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v.clone())
        .collect();
    (!items.is_empty()).then_some(items)
}

fn one<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        let path = req.url.path().to_string();
        let query = req.url.query().unwrap_or("").to_string();
        let method = req.method.to_string();
        s.requests
            .push((method.clone(), path.clone(), query.clone()));
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let form = pairs(&body);
        let q = pairs(&query);
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method.as_str(), segments.as_slice()) {
            ("GET", ["v1", "account"]) => ResponseTemplate::new(200)
                .set_body_json(json!({"id": "acct_fake", "object": "account"})),
            ("POST", ["v1", "webhook_endpoints"]) => {
                let key = req
                    .headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if let Some(k) = &key
                    && let Some(seen) = s.idempotent.get(k)
                {
                    return ResponseTemplate::new(200).set_body_json(seen.clone());
                }
                // A version Stripe does not have (the fake knows none
                // after 2030).
                if one(&form, "api_version").is_some_and(|v| v > "2030") {
                    return error(400, "Invalid api_version");
                }
                if s.endpoints.len() >= MAX_ENDPOINTS {
                    return error(
                        400,
                        "You have reached the maximum of 16 test webhook endpoints.",
                    );
                }
                s.next += 1;
                let n = s.next;
                let endpoint = Endpoint {
                    id: format!("we_fake{n:04}"),
                    url: one(&form, "url").unwrap_or_default().to_string(),
                    enabled_events: list_of(&form, "enabled_events").unwrap_or_default(),
                    api_version: one(&form, "api_version")
                        .unwrap_or("2023-08-16")
                        .to_string(),
                    disabled: false,
                    secret: format!("whsec_fakesecret{n:04}"),
                    metadata: form
                        .iter()
                        .filter_map(|(k, v)| {
                            k.strip_prefix("metadata[")
                                .and_then(|k| k.strip_suffix(']'))
                                .map(|k| (k.to_string(), v.clone()))
                        })
                        .collect(),
                };
                let answer = endpoint.to_json(true);
                s.endpoints.insert(endpoint.id.clone(), endpoint);
                if let Some(k) = key {
                    s.idempotent.insert(k, answer.clone());
                }
                ResponseTemplate::new(200).set_body_json(answer)
            }
            ("GET", ["v1", "webhook_endpoints"]) => {
                let data: Vec<Value> = s.endpoints.values().map(|e| e.to_json(false)).collect();
                ResponseTemplate::new(200)
                    .set_body_json(json!({"object": "list", "data": data, "has_more": false}))
            }
            ("GET", ["v1", "webhook_endpoints", id]) => match s.endpoints.get(*id) {
                Some(e) => ResponseTemplate::new(200).set_body_json(e.to_json(false)),
                None => error(404, "No such webhook endpoint"),
            },
            ("POST", ["v1", "webhook_endpoints", id]) => {
                let Some(e) = s.endpoints.get_mut(*id) else {
                    return error(404, "No such webhook endpoint");
                };
                if let Some(events) = list_of(&form, "enabled_events") {
                    e.enabled_events = events;
                }
                if let Some(url) = one(&form, "url") {
                    e.url = url.to_string();
                }
                if let Some(d) = one(&form, "disabled") {
                    e.disabled = d == "true";
                }
                ResponseTemplate::new(200).set_body_json(e.to_json(false))
            }
            ("DELETE", ["v1", "webhook_endpoints", id]) => {
                if s.fail_deletes > 0 {
                    s.fail_deletes -= 1;
                    return error(500, "An unknown error occurred");
                }
                match s.endpoints.remove(*id) {
                    Some(_) => ResponseTemplate::new(200).set_body_json(
                        json!({"id": id, "object": "webhook_endpoint", "deleted": true}),
                    ),
                    None => error(404, "No such webhook endpoint"),
                }
            }
            ("GET", ["v1", "events"]) => {
                let types = list_of(&q, "types");
                if types.as_ref().is_some_and(|t| t.len() > 20) {
                    return error(400, "types may hold at most 20 event types");
                }
                let gte = one(&q, "created[gte]").and_then(|v| v.parse::<i64>().ok());
                let lt = one(&q, "created[lt]").and_then(|v| v.parse::<i64>().ok());
                let failed_only = one(&q, "delivery_success") == Some("false");
                let limit: usize = one(&q, "limit").and_then(|v| v.parse().ok()).unwrap_or(10);
                let mut all: Vec<&Value> = s
                    .events
                    .iter()
                    .filter(|e| {
                        let t = e["type"].as_str().unwrap_or("");
                        let c = e["created"].as_i64().unwrap_or(0);
                        types.as_ref().is_none_or(|ts| ts.iter().any(|x| x == t))
                            && gte.is_none_or(|g| c >= g)
                            && lt.is_none_or(|l| c < l)
                            && (!failed_only
                                || s.undelivered.contains(e["id"].as_str().unwrap_or("")))
                    })
                    .collect();
                // Newest first.
                all.sort_by(|a, b| {
                    (b["created"].as_i64(), b["id"].as_str())
                        .cmp(&(a["created"].as_i64(), a["id"].as_str()))
                });
                let start = match one(&q, "starting_after") {
                    Some(after) => match all.iter().position(|e| e["id"] == after) {
                        Some(i) => i + 1,
                        None => return error(400, "No such event"),
                    },
                    None => 0,
                };
                let page: Vec<Value> = all
                    .iter()
                    .skip(start)
                    .take(limit)
                    .map(|e| (*e).clone())
                    .collect();
                let has_more = start + page.len() < all.len();
                ResponseTemplate::new(200)
                    .set_body_json(json!({"object": "list", "data": page, "has_more": has_more, "url": "/v1/events"}))
            }
            _ => error(404, &format!("the fake has no {method} {path}")),
        }
    }
}

impl FakeStripe {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(wiremock::matchers::any())
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        Self {
            server: Arc::new(server),
            state,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// A new event in Stripe's log (not delivered yet).
    pub fn event(&self, id: &str, event_type: &str, created: i64, object_id: &str) -> Value {
        let event = json!({
            "id": id, "object": "event", "type": event_type, "created": created,
            "livemode": false, "api_version": "2023-08-16", "pending_webhooks": 1,
            "data": {"object": {"id": object_id, "object": event_type.split('.').next().unwrap()}},
        });
        let mut s = self.state.lock().unwrap();
        s.events.push(event.clone());
        s.undelivered.insert(id.to_string());
        event
    }

    /// What each enabled endpoint subscribed to `event` would send: the
    /// body (at the endpoint's API version) and its `Stripe-Signature`.
    pub fn deliveries(&self, event: &Value, now: i64) -> Vec<(String, String)> {
        let s = self.state.lock().unwrap();
        let t = event["type"].as_str().unwrap_or("");
        s.endpoints
            .values()
            .filter(|e| !e.disabled && e.enabled_events.iter().any(|x| x == t || x == "*"))
            .map(|e| {
                let mut body = event.clone();
                body["api_version"] = json!(e.api_version);
                let body = body.to_string();
                let sig = connector_core::webhook::sign_header(body.as_bytes(), &e.secret, now);
                (body, sig)
            })
            .collect()
    }

    /// The event was taken by every endpoint (its deliveries answered 2xx).
    pub fn delivered(&self, id: &str) {
        self.state.lock().unwrap().undelivered.remove(id);
    }

    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.state
            .lock()
            .unwrap()
            .endpoints
            .values()
            .cloned()
            .collect()
    }

    /// Changes an endpoint as someone in the Dashboard (or Stripe) would.
    pub fn edit_endpoint(&self, id: &str, change: impl FnOnce(&mut Endpoint)) {
        let mut s = self.state.lock().unwrap();
        change(s.endpoints.get_mut(id).expect("no such endpoint"));
    }

    pub fn endpoint(&self, id: &str) -> Option<Endpoint> {
        self.state.lock().unwrap().endpoints.get(id).cloned()
    }

    pub fn requests(&self, method: &str, path: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(m, p, _)| m == method && p == path)
            .map(|(_, _, q)| q.clone())
            .collect()
    }
}
