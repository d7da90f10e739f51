//! Verify one signed ~2 KB event: `cargo bench -p connector-core --bench webhook_verify`.
//! The figure goes in docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use connector_core::webhook::{sign_header, verify};
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use secrecy::SecretString;

fn payload_2kb() -> Vec<u8> {
    let mut body = String::from(
        r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","api_version":"2023-08-16","created":1686089970,"type":"invoice.created","livemode":false,"data":{"object":{"id":"in_1NG8Dt2eZvKYlo2C","object":"invoice","description":""#,
    );
    while body.len() < 2030 {
        body.push('x');
    }
    body.push_str(r#""}}}"#);
    body.into_bytes()
}

fn bench(c: &mut Criterion) {
    let body = payload_2kb();
    let secret = "whsec_4eC39HqLyjWDarjtT1zdp7dc";
    let now = 1_700_000_000;
    let header = sign_header(&body, secret, now);
    let secrets = vec![SecretString::from(secret.to_string())];
    c.bench_function("verify 2 KB event", |b| {
        b.iter(|| {
            verify(
                black_box(&body),
                Some(black_box(&header)),
                &secrets,
                now,
                300,
            )
            .unwrap();
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
