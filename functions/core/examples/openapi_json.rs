//! Prints the connector's OpenAPI document:
//! `cargo run -p connector-core --example openapi_json > docs/openapi.json`.

fn main() {
    println!("{}", connector_core::api::openapi::document());
}
