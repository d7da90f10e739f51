//! The 41 actions as data: each one's input fields (which drive validation,
//! the JSON Schema and the docs) and the Stripe request it maps to.

use super::validate::{MAX_AMOUNT, MAX_TIMESTAMP};
use super::{Action, Field, Kind, Plan, Verb};

const fn f(name: &'static str, kind: Kind, doc: &'static str) -> Field {
    Field {
        name,
        kind,
        required: false,
        doc,
    }
}

const fn req(name: &'static str, kind: Kind, doc: &'static str) -> Field {
    Field {
        name,
        kind,
        required: true,
        doc,
    }
}

const TEXT: Kind = Kind::Text(5000);
const SHORT: Kind = Kind::Text(500);
const CUS: Kind = Kind::Id(&["cus_"]);
const PROD: Kind = Kind::Id(&["prod_"]);
const PRICE: Kind = Kind::Id(&["price_"]);
const SUB: Kind = Kind::Id(&["sub_"]);
const INV: Kind = Kind::Id(&["in_"]);
const PI: Kind = Kind::Id(&["pi_"]);
const PM: Kind = Kind::Id(&["pm_"]);
const LIMIT: Field = f(
    "limit",
    Kind::Int(1, 100),
    "Most results to return (1-100, default 10).",
);
const PAGE: Field = f(
    "page",
    Kind::PageToken,
    "The `next_page` token of a previous search.",
);
const ALL: Field = f(
    "all",
    Kind::Bool,
    "Page through every result for you, up to 1,000 (has_more says if more were left).",
);
const META: Field = f(
    "metadata",
    Kind::Metadata,
    "Key-value pairs; an empty value removes a key.",
);

const ADDRESS: Kind = Kind::Object(&[
    f("line1", SHORT, "Street line 1."),
    f("line2", SHORT, "Street line 2."),
    f("city", SHORT, "City."),
    f("state", SHORT, "State or region."),
    f("postal_code", SHORT, "Postal code."),
    f(
        "country",
        Kind::Text(2),
        "Two-letter country code (ISO 3166-1 alpha-2).",
    ),
]);

const CUSTOMER_FIELDS: [Field; 6] = [
    f("name", Kind::Text(256), "Full name or business name."),
    f("email", Kind::Email, "Email address."),
    f("phone", Kind::Text(20), "Phone number."),
    f("description", TEXT, "Free text shown in the Dashboard."),
    f("address", ADDRESS, "Billing address."),
    META,
];

const COLLECTION: Kind = Kind::Enum(&["charge_automatically", "send_invoice"]);
const AUTOMATIC_PAYMENT_METHODS: Kind = Kind::Object(&[
    req(
        "enabled",
        Kind::Bool,
        "Use the methods enabled in the Dashboard.",
    ),
    f(
        "allow_redirects",
        Kind::Enum(&["always", "never"]),
        "never: only methods that need no redirect (then confirm needs no return_url).",
    ),
]);

const RECURRING: Kind = Kind::Object(&[
    req(
        "interval",
        Kind::Enum(&["day", "week", "month", "year"]),
        "Billing frequency.",
    ),
    f(
        "interval_count",
        Kind::Int(1, 365),
        "Intervals between billings (e.g. 3 months).",
    ),
    f(
        "usage_type",
        Kind::Enum(&["licensed", "metered"]),
        "licensed: billed by quantity (default); metered: by reported usage.",
    ),
    f(
        "aggregate_usage",
        Kind::Enum(&["sum", "last_during_period", "last_ever", "max"]),
        "How metered usage in a period is summed up (metered only).",
    ),
]);
const SUB_ITEM: Kind = Kind::Object(&[
    req("price", PRICE, "The price to subscribe to."),
    f("quantity", Kind::Int(0, 1_000_000_000), "Quantity."),
]);
const SUB_ITEM_UPDATE: Kind = Kind::Object(&[
    f(
        "id",
        Kind::Id(&["si_"]),
        "Subscription item to change; leave out to add a new item.",
    ),
    f("price", PRICE, "New price for the item."),
    f("quantity", Kind::Int(0, 1_000_000_000), "New quantity."),
    f("deleted", Kind::Bool, "Remove this item."),
]);
const TIER: Kind = Kind::Object(&[
    req(
        "up_to",
        Kind::IntOr("inf", 1, MAX_AMOUNT),
        "Last quantity of this tier; \"inf\" for the last tier.",
    ),
    f(
        "unit_amount",
        Kind::Amount,
        "Price per unit in this tier (minor unit).",
    ),
    f(
        "flat_amount",
        Kind::Amount,
        "Flat fee for this tier (minor unit).",
    ),
]);
const CUSTOM_UNIT_AMOUNT: Kind = Kind::Object(&[
    req(
        "enabled",
        Kind::Bool,
        "The customer chooses the amount (true).",
    ),
    f("minimum", Kind::Amount, "Least they may pay (minor unit)."),
    f("maximum", Kind::Amount, "Most they may pay (minor unit)."),
    f("preset", Kind::Amount, "Amount shown first (minor unit)."),
]);
const TRANSFORM_QUANTITY: Kind = Kind::Object(&[
    req(
        "divide_by",
        Kind::Int(1, 1_000_000_000),
        "Bill per this many units (e.g. 1000 for per-thousand).",
    ),
    req(
        "round",
        Kind::Enum(&["up", "down"]),
        "How to round the divided quantity.",
    ),
]);
const CUSTOM_FIELDS: Kind = Kind::List(
    &Kind::Object(&[
        req("name", Kind::Text(30), "Label."),
        req("value", Kind::Text(30), "Value."),
    ]),
    4,
);

