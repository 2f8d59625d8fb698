"""Turns bench/e2e/run's per-run results into the markdown report (stdout)
and, optionally, a JSON file.

Input: a TSV, one line per pgbench run:
round, scenario, config, tps, latency avg (ms), p99 (ms), transactions,
proxy CPU (clock ticks, utime+stime), failed transactions, pgbench exit code.
Metadata comes from META_* environment variables set by the run script.

Every figure is the median over the rounds; every ratio is the median of
the per-round ratios (each round runs all configurations back to back, so a
ratio compares runs minutes apart at most, which is what makes it fair on a
shared machine).
"""

import json
import os
import statistics
import sys

ARGS = {
    "S8-simple": "-S -c 8 -j 2 -M simple",
    "S8-extended": "-S -c 8 -j 2 -M extended",
    "S8-prepared": "-S -c 8 -j 2 -M prepared",
    "S1-simple": "-S -c 1 -M simple",
    "S1-extended": "-S -c 1 -M extended",
    "S1-prepared": "-S -c 1 -M prepared",
    "C8-simple": "-S -C -c 8 -j 2 -M simple",
    "S32-simple": "-S -c 32 -j 2 -M simple",
    "T8-simple": "TPC-B-like -c 8 -j 2 -M simple",
    "T8-prepared": "TPC-B-like -c 8 -j 2 -M prepared",
    "T32-simple": "TPC-B-like -c 32 -j 2 -M simple",
    "M8-simple": "-c 8 -j 2 -M simple, one account row with filler",
    "M8-range": "-c 8 -j 2 -M simple, 100 account rows with filler",
}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def main():
    path = sys.argv[1]
    json_path = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
    clk = float(os.environ.get("META_CLK_TCK", "100"))

    runs = []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 10:
                continue
            tps = float(p[3] or 0)
            tx = int(p[6] or 0)
            ticks = int(p[7] or 0)
            ok = p[9] == "0" and tps > 0
            runs.append({
                "round": int(p[0]),
                "scenario": p[1],
                "config": p[2],
                "tps": tps if ok else None,
                "lat_ms": float(p[4]) if ok and p[4] else None,
                "p99_ms": float(p[5]) if ok and p[5] else None,
                "tx": tx,
                "cpu_s": ticks / clk,
                "cpu_us_per_tx": (ticks / clk / tx * 1e6) if ok and tx else None,
                "failed": int(p[8] or 0),
                "exit": int(p[9] or 0),
            })

    scenarios = list(dict.fromkeys(r["scenario"] for r in runs))
    configs = list(dict.fromkeys(r["config"] for r in runs))
    gateways = [c for c in configs if c.startswith("gatehouse-")]
    proxies = [c for c in configs if c != "direct"]
    rounds = sorted({r["round"] for r in runs})
    by = {(r["scenario"], r["config"], r["round"]): r for r in runs}

    def series(sc, cfg, key):
        return [by[(sc, cfg, rd)][key] if (sc, cfg, rd) in by else None for rd in rounds]

    def ratio_med(sc, a, b, key, f=lambda x, y: x / y):
        xs = []
        for rd in rounds:
            ra, rb = by.get((sc, a, rd)), by.get((sc, b, rd))
            if ra and rb and ra[key] is not None and rb[key]:
                xs.append(f(ra[key], rb[key]))
        return med(xs)

    summary = {}
    out = []
    out.append(f"Run {os.environ.get('META_DATE', '')}; {os.environ.get('META_MACHINE', '')}.")
    out.append(f"{os.environ.get('META_VERSIONS', '')}.")
    out.append(f"{os.environ.get('META_PARAMS', '')}.")
    skipped = os.environ.get("META_SKIPPED", "").strip()
    if skipped:
        for line in skipped.splitlines():
            out.append(f"Skipped engine: {line}")
    out.append("")
    out.append("| scenario (pgbench) | configuration | TPS | latency avg | p99 | proxy CPU µs/tx | TPS min–max over rounds | failed |")
    out.append("|---|---|---|---|---|---|---|---|")
    for sc in scenarios:
        for cfg in configs:
            tps = series(sc, cfg, "tps")
            row = {
                "tps": med(tps),
                "lat_ms": med(series(sc, cfg, "lat_ms")),
                "p99_ms": med(series(sc, cfg, "p99_ms")),
                "cpu_us_per_tx": med(series(sc, cfg, "cpu_us_per_tx")) if cfg != "direct" else None,
                "tps_rounds": tps,
                "failed": sum(x or 0 for x in series(sc, cfg, "failed")),
                "errors": sum(1 for x in series(sc, cfg, "exit") if x),
            }
            summary.setdefault(sc, {})[cfg] = row
            valid = [x for x in tps if x is not None]
            spread = f"{min(valid):,.0f}–{max(valid):,.0f}" if valid else "–"
            failed = str(row["failed"]) + (f" ({row['errors']} runs failed)" if row["errors"] else "")
            out.append(
                f"| {sc} (`{ARGS.get(sc, '')}`) | {cfg} | {fmt(row['tps'])} | "
                f"{fmt(row['lat_ms'], 3)} ms | {fmt(row['p99_ms'], 3)} ms | "
                f"{fmt(row['cpu_us_per_tx'], 1) if cfg != 'direct' else '–'} | {spread} | {failed} |"
            )

    # The issue-3 targets, as ratios.
    targets = []

    def verdict(v, ok):
        return "–" if v is None else ("met" if ok(v) else "**missed**")

    # Issue 5: a select returning masked columns costs at most 15% TPS.
    for sc in scenarios:
        if not sc.startswith("M"):
            continue
        for gw in gateways:
            if gw.endswith("-masked") and gw[: -len("-masked")] in configs:
                r = ratio_med(sc, gw, gw[: -len("-masked")], "tps")
                targets.append((f"{sc}: {gw} TPS / masking off", "≥ 0.85", r, verdict(r, lambda v: v >= 0.85), 2))

    if "pgbouncer" in configs:
        for sc in scenarios:
            if not sc.startswith("S8-"):
                continue
            for gw in gateways:
                r = ratio_med(sc, gw, "pgbouncer", "tps")
                targets.append((f"{sc}: {gw} TPS / pgbouncer TPS", "≥ 1.2", r, verdict(r, lambda v: v >= 1.2), 2))
                r = ratio_med(sc, gw, "pgbouncer", "cpu_us_per_tx")
                targets.append((f"{sc}: {gw} CPU/tx / pgbouncer CPU/tx", "≤ 1.0", r, verdict(r, lambda v: v <= 1.0), 2))
        for sc in scenarios:
            if not sc.startswith("S1-") or "direct" not in configs:
                continue
            pgb_add = ratio_med(sc, "pgbouncer", "direct", "lat_ms", lambda x, y: (x - y) * 1000)
            for gw in gateways:
                gw_add = ratio_med(sc, gw, "direct", "lat_ms", lambda x, y: (x - y) * 1000)
                ok = None if gw_add is None or pgb_add is None else gw_add <= pgb_add
                targets.append((
                    f"{sc}: latency added over direct, {gw} vs pgbouncer",
                    "gatehouse ≤ pgbouncer",
                    f"{fmt(gw_add, 1)} µs vs {fmt(pgb_add, 1)} µs",
                    "–" if ok is None else ("met" if ok else "**missed**"),
                    None,
                ))
        for sc in scenarios:
            if not sc.startswith("C8-"):
                continue
            for gw in gateways:
                r = ratio_med(sc, gw, "pgbouncer", "tps")
                targets.append((f"{sc}: {gw} (pool on) TPS / pgbouncer TPS", "≥ 1.0", r, verdict(r, lambda v: v >= 1.0), 2))
    if "gatehouse-uring" in configs and "gatehouse-tokio" in configs:
        for sc in scenarios:
            # TPS per proxy CPU second = transactions / CPU seconds = 1 / (CPU per tx).
            r = ratio_med(sc, "gatehouse-tokio", "gatehouse-uring", "cpu_us_per_tx")
            targets.append((f"{sc}: uring / tokio, TPS per proxy CPU second", "≥ 1.15", r, verdict(r, lambda v: v >= 1.15), 2))
    else:
        targets.append(("io_uring / tokio, TPS per proxy CPU second", "≥ 1.15", "not measured: one engine did not run", "–", None))

    out.append("")
    out.append("| target (issue 3; issue 5 for M*; median of per-round ratios) | target | measured | |")
    out.append("|---|---|---|---|")
    for name, tgt, val, v, nd in targets:
        shown = fmt(val, nd) if nd is not None else val
        out.append(f"| {name} | {tgt} | {shown} | {v} |")

    # Context: how each proxy compares with direct.
    if "direct" in configs:
        out.append("")
        out.append("| scenario | " + " | ".join(f"{p} TPS / direct" for p in proxies) + " |")
        out.append("|---|" + "---|" * len(proxies))
        for sc in scenarios:
            cells = [fmt(ratio_med(sc, p, "direct", "tps"), 2) for p in proxies]
            out.append(f"| {sc} | " + " | ".join(cells) + " |")

    rss = os.environ.get("META_RSS", "").strip()
    store = os.environ.get("META_STORE", "").strip()
    extra = {}
    if rss:
        out.append("")
        out.append("Peak RSS (VmHWM) over the whole run: " + ", ".join(
            f"{l.split()[0]} {int(l.split()[1]) / 1024:.1f} MiB" for l in rss.splitlines() if len(l.split()) == 2) + ".")
        extra["peak_rss_kib"] = {l.split()[0]: int(l.split()[1]) for l in rss.splitlines() if len(l.split()) == 2}
    if store:
        out.append("Gatehouse store size at the end: " + ", ".join(
            f"{l.split()[0]} {int(l.split()[1]) / 1024:.0f} MiB" for l in store.splitlines() if len(l.split()) == 2) + ".")
        extra["store_kib"] = {l.split()[0]: int(l.split()[1]) for l in store.splitlines() if len(l.split()) == 2}

    print("\n".join(out))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({
                "date": os.environ.get("META_DATE"),
                "machine": os.environ.get("META_MACHINE"),
                "versions": os.environ.get("META_VERSIONS"),
                "params": os.environ.get("META_PARAMS"),
                "skipped": skipped.splitlines(),
                "runs": runs,
                "summary": summary,
                "targets": [{"name": n, "target": t, "measured": v, "verdict": vd} for n, t, v, vd, _ in targets],
                **extra,
            }, f, indent=2)


if __name__ == "__main__":
    main()
