"""Writes functions/core/src/catalog/samples.json: Stripe's own sample object
for each resource the triggers and actions touch, from fixtures3.json
(stripe/openapi tag v524, MIT licence; ../shared/stripe/fixtures3.json):

    python3 infra/gen_samples.py ../shared/stripe/fixtures3.json > functions/core/src/catalog/samples.json
"""
import json
import sys

NAMES = ["account", "coupon", "customer", "event", "invoice", "payment_intent", "price", "product",
         "subscription", "subscription_item"]
resources = json.load(open(sys.argv[1]))["resources"]
json.dump({name: resources[name] for name in NAMES}, sys.stdout, indent=1, sort_keys=True)
sys.stdout.write("\n")
