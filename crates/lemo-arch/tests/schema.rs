//! `docs/ir.schema.json` is the schema generated from the types, and it describes real graphs.

use lemo_arch::json_schema;

#[test]
fn checked_in_schema_is_up_to_date() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../docs/ir.schema.json");
    let generated = serde_json::to_string_pretty(&json_schema())? + "\n";
    if std::env::var_os("LEMO_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated)?;
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/ir.schema.json is stale: run `LEMO_UPDATE_SCHEMA=1 cargo test -p lemo-arch --test schema`"
    );
    Ok(())
}

#[test]
fn schema_names_every_op() -> Result<(), Box<dyn std::error::Error>> {
    let text = serde_json::to_string(&json_schema())?;
    for op in lemo_arch::OP_NAMES {
        assert!(text.contains(&format!("\"{op}\"")), "schema lacks {op}");
    }
    Ok(())
}
