#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use modelcommons_crds::Datanet;

use super::fetch::testserver::{Reply, closed_port_url, serve};
use super::*;

const DATANET: &str = "legal/clauses";
// anvil's public dev accounts 2–5, as in examples/contract-review/sign-contributions.sh.
const ALICE: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
const BOB: &str = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6";
const CAROL: &str = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a";
const DAVE: &str = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba";

fn key(hex: &str) -> PrivateKeySigner {
    hex.parse().unwrap()
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/contract-review")
}

/// A file of hand-written reviewed clauses (the first example's, kept as the scenario's
/// material: its near duplicates and rewordings are written against these words).
fn example_file(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/testdata")
            .join(name),
    )
    .unwrap()
}

fn spec(yaml: &str) -> DatanetSpec {
    serde_yaml::from_str(yaml).unwrap()
}

/// The spec of the scenario: two accepted contributions per contributor, 16 KiB each at
/// most, quality 0.60 at least, an odd pool so that rounding matters.
fn scenario_spec() -> DatanetSpec {
    spec(
        r#"
proposalRef: {name: clause-review}
format: {type: Jsonl, fields: [prompt, completion], maxBytesPerContribution: 16384}
contributions: {configMapRef: {name: contributions, key: manifest.yaml}}
curation: {dedup: Near, minQualityBps: 6000, maxPerContributor: 2}
rewards: {pool: "1000000000000000000007", policy: QualityWeighted}
"#,
    )
}

/// Contributions written under a temporary root and signed with the dev keys.
struct Fixture {
    dir: tempfile::TempDir,
    manifest: Manifest,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            manifest: Manifest::default(),
        }
    }

    /// Writes `bytes` to `items/<id>.jsonl`, lists it signed by `signer`, then lets `tweak`
    /// spoil the entry.
    fn add(&mut self, id: &str, signer: &str, bytes: &[u8], tweak: impl FnOnce(&mut Contribution)) {
        let dir = self.dir.path().join("items");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{id}.jsonl")), bytes).unwrap();
        let signer = key(signer);
        let sha256 = sha256_hex(bytes);
        let mut c = Contribution {
            id: id.into(),
            contributor: signer.address(),
            uri: format!("file:///items/{id}.jsonl"),
            signature: contribution::sign(&signer, DATANET, &sha256).unwrap(),
            sha256,
            license: "CC-BY-4.0".into(),
        };
        tweak(&mut c);
        self.manifest.contributions.push(c);
    }

    fn manifest_text(&self) -> String {
        serde_yaml::to_string(&self.manifest).unwrap()
    }

    fn fetch(&self) -> AnyFetch {
        AnyFetch {
            file: FileFetch::new(self.dir.path()),
            http: HttpFetch::new()
                .unwrap()
                .with_retries(2, Duration::from_millis(5))
                .with_egress(super::Egress::allowing(["127.0.0.1:*"])),
            objects: super::ObjectFetch::new(Vec::new()),
        }
    }
}

fn jsonl_line(prompt: &str, completion: &str) -> String {
    format!(
        "{}\n",
        serde_json::json!({"prompt": prompt, "completion": completion})
    )
}