/// What a find action may expand: the fields the spec marks as expandable
/// (`x-expansionResources`) on the object it answers, and the most used
/// path two deep. A test checks each against Stripe's spec.
const EXPAND_CUSTOMER: Kind = Kind::Enum(&["default_source", "test_clock"]);
const EXPAND_PRODUCT: Kind = Kind::Enum(&["default_price", "tax_code"]);
const EXPAND_PRICE: Kind = Kind::Enum(&["product"]);
const EXPAND_SUBSCRIPTION: Kind = Kind::Enum(&[
    "application",
    "customer",
    "default_payment_method",
    "default_source",
    "latest_invoice",
    "latest_invoice.payment_intent",
    "on_behalf_of",
    "pending_setup_intent",
    "schedule",
    "test_clock",
]);
const EXPAND_INVOICE: Kind = Kind::Enum(&[
    "application",
    "charge",
    "customer",
    "default_payment_method",
    "default_source",
    "latest_revision",
    "on_behalf_of",
    "payment_intent",
    "quote",
    "subscription",
    "test_clock",
]);
const EXPAND_PAYMENT_INTENT: Kind = Kind::Enum(&[
    "application",
    "customer",
    "invoice",
    "latest_charge",
    "on_behalf_of",
    "payment_method",
    "review",
]);
const fn expand(paths: &'static Kind) -> Field {
    f(
        "expand",
        Kind::List(paths, 20),
        "Related objects to return whole instead of as ids.",
    )
}
const PRORATION: Kind = Kind::Enum(&["always_invoice", "create_prorations", "none"]);
const TAX_BEHAVIOR: Kind = Kind::Enum(&["exclusive", "inclusive", "unspecified"]);

macro_rules! action {
    ($group:literal, $op:literal, $name:literal, $desc:literal, $plan:expr, [$($field:expr),* $(,)?]) => {
        Action {
            key: concat!($group, ".", $op),
            group: $group,
            operation: $op,
            display_name: $name,
            description: $desc,
            plan: $plan,
            fields: &[$($field),*],
        }
    };
}

