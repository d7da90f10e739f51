"""Writes the API Gateway HTTP API (v2) fixtures in events/ used by the
handler tests and by `cargo lambda invoke --data-file`. Signatures are made
at a fixed time with the fixture connection's secret, so the files are
reproducible:  python3 infra/gen_fixtures.py"""
import base64
import hashlib
import hmac
import json
import os
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "events")
CONN = "conn_fixture000000000000000001"
SECRET = "whsec_fixturesecret0000000000000000"
T = 1795000000  # 2026-11-17T09:46:40Z; the tests' clock stands 10 s later
HOST = "abc123defg.execute-api.us-east-1.amazonaws.com"


def sign(body: bytes, t: int = T, secret: str = SECRET) -> str:
    mac = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(evt_id="evt_1PfixtureInvoiceCreated", livemode=False, etype="invoice.created"):
    return json.dumps(
        {
            "id": evt_id,
            "object": "event",
            "api_version": "2023-08-16",
            "created": T - 5,
            "data": {"object": {"id": "in_1PfixtureInvoice", "object": "invoice", "status": "draft",
                                "customer": "cus_Pfixture", "amount_due": 2000, "currency": "usd"}},
            "livemode": livemode,
            "pending_webhooks": 1,
            "request": {"id": "req_fixture", "idempotency_key": None},
            "type": etype,
        },
        indent=2,
    ).encode()