/// One contribution for every outcome, over local files and HTTP.
async fn scenario() -> Fixture {
    let governing_law = example_file("carol-governing-law.jsonl");
    let (base, _) = serve(move |path, _| match path {
        "/carol-law.jsonl" => Reply::ok(governing_law.clone()),
        _ => Reply::status(404),
    })
    .await;
    let gone = closed_port_url().await;

    let indemnity = example_file("alice-indemnity.jsonl");
    let termination = example_file("alice-termination.jsonl");
    let liability = example_file("bob-liability.jsonl");
    let confidentiality = example_file("bob-confidentiality.jsonl");
    let carol = key(CAROL).address();

    let mut f = Fixture::new();
    f.add("alice-indemnity", ALICE, &indemnity, |_| {});
    f.add("alice-termination", ALICE, &termination, |_| {});
    f.add("bob-liability", BOB, &liability, |_| {});
    f.add(
        "carol-law",
        CAROL,
        &example_file("carol-governing-law.jsonl"),
        |c| {
            c.uri = format!("{base}/carol-law.jsonl");
        },
    );
    // Signed, but the file is not what was signed.
    f.add("bob-swapped", BOB, &confidentiality, |c| {
        c.sha256 = sha256_hex(b"what bob signed");
        c.signature = contribution::sign(&key(BOB), DATANET, &c.sha256).unwrap();
    });
    // Listed as carol's, signed by bob.
    f.add("carol-forged", BOB, &confidentiality, |c| {
        c.contributor = carol
    });
    // Byte-identical to alice-indemnity.
    f.add("carol-copy", CAROL, &indemnity, |_| {});
    // bob-liability with a few words changed in each record.
    let near = String::from_utf8(liability.clone())
        .unwrap()
        .replace("Common exclusion", "Usual exclusion")
        .replace("state explicitly", "say clearly")
        .replace("nominal", "tiny")
        .replace("meaningful", "real")
        .replace("Keep as drafted", "Leave as drafted");
    f.add("carol-reworded", CAROL, near.as_bytes(), |_| {});
    // Alice's third: fine, but she has two already.
    f.add("alice-third", ALICE, &confidentiality, |_| {});
    let malformed = jsonl_line(
        "Review this clause: \"Payment is due within 60 days of invoice.\"",
        "Risk: long payment terms strain cash flow. Suggest: 30 days, with interest on late payment.",
    ) + "{\"prompt\":\"Review this clause: \\\"Prices are fixed.\\\"\"}\n";
    f.add("bob-malformed", BOB, malformed.as_bytes(), |_| {});
    f.add("carol-unreachable", CAROL, b"never read", |c| {
        c.uri = gone.clone()
    });
    let spam = jsonl_line(
        "Review this clause: \"Payment is due on receipt.\"",
        &"ok ".repeat(60),
    );
    f.add("bob-spam", BOB, spam.as_bytes(), |_| {});
    f.add("bob-huge", BOB, &vec![b'x'; 20_000], |_| {});
    // bob-confidentiality (alice-third was rolled back, so it is new) plus a copy of one of
    // alice's records: accepted with the two new records.
    let mut mixed = confidentiality.clone();
    mixed.extend_from_slice(termination.split_inclusive(|b| *b == b'\n').next().unwrap());
    f.add("bob-confidentiality", BOB, &mixed, |_| {});
    f
}

fn outcome<'r>(report: &'r CurationReport, id: &str) -> &'r ItemOutcome {
    report.items.iter().find(|i| i.id == id).unwrap()
}

#[tokio::test]
async fn every_outcome_is_counted_exactly_and_explained() {
    let (_f, report, _) = curated().await;

    let expected: BTreeMap<Reason, u32> = [
        (Reason::Accepted, 5),
        (Reason::Unreachable, 1),
        (Reason::TooLarge, 1),
        (Reason::HashMismatch, 1),
        (Reason::BadSignature, 1),
        (Reason::BadFormat, 1),
        (Reason::Duplicate, 1),
        (Reason::NearDuplicate, 1),
        (Reason::LowQuality, 1),
        (Reason::OverLimit, 1),
    ]
    .into();
    assert_eq!(report.counts.by_reason, expected, "{:#?}", report.items);
    assert_eq!(
        (
            report.counts.total,
            report.counts.accepted,
            report.counts.rejected
        ),
        (14, 5, 9)
    );

    let reasons: Vec<(&str, Reason)> = report
        .items
        .iter()
        .map(|i| (i.id.as_str(), i.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("alice-indemnity", Reason::Accepted),
            ("alice-termination", Reason::Accepted),
            ("bob-liability", Reason::Accepted),
            ("carol-law", Reason::Accepted),
            ("bob-swapped", Reason::HashMismatch),
            ("carol-forged", Reason::BadSignature),
            ("carol-copy", Reason::Duplicate),
            ("carol-reworded", Reason::NearDuplicate),
            ("alice-third", Reason::OverLimit),
            ("bob-malformed", Reason::BadFormat),
            ("carol-unreachable", Reason::Unreachable),
            ("bob-spam", Reason::LowQuality),
            ("bob-huge", Reason::TooLarge),
            ("bob-confidentiality", Reason::Accepted),
        ]
    );

    // The details say what was found.
    let detail = |id| outcome(&report, id).detail.as_str();
    assert!(detail("bob-swapped").starts_with("the content's sha256 is "));
    assert!(detail("carol-forged").contains("not by the listed contributor"));
    assert_eq!(
        detail("carol-copy"),
        "all 3 records repeat records of alice-indemnity"
    );
    assert!(
        detail("carol-reworded")
            .starts_with("all 3 records repeat or nearly repeat records of bob-liability"),
        "{}",
        detail("carol-reworded")
    );
    assert!(detail("alice-third").contains("already has 2 accepted contributions"));
    assert_eq!(
        detail("bob-malformed"),
        "line 2 lacks the field \"completion\" (every record needs prompt, completion)"
    );
    assert!(detail("carol-unreachable").ends_with("(gave up after 2 attempts)"));
    assert!(detail("bob-spam").contains("is below curation.minQualityBps 6000"));
    assert_eq!(
        detail("bob-huge"),
        "larger than format.maxBytesPerContribution (16384 bytes)"
    );
    let mixed = outcome(&report, "bob-confidentiality");
    assert_eq!((mixed.records, mixed.dropped_records), (2, 1));
    assert_eq!(
        mixed.detail,
        "2 records, mean quality 10000 bps; 1 more left out as a repeat or near repeat of \
         records of alice-termination"
    );
    assert!(outcome(&report, "bob-spam").quality_bps.unwrap() < 6000);

    // The dataset: 3 + 2 + 3 + 2 + 2 records, in manifest order, one JSON object a line.
    assert_eq!(report.dataset.records, 12);
    let lines: Vec<&str> = std::str::from_utf8(&report.dataset.jsonl)
        .unwrap()
        .lines()
        .collect();
    assert_eq!(lines.len(), 12);
    assert!(lines.iter().all(|l| l.starts_with("{\"completion\":")));
    assert_eq!(report.dataset.sha256, sha256_hex(&report.dataset.jsonl));
    assert_eq!(
        report
            .counts
            .to_status()
            .rejected_by_reason
            .get("NearDuplicate"),
        Some(&1)
    );
}

