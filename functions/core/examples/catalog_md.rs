//! Prints docs/catalog.md: `cargo run -p connector-core --example catalog_md > docs/catalog.md`.

fn main() {
    print!("{}", connector_core::catalog::markdown());
}