pub const ACTIONS: &[Action] = &[
    // customers
    action!(
        "customers",
        "create",
        "Create Customer",
        "Creates a customer.",
        Plan::Call(Verb::Post, "/v1/customers"),
        [
            CUSTOMER_FIELDS[0],
            CUSTOMER_FIELDS[1],
            CUSTOMER_FIELDS[2],
            CUSTOMER_FIELDS[3],
            CUSTOMER_FIELDS[4],
            CUSTOMER_FIELDS[5]
        ]
    ),
    action!(
        "customers",
        "update",
        "Update Customer",
        "Updates a customer's details.",
        Plan::Call(Verb::Post, "/v1/customers/{id}"),
        [
            req("id", CUS, "The customer (cus_…)."),
            CUSTOMER_FIELDS[0],
            CUSTOMER_FIELDS[1],
            CUSTOMER_FIELDS[2],
            CUSTOMER_FIELDS[3],
            CUSTOMER_FIELDS[4],
            CUSTOMER_FIELDS[5]
        ]
    ),
    action!(
        "customers",
        "find",
        "Find Customer",
        "Finds a customer by id, or the customers with an email address.",
        Plan::CustomerFind,
        [
            f("id", CUS, "The customer (cus_…); give this or email."),
            f(
                "email",
                Kind::Email,
                "Exact email address; may match several customers."
            ),
            LIMIT,
            ALL,
            expand(&EXPAND_CUSTOMER)
        ]
    ),
    action!(
        "customers",
        "delete",
        "Delete Customer",
        "Deletes a customer and cancels their subscriptions.",
        Plan::Call(Verb::Delete, "/v1/customers/{id}"),
        [req("id", CUS, "The customer (cus_…).")]
    ),
    // products
    action!(
        "products",
        "create",
        "Create Product",
        "Creates a product.",
        Plan::Call(Verb::Post, "/v1/products"),
        [
            req("name", Kind::Text(250), "Product name shown to customers."),
            f("description", TEXT, "Description shown to customers."),
            f(
                "active",
                Kind::Bool,
                "Whether it can be bought (default true)."
            ),
            f("shippable", Kind::Bool, "Whether it is a physical good."),
            f("url", Kind::Url, "Public web page of the product."),
            f(
                "unit_label",
                Kind::Text(12),
                "Unit shown on invoices (e.g. seat)."
            ),
            f(
                "statement_descriptor",
                Kind::Text(22),
                "Text on card statements."
            ),
            META
        ]
    ),
    action!(
        "products",
        "update",
        "Update Product",
        "Updates a product.",
        Plan::Call(Verb::Post, "/v1/products/{id}"),
        [
            req("id", PROD, "The product (prod_…)."),
            f("name", Kind::Text(250), "Product name."),
            f("description", TEXT, "Description."),
            f(
                "active",
                Kind::Bool,
                "Whether it can be bought; false archives it."
            ),
            f("shippable", Kind::Bool, "Whether it is a physical good."),
            f("url", Kind::Url, "Public web page."),
            f("unit_label", Kind::Text(12), "Unit shown on invoices."),
            f(
                "default_price",
                PRICE,
                "The price shown by default (price_…, of this product)."
            ),
            f(
                "statement_descriptor",
                Kind::Text(22),
                "Text on card statements."
            ),
            META
        ]
    ),
    action!(
        "products",
        "find",
        "Find Product",
        "Retrieves a product by id.",
        Plan::Call(Verb::Get, "/v1/products/{id}"),
        [
            req("id", PROD, "The product (prod_…)."),
            expand(&EXPAND_PRODUCT)
        ]
    ),
    action!(
        "products",
        "search",
        "Search Products",
        "Searches products by their fields and metadata.",
        Plan::Search("/v1/products/search"),
        [
            f(
                "active",
                Kind::Bool,
                "Only active (true) or archived (false) products."
            ),
            f("name", Kind::Text(250), "Exact name."),
            f(
                "name_contains",
                Kind::Text(250),
                "A part of the name (at least 3 characters; Stripe's `name~`)."
            ),
            f("description", TEXT, "Exact description."),
            f(
                "metadata",
                Kind::Metadata,
                "Metadata key-value pairs that must all match."
            ),
            f("shippable", Kind::Bool, "Physical goods only, or not."),
            f("url", Kind::Url, "Exact URL."),
            LIMIT,
            PAGE,
            ALL
        ]
    ),
    action!(
        "products",
        "delete",
        "Delete Product",
        "Deletes a product that has no prices; archive it otherwise.",
        Plan::Call(Verb::Delete, "/v1/products/{id}"),
        [req("id", PROD, "The product (prod_…).")]
    ),
    // prices
    action!(
        "prices",
        "create",
        "Create Price",
        "Creates a one-time or recurring price for a product.",
        Plan::Call(Verb::Post, "/v1/prices"),
        [
            req("product", PROD, "The product the price is for (prod_…)."),
            req(
                "currency",
                Kind::Currency,
                "Three-letter lowercase ISO currency code."
            ),
            f(
                "unit_amount",
                Kind::Amount,
                "Amount in the currency's minor unit (cents); needed unless custom_unit_amount or tiers price it."
            ),
            f("recurring", RECURRING, "Makes the price recurring."),
            f(
                "billing_scheme",
                Kind::Enum(&["per_unit", "tiered"]),
                "per_unit (default): unit_amount per unit; tiered: priced by tiers."
            ),
            f(
                "tiers",
                Kind::List(&TIER, 250),
                "With billing_scheme tiered: tiers by ascending up_to, the last one \"inf\"."
            ),
            f(
                "tiers_mode",
                Kind::Enum(&["graduated", "volume"]),
                "With tiers: graduated (each unit at its tier's price) or volume (all units at the reached tier's)."
            ),
            f(
                "custom_unit_amount",
                CUSTOM_UNIT_AMOUNT,
                "The customer chooses what to pay (one-time prices, instead of unit_amount)."
            ),
            f(
                "transform_quantity",
                TRANSFORM_QUANTITY,
                "Divide the quantity before pricing (not with tiers)."
            ),
            f("nickname", Kind::Text(250), "Internal name."),
            f(
                "lookup_key",
                Kind::Text(200),
                "Your own stable key for the price."
            ),
            f(
                "active",
                Kind::Bool,
                "Whether it can be used for new purchases."
            ),
            f(
                "tax_behavior",
                TAX_BEHAVIOR,
                "Whether the amount includes tax."
            ),
            META
        ]
    ),
    action!(
        "prices",
        "update",
        "Update Price",
        "Updates a price's editable fields.",
        Plan::Call(Verb::Post, "/v1/prices/{id}"),
        [
            req("id", PRICE, "The price (price_…)."),
            f(
                "active",
                Kind::Bool,
                "Whether it can be used for new purchases."
            ),
            f("nickname", Kind::Text(250), "Internal name."),
            f("lookup_key", Kind::Text(200), "Your own stable key."),
            f(
                "tax_behavior",
                TAX_BEHAVIOR,
                "Whether the amount includes tax."
            ),
            META
        ]
    ),
    action!(
        "prices",
        "find",
        "Find Price",
        "Retrieves a price by id.",
        Plan::Call(Verb::Get, "/v1/prices/{id}"),
        [
            req("id", PRICE, "The price (price_…)."),
            expand(&EXPAND_PRICE)
        ]
    ),
    action!(
        "prices",
        "search",
        "Search Prices",
        "Searches prices by their fields and metadata.",
        Plan::Search("/v1/prices/search"),
        [
            f("active", Kind::Bool, "Only active or inactive prices."),
            f("currency", Kind::Currency, "Currency code."),
            f("lookup_key", Kind::Text(200), "Exact lookup key."),
            f(
                "metadata",
                Kind::Metadata,
                "Metadata key-value pairs that must all match."
            ),
            f("product", PROD, "Prices of this product."),
            f(
                "type",
                Kind::Enum(&["one_time", "recurring"]),
                "One-time or recurring prices."
            ),
            LIMIT,
            PAGE,
            ALL
        ]
    ),
    action!(
        "prices",
        "archive",
        "Archive Price",
        "Archives a price (active=false): it can no longer be used for new purchases.",
        Plan::Archive("/v1/prices/{id}"),
        [req("id", PRICE, "The price (price_…).")]
    ),
    // subscriptions
    action!(
        "subscriptions",
        "create",
        "Create Subscription",
        "Subscribes a customer to one or more prices.",
        Plan::Call(Verb::Post, "/v1/subscriptions"),
        [
            req("customer", CUS, "The customer (cus_…)."),
            req(
                "items",
                Kind::List(&SUB_ITEM, 20),
                "Prices to subscribe to (1 to 20)."
            ),
            f(
                "collection_method",
                COLLECTION,
                "Charge automatically or send invoices."
            ),
            f(
                "days_until_due",
                Kind::Int(0, 730),
                "Days to pay an invoice (send_invoice only)."
            ),
            f(
                "trial_period_days",
                Kind::Int(0, 730),
                "Free trial length in days."
            ),
            f(
                "trial_end",
                Kind::IntOr("now", 0, MAX_TIMESTAMP),
                "End of the free trial (Unix seconds), or \"now\" for none; instead of trial_period_days."
            ),
            f(
                "payment_behavior",
                Kind::Enum(&[
                    "allow_incomplete",
                    "default_incomplete",
                    "error_if_incomplete",
                    "pending_if_incomplete"
                ]),
                "What happens when the first payment needs the customer or fails."
            ),
            f(
                "proration_behavior",
                PRORATION,
                "How to prorate the first period."
            ),
            f(
                "cancel_at_period_end",
                Kind::Bool,
                "End at the end of the first period."
            ),
            f(
                "default_payment_method",
                PM,
                "Payment method to charge (pm_…)."
            ),
            f("coupon", Kind::CouponId, "Coupon to apply."),
            f(
                "promotion_code",
                Kind::Id(&["promo_"]),
                "Promotion code to apply (promo_…)."
            ),
            f("description", Kind::Text(500), "Shown on invoices."),
            META
        ]
    ),
    action!(
        "subscriptions",
        "update",
        "Update Subscription",
        "Changes a subscription's items or settings.",
        Plan::Call(Verb::Post, "/v1/subscriptions/{id}"),
        [
            req("id", SUB, "The subscription (sub_…)."),
            f(
                "items",
                Kind::List(&SUB_ITEM_UPDATE, 20),
                "Items to add, change or remove."
            ),
            f(
                "proration_behavior",
                PRORATION,
                "How to prorate the change."
            ),
            f(
                "cancel_at_period_end",
                Kind::Bool,
                "End at the end of the current period."
            ),
            f(
                "collection_method",
                COLLECTION,
                "Charge automatically or send invoices."
            ),
            f(
                "days_until_due",
                Kind::Int(0, 730),
                "Days to pay an invoice."
            ),
            f(
                "default_payment_method",
                PM,
                "Payment method to charge (pm_…)."
            ),
            f("coupon", Kind::CouponId, "Coupon to apply."),
            f("description", Kind::Text(500), "Shown on invoices."),
            META
        ]
    ),
    action!(
        "subscriptions",
        "find",
        "Find Subscription",
        "Retrieves a subscription (sub_…) or a subscription item (si_…).",
        Plan::SubscriptionFind,
        [
            req(
                "id",
                Kind::Id(&["sub_", "si_"]),
                "A subscription (sub_…) or subscription item (si_…)."
            ),
            expand(&EXPAND_SUBSCRIPTION)
        ]
    ),
    action!(
        "subscriptions",
        "cancel",
        "Cancel Subscription",
        "Cancels now, or at the end of the period with at_period_end.",
        Plan::SubscriptionCancel,
        [
            req("id", SUB, "The subscription (sub_…)."),
            f(
                "at_period_end",
                Kind::Bool,
                "Cancel at the end of the current period instead of now."
            ),
            f(
                "invoice_now",
                Kind::Bool,
                "Invoice pending usage and prorations now (immediate cancel only)."
            ),
            f(
                "prorate",
                Kind::Bool,
                "Credit unused time (immediate cancel only)."
            ),
            f(
                "cancellation_details",
                Kind::Object(&[
                    f(
                        "comment",
                        Kind::Text(5000),
                        "Why the customer canceled, in their words."
                    ),
                    f(
                        "feedback",
                        Kind::Enum(&[
                            "customer_service",
                            "low_quality",
                            "missing_features",
                            "other",
                            "switched_service",
                            "too_complex",
                            "too_expensive",
                            "unused"
                        ]),
                        "Reason category."
                    ),
                ]),
                "Why it was canceled."
            )
        ]
    ),
    action!(
        "subscriptions",
        "search",
        "Search Subscriptions",
        "Searches subscriptions by status, dates and metadata.",
        Plan::Search("/v1/subscriptions/search"),
        [
            f(
                "status",
                // The statuses a subscription has: `all` and `ended` are
                // filters of the list endpoint, which search does not know.
                Kind::Enum(&[
                    "active",
                    "canceled",
                    "incomplete",
                    "incomplete_expired",
                    "past_due",
                    "paused",
                    "trialing",
                    "unpaid"
                ]),
                "Subscription status."
            ),
            f(
                "created",
                Kind::Range,
                "Creation time (Unix seconds) range: gt, gte, lt, lte."
            ),
            f(
                "canceled_at",
                Kind::Range,
                "Cancellation time (Unix seconds) range."
            ),
            f(
                "metadata",
                Kind::Metadata,
                "Metadata key-value pairs that must all match."
            ),
            LIMIT,
            PAGE,
            ALL
        ]
    ),
    // invoices
    action!(
        "invoices",
        "create",
        "Create Invoice",
        "Creates a draft invoice for a customer.",
        Plan::Call(Verb::Post, "/v1/invoices"),
        [
            req("customer", CUS, "The customer (cus_…)."),
            f(
                "collection_method",
                COLLECTION,
                "Charge automatically or send the invoice."
            ),
            f(
                "days_until_due",
                Kind::Int(0, 730),
                "Days to pay (send_invoice only)."
            ),
            f(
                "auto_advance",
                Kind::Bool,
                "Let Stripe finalize and collect automatically."
            ),
            f("currency", Kind::Currency, "Currency code."),
            f("description", TEXT, "Memo shown on the invoice."),
            f("footer", TEXT, "Footer shown on the invoice."),
            f(
                "subscription",
                SUB,
                "Subscription whose pending items to invoice."
            ),
            f(
                "pending_invoice_items_behavior",
                Kind::Enum(&["exclude", "include"]),
                "Include pending invoice items."
            ),
            META
        ]
    ),
    action!(
        "invoices",
        "update",
        "Update Invoice",
        "Updates an invoice: any field of a draft; a finalized invoice's description, footer, custom fields, auto_advance and metadata.",
        Plan::InvoiceUpdate {
            draft_only: &["collection_method", "days_until_due", "due_date"]
        },
        [
            req("id", INV, "The invoice (in_…)."),
            f("description", TEXT, "Memo."),
            f("footer", TEXT, "Footer."),
            f(
                "custom_fields",
                CUSTOM_FIELDS,
                "Up to 4 name/value pairs shown on the invoice; replaces the ones it has."
            ),
            f(
                "collection_method",
                COLLECTION,
                "Charge automatically or send the invoice (drafts only)."
            ),
            f(
                "days_until_due",
                Kind::Int(0, 730),
                "Days to pay (drafts only)."
            ),
            f(
                "due_date",
                Kind::Timestamp,
                "Due date, Unix seconds (drafts only)."
            ),
            f(
                "auto_advance",
                Kind::Bool,
                "Let Stripe finalize and collect automatically."
            ),
            META
        ]
    ),
    action!(
        "invoices",
        "find",
        "Find Invoice",
        "Retrieves an invoice by id.",
        Plan::Call(Verb::Get, "/v1/invoices/{id}"),
        [
            req("id", INV, "The invoice (in_…)."),
            expand(&EXPAND_INVOICE)
        ]
    ),
    action!(
        "invoices",
        "search",
        "Search Invoices",
        "Searches invoices by status, customer, amounts, dates and metadata.",
        Plan::Search("/v1/invoices/search"),
        [
            f(
                "status",
                Kind::Enum(&["draft", "open", "paid", "uncollectible", "void"]),
                "Invoice status."
            ),
            f("customer", CUS, "Invoices of this customer."),
            f(
                "created",
                Kind::Range,
                "Creation time (Unix seconds) range."
            ),
            f("currency", Kind::Currency, "Currency code."),
            f(
                "metadata",
                Kind::Metadata,
                "Metadata key-value pairs that must all match."
            ),
            f("number", Kind::Text(100), "Exact invoice number."),
            f("receipt_number", Kind::Text(100), "Exact receipt number."),
            f("subscription", SUB, "Invoices of this subscription."),
            f("total", Kind::Range, "Total (minor unit) range."),
            LIMIT,
            PAGE,
            ALL
        ]
    ),
    action!(
        "invoices",
        "delete",
        "Delete Invoice",
        "Deletes a draft invoice; other invoices can only be voided.",
        Plan::DraftInvoice(Verb::Delete, "/v1/invoices/{id}"),
        [req("id", INV, "The invoice (in_…).")]
    ),
    action!(
        "invoices",
        "finalize",
        "Finalize Invoice",
        "Finalizes a draft invoice so it can be paid.",
        Plan::Call(Verb::Post, "/v1/invoices/{id}/finalize"),
        [
            req("id", INV, "The invoice (in_…)."),
            f(
                "auto_advance",
                Kind::Bool,
                "Let Stripe collect automatically afterwards."
            )
        ]
    ),
    action!(
        "invoices",
        "pay",
        "Pay Invoice",
        "Pays an open invoice now, or marks it paid out of band.",
        Plan::Call(Verb::Post, "/v1/invoices/{id}/pay"),
        [
            req("id", INV, "The invoice (in_…)."),
            f(
                "paid_out_of_band",
                Kind::Bool,
                "Mark paid outside Stripe (no charge)."
            ),
            f("payment_method", PM, "Payment method to charge (pm_…)."),
            f("off_session", Kind::Bool, "The customer is not present.")
        ]
    ),
    action!(
        "invoices",
        "mark_uncollectible",
        "Mark Invoice Uncollectible",
        "Marks an open invoice as uncollectible.",
        Plan::Call(Verb::Post, "/v1/invoices/{id}/mark_uncollectible"),
        [req("id", INV, "The invoice (in_…).")]
    ),
    action!(
        "invoices",
        "void",
        "Void Invoice",
        "Voids a finalized invoice (a draft is deleted instead); it is kept, marked void, and cannot be paid.",
        Plan::Call(Verb::Post, "/v1/invoices/{id}/void"),
        [req("id", INV, "The invoice (in_…).")]
    ),
    action!(
        "invoices",
        "send",
        "Send Invoice",
        "Emails an open invoice to its customer (invoices collected with send_invoice).",
        Plan::Call(Verb::Post, "/v1/invoices/{id}/send"),
        [req("id", INV, "The invoice (in_…).")]
    ),
    // coupons
    action!(
        "coupons",
        "create",
        "Create Coupon",
        "Creates a percent-off or amount-off coupon.",
        Plan::CouponCreate,
        [
            f(
                "id",
                Kind::CouponId,
                "Your own coupon code; Stripe makes one if left out."
            ),
            f("name", Kind::Text(40), "Name shown to customers."),
            f(
                "percent_off",
                Kind::Percent,
                "Percent off (0-100]; give this or amount_off."
            ),
            f(
                "amount_off",
                Kind::Amount,
                "Amount off in the minor unit; needs currency."
            ),
            f("currency", Kind::Currency, "Currency of amount_off."),
            req(
                "duration",
                Kind::Enum(&["forever", "once", "repeating"]),
                "How long it applies."
            ),
            f(
                "duration_in_months",
                Kind::Int(1, 1200),
                "Months it applies (repeating only)."
            ),
            f(
                "max_redemptions",
                Kind::Int(1, 1_000_000_000),
                "Times it can be redeemed."
            ),
            f(
                "redeem_by",
                Kind::Timestamp,
                "Last redemption time (Unix seconds)."
            ),
            META
        ]
    ),
    action!(
        "coupons",
        "update",
        "Update Coupon",
        "Updates a coupon's name and metadata; nothing else can change.",
        Plan::Call(Verb::Post, "/v1/coupons/{id}"),
        [
            req("id", Kind::CouponId, "The coupon."),
            f("name", Kind::Text(40), "Name shown to customers."),
            META
        ]
    ),
    action!(
        "coupons",
        "find",
        "Find Coupon",
        "Retrieves a coupon by id.",
        Plan::Call(Verb::Get, "/v1/coupons/{id}"),
        [req("id", Kind::CouponId, "The coupon.")]
    ),
    action!(
        "coupons",
        "delete",
        "Delete Coupon",
        "Deletes a coupon; existing discounts stay.",
        Plan::Call(Verb::Delete, "/v1/coupons/{id}"),
        [req("id", Kind::CouponId, "The coupon.")]
    ),
    // payments
    action!(
        "payments",
        "create",
        "Create Payment Intent",
        "Creates a payment intent.",
        Plan::Call(Verb::Post, "/v1/payment_intents"),
        [
            // Stripe refuses 0 (and less than its minimum charge): nothing
            // to collect is not a payment.
            req(
                "amount",
                Kind::Int(1, 99_999_999),
                "Amount in the currency's minor unit (at least 1; Stripe's minimum charge applies)."
            ),
            req(
                "currency",
                Kind::Currency,
                "Three-letter lowercase ISO currency code."
            ),
            f("customer", CUS, "The customer (cus_…)."),
            f("description", TEXT, "Description."),
            f("receipt_email", Kind::Email, "Where to send the receipt."),
            f("payment_method", PM, "Payment method (pm_…)."),
            f(
                "payment_method_types",
                Kind::List(&Kind::Text(50), 20),
                "Allowed payment method types (e.g. card)."
            ),
            f(
                "capture_method",
                Kind::Enum(&["automatic", "automatic_async", "manual"]),
                "When to capture."
            ),
            f("confirm", Kind::Bool, "Confirm at once."),
            f(
                "return_url",
                Kind::Url,
                "Where the customer returns after a redirect; with confirm, needed unless redirects are off."
            ),
            f(
                "automatic_payment_methods",
                AUTOMATIC_PAYMENT_METHODS,
                "Payment methods from the Dashboard's settings (on by default since 2023-08-16)."
            ),
            f(
                "off_session",
                Kind::Bool,
                "With confirm: the customer is not present."
            ),
            f(
                "setup_future_usage",
                Kind::Enum(&["on_session", "off_session"]),
                "Save the payment method for later payments."
            ),
            f(
                "statement_descriptor",
                Kind::Text(22),
                "Text on card statements."
            ),
            META
        ]
    ),
    action!(
        "payments",
        "update",
        "Update Payment Intent",
        "Updates a payment intent that is not yet complete.",
        Plan::Call(Verb::Post, "/v1/payment_intents/{id}"),
        [
            req("id", PI, "The payment intent (pi_…)."),
            f("amount", Kind::Amount, "Amount in the minor unit."),
            f("currency", Kind::Currency, "Currency code."),
            f("customer", CUS, "The customer (cus_…)."),
            f("description", TEXT, "Description."),
            f("receipt_email", Kind::Email, "Where to send the receipt."),
            f("payment_method", PM, "Payment method (pm_…)."),
            f(
                "payment_method_types",
                Kind::List(&Kind::Text(50), 20),
                "Allowed payment method types (e.g. card)."
            ),
            f(
                "statement_descriptor",
                Kind::Text(22),
                "Text on card statements."
            ),
            META
        ]
    ),
    action!(
        "payments",
        "find",
        "Find Payment Intent",
        "Retrieves a payment intent by id.",
        Plan::Call(Verb::Get, "/v1/payment_intents/{id}"),
        [
            req("id", PI, "The payment intent (pi_…)."),
            expand(&EXPAND_PAYMENT_INTENT)
        ]
    ),
    action!(
        "payments",
        "cancel",
        "Cancel Payment Intent",
        "Cancels a payment intent that is not yet complete.",
        Plan::Call(Verb::Post, "/v1/payment_intents/{id}/cancel"),
        [
            req("id", PI, "The payment intent (pi_…)."),
            f(
                "cancellation_reason",
                Kind::Enum(&[
                    "abandoned",
                    "duplicate",
                    "fraudulent",
                    "requested_by_customer"
                ]),
                "Why it was canceled."
            )
        ]
    ),
    action!(
        "payments",
        "capture",
        "Capture Payment Intent",
        "Captures a payment intent created with capture_method manual (status requires_capture).",
        Plan::Call(Verb::Post, "/v1/payment_intents/{id}/capture"),
        [
            req("id", PI, "The payment intent (pi_…)."),
            f(
                "amount_to_capture",
                Kind::Amount,
                "Capture less than authorized (minor unit); the rest is released."
            ),
            f(
                "metadata",
                Kind::Metadata,
                "Metadata key-value pairs to add."
            )
        ]
    ),
    action!(
        "payments",
        "confirm",
        "Confirm Payment Intent",
        "Confirms a payment intent, charging its payment method.",
        Plan::Call(Verb::Post, "/v1/payment_intents/{id}/confirm"),
        [
            req("id", PI, "The payment intent (pi_…)."),
            f("payment_method", PM, "Payment method to use (pm_…)."),
            f(
                "return_url",
                Kind::Url,
                "Where the customer returns after a redirect (3-D Secure and the like)."
            ),
            f("off_session", Kind::Bool, "The customer is not present.")
        ]
    ),
    // events
    action!(
        "events",
        "retrieve",
        "Retrieve Event",
        "Retrieves an event by id (Stripe keeps events for 30 days).",
        Plan::Call(Verb::Get, "/v1/events/{id}"),
        [req("id", Kind::Id(&["evt_"]), "The event (evt_…).")]
    ),
    action!(
        "events",
        "account",
        "Get Account",
        "Retrieves the connection's own account, or a connected account by id.",
        Plan::Account,
        [f(
            "id",
            Kind::Id(&["acct_"]),
            "A connected account (acct_…); leave out for the connection's own."
        )]
    ),
];
