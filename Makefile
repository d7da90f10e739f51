# sam build runs `make build-<LogicalId>` for each function of template.yaml,
# in the source tree (samconfig.toml: build_in_source), with ARTIFACTS_DIR
# set. Every function's binary comes from one `cargo lambda build` of the
# workspace: the first target builds them all, each later one finds them
# built (cargo's fingerprints) and copies its own. A test holds these
# targets to the template's functions and binaries.

BINARIES := webhook-ingest connections-api actions-customers actions-products actions-prices actions-subscriptions actions-invoices actions-coupons actions-payments actions-events trigger-fanout run-executor retry-scheduler reconciler
LAMBDA_BUILD := cargo lambda build --release --arm64 $(addprefix --bin ,$(BINARIES))

.PHONY: lambdas
lambdas:
	$(LAMBDA_BUILD)

build-WebhookIngestFunction: lambdas
	cp target/lambda/webhook-ingest/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-ConnectionsApiFunction: lambdas
	cp target/lambda/connections-api/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-ActionsCustomersFunction: lambdas
	cp target/lambda/actions-customers/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-ActionsProductsFunction: lambdas
	cp target/lambda/actions-products/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-ActionsPricesFunction: lambdas
	cp target/lambda/actions-prices/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-ActionsSubscriptionsFunction: lambdas
	cp target/lambda/actions-subscriptions/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-ActionsInvoicesFunction: lambdas
	cp target/lambda/actions-invoices/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-ActionsCouponsFunction: lambdas
	cp target/lambda/actions-coupons/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-ActionsPaymentsFunction: lambdas
	cp target/lambda/actions-payments/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-ActionsEventsFunction: lambdas
	cp target/lambda/actions-events/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-TriggerFanoutFunction: lambdas
	cp target/lambda/trigger-fanout/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-RunExecutorFunction: lambdas
	cp target/lambda/run-executor/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-RetrySchedulerFunction: lambdas
	cp target/lambda/retry-scheduler/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-ReconcilerFunction: lambdas
	cp target/lambda/reconciler/bootstrap $(ARTIFACTS_DIR)/bootstrap
