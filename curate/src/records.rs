//! Records of a contribution: parsing into the Datanet's declared shape, the canonical form
//! written into the curated dataset, the key of exact duplicates and the quality score.

use std::collections::BTreeSet;

use modelcommons_crds::datanet::{DataFormat, RecordKind};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::minhash;

/// One record of a contribution, reduced to the declared fields.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// The declared fields as canonical JSON: keys sorted at every level, no insignificant
    /// whitespace, values exactly as contributed. This is the line written to the dataset.
    pub canonical: String,
    /// sha256 of the canonical JSON with every string's whitespace collapsed and trimmed: two
    /// records with the same key are exact duplicates.
    pub exact_key: [u8; 32],
    /// The shingles of the declared fields' text, for near-duplicate detection.
    pub shingles: Vec<u64>,
    /// The quality score in basis points (see [`quality_bps`]).
    pub quality_bps: u32,
}

/// Parses a contribution into records of `format`, or says why it does not have that format.
/// `shingle_words` is the shingle size for [`Record::shingles`].
pub(crate) fn parse(
    bytes: &[u8],
    format: &DataFormat,
    shingle_words: usize,
) -> Result<Vec<Record>, String> {
    match format.kind {
        RecordKind::Jsonl => parse_jsonl(bytes, &format.fields, shingle_words),
    }
}

fn parse_jsonl(
    bytes: &[u8],
    fields: &[String],
    shingle_words: usize,
) -> Result<Vec<Record>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {}); JSONL must be UTF-8",
            e.valid_up_to()
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| format!("line {n} is not JSON: {e}; each line must be one JSON object"))?;
        let Value::Object(object) = value else {
            return Err(format!(
                "line {n} is {}, not a JSON object with the fields {}",
                kind_of(&value),
                fields.join(", ")
            ));
        };
        let mut declared = Vec::with_capacity(fields.len());
        for field in fields {
            match object.get(field) {
                Some(v) if !v.is_null() => declared.push((field.as_str(), v)),
                _ => {
                    return Err(format!(
                        "line {n} lacks the field {field:?} (every record needs {})",
                        fields.join(", ")
                    ));
                }
            }
        }
        records.push(record(&declared, shingle_words));
    }
    if records.is_empty() {
        return Err("no records: the file has no non-blank lines".into());
    }
    Ok(records)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn record(declared: &[(&str, &Value)], shingle_words: usize) -> Record {
    let mut sorted: Vec<_> = declared.to_vec();
    sorted.sort_by_key(|(k, _)| *k);
    let object = |normalize: bool| {
        let mut out = String::from("{");
        for (i, (k, v)) in sorted.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::from(*k).to_string());
            out.push(':');
            write_canonical(v, normalize, &mut out);
        }
        out.push('}');
        out
    };
    let canonical = object(false);
    let exact_key = Sha256::digest(object(true).as_bytes()).into();
    // The text of each declared field, in the declared order.
    let texts: Vec<String> = declared
        .iter()
        .map(|(_, v)| {
            let mut parts = Vec::new();
            strings(v, &mut parts);
            parts.join("\n")
        })
        .collect();
    let all_words = minhash::words(&texts.join("\n"));
    Record {
        canonical,
        exact_key,
        shingles: minhash::shingles(&all_words, shingle_words),
        quality_bps: quality_bps(&texts),
    }
}

/// Writes `v` as JSON with object keys sorted at every level; with `normalize`, every
/// string's whitespace runs become one space and ends are trimmed.
fn write_canonical(v: &Value, normalize: bool, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                write_canonical(&m[k], normalize, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, normalize, out);
            }
            out.push(']');
        }
        Value::String(s) if normalize => {
            let collapsed = s.split_whitespace().collect::<Vec<_>>().join(" ");
            out.push_str(&Value::from(collapsed).to_string());
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Every string inside `v` (object values in sorted key order).
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            keys.into_iter().for_each(|k| strings(&m[k], out));
        }
        _ => {}
    }
}

/// Words at which a record gets full credit for length.
const FULL_LENGTH_WORDS: u64 = 8;
/// Words at which one field gets full credit.
const FULL_FIELD_WORDS: u64 = 3;

