//! The conformance suites every adapter of a port passes (in-memory,
//! embedded SQLite, DynamoDB and Secrets Manager on moto): same inputs,
//! same answers. Behind the `test-util` feature; run by each adapter's tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: failing loudly is the point

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::model::{
    Connection, ConnectionSecrets, InsertOutcome, Step, StoredEvent, Target, WebhookMode, Workflow,
};
use crate::ports::{
    ConnectionStore, EventQuery, EventStore, GateStore, RunQuery, RunStore, SecretStore,
    StoreError, WorkflowStore,
};
use crate::workflow::breaker::Breaker;
use crate::workflow::run::{Failure, RetryPolicy, Run, RunStatus};

pub fn connection(id: &str, created_at: i64) -> Connection {
    Connection {
        id: id.to_string(),
        name: "Acme".into(),
        account_id: "acct_123".into(),
        livemode: false,
        api_version: "2023-08-16".into(),
        webhook_mode: WebhookMode::Managed,
        webhook_endpoint_id: None,
        triggers: vec!["invoice.created".into()],
        created_at,
        updated_at: created_at,
        version: 0,
        ..Default::default()
    }
}

pub fn event(conn: &str, id: &str, ty: &str, created: i64) -> StoredEvent {
    StoredEvent {
        connection_id: conn.to_string(),
        event_id: id.to_string(),
        event_type: ty.to_string(),
        created,
        livemode: false,
        api_version: Some("2023-08-16".into()),
        account: None,
        body: Some(format!(
            r#"{{"id":"{id}","type":"{ty}","data":{{"object":{{"name":"Zoë"}}}}}}"#
        )),
        body_omitted: false,
        received_at: created + 1,
        expires_at: created + 86400,
        recovered: false,
    }
}

