"""Writes functions/core/tests/data/stripe_spec_subset.json: the part of
Stripe's OpenAPI spec (stripe/openapi tag v524, API version 2023-08-16, MIT
licence; ../shared/stripe/spec3.json) that the connector's tests check against:
the operations it calls, their parameter names (one level of nesting), and the
`enabled_events` enum of webhook endpoints.

    python3 infra/trim_spec.py ../shared/stripe/spec3.json > functions/core/tests/data/stripe_spec_subset.json
"""
import json
import sys

OPERATIONS = """
post /v1/customers
post /v1/customers/{customer}
get /v1/customers/{customer}
get /v1/customers
delete /v1/customers/{customer}
post /v1/products
post /v1/products/{id}
get /v1/products/{id}
get /v1/products/search
delete /v1/products/{id}
post /v1/prices
post /v1/prices/{price}
get /v1/prices/{price}
get /v1/prices/search
post /v1/subscriptions
post /v1/subscriptions/{subscription_exposed_id}
get /v1/subscriptions/{subscription_exposed_id}
get /v1/subscription_items/{item}
delete /v1/subscriptions/{subscription_exposed_id}
get /v1/subscriptions/search
post /v1/invoices
post /v1/invoices/{invoice}
get /v1/invoices/{invoice}
get /v1/invoices/search
delete /v1/invoices/{invoice}
post /v1/invoices/{invoice}/finalize
post /v1/invoices/{invoice}/pay
post /v1/invoices/{invoice}/mark_uncollectible
post /v1/invoices/{invoice}/void
post /v1/invoices/{invoice}/send
post /v1/coupons
post /v1/coupons/{coupon}
get /v1/coupons/{coupon}
delete /v1/coupons/{coupon}
post /v1/payment_intents
post /v1/payment_intents/{intent}
get /v1/payment_intents/{intent}
post /v1/payment_intents/{intent}/cancel
post /v1/payment_intents/{intent}/capture
post /v1/payment_intents/{intent}/confirm
get /v1/events/{id}
get /v1/account
get /v1/accounts/{account}
post /v1/webhook_endpoints
post /v1/webhook_endpoints/{webhook_endpoint}
delete /v1/webhook_endpoints/{webhook_endpoint}
"""

# The objects find actions answer, and those their expansions reach.
EXPANDABLE_OBJECTS = ["customer", "product", "price", "subscription", "invoice", "payment_intent"]


def nested(schema, spec):
    """Property names one level down (objects, arrays of objects, anyOf)."""
    names = set()
    stack = [schema]
    while stack:
        s = stack.pop()
        if "$ref" in s:
            s = spec["components"]["schemas"][s["$ref"].split("/")[-1]]
        for key in ("anyOf", "oneOf", "allOf"):
            stack.extend(s.get(key, []))
        if s.get("type") == "array" and "items" in s:
            stack.append(s["items"])
        names.update(s.get("properties", {}).keys())
    return sorted(names)


def response(op):
    """What a 200 answers: an object (its `object` value and property
    names), or a list or search page of them."""
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    page = None
    if "properties" in schema and "data" in schema["properties"]:
        page = schema["properties"]["object"]["enum"][0]
        schema = schema["properties"]["data"]["items"]
    ref = (schema.get("anyOf") or [schema])[0]["$ref"].split("/")[-1]
    props = spec["components"]["schemas"][ref]["properties"]
    answer = {"object": props["object"]["enum"][0], "properties": sorted(props)}
    if page:
        answer["page"] = page
    return answer


spec = json.load(open(sys.argv[1]))
out = {"source": "stripe/openapi v524 spec3 (API version %s), trimmed by infra/trim_spec.py" % spec["info"]["version"],
       "operations": {}, "responses": {}}
for line in OPERATIONS.split("\n"):
    if not line.strip():
        continue
    method, path = line.split()
    op = spec["paths"][path][method]
    params = {p["name"]: [] for p in op.get("parameters", []) if p["in"] == "query"}
    body = op.get("requestBody", {}).get("content", {}).get("application/x-www-form-urlencoded", {}).get("schema", {})
    for name, prop in body.get("properties", {}).items():
        params[name] = nested(prop, spec)
    out["operations"][f"{method.upper()} {path}"] = params
    out["responses"][f"{method.upper()} {path}"] = response(op)
events = spec["paths"]["/v1/webhook_endpoints"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]["properties"]["enabled_events"]["items"]["enum"]
out["enabled_events"] = sorted(events)

# What each object's expandable fields hold once expanded: the `object`
# values of their x-expansionResources (for checking `expand` and the
# sample results of find actions).
def object_name(schema_name):
    props = spec["components"]["schemas"][schema_name].get("properties", {})
    return props.get("object", {}).get("enum", [schema_name])[0]

out["expandable"] = {}
for name in EXPANDABLE_OBJECTS:
    fields = {}
    for field, prop in spec["components"]["schemas"][name]["properties"].items():
        refs = []
        for s in [prop] + prop.get("anyOf", []):
            refs += [r["$ref"].split("/")[-1] for r in s.get("x-expansionResources", {}).get("oneOf", [])]
        if refs:
            fields[field] = sorted(object_name(r) for r in refs)
    out["expandable"][object_name(name)] = fields
json.dump(out, sys.stdout, indent=1, sort_keys=True)
sys.stdout.write("\n")