#[tokio::test]
async fn rewards_sum_to_the_pool_and_every_payee_can_prove_its_claim() {
    let (_f, report, _) = curated().await;
    let rewards = &report.rewards;
    let pool = U256::from(1_000_000_000_000_000_000_007u128);
    assert_eq!(rewards.pool, pool);
    let sum: U256 = rewards.payouts.iter().map(|r| r.amount).sum();
    assert_eq!(sum, pool, "exactly the pool, to the base unit");
    assert_eq!(rewards.allocated, pool);

    let (alice, bob, carol) = (
        key(ALICE).address(),
        key(BOB).address(),
        key(CAROL).address(),
    );
    let mut paid: Vec<Address> = rewards.payouts.iter().map(|r| r.contributor).collect();
    assert!(paid.is_sorted(), "address order");
    paid.sort();
    let mut expected = vec![alice, bob, carol];
    expected.sort();
    assert_eq!(paid, expected);

    // Each amount is the quality-weighted share, rounded down or (largest remainders) up.
    let by = |a: Address| rewards.payouts.iter().find(|r| r.contributor == a).unwrap();
    assert_eq!(
        (by(alice).records, by(bob).records, by(carol).records),
        (5, 5, 2)
    );
    assert_eq!(
        by(bob).contributions,
        ["bob-liability", "bob-confidentiality"]
    );
    let total = U256::from(rewards.total_weight);
    for r in &rewards.payouts {
        let floor = pool * U256::from(r.weight) / total;
        assert!(
            r.amount == floor || r.amount == floor + U256::from(1),
            "{r:?}"
        );
        assert!(r.reason.contains("under QualityWeighted"), "{}", r.reason);
        assert!(r.reason.contains(&r.amount.to_string()), "{}", r.reason);
    }
    assert!(
        rewards
            .payouts
            .iter()
            .any(|r| r.reason.contains("1 base unit of rounding")),
        "an odd pool leaves units to round"
    );

    // Every payee's proof verifies against the root with the ledger's own check.
    let root = report.reward_root.unwrap();
    for r in &rewards.payouts {
        let proof = report.proof_for(r.contributor).unwrap();
        assert_eq!(proof.root, root);
        assert_eq!(proof.payout.account, r.contributor);
        assert_eq!(proof.payout.amount, r.amount);
        assert_eq!(proof.payout.index, U256::from(r.index.unwrap()));
        assert!(PayoutTree::verify(root, proof.payout.leaf(), &proof.proof));
        assert!(proof.verify());
        let mut inflated = proof.payout;
        inflated.amount += U256::from(1);
        assert!(!PayoutTree::verify(root, inflated.leaf(), &proof.proof));
    }
    assert_eq!(report.proof_for(key(DAVE).address()), None, "not a payee");
}