pub async fn stores<S: ConnectionStore + EventStore + 'static>(store: Arc<S>) {
    let run = crate::ids::new_id("");
    let a = format!("conn_a{run}");
    let b = format!("conn_b{run}");

    // Connections: insert once, read, update, list, delete.
    assert!(store.get_connection(&a).await.unwrap().is_none());
    store.insert_connection(&connection(&a, 100)).await.unwrap();
    assert!(matches!(
        store.insert_connection(&connection(&a, 100)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.get_connection(&a).await.unwrap(),
        Some(connection(&a, 100))
    );
    let mut changed = connection(&a, 100);
    changed.webhook_endpoint_id = Some("we_123".into());
    changed.triggers = vec![];
    // What the reconciler, alerts and an upgrade keep on the record.
    changed.webhook_url = Some("https://hooks.example/webhooks/conn".into());
    changed.reconcile.cursor = Some(99);
    changed.reconcile.recovered_total = 3;
    changed.reconcile.gaps.push(crate::model::Gap {
        from: 1,
        to: 2,
        reported_at: 3,
    });
    changed.alerts = Some(crate::model::AlertTarget {
        url: "https://alerts.example".into(),
        secret: crate::model::TargetSecret::new("whsec_c29tZXRoaW5n".into()),
    });
    changed.upgrade = Some(crate::model::Upgrade {
        to: "2024-06-20".into(),
        old_endpoint_id: Some("we_123".into()),
        new_endpoint_id: None,
        started_at: 4,
    });
    changed.retire_secrets_at = Some(5);
    // An update names the next version; one that skips or repeats a
    // version lost a race and changes nothing.
    changed.version = 2;
    assert!(matches!(
        store.update_connection(&changed).await,
        Err(StoreError::Conflict)
    ));
    changed.version = 1;
    store.update_connection(&changed).await.unwrap();
    assert_eq!(
        store.get_connection(&a).await.unwrap(),
        Some(changed.clone())
    );
    let mut stale = connection(&a, 100);
    stale.version = 1;
    assert!(matches!(
        store.update_connection(&stale).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.get_connection(&a).await.unwrap(),
        Some(changed.clone())
    );

    // The lease: one holder at a time, until it is given back or runs out;
    // the holder may renew; an update leaves it in place.
    assert!(store.lock_connection(&a, "one", 1000, 1030).await.unwrap());
    assert!(!store.lock_connection(&a, "two", 1010, 1040).await.unwrap());
    assert!(store.lock_connection(&a, "one", 1010, 1040).await.unwrap());
    changed.version = 2;
    store.update_connection(&changed).await.unwrap();
    assert!(!store.lock_connection(&a, "two", 1020, 1050).await.unwrap());
    store.unlock_connection(&a, "two").await.unwrap();
    assert!(
        !store.lock_connection(&a, "two", 1020, 1050).await.unwrap(),
        "only its holder gives it back"
    );
    store.unlock_connection(&a, "one").await.unwrap();
    assert!(store.lock_connection(&a, "two", 1020, 1050).await.unwrap());
    assert!(
        store
            .lock_connection(&a, "three", 1051, 1080)
            .await
            .unwrap(),
        "a lease runs out"
    );
    store.unlock_connection(&a, "three").await.unwrap();
    assert!(
        !store
            .lock_connection("conn_nobody", "one", 1000, 1030)
            .await
            .unwrap(),
        "no such connection"
    );
    assert!(matches!(
        store.update_connection(&connection(&b, 50)).await,
        Err(StoreError::Conflict)
    ));
    store.insert_connection(&connection(&b, 50)).await.unwrap();
    let listed: Vec<String> = store
        .list_connections()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .filter(|id| id.ends_with(&run))
        .collect();
    assert_eq!(listed, vec![b.clone(), a.clone()], "oldest first");
    store.delete_connection(&b).await.unwrap();
    assert!(store.get_connection(&b).await.unwrap().is_none());
    store.delete_connection(&b).await.unwrap();

    // Events: stored once per (connection, event id).
    let e1 = event(&a, "evt_1", "invoice.created", 1000);
    assert_eq!(
        store.insert_event(&e1).await.unwrap(),
        InsertOutcome::Inserted
    );
    assert_eq!(
        store.insert_event(&e1).await.unwrap(),
        InsertOutcome::Duplicate
    );
    assert_eq!(
        store.get_event(&a, "evt_1").await.unwrap(),
        Some(e1.clone())
    );
    assert!(store.get_event(&a, "evt_2").await.unwrap().is_none());
    let other = event(&b, "evt_1", "invoice.created", 1000);
    assert_eq!(
        store.insert_event(&other).await.unwrap(),
        InsertOutcome::Inserted,
        "keyed by connection too"
    );
    let mut omitted = event(&a, "evt_big", "invoice.updated", 1001);
    omitted.body = None;
    omitted.body_omitted = true;
    omitted.account = Some("acct_connected".into());
    omitted.api_version = None;
    // Read from Stripe's list by the reconciler: the mark is kept.
    omitted.recovered = true;
    store.insert_event(&omitted).await.unwrap();
    assert_eq!(store.get_event(&a, "evt_big").await.unwrap(), Some(omitted));

    // 32 concurrent inserts of one event id: exactly one is inserted.
    let race = event(&a, "evt_race", "customer.created", 999);
    let handles: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            let race = race.clone();
            tokio::spawn(async move { store.insert_event(&race).await.unwrap() })
        })
        .collect();
    let mut inserted = 0;
    for h in handles {
        if h.await.unwrap() == InsertOutcome::Inserted {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 1);

    // Listing: newest first, filtered, paged.
    for (i, ty) in ["customer.created", "invoice.created", "customer.created"]
        .iter()
        .enumerate()
    {
        store
            .insert_event(&event(&a, &format!("evt_l{i}"), ty, 2000 + i as i64))
            .await
            .unwrap();
    }
    let ids = |events: Vec<StoredEvent>| events.into_iter().map(|e| e.event_id).collect::<Vec<_>>();
    let q = |t: Option<&str>, limit, after: Option<&str>| EventQuery {
        event_type: t.map(str::to_string),
        limit,
        starting_after: after.map(str::to_string),
    };
    assert_eq!(
        ids(store.list_events(&a, &q(None, 3, None)).await.unwrap()),
        ["evt_l2", "evt_l1", "evt_l0"]
    );
    assert_eq!(
        ids(store
            .list_events(&a, &q(None, 2, Some("evt_l1")))
            .await
            .unwrap()),
        ["evt_l0", "evt_big"]
    );
    assert_eq!(
        ids(store
            .list_events(&a, &q(Some("customer.created"), 10, None))
            .await
            .unwrap()),
        ["evt_l2", "evt_l0", "evt_race"]
    );
    assert_eq!(
        ids(store
            .list_events(&a, &q(Some("customer.created"), 1, Some("evt_l2")))
            .await
            .unwrap()),
        ["evt_l0"]
    );
    assert!(
        store
            .list_events(&a, &q(None, 5, Some("evt_unknown")))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .list_events(&b, &q(None, 10, None))
            .await
            .unwrap()
            .len(),
        1
    );
}

pub fn workflow(conn: &str, id: &str, created_at: i64) -> Workflow {
    Workflow {
        id: id.to_string(),
        connection_id: conn.to_string(),
        trigger: "invoice.created".into(),
        filter: json!({"event.data.object.status": "draft"})
            .as_object()
            .unwrap()
            .clone(),
        target: Some(Target {
            url: "https://hooks.example.com/in".into(),
            secret: None,
        }),
        steps: vec![Step {
            action: "invoices.finalize".into(),
            input: json!({"id": "{{event.data.object.id}}"}),
        }],
        enabled: true,
        ignore_own_writes: true,
        fetch_latest: false,
        skip_stale: false,
        created_at,
        updated_at: created_at,
    }
}

pub async fn workflows_and_runs<S: WorkflowStore + RunStore + 'static>(store: Arc<S>) {
    // Object clocks: forward in time only; the same second is not stale.
    let oc = crate::ids::new_id("conn_");
    assert!(
        store
            .advance_object(&oc, "wf_a", "sub_1", 100)
            .await
            .unwrap()
    );
    assert!(
        store
            .advance_object(&oc, "wf_a", "sub_1", 100)
            .await
            .unwrap()
    );
    assert!(
        store
            .advance_object(&oc, "wf_a", "sub_1", 150)
            .await
            .unwrap()
    );
    assert!(
        !store
            .advance_object(&oc, "wf_a", "sub_1", 120)
            .await
            .unwrap(),
        "older than one acted on"
    );
    assert!(
        store
            .advance_object(&oc, "wf_b", "sub_1", 120)
            .await
            .unwrap(),
        "per workflow"
    );
    assert!(
        store
            .advance_object(&oc, "wf_a", "sub_2", 120)
            .await
            .unwrap(),
        "per object"
    );

    let run_id = crate::ids::new_id("");
    let conn = format!("conn_w{run_id}");
    let other = format!("conn_o{run_id}");

    // Workflows.
    store
        .insert_workflow(&workflow(&conn, "wf_b", 20))
        .await
        .unwrap();
    store
        .insert_workflow(&workflow(&conn, "wf_a", 10))
        .await
        .unwrap();
    store
        .insert_workflow(&workflow(&other, "wf_a", 5))
        .await
        .unwrap();
    assert!(matches!(
        store.insert_workflow(&workflow(&conn, "wf_a", 10)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.get_workflow(&conn, "wf_a").await.unwrap(),
        Some(workflow(&conn, "wf_a", 10))
    );
    let ids: Vec<String> = store
        .list_workflows(&conn)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, ["wf_a", "wf_b"], "oldest first, this connection only");
    let mut off = workflow(&conn, "wf_b", 20);
    off.enabled = false;
    store.update_workflow(&off).await.unwrap();
    assert!(
        !store
            .get_workflow(&conn, "wf_b")
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    assert!(matches!(
        store.update_workflow(&workflow(&conn, "wf_gone", 1)).await,
        Err(StoreError::Conflict)
    ));
    store.delete_workflow(&conn, "wf_b").await.unwrap();
    assert!(store.get_workflow(&conn, "wf_b").await.unwrap().is_none());

    // A run exists at most once per (event, workflow), even when 32 workers race.
    let now = 1_900_000_000;
    let handles: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            let r = Run::new(&conn, "evt_1", "wf_a", now);
            tokio::spawn(async move { store.create_run(&r).await.unwrap() })
        })
        .collect();
    let mut created = 0;
    for h in handles {
        created += h.await.unwrap() as usize;
    }
    assert_eq!(created, 1);
    let stored = store
        .get_run(&conn, "evt_1", "wf_a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, Run::new(&conn, "evt_1", "wf_a", now));

    // Claiming is a conditional write: of two workers reading the same
    // version, one wins.
    let mut a = stored.clone();
    let mut b = stored.clone();
    a.claim("worker-a", now, 60, 7).unwrap();
    b.claim("worker-b", now, 60, 7).unwrap();
    store.save_run(&a, stored.version).await.unwrap();
    assert!(matches!(
        store.save_run(&b, stored.version).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store
            .get_run(&conn, "evt_1", "wf_a")
            .await
            .unwrap()
            .unwrap()
            .lease_owner
            .as_deref(),
        Some("worker-a")
    );

    // Due runs come from the index: pending now, running with an expired
    // lease, retrying when its time comes; finished runs never.
    let due_ids = |runs: Vec<Run>| -> Vec<String> {
        runs.into_iter()
            .filter(|r| r.connection_id == conn)
            .map(|r| format!("{}/{}", r.event_id, r.workflow_id))
            .collect()
    };
    store
        .create_run(&Run::new(&conn, "evt_2", "wf_a", now + 5))
        .await
        .unwrap();
    assert_eq!(
        due_ids(store.due_runs(i64::MIN, now + 10, 1000).await.unwrap()),
        ["evt_2/wf_a"],
        "evt_1 is leased until now+60"
    );
    assert_eq!(
        due_ids(store.due_runs(i64::MIN, now + 60, 1000).await.unwrap()),
        ["evt_2/wf_a", "evt_1/wf_a"],
        "soonest first"
    );
    let v = a.version;
    a.fail(
        "worker-a",
        Failure::Transient("503".into()),
        now + 1,
        &RetryPolicy::default(),
        0.0,
    )
    .unwrap();
    store.save_run(&a, v).await.unwrap();
    assert_eq!(
        due_ids(store.due_runs(i64::MIN, now + 30, 1000).await.unwrap()),
        ["evt_2/wf_a"]
    );
    assert_eq!(
        due_ids(store.due_runs(i64::MIN, now + 31, 1000).await.unwrap()),
        ["evt_2/wf_a", "evt_1/wf_a"]
    );
    assert_eq!(
        due_ids(store.due_runs(now + 6, now + 31, 1000).await.unwrap()),
        ["evt_1/wf_a"],
        "a range leaves out what is due before it"
    );
    let v = a.version;
    a.claim("worker-c", now + 31, 60, 7).unwrap();
    a.succeed("worker-c", now + 32).unwrap();
    store.save_run(&a, v).await.unwrap();
    assert!(
        matches!(store.save_run(&a, v).await, Err(StoreError::Conflict)),
        "a stale version never overwrites"
    );
    assert_eq!(
        due_ids(store.due_runs(i64::MIN, now + 100_000, 1000).await.unwrap()),
        ["evt_2/wf_a"],
        "succeeded runs leave the index"
    );

    // Listing: newest first, filtered.
    store
        .create_run(&Run::new(&conn, "evt_3", "wf_b", now + 9))
        .await
        .unwrap();
    let list = |q: RunQuery| {
        let store = store.clone();
        let conn = conn.clone();
        async move {
            store
                .list_runs(&conn, &q)
                .await
                .unwrap()
                .runs
                .into_iter()
                .map(|r| format!("{}/{}", r.event_id, r.workflow_id))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(RunQuery {
            limit: 10,
            ..Default::default()
        })
        .await,
        ["evt_3/wf_b", "evt_2/wf_a", "evt_1/wf_a"]
    );
    assert_eq!(
        list(RunQuery {
            limit: 10,
            status: Some(RunStatus::Succeeded),
            ..Default::default()
        })
        .await,
        ["evt_1/wf_a"]
    );
    assert_eq!(
        list(RunQuery {
            limit: 10,
            event_id: Some("evt_2".into()),
            ..Default::default()
        })
        .await,
        ["evt_2/wf_a"]
    );
    assert_eq!(
        list(RunQuery {
            limit: 10,
            workflow_id: Some("wf_b".into()),
            ..Default::default()
        })
        .await,
        ["evt_3/wf_b"]
    );
    assert_eq!(
        list(RunQuery {
            limit: 1,
            ..Default::default()
        })
        .await,
        ["evt_3/wf_b"]
    );
}

/// The gate store: windows count to their limit and no further, under
/// concurrent takers too; slots are leases; breakers and marks are written
/// only on the version (value) read.
pub async fn gates<G: GateStore + 'static>(gates: Arc<G>) {
    let key = format!("conformance#{}", crate::ids::new_id("k_"));
    // Twenty concurrent requests in one window: each gets its own place.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (g, k) = (gates.clone(), key.clone());
        tasks.spawn(async move { g.count_in_window(&k, 1000).await.unwrap() });
    }
    let mut places = Vec::new();
    while let Some(place) = tasks.join_next().await {
        places.push(place.unwrap());
    }
    places.sort_unstable();
    assert_eq!(places, (1..=20).collect::<Vec<u32>>());
    assert_eq!(
        gates.count_in_window(&key, 1001).await.unwrap(),
        1,
        "a new window"
    );

    // Slots: two of them; a third taker waits until one is given back or
    // its lease ends.
    let a = gates.take_slot(&key, 2, "a", 100, 130).await.unwrap();
    let b = gates.take_slot(&key, 2, "b", 100, 130).await.unwrap();
    assert!(a.is_some() && b.is_some() && a != b);
    assert_eq!(gates.take_slot(&key, 2, "c", 101, 131).await.unwrap(), None);
    gates.release_slot(&key, a.unwrap(), "not-a").await.unwrap();
    assert_eq!(
        gates.take_slot(&key, 2, "c", 101, 131).await.unwrap(),
        None,
        "only its owner gives a slot back"
    );
    gates.release_slot(&key, a.unwrap(), "a").await.unwrap();
    assert_eq!(gates.take_slot(&key, 2, "c", 101, 131).await.unwrap(), a);
    assert!(
        gates
            .take_slot(&key, 2, "d", 131, 160)
            .await
            .unwrap()
            .is_some(),
        "an ended lease is free"
    );

    // Breakers: versioned.
    assert_eq!(gates.get_breaker(&key).await.unwrap(), None);
    let mut br = Breaker::default();
    br.on_failure(5, &crate::workflow::breaker::BreakerPolicy::default());
    gates.save_breaker(&key, &br).await.unwrap();
    assert!(matches!(
        gates.save_breaker(&key, &br).await,
        Err(StoreError::Conflict)
    ));
    let mut stale = Breaker::default();
    stale.on_failure(6, &crate::workflow::breaker::BreakerPolicy::default());
    assert!(matches!(
        gates.save_breaker(&key, &stale).await,
        Err(StoreError::Conflict)
    ));
    let mut read = gates.get_breaker(&key).await.unwrap().unwrap();
    assert_eq!(read, br);
    read.on_success();
    gates.save_breaker(&key, &read).await.unwrap();
    assert_eq!(gates.get_breaker(&key).await.unwrap().unwrap().failures, 0);

    // Marks: compare and set.
    let mark = format!("mark-{key}");
    assert_eq!(gates.get_mark(&mark).await.unwrap(), None);
    assert!(gates.set_mark(&mark, None, 10).await.unwrap());
    assert!(!gates.set_mark(&mark, None, 11).await.unwrap());
    assert!(!gates.set_mark(&mark, Some(9), 11).await.unwrap());
    assert!(gates.set_mark(&mark, Some(10), 12).await.unwrap());
    assert_eq!(gates.get_mark(&mark).await.unwrap(), Some(12));
}

pub fn secrets(key: &str, hooks: &[&str]) -> ConnectionSecrets {
    ConnectionSecrets {
        target_secrets: Default::default(),
        api_key: SecretString::from(key.to_string()),
        webhook_secrets: hooks
            .iter()
            .map(|s| SecretString::from(s.to_string()))
            .collect(),
    }
}

pub async fn secrets_store(store: &dyn SecretStore) {
    let id = crate::ids::new_id("conn_");
    assert!(store.get_secrets(&id).await.unwrap().is_none());
    store
        .put_secrets(&id, &secrets("sk_test_one", &[]))
        .await
        .unwrap();
    let got = store.get_secrets(&id).await.unwrap().unwrap();
    assert_eq!(got.api_key.expose_secret(), "sk_test_one");
    assert!(got.webhook_secrets.is_empty());
    store
        .put_secrets(&id, &secrets("sk_test_two", &["whsec_new", "whsec_old"]))
        .await
        .unwrap();
    let got = store.get_secrets(&id).await.unwrap().unwrap();
    assert_eq!(got.api_key.expose_secret(), "sk_test_two");
    let hooks: Vec<&str> = got
        .webhook_secrets
        .iter()
        .map(secrecy::ExposeSecret::expose_secret)
        .collect();
    assert_eq!(hooks, ["whsec_new", "whsec_old"]);
    store.delete_secrets(&id).await.unwrap();
    assert!(store.get_secrets(&id).await.unwrap().is_none());
    store.delete_secrets(&id).await.unwrap();
}
