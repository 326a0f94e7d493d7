#!/usr/bin/env python3
"""`make check-controllers`: the shape every controller keeps (issue P2, CONTRIBUTING.md).

A controller in its own folder, `operator/src/controller/<kind>/`, must:
  - keep its decide step pure: `decide.rs` and `children.rs` name no API client, no
    `async`/`.await`, no file system, no clock (`now()` is passed in);
  - build children as typed k8s-openapi structs: no `json!`, no `serde_json::from_value`, no
    `DynamicObject` anywhere in the folder;
  - have no function over 80 lines.
The controllers not moved into a folder yet are held to a ratchet: their `json!` count and
their longest function may shrink, never grow (the numbers below; lower them as they shrink).
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONTROLLERS = ROOT / "operator" / "src" / "controller"
MAX_FN_LINES = 80
# Not moved yet: (json! uses, longest function in lines). Lower these, never raise them.
RATCHET = {
    "datanet.rs": (0, 287),
}
IO = re.compile(
    r"\b(Api\s*<|Api::|kube::Client|Client::|\.await\b|async\s+fn|std::fs|tokio::|reqwest|"
    r"SystemTime::now|Instant::now|jiff::Timestamp::now|controller::now)"
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
                    errors.append(f"{rel}:{n}: the decide step does I/O: {line.strip()}")
                if UNTYPED.search(code):
                    errors.append(f"{rel}:{n}: an untyped child (build a k8s-openapi struct): {line.strip()}")
            for name, start, length in functions(f):
                if start < end and length > MAX_FN_LINES:
                    errors.append(f"{rel}:{start}: fn {name} is {length} lines (at most {MAX_FN_LINES}): split it")
    for name, (max_json, max_fn) in RATCHET.items():
        f = CONTROLLERS / name
        if not f.exists():
            continue
        text = f.read_text()
        end = tests_start(text)
        body = "\n".join(strip_comments(l) for l in text.splitlines()[: end - 1])
        uses = len(re.findall(r"json!\s*\(", body))
        longest = max((l for _, s, l in functions(f) if s < end), default=0)
        if uses > max_json:
            errors.append(f"{f.relative_to(ROOT)}: {uses} json! uses (the ratchet allows {max_json}): build typed children")
        if longest > max_fn:
            errors.append(f"{f.relative_to(ROOT)}: a {longest}-line function (the ratchet allows {max_fn})")
        if uses < max_json or longest < max_fn:
            print(f"note: {name} is down to {uses} json! uses and a {longest}-line function: lower its ratchet in {pathlib.Path(__file__).name}")
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        return 1
    print(f"controllers: {len(folders)} in folders keep the shape; {len(RATCHET)} on the ratchet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