#[tokio::test]
async fn the_same_inputs_give_byte_identical_outputs() {
    let f = scenario().await;
    let (spec, manifest, fetch) = (scenario_spec(), f.manifest_text(), f.fetch());
    let mut runs = Vec::new();
    for concurrency in [1, 8, 3] {
        let options = Options {
            concurrency,
            ..Options::default()
        };
        let report = curate(DATANET, &spec, &manifest, &fetch, &options)
            .await
            .unwrap();
        runs.push((
            serde_json::to_vec_pretty(&report).unwrap(),
            report.dataset.jsonl.clone(),
        ));
    }
    assert!(runs.windows(2).all(|w| w[0] == w[1]));
    // The report round-trips through its JSON (the dataset is its own artifact).
    let report: CurationReport = serde_json::from_slice(&runs[0].0).unwrap();
    assert_eq!(serde_json::to_vec_pretty(&report).unwrap(), runs[0].0);
    let json: serde_json::Value = serde_json::from_slice(&runs[0].0).unwrap();
    assert_eq!(json["counts"]["byReason"]["NearDuplicate"], 1);
    assert_eq!(json["rewards"]["pool"], "1000000000000000000007");
    assert!(json["dataset"].get("jsonl").is_none());
}

#[tokio::test]
async fn the_dataset_root_can_be_recomputed_from_the_artifact_and_the_report() {
    let (_f, report, _) = curated().await;
    let lines: Vec<&str> = std::str::from_utf8(&report.dataset.jsonl)
        .unwrap()
        .lines()
        .collect();
    let mut leaves = Vec::new();
    for item in report.items.iter().filter(|i| i.accepted()) {
        let first = item.first_record.unwrap() as usize;
        for (i, line) in lines
            .iter()
            .enumerate()
            .skip(first)
            .take(item.records as usize)
        {
            leaves.push(Payout {
                index: U256::from(i),
                account: item.contributor,
                amount: U256::from_be_bytes::<32>(Sha256::digest(line.as_bytes()).into()),
            });
        }
    }
    assert_eq!(leaves.len(), lines.len(), "every line belongs to one item");
    assert_eq!(
        Some(PayoutTree::new(&leaves).unwrap().root()),
        report.dataset_root
    );
}

/// The example Datanet and its signed manifest, as `kubectl apply` would create them.
fn example() -> (DatanetSpec, String) {
    let dir = example_dir();
    let datanet: Datanet =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("03-datanet.yaml")).unwrap())
            .unwrap();
    let cm: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("02-contributions.yaml")).unwrap())
            .unwrap();
    let manifest = cm["data"]["manifest.yaml"].as_str().unwrap().to_string();
    (datanet.spec, manifest)
}

#[tokio::test]
async fn the_example_datanet_curates_as_its_comments_say() {
    let (spec, manifest) = example();
    // The example mounts its files at /data; here the example directory is the root.
    let fetch = FileFetch::new(example_dir());
    let report = curate(
        "contract-review/clause-review-data",
        &spec,
        &manifest,
        &fetch,
        &Options::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        report.counts.by_reason,
        [(Reason::Accepted, 5), (Reason::Duplicate, 1)].into(),
        "{:#?}",
        report.items
    );
    assert_eq!(
        outcome(&report, "carol-indemnity-copy").detail,
        "its record repeats records of alice-indemnity"
    );
    for item in report.items.iter().filter(|i| i.accepted()) {
        assert!(item.quality_bps.unwrap() >= 6000, "{item:?}");
    }
    // The generated clauses (examples/contract-review/generate.py): 5 x 40, none a near
    // duplicate of another.
    assert_eq!(report.dataset.records, 200);
    let pool = U256::from(500_000_000_000_000_000_000u128);
    assert_eq!(
        report
            .rewards
            .payouts
            .iter()
            .map(|r| r.amount)
            .sum::<U256>(),
        pool
    );
    assert_eq!(report.rewards.payouts.len(), 3);
    for r in &report.rewards.payouts {
        assert!(report.proof_for(r.contributor).unwrap().verify());
    }

    // The same data under the other policies.
    let mut equal = spec.clone();
    equal.rewards.policy = RewardPolicy::Equal;
    let report = curate(
        "contract-review/clause-review-data",
        &equal,
        &manifest,
        &fetch,
        &Options::default(),
    )
    .await
    .unwrap();
    let amounts: Vec<U256> = report.rewards.payouts.iter().map(|r| r.amount).collect();
    let third = pool / U256::from(3);
    let one = U256::from(1);
    assert_eq!(
        amounts,
        [third + one, third + one, third],
        "500e18 = 3 × 166…666 + 2: the two rounding units go to the two lowest addresses"
    );
    let mut proportional = spec.clone();
    proportional.rewards.policy = RewardPolicy::Proportional;
    let report = curate(
        "contract-review/clause-review-data",
        &proportional,
        &manifest,
        &fetch,
        &Options::default(),
    )
    .await
    .unwrap();
    let records: Vec<u32> = report.rewards.payouts.iter().map(|r| r.records).collect();
    let amounts: Vec<U256> = report.rewards.payouts.iter().map(|r| r.amount).collect();
    assert_eq!(records.iter().sum::<u32>(), 200);
    for (n, amount) in records.iter().zip(&amounts) {
        let floor = pool * U256::from(*n) / U256::from(200);
        assert!(
            *amount == floor || *amount == floor + one,
            "{n} records: {amount}"
        );
    }
    assert_eq!(amounts.iter().sum::<U256>(), pool);
}

