//! The example Datanet's contributions manifest lists the real sha256 of each example file,
//! signed by its contributor for that Datanet.

use std::path::Path;

use modelcommons_operator::contribution::{Manifest, SignatureError, sha256_hex, verify};

const DATANET: &str = "contract-review/clause-review-data";

fn example_manifest() -> Manifest {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/contract-review");
    let cm: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("02-contributions.yaml")).unwrap())
            .unwrap();
    serde_yaml::from_str(cm["data"]["manifest.yaml"].as_str().unwrap()).unwrap()
}

#[test]
fn every_example_contribution_is_hashed_and_signed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/contract-review/data/contributions");
    let manifest = example_manifest();
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        manifest.contributions.len(),
        files,
        "one manifest entry per example file"
    );
    for c in &manifest.contributions {
        let file = c.uri.strip_prefix("file:///data/contributions/").unwrap();
        let bytes = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(
            c.sha256,
            sha256_hex(&bytes),
            "{}: sha256 does not match the file",
            c.id
        );
        verify(DATANET, c).unwrap_or_else(|e| panic!("{}: {e}", c.id));
    }
}

#[test]
fn a_manifest_entry_moved_to_another_contributor_fails() {
    let mut manifest = example_manifest();
    let (a, b) = (
        manifest.contributions[0].contributor,
        manifest.contributions.last().unwrap().contributor,
    );
    assert_ne!(a, b, "the example has several contributors");
    manifest.contributions[0].contributor = b;
    assert!(matches!(
        verify(DATANET, &manifest.contributions[0]),
        Err(SignatureError::WrongSigner { .. })
    ));
}
