#!/usr/bin/env python3
"""Generates the example's reviewed clauses: data/contributions/*.jsonl.

Deterministic (templates x parameters, a fixed seed, no downloads, the standard library
only): the same run writes the same bytes, and `make test` fails when the files
differ from what this writes (`generate.py --check`). After a change, run `make examples`
(this script, then sign-contributions.sh, which hashes and signs each file as its
contributor would; operator/tests/example_contributions.rs checks both).

Each record is a clause, as a contract would word it, and its review: a verdict the rubric
can score by exact match. A clause is one operative sentence (the part that decides the
verdict: a kind of clause, worded one of several ways, risky or balanced) set among
sentences that do not change it (who the parties are, what the agreement is for, when it
starts or where its details are), so a model has to read the clause to answer, and no two records are
near duplicates of each other (the generator keeps a record only when it differs enough from
every one kept). The verdict is short and fixed per (kind, risky or not):

    Risk: uncapped indemnity. Suggest: cap it at the fees paid.
    Balanced. No change needed.

Contributors (anvil's dev accounts 2-4, as in sign-contributions.sh) cover two kinds each, 
carol one; she also sends a copy of alice's first record, which curation rejects as a Duplicate.
"""

import json
import random
import sys
from pathlib import Path

PARTIES = [
    ("Supplier", "Customer"),
    ("Licensor", "Licensee"),
    ("Vendor", "Client"),
    ("Contractor", "Company"),
    ("Provider", "Buyer"),
    ("Consultant", "Principal"),
    ("Seller", "Purchaser"),
    ("Service Provider", "Subscriber"),
    ("Manufacturer", "Distributor"),
    ("Agency", "Advertiser"),
    ("Developer", "Operator"),
    ("Carrier", "Shipper"),
]

PURPOSES = [
    "the supply of cloud hosting services",
    "the licence of the analytics software",
    "the delivery of industrial pumps",
    "the provision of payroll processing",
    "the maintenance of the office lifts",
    "the translation of technical manuals",
    "the design of a customer loyalty app",
    "the transport of refrigerated goods",
    "the audit of the annual accounts",
    "the installation of solar panels",
    "the cleaning of the retail premises",
    "the hosting of the annual conference",
    "the supply of office furniture",
    "the development of a billing platform",
    "the storage of archived records",
    "the training of warehouse staff",
    "the catering of the staff canteen",
    "the repair of delivery vehicles",
    "the printing of product catalogues",
    "the recruitment of sales engineers",
    "the security of the data centre",
    "the testing of medical devices",
    "the management of the car fleet",
    "the marketing of the new product range",
]

# kind -> [(risky, verdict, [wordings])]; wordings use {a}, {b}, {n} (a number), {law}.
KINDS = {
    "indemnity": [
        (True, "Risk: uncapped indemnity. Suggest: cap it at the fees paid.", [
            "The {a} shall indemnify the {b} against all losses arising from any breach of this Agreement.",
            "The {a} shall defend, indemnify and hold harmless the {b} from any claim whatsoever.",
            "The {a} indemnifies the {b} in full for every loss, however caused, without limit.",
        ]),
        (False, "Balanced. No change needed.", [
            "Each party shall indemnify the other for third-party claims caused by its gross negligence, subject to the cap in clause {n}.",
            "Each party indemnifies the other against third-party claims arising from its own wilful misconduct, up to the limit in clause {n}.",
        ]),
    ],
    "termination": [
        (True, "Risk: termination without notice. Suggest: require written notice.", [
            "The {a} may terminate this Agreement at any time and without notice.",
            "The {a} may end this Agreement immediately for convenience, without giving any notice to the {b}.",
        ]),
        (False, "Balanced. No change needed.", [
            "Either party may terminate this Agreement on {n} days written notice to the other.",
            "Either party may end this Agreement by giving the other not less than {n} days notice in writing.",
        ]),
    ],
    "confidentiality": [
        (True, "Risk: perpetual confidentiality. Suggest: limit its term.", [
            "The {b} shall keep the {a}'s information confidential forever.",
            "The {b} must treat everything it learns from the {a} as confidential in perpetuity.",
        ]),
        (False, "Balanced. No change needed.", [
            "Each party shall keep the other's confidential information secret for {n} years after termination.",
            "Each party must protect the confidential information of the other for a period of {n} years.",
        ]),
    ],
    "liability": [
        (True, "Risk: unlimited liability. Suggest: add a liability cap.", [
            "The {a} accepts unlimited liability for any loss suffered by the {b}.",
            "Nothing in this Agreement limits the liability of the {a} to the {b} for any loss of any kind.",
        ]),
        (False, "Balanced. No change needed.", [
            "The total liability of the {a} shall not exceed the fees paid in the {n} months before the claim.",
            "The liability of each party is capped at the charges paid under this Agreement in the previous {n} months.",
        ]),
    ],
    "governing-law": [
        (True, "Risk: unclear governing law. Suggest: name one law.", [
            "This Agreement is governed by whatever law the {a} chooses at the time of a dispute.",
            "The {a} may decide later which law governs this Agreement.",
        ]),
        (False, "Balanced. No change needed.", [
            "This Agreement and any dispute arising from it are governed by the laws of {law}.",
            "The laws of {law} govern this Agreement, and its courts have exclusive jurisdiction.",
        ]),
    ],
}

