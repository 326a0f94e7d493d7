#!/usr/bin/env python3
"""`make check-controllers`: the shape every controller keeps (issue P2, CONTRIBUTING.md).

A controller in its own folder, `operator/src/controller/<kind>/`, must:
  - keep its decide step pure: `decide.rs` and `children.rs` name no API client, no
    `async`/`.await`, no file system, no clock (`now()` is passed in), and import by name
    (no `use super::*`, which would hide what they use);
  - build children as typed k8s-openapi structs: no `json!`, no `serde_json::from_value`, no
    `DynamicObject` anywhere in the folder;
  - have no function over 80 lines.
A controller outside a folder (a single `<kind>.rs` with a `reconcile`) is refused.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONTROLLERS = ROOT / "operator" / "src" / "controller"
MAX_FN_LINES = 80
IO = re.compile(
    r"\b(Api|Client|kube::api|kube::client)\b|\.await\b|\basync\b|std::fs|tokio::|reqwest|"
    r"SystemTime::now|Instant::now|Timestamp::now|\bnow\(\)|use super::\*"
)
UNTYPED = re.compile(r"json!\s*\(|serde_json::from_value|DynamicObject")
FN = re.compile(r"^(\s*)(pub(\([a-z]+\))?\s+)?(async\s+)?fn\s+(\w+)")


def strip_comments(line: str) -> str:
    return line.split("//", 1)[0]


def functions(path: pathlib.Path):
    """(name, first line, length) of every fn, by brace matching from its line."""
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        depth, opened = 0, False
        for j in range(i, len(lines)):
            code = strip_comments(lines[j])
            depth += code.count("{") - code.count("}")
            opened |= "{" in code
            if opened and depth <= 0:
                out.append((m.group(5), i + 1, j - i + 1))
                break
            if not opened and code.rstrip().endswith(";"):
                break  # a declaration without a body
    return out


def tests_start(text: str) -> int:
    """The line where `#[cfg(test)]` starts (tests are not held to the shape)."""
    for i, line in enumerate(text.splitlines()):
        if line.strip() == "#[cfg(test)]" and "mod tests" in "".join(text.splitlines()[i : i + 2]):
            return i + 1
    return 10**9


def main() -> int:
    errors = []
    folders = sorted(p for p in CONTROLLERS.iterdir() if p.is_dir())
    for folder in folders:
        for f in sorted(folder.glob("*.rs")):
            if f.name == "tests.rs":
                continue
            text = f.read_text()
            end = tests_start(text)
            rel = f.relative_to(ROOT)
            for n, line in enumerate(text.splitlines(), 1):
                if n >= end:
                    break
                code = strip_comments(line)
                if f.name in ("decide.rs", "children.rs") and IO.search(code):
                    errors.append(f"{rel}:{n}: the decide step does I/O (or hides its imports): {line.strip()}")
                if UNTYPED.search(code):
                    errors.append(f"{rel}:{n}: an untyped child (build a k8s-openapi struct): {line.strip()}")
            for name, start, length in functions(f):
                if start < end and length > MAX_FN_LINES:
                    errors.append(f"{rel}:{start}: fn {name} is {length} lines (at most {MAX_FN_LINES}): split it")
    for f in sorted(CONTROLLERS.glob("*.rs")):
        if re.search(r"pub async fn reconcile\b", f.read_text()):
            errors.append(f"{f.relative_to(ROOT)}: a controller outside a folder: move it to controller/<kind>/ (see CONTRIBUTING.md)")
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        return 1
    print(f"controllers: {len(folders)} in folders keep the shape")
    return 0


if __name__ == "__main__":
    sys.exit(main())