#[tokio::test]
async fn dedup_none_and_exact_let_the_copies_in() {
    let (mut spec, manifest) = example();
    let fetch = FileFetch::new(example_dir());
    spec.curation.dedup = Dedup::None;
    let report = curate(
        "contract-review/clause-review-data",
        &spec,
        &manifest,
        &fetch,
        &Options::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.counts.accepted, 6);
    assert_eq!(report.dataset.records, 201);

    // Exact dedup still catches the copy; a reworded record gets in.
    let mut f = Fixture::new();
    let liability = example_file("bob-liability.jsonl");
    let reworded = String::from_utf8(liability.clone())
        .unwrap()
        .replace("Common exclusion", "Usual exclusion");
    f.add("a", BOB, &liability, |_| {});
    f.add("b", CAROL, &liability, |_| {});
    f.add("c", CAROL, reworded.as_bytes(), |_| {});
    let mut spec = scenario_spec();
    spec.curation.dedup = Dedup::Exact;
    let report = curate(
        DATANET,
        &spec,
        &f.manifest_text(),
        &f.fetch(),
        &Options::default(),
    )
    .await
    .unwrap();
    let reasons: Vec<Reason> = report.items.iter().map(|i| i.reason).collect();
    assert_eq!(
        reasons,
        [Reason::Accepted, Reason::Duplicate, Reason::Accepted]
    );
    let c = outcome(&report, "c");
    assert_eq!(
        (c.records, c.dropped_records),
        (1, 2),
        "two of its lines are unchanged"
    );
}

#[tokio::test]
async fn nothing_accepted_means_no_roots_and_nothing_allocated() {
    let mut f = Fixture::new();
    f.add("bad", ALICE, b"not json\n", |_| {});
    let report = curate(
        DATANET,
        &scenario_spec(),
        &f.manifest_text(),
        &f.fetch(),
        &Options::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.counts.by_reason, [(Reason::BadFormat, 1)].into());
    assert_eq!((report.dataset_root, report.reward_root), (None, None));
    assert_eq!(report.rewards.allocated, U256::ZERO);
    assert!(report.rewards.payouts.is_empty());
    assert_eq!(report.dataset.sha256, sha256_hex(b""));

    let empty = curate(
        DATANET,
        &scenario_spec(),
        "contributions: []",
        &f.fetch(),
        &Options::default(),
    )
    .await
    .unwrap();
    assert_eq!(empty.counts, Counts::default());
}