def api_event(method, path, body=b"", headers=None, route=None, path_params=None, query=""):
    h = {"host": HOST, "content-type": "application/json", "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
    h.update(headers or {})
    return {
        "version": "2.0",
        "routeKey": route or f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": h,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123defg",
            "domainName": HOST,
            "domainPrefix": "abc123defg",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "3.18.12.63",
                     "userAgent": h["user-agent"]},
            "requestId": "Ab1CdEfGhIjKlMnO=",
            "routeKey": route or f"{method} {path}",
            "stage": "$default",
            "time": "17/Nov/2026:09:46:50 +0000",
            "timeEpoch": (T + 10) * 1000,
        },
        "pathParameters": path_params or {},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def webhook(name, body, signature, conn=CONN):
    path = f"/webhooks/{conn}"
    headers = {} if signature is None else {"stripe-signature": signature}
    doc = api_event("POST", path, body, headers, "POST /webhooks/{connection_id}", {"connection_id": conn})
    with open(os.path.join(ROOT, name), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


os.makedirs(ROOT, exist_ok=True)
valid = event()
webhook("valid_event.json", valid, sign(valid))
webhook("duplicate_event.json", valid, sign(valid))  # byte-identical redelivery
webhook("invalid_signature.json", valid, sign(valid, secret="whsec_someoneelse"))
webhook("missing_signature.json", valid, None)
webhook("expired_timestamp.json", valid, sign(valid, t=T - 3600))
webhook("unknown_connection.json", valid, sign(valid), conn="conn_nobodyhome00000000000000")
live = event(evt_id="evt_1PfixtureLiveEvent", livemode=True)
webhook("livemode_mismatch.json", live, sign(live))
bad = b'{"id": "evt_1Pfixture", "type": "invoice.created", '
webhook("malformed_json.json", bad, sign(bad))
big = b'{"id":"evt_1PfixtureHuge","object":"event","type":"invoice.created","created":1,"livemode":false,"pad":"' + b" " * (1024 * 1024) + b'"}'
webhook("oversized_body.json", big, sign(big))

for name, doc in {
    "health.json": api_event("GET", "/health", route="GET /health"),
    "get_unknown_connection.json": api_event("GET", "/connections/conn_nobodyhome00000000000000",
                                             route="GET /connections/{id}", path_params={"id": "conn_nobodyhome00000000000000"}),
    "create_connection_bad_key.json": api_event("POST", "/connections",
                                                json.dumps({"name": "Acme", "api_key": "pk_test_publishable"}).encode(),
                                                route="POST /connections"),
}.items():
    with open(os.path.join(ROOT, name), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

# One POST /connections/{id}/actions/{group}/{operation} event per action group.
ACTION_FIXTURES = {
    "customers": ("create", {"email": "jenny@example.com", "name": "Jenny Rosen", "metadata": {"crm_id": "42"}}),
    "products": ("search", {"active": True, "metadata": {"tier": "pro"}, "limit": 5}),
    "prices": ("create", {"product": "prod_123", "currency": "usd", "unit_amount": 1500, "recurring": {"interval": "month"}}),
    "subscriptions": ("cancel", {"id": "sub_123", "at_period_end": True}),
    "invoices": ("finalize", {"id": "in_123", "auto_advance": False}),
    "coupons": ("create", {"id": "SUMMER25", "percent_off": 25, "duration": "once"}),
    "payments": ("update", {"id": "pi_123", "metadata": {"order": "8"}}),
    "events": ("account", {}),
}
for group, (operation, body) in ACTION_FIXTURES.items():
    path = f"/connections/{CONN}/actions/{group}/{operation}"
    doc = api_event("POST", path, json.dumps(body).encode(), {"idempotency-key": f"fixture-{group}-{operation}"},
                    f"POST /connections/{{id}}/actions/{group}/{{operation}}", {"id": CONN, "operation": operation})
    with open(os.path.join(ROOT, f"action_{group}_{operation}.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


# DynamoDB Stream batches for trigger-fanout, and the schedule event for retry-scheduler.
def ddb(value):
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    return {"S": value}


def stream_record(seq, name, image):
    return {
        "eventID": f"e{seq}", "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": T, "Keys": {"pk": image["pk"], "sk": image["sk"]},
            "NewImage": image, "SequenceNumber": str(seq), "SizeBytes": 512, "StreamViewType": "NEW_IMAGE",
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/connector/stream/2026-11-17T00:00:00.000",
    }


body = event().decode()
event_image = {k: ddb(v) for k, v in {
    "pk": f"CONN#{CONN}", "sk": "EVT#evt_1PfixtureInvoiceCreated", "gsi1pk": f"EVTS#{CONN}",
    "gsi1sk": f"{T - 5:012d}#evt_1PfixtureInvoiceCreated", "kind": "event", "connection_id": CONN,
    "event_id": "evt_1PfixtureInvoiceCreated", "event_type": "invoice.created", "created": T - 5, "livemode": False,
    "api_version": "2023-08-16", "body": body, "body_omitted": False, "received_at": T, "expires_at": T + 30 * 86400,
}.items()}
# As webhook-ingest writes it now: the body deflated into a binary attribute.
deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
compressed_image = {k: v for k, v in event_image.items() if k != "body"}
compressed_image["body_z"] = {"B": base64.b64encode(deflate.compress(body.encode()) + deflate.flush()).decode()}
run_image = {k: ddb(v) for k, v in {
    "pk": f"CONN#{CONN}", "sk": "RUN#evt_1PfixtureInvoiceCreated#wf_fixture", "kind": "run", "version": 1, "record": "{}",
}.items()}
batches = {
    "stream_new_event.json": [stream_record(100, "INSERT", compressed_image)],
    # Items stored before bodies were compressed (`body` as text) still fan out.
    "stream_mixed_batch.json": [stream_record(101, "INSERT", run_image), stream_record(102, "MODIFY", event_image),
                                stream_record(103, "INSERT", event_image)],
}
for name, records in batches.items():
    with open(os.path.join(ROOT, name), "w") as f:
        json.dump({"Records": records}, f, indent=2)
        f.write("\n")
with open(os.path.join(ROOT, "schedule_tick.json"), "w") as f:
    json.dump({"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
               "source": "aws.events", "account": "123456789012", "time": "2026-11-17T09:47:00Z", "region": "us-east-1",
               "resources": ["arn:aws:events:us-east-1:123456789012:rule/connector-retry"], "detail": {}}, f, indent=2)
    f.write("\n")
