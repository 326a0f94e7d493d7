"""Prints the side-by-side table of `hack/bench-trainer.sh` from JSON lines on stdin."""
import json
import sys

import statistics

raw = [json.loads(line) for line in sys.stdin if line.strip()]
groups = {}
for r in raw:
    groups.setdefault((r["case"], r["impl"]), []).append(r)
rows = []
for (case, impl), rs in groups.items():
    rows.append({"case": case, "impl": impl,
                 "tokens_per_second": statistics.median(r["tokens_per_second"] for r in rs),
                 "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in rs),
                 "spread": (min(r["tokens_per_second"] for r in rs), max(r["tokens_per_second"] for r in rs))})
ours = "modelcommons (tch)"
ref = {r["case"]: r["tokens_per_second"] for r in rows if r["impl"] != ours}
print(f"{'case':<10} {'implementation':<30} {'tokens/s':>10} {'(min-max)':>15} {'peak RSS MiB':>13} {'vs reference':>13}")
for r in sorted(rows, key=lambda r: (r["case"], r["impl"] != ours)):
    ratio = r["tokens_per_second"] / ref[r["case"]]
    spread = f"{r['spread'][0]:.0f}-{r['spread'][1]:.0f}"
    print(f"{r['case']:<10} {r['impl']:<30} {r['tokens_per_second']:>10.1f} {spread:>15} {r['peak_rss_mib']:>13.0f} {ratio:>12.2f}x")