#[tokio::test]
async fn invalid_inputs_are_errors_that_say_what_to_fix() {
    let f = Fixture::new();
    let fetch = f.fetch();
    let run =
        |datanet: &'static str, spec: DatanetSpec, manifest: &'static str, options: Options| {
            let fetch = fetch.clone();
            async move {
                curate(datanet, &spec, manifest, &fetch, &options)
                    .await
                    .unwrap_err()
            }
        };
    let with_pool = |pool: &str| {
        let mut s = scenario_spec();
        s.rewards.pool = pool.into();
        s
    };
    let ok = "contributions: []";

    let e = run(
        DATANET,
        scenario_spec(),
        "contributions: 5",
        Options::default(),
    )
    .await;
    assert!(matches!(e, Error::Manifest(_)));
    assert!(
        e.to_string()
            .contains("Expected YAML or JSON: `contributions:`"),
        "{e}"
    );
    let e = run(DATANET, scenario_spec(), "  \n", Options::default()).await;
    assert_eq!(e.metric_label(), "manifest");
    let entry = |id: &str| {
        format!(
            "- {{id: {id}, contributor: '0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc', uri: 'file:///a', sha256: '00', signature: '0x00', license: MIT}}\n"
        )
    };
    let twice: &'static str = Box::leak(
        format!("contributions:\n{}{}{}", entry("a"), entry("b"), entry("a")).into_boxed_str(),
    );
    let e = run(DATANET, scenario_spec(), twice, Options::default()).await;
    assert_eq!(
        e.to_string(),
        "the manifest lists the id \"a\" twice (entries 1 and 3); ids must be unique: rename or remove one"
    );
    let bad_address: &'static str = "contributions:\n- {id: a, contributor: alice, uri: u, sha256: s, signature: x, license: MIT}\n";
    assert!(
        matches!(run(DATANET, scenario_spec(), bad_address, Options::default()).await, Error::Manifest(m) if m.contains("contributions[0].contributor"))
    );

    for pool in ["0", "000", "", "12a", "-5", "1e18"] {
        assert!(
            matches!(
                run(DATANET, with_pool(pool), ok, Options::default()).await,
                Error::Pool(_)
            ),
            "{pool:?}"
        );
    }
    let too_large = (U256::from(u128::MAX) + U256::from(1)).to_string();
    let e = run(DATANET, with_pool(&too_large), ok, Options::default()).await;
    assert!(
        e.to_string()
            .contains("the most one RewardDistributor distribution holds"),
        "{e}"
    );
    assert!(
        curate(
            DATANET,
            &with_pool(&u128::MAX.to_string()),
            ok,
            &fetch,
            &Options::default()
        )
        .await
        .is_ok()
    );

    for id in ["clauses", "/clauses", "legal/", "a/b/c"] {
        assert!(
            matches!(
                run(id, scenario_spec(), ok, Options::default()).await,
                Error::DatanetId(_)
            ),
            "{id}"
        );
    }
    for options in [
        Options {
            near_duplicate_threshold: 0.0,
            ..Options::default()
        },
        Options {
            near_duplicate_threshold: f64::NAN,
            ..Options::default()
        },
        Options {
            shingle_words: 0,
            ..Options::default()
        },
        Options {
            concurrency: 0,
            ..Options::default()
        },
    ] {
        assert!(matches!(
            run(DATANET, scenario_spec(), ok, options).await,
            Error::Options(_)
        ));
    }
}

#[tokio::test]
async fn a_malformed_manifest_digest_is_a_hash_mismatch_and_fetches_nothing() {
    let (base, seen) = serve(|_, _| Reply::ok("{}")).await;
    let mut f = Fixture::new();
    f.add("upper", ALICE, b"{}", |c| {
        c.sha256 = c.sha256.to_uppercase();
        c.uri = format!("{base}/upper");
    });
    f.add("forged", ALICE, b"{}", |c| {
        c.contributor = key(BOB).address();
        c.uri = format!("{base}/forged");
    });
    let report = curate(
        DATANET,
        &scenario_spec(),
        &f.manifest_text(),
        &f.fetch(),
        &Options::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.items[0].reason, Reason::HashMismatch);
    assert!(
        report.items[0]
            .detail
            .contains("not 64 lowercase hex digits")
    );
    assert_eq!(report.items[1].reason, Reason::BadSignature);
    assert!(seen.lock().unwrap().is_empty(), "nothing was fetched");
}

/// The scenario curated, with the report's bytes as the store holds them.
async fn curated() -> (Fixture, CurationReport, Vec<u8>) {
    let f = scenario().await;
    let report = curate(
        DATANET,
        &scenario_spec(),
        &f.manifest_text(),
        &f.fetch(),
        &Options::default(),
    )
    .await
    .unwrap();
    let bytes = serde_json::to_vec_pretty(&report).unwrap();
    (f, report, bytes)
}

fn check(f: &Fixture, report: &[u8], dataset: &[u8]) -> Result<CurationReport, Forgery> {
    verify(
        DATANET,
        &scenario_spec(),
        &f.manifest,
        &Options::default(),
        report,
        dataset,
    )
}