/// The quality score of a record, in basis points (0–10000), from the text of each declared
/// field. A heuristic that catches what is cheap to catch without a model, the product of
/// four factors, each 0–10000:
///
/// - **fields**: the mean over the declared fields of each one's fill, full from
///   [`FULL_FIELD_WORDS`] words (an empty or one-word answer scores low);
/// - **length**: full from [`FULL_LENGTH_WORDS`] words in all, proportionally less below;
/// - **diversity**: the share of distinct word trigrams (distinct words below three words),
///   full from one half — repeated boilerplate and spam score low;
/// - **clean**: the share of characters that are neither control characters (other than
///   newline, carriage return and tab) nor U+FFFD, the mark of a broken encoding.
///
/// Integer arithmetic only, so the score is the same everywhere.
pub(crate) fn quality_bps(field_texts: &[String]) -> u32 {
    const FULL: u64 = 10_000;
    if field_texts.is_empty() {
        return 0;
    }
    let field_words: Vec<Vec<String>> = field_texts.iter().map(|t| minhash::words(t)).collect();
    let fields = field_words
        .iter()
        .map(|w| FULL * (w.len() as u64).min(FULL_FIELD_WORDS) / FULL_FIELD_WORDS)
        .sum::<u64>()
        / field_texts.len() as u64;

    let words: Vec<String> = field_words.into_iter().flatten().collect();
    let n = words.len() as u64;
    let length = (FULL * n / FULL_LENGTH_WORDS).min(FULL);

    let (distinct, total) = if words.len() >= 3 {
        let trigrams: BTreeSet<&[String]> = words.windows(3).collect();
        (trigrams.len() as u64, n - 2)
    } else {
        let unique: BTreeSet<&String> = words.iter().collect();
        (unique.len() as u64, n)
    };
    let diversity = (2 * FULL * distinct)
        .checked_div(total)
        .map_or(0, |d| d.min(FULL));

    let (mut chars, mut bad) = (0u64, 0u64);
    for c in field_texts.iter().flat_map(|t| t.chars()) {
        chars += 1;
        if c == '\u{fffd}' || (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            bad += 1;
        }
    }
    let clean = (FULL * (chars - bad)).checked_div(chars).unwrap_or(0);

    let score = fields * length / FULL * diversity / FULL * clean / FULL;
    u32::try_from(score).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use super::*;

    fn format(fields: &[&str]) -> DataFormat {
        DataFormat {
            kind: RecordKind::Jsonl,
            fields: fields.iter().map(|f| f.to_string()).collect(),
            max_bytes_per_contribution: None,
        }
    }

    fn parse_pc(text: &str) -> Result<Vec<Record>, String> {
        parse(text.as_bytes(), &format(&["prompt", "completion"]), 3)
    }

    const GOOD: &str = r#"{"prompt":"Review this clause: \"The Supplier may terminate this Agreement immediately if the Customer fails to pay any amount when due.\"","completion":"Risk: no cure period. A single late invoice allows immediate termination. Suggest: written notice and a cure period of at least 30 days."}"#;

    #[test]
    fn records_keep_the_declared_fields_in_canonical_form() {
        let records = parse_pc(
            "\u{feff}{\"source\":\"x\",\"completion\":{\"b\":1,\"a\":[true,null]},\"prompt\":\"p  q\"}\n\n",
        )
        .unwrap();
        assert_eq!(records.len(), 1, "a BOM and blank lines are not records");
        assert_eq!(
            records[0].canonical, r#"{"completion":{"a":[true,null],"b":1},"prompt":"p  q"}"#,
            "sorted keys, undeclared fields dropped, strings untouched"
        );
    }

    #[test]
    fn exact_keys_ignore_whitespace_key_order_and_undeclared_fields() {
        let a = parse_pc(r#"{"prompt":"Is this  fair?","completion":"Yes.\n"}"#).unwrap();
        let b =
            parse_pc(r#"{ "completion" : " Yes.", "prompt":"Is this fair?", "id": 7 }"#).unwrap();
        let c = parse_pc(r#"{"prompt":"Is this fair?","completion":"No."}"#).unwrap();
        assert_eq!(a[0].exact_key, b[0].exact_key);
        assert_ne!(a[0].canonical, b[0].canonical, "the dataset keeps the text");
        assert_ne!(a[0].exact_key, c[0].exact_key);
    }

    #[test]
    fn a_bad_format_says_which_line_and_what_is_wrong() {
        let err = |t: &str| parse_pc(t).unwrap_err();
        assert!(err(&format!("{GOOD}\n{{\"prompt\": \"x\"")).starts_with("line 2 is not JSON"));
        assert_eq!(
            err(&format!("{GOOD}\n[1,2]")),
            "line 2 is an array, not a JSON object with the fields prompt, completion"
        );
        assert_eq!(
            err(r#"{"prompt":"x","completion":null}"#),
            "line 1 lacks the field \"completion\" (every record needs prompt, completion)"
        );
        assert_eq!(err("\n  \n"), "no records: the file has no non-blank lines");
        assert!(
            parse(b"{\"text\":\"\xff\"}", &format(&["text"]), 3)
                .unwrap_err()
                .starts_with("not UTF-8 text (invalid byte at offset 9)")
        );
    }

    #[test]
    fn quality_scores_real_text_high_and_junk_low() {
        let q = |fields: &[&str]| {
            quality_bps(&fields.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(parse_pc(GOOD).unwrap()[0].quality_bps, 10_000);
        let spam = "buy now ".repeat(30);
        assert!(q(&["Review this clause", &spam]) < 2_000, "repetition");
        assert!(
            q(&["Review this clause", ""]) <= 5_000,
            "an empty field of two halves the score at least"
        );
        // fields: one word of three in each (3333); length: two words of eight (2500).
        assert_eq!(q(&["Short", "ok"]), 3333 * 2500 / 10_000);
        assert!(
            q(&[
                "Review this clause: the Supplier may terminate at will.",
                "ok"
            ]) < 7_000,
            "a one-word answer"
        );
        let broken = "Risk \u{fffd}\u{fffd} no cure \u{0}\u{0} period for a late invoice";
        let clean = "Risk no cure period for a late invoice, add thirty days";
        assert!(q(&["Review this clause", broken]) < q(&["Review this clause", clean]));
        assert_eq!(q(&[]), 0);
    }
}