SCHEDULES = [
    "The services are described in Schedule {k}.",
    "The Agreement starts on {d}.",
    "The prices are set out in Schedule {k} and reviewed each year.",
    "Deliveries begin on {d} at the sites listed in Schedule {k}.",
    "The service levels of Schedule {k} apply from {d}.",
    "Each site named in Schedule {k} has its own contact person.",
    "The first review meeting takes place on {d}.",
    "Any change to Schedule {k} needs the signature of both parties.",
    "",
]

DATES = ["1 March 2027", "15 January 2027", "30 June 2027", "1 October 2026", "2 May 2027",
         "1 September 2027"]

LAWS = ["England and Wales", "New York", "Delaware", "Ontario", "Singapore", "Ireland",
        "Scotland", "California", "New South Wales", "the Netherlands"]

CONTRIBUTORS = {
    "alice": ["indemnity", "termination"],
    "bob": ["confidentiality", "liability"],
    "carol": ["governing-law"],
}

PER_KIND = 40  # records per (contributor, kind): 5 kinds x 40 = 200, plus the copy
SEED = 20261201


def words(text):
    """Lower-case alphanumeric words, as curation splits them."""
    out, w = [], ""
    for c in text:
        if c.isalnum():
            w += c.lower()
        elif w:
            out.append(w)
            w = ""
    return out + ([w] if w else [])


def shingles(record):
    """The record's 3-word shingles (prompt and completion), as curation's near-dedup."""
    w = words(record["prompt"]) + words(record["completion"])
    return {tuple(w[i:i + 3]) for i in range(len(w) - 2)}


# Kept records are at most this similar (exact Jaccard of their shingles) to each other,
# well under curation's near-duplicate threshold (0.5, estimated by MinHash).
MAX_SIMILARITY = 0.4


def clause(rng, kind):
    risky, verdict, wordings = rng.choice(KINDS[kind])
    a, b = rng.choice(PARTIES)
    n = rng.choice([7, 9, 10, 12, 14, 15, 18, 20, 24, 30, 45, 60, 90])
    law = rng.choice(LAWS)
    operative = rng.choice(wordings).format(a=a, b=b, n=n, law=law)
    intro = f"This Agreement between the {a} and the {b} is for {rng.choice(PURPOSES)}."
    schedule = rng.choice(SCHEDULES).format(k=rng.randint(1, 9), d=rng.choice(DATES))
    sentences = [intro, schedule, operative]
    text = " ".join(s for s in sentences if s)
    return {"prompt": f'Review this clause: "{text}"', "completion": verdict}


def main():
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        raise SystemExit("usage: generate.py [--check]")
    files = generate()
    out = Path(__file__).resolve().parent / "data" / "contributions"
    if check:
        have = {p.name: p.read_text() for p in out.glob("*.jsonl")}
        if have != files:
            raise SystemExit(
                f"{out} differs from what generate.py writes: run `make examples` and commit"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jsonl"):
        old.unlink()
    for name, text in files.items():
        (out / name).write_text(text)


def generate():
    """The files, by name: their text."""
    rng = random.Random(SEED)
    files = {}
    first, kept = None, []
    for who, kinds in CONTRIBUTORS.items():
        for kind in kinds:
            rows = []
            for _ in range(100_000):
                if len(rows) == PER_KIND:
                    break
                r = clause(rng, kind)
                sh = shingles(r)
                if all(len(sh & k) / len(sh | k) <= MAX_SIMILARITY for k in kept):
                    kept.append(sh)
                    rows.append(r)
            else:
                raise SystemExit(f"{who}-{kind}: only {len(rows)} records differ enough; add templates")
            first = first or rows[0]
            files[f"{who}-{kind}.jsonl"] = lines(rows)
    files["carol-indemnity-copy.jsonl"] = lines([first])
    return files


def lines(rows):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


if __name__ == "__main__":
    main()