#[tokio::test]
async fn the_operator_recomputes_an_honest_report_to_the_byte() {
    let (f, report, bytes) = curated().await;
    let verified = check(&f, &bytes, &report.dataset.jsonl).unwrap();
    assert_eq!(verified.reward_root, report.reward_root);
    assert_eq!(verified.dataset_root, report.dataset_root);
    assert_eq!(verified.rewards, report.rewards);
    assert_eq!(verified.counts, report.counts);
}

#[tokio::test]
async fn a_report_that_moves_rewards_does_not_verify() {
    let (f, report, _) = curated().await;
    let mut v: serde_json::Value = serde_json::to_value(&report).unwrap();
    let stranger = key(DAVE).address();
    // Another recipient for the first payout.
    let mut moved = v.clone();
    moved["rewards"]["payouts"][0]["contributor"] = serde_json::json!(stranger.to_string());
    let bytes = serde_json::to_vec(&moved).unwrap();
    assert!(matches!(
        check(&f, &bytes, &report.dataset.jsonl),
        Err(Forgery::RewardTotal(_))
    ));
    // A larger pool than the spec's.
    v["rewards"]["pool"] = serde_json::json!("9000000000000000000000");
    let bytes = serde_json::to_vec(&v).unwrap();
    assert!(matches!(
        check(&f, &bytes, &report.dataset.jsonl),
        Err(Forgery::RewardTotal(m)) if m.contains("the spec says")
    ));
    // The amounts shifted between two payees, the root rebuilt to match.
    let mut shifted = report.clone();
    let one = modelcommons_ledger::units::one_open();
    shifted.rewards.payouts[0].amount += one;
    shifted.rewards.payouts[1].amount -= one;
    shifted.reward_root = PayoutTree::new(&shifted.reward_payouts())
        .ok()
        .map(|t| t.root());
    let bytes = serde_json::to_vec(&shifted).unwrap();
    assert!(matches!(
        check(&f, &bytes, &report.dataset.jsonl),
        Err(Forgery::RewardTotal(_))
    ));
}

#[tokio::test]
async fn a_report_whose_items_or_records_were_changed_does_not_verify() {
    let (f, report, bytes) = curated().await;
    // A record dropped from the dataset.
    let text = String::from_utf8(report.dataset.jsonl.clone()).unwrap();
    let fewer: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    assert!(check(&f, &bytes, fewer.as_bytes()).is_err());
    // A record replaced by another in canonical form: the digest no longer matches.
    let other = text.replacen("Risk", "Riskier", 1);
    assert!(matches!(
        check(&f, &bytes, other.as_bytes()),
        Err(Forgery::Tampered(_))
    ));
    // A rejected contribution turned accepted (the forged signature one).
    let mut flipped = report.clone();
    let i = flipped
        .items
        .iter()
        .position(|i| i.reason == Reason::BadSignature)
        .unwrap();
    flipped.items[i].reason = Reason::Accepted;
    let bytes = serde_json::to_vec(&flipped).unwrap();
    assert!(matches!(
        check(&f, &bytes, &report.dataset.jsonl),
        Err(Forgery::Inconsistent(m)) if m.contains("BadSignature")
    ));
    // A report of another Datanet.
    let mut elsewhere = report.clone();
    elsewhere.datanet = "other/ns".into();
    let bytes = serde_json::to_vec(&elsewhere).unwrap();
    assert!(check(&f, &bytes, &report.dataset.jsonl).is_err());
}

#[test]
fn reformatting_a_manifest_keeps_its_version_digest() {
    let mut f = Fixture::new();
    f.add(
        "a",
        ALICE,
        b"{\"prompt\":\"p\",\"completion\":\"c\"}\n",
        |_| {},
    );
    let yaml = f.manifest_text();
    let reformatted = format!("# a comment\n\n{}\n\n", yaml.replace(": ", ":   "));
    let json = serde_json::to_string_pretty(&f.manifest).unwrap();
    let digest = |t: &str| manifest_digest(&parse_manifest(t).unwrap());
    assert_eq!(digest(&yaml), digest(&reformatted));
    assert_eq!(digest(&yaml), digest(&json));
    let mut changed = f.manifest.clone();
    changed.contributions[0].license = "CC0-1.0".into();
    assert_ne!(digest(&yaml), manifest_digest(&changed));
}
