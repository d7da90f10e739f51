//! The 25 triggers: Stripe event types a workflow can start on.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Trigger {
    pub key: &'static str,
    pub display_name: &'static str,
    pub group: &'static str,
}

const fn t(key: &'static str, display_name: &'static str, group: &'static str) -> Trigger {
    Trigger {
        key,
        display_name,
        group,
    }
}

pub const TRIGGERS: [Trigger; 25] = [
    t("customer.created", "Customer Created", "customers"),
    t("customer.updated", "Customer Updated", "customers"),
    t("customer.deleted", "Customer Deleted", "customers"),
    t("product.created", "Product Created", "products"),
    t("product.updated", "Product Updated", "products"),
    t("product.deleted", "Product Deleted", "products"),
    t("price.created", "Price Created", "prices"),
    t("price.updated", "Price Updated", "prices"),
    t("price.deleted", "Price Deleted", "prices"),
    t(
        "customer.subscription.created",
        "Subscription Created",
        "subscriptions",
    ),
    t(
        "customer.subscription.updated",
        "Subscription Updated",
        "subscriptions",
    ),
    t(
        "customer.subscription.deleted",
        "Subscription Deleted",
        "subscriptions",
    ),
    t("invoice.created", "Invoice Created", "invoices"),
    t("invoice.updated", "Invoice Updated", "invoices"),
    t("invoice.deleted", "Invoice Deleted", "invoices"),
    t("invoice.sent", "Invoice Sent", "invoices"),
    t(
        "invoice.payment_failed",
        "Invoice Payment Failed",
        "invoices",
    ),
    t(
        "invoice.payment_succeeded",
        "Invoice Payment Succeeded",
        "invoices",
    ),
    t(
        "invoice.marked_uncollectible",
        "Invoice Marked Uncollectible",
        "invoices",
    ),
    t("invoice.paid", "Invoice Paid", "invoices"),
    t("invoice.finalized", "Invoice Finalized", "invoices"),
    t(
        "payment_intent.created",
        "Payment Intent Created",
        "payments",
    ),
    t(
        "payment_intent.canceled",
        "Payment Intent Canceled",
        "payments",
    ),
    t(
        "payment_intent.succeeded",
        "Payment Intent Succeeded",
        "payments",
    ),
    t("coupon.created", "Coupon Created", "coupons"),
];

pub fn trigger(key: &str) -> Option<&'static Trigger> {
    TRIGGERS.iter().find(|t| t.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<_> = TRIGGERS.iter().map(|t| t.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 25);
        assert!(trigger("invoice.paid").is_some());
        assert!(trigger("invoice.voided").is_none());
    }
}
