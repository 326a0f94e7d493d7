//! The committed CRD YAML is exactly what the Rust types generate.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[test]
fn committed_crd_yaml_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("modelcommons.dev_crds.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = modelcommons_crds::crds_yaml().unwrap();
    assert!(
        committed == generated,
        "{} is stale: run `make crds` and commit the result",
        path.display()
    );
}
