#!/usr/bin/python3
"""The performance report (issue 10): runs every benchmark of the project from an existing build
directory (it builds nothing) and writes REPORT.md with tables and gnuplot PNGs.

  perf/report.sh                  full run (~15 min), writes perf/REPORT.md and perf/plots/*.png
  perf/report.sh --quick          CI smoke (<= 60 s): the in-process benchmarks in --quick mode,
                                  written to BUILD/perf-report/ (never over perf/REPORT.md)
  perf/report.sh --only flow,rules   a subset (names below), same output places

Every figure sits beside its baseline from the same run (testpmd io, rte_hash, rte_acl, OpenSSL,
the idle control thread, testpmd in the lab, the untagged path) and the ratio. pipeline_full runs
with --latency: per-packet latency percentiles through the pipeline beside a pass-through and a
parser-only run of the same harness (table "Latency through the pipeline", two plots). Raw outputs of
every benchmark are kept in OUT/raw/ so a figure can be traced to the line it came from. A
benchmark that fails or prints nothing the parser recognises is reported as such in REPORT.md
and makes the command exit 1.
"""
import argparse
import datetime
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINE_RATE_64 = 100e9 / ((64 + 20) * 8)          # 148.81 Mpps
IMIX_MEAN = (7 * 64 + 4 * 576 + 1 * 1500) / 12   # simple IMIX 7:4:1
LINE_RATE_IMIX = 100e9 / ((IMIX_MEAN + 20) * 8)
LINE_RATE_1518 = 100e9 / ((1518 + 20) * 8)


def num(s):
    return float(s.replace(",", ""))


class Run:
    """Runs benchmarks, keeps their raw output, records failures and the load around each."""

    def __init__(self, out: Path, build: Path):
        self.out, self.build = out, build
        (out / "raw").mkdir(parents=True, exist_ok=True)
        self.failures = []
        self.log = []  # (name, command, seconds, load before, load after, rc)

    def __call__(self, name, cmd, timeout):
        load0 = os.getloadavg()[0]
        t0 = time.monotonic()
        print(f"== {name}: {' '.join(cmd)}", flush=True)
        try:
            p = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=timeout, text=True, errors="replace")
            text, rc = p.stdout, p.returncode
        except subprocess.TimeoutExpired as e:
            text = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            text += f"\n[report: timed out after {timeout} s]\n"
            rc = -1
        secs = time.monotonic() - t0
        (self.out / "raw" / f"{name}.txt").write_text(f"$ {' '.join(cmd)}\n{text}")
        self.log.append((name, " ".join(cmd), secs, load0, os.getloadavg()[0], rc))
        if rc != 0:
            self.failures.append(f"{name}: exit {rc} (see raw/{name}.txt)")
            print(text[-2000:], file=sys.stderr)
        return text if rc == 0 else None

    def bad_parse(self, name, what):
        self.failures.append(f"{name}: printed no {what} (see raw/{name}.txt)")
        return None


# ---------------------------------------------------------------- parsers (one per benchmark)

def parse_testpmd(text):
    m = re.search(r"CPU cycles/packet=([\d.]+)", text or "")
    return float(m.group(1)) if m else None


ROW4 = re.compile(r"^(?P<name>\S.*?)\s{2,}(?P<c>[\d.]+)\s+(?P<lo>[\d.]+)\s+(?P<hi>[\d.]+)\s+(?P<mpps>[\d.]+)")


def parse_pipeline_full(text):
    rows = []
    for line in (text or "").splitlines():
        if line.startswith("latency per packet"):
            break  # the --latency tables follow; their rows are not scenario rows
        m = ROW4.match(line)
        if m and not line.startswith(("flow table", "pipeline_full")):
            rows.append({"name": m["name"].strip(), "cyc": num(m["c"]), "lo": num(m["lo"]),
                         "hi": num(m["hi"]), "mpps": num(m["mpps"]),
                         "verified": "WRONG" not in line})
    ok = "all scenarios verified by counters" in (text or "")
    return rows, ok


PCT_NAMES = ("p50", "p90", "p99", "p99.9", "max")
LAT_CELL = r"(\d+) \[(\d+)-(\d+)\]"
LAT_ROW = re.compile(r"^(?P<name>\S.*?)\s{2,}(?P<until>verdict|tx)\s+(?P<burst>\d+)\s+(?P<cpp>[\d.]+)"
                     + "".join(rf"\s+{LAT_CELL}" for _ in PCT_NAMES) + r"\s+(?P<n>\d+)\s+(?P<stalled>\d+)\s*$")


def parse_latency(text):
    """pipeline_full_bench --latency: the cycles table (median [min-max] of the runs per percentile)."""
    rows, on = [], False
    for line in (text or "").splitlines():
        if line.startswith("latency per packet, cycles"):
            on = True
            continue
        if on and not line.strip():
            break
        m = LAT_ROW.match(line) if on else None
        if m:
            g = m.groups()[4:19]  # 3 numbers per percentile
            rows.append({"name": m["name"].strip(), "until": m["until"], "burst": int(m["burst"]),
                         "cpp": num(m["cpp"]), "samples": int(m["n"]), "stalled": int(m["stalled"]),
                         "pct": {k: tuple(num(x) for x in g[3 * i:3 * i + 3]) for i, k in enumerate(PCT_NAMES)}})
    return rows


def parse_pipeline_bench(text):
    rows, cur = [], None
    for line in (text or "").splitlines():
        m = re.match(r"^(?P<f>\S.*?\))?\s+(?P<loop>io|parse\+fwd)\s+(?P<c>[\d.]+)\s+(?P<lo>[\d.]+)\s+(?P<hi>[\d.]+)\s+(?P<mpps>[\d.]+)", line)
        if m:
            if m["f"]:
                cur = m["f"].strip()
            rows.append({"frames": cur, "loop": m["loop"], "cyc": num(m["c"]), "lo": num(m["lo"]),
                         "hi": num(m["hi"]), "mpps": num(m["mpps"])})
    return rows


def parse_flow_table(text):
    rows, cur = [], None
    for line in (text or "").splitlines():
        m = re.match(r"^(2\^\d+)?\s+(FlowTable|rte_hash)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*([\d.]+|-)?", line)
        if m:
            if m.group(1):
                cur = {"size": m.group(1), "flows": 2 ** int(m.group(1)[2:])}
                rows.append(cur)
            key = "ft" if m.group(2) == "FlowTable" else "rh"
            cur[key] = {"lookup": num(m.group(3)), "lo": num(m.group(4)), "hi": num(m.group(5)),
                        "insert": num(m.group(6))}
            if key == "ft" and m.group(7) not in (None, "-"):
                cur["mib"] = num(m.group(7))
    return [r for r in rows if "ft" in r and "rh" in r]


def parse_crypto(text):
    rows, extra = [], {}
    for line in (text or "").splitlines():
        m = re.match(r"^(AES-\d+)\s+(HDR|FULL)\s+(\d+)\s+\|\s+([\d.]+)\s+\[([\d.]+)\.\.([\d.]+)\]\s+\((\d+)\)\s+\|\s+([\d.]+)\s+\[[\d.]+\.\.[\d.]+\]\s+\((\d+)\)\s+\|\s+([\d.]+)x", line)
        if m:
            rows.append({"alg": m[1], "cov": m[2], "bytes": int(m[3]), "ns": num(m[4]), "cyc": int(m[7]),
                         "ossl_ns": num(m[8]), "ossl_cyc": int(m[9]), "ratio": num(m[10])})
        m = re.match(r"^replay insert\+check, 32 prefetched: ([\d.]+) cycles", line)
        if m:
            extra["replay"] = num(m[1])
    return rows, extra


def parse_rules(text):
    rows, cur = [], None
    for line in (text or "").splitlines():
        m = re.match(r"^rules=(\d+) identities=(\d+) segments=(\d+)", line)
        if m:
            cur = {"rules": int(m[1]), "ids": int(m[2]), "segs": int(m[3])}
            rows.append(cur)
            continue
        m = re.match(r"^\s+classify\s+(ztgate|rte_acl)\s+median\s+([\d.]+)\s+min\s+([\d.]+)\s+max\s+([\d.]+)", line)
        if m and cur is not None:
            cur[m[1]] = num(m[2])
        m = re.match(r"^\s+compile\s+yaml parse\+validate ([\d.]+) s, compile ([\d.]+) s \(rte_acl build ([\d.]+) s\)", line)
        if m and cur is not None:
            cur["parse_s"], cur["compile_s"], cur["acl_build_s"] = num(m[1]), num(m[2]), num(m[3])
        m = re.match(r"^\s+memory\s+tables ([\d.]+) MiB", line)
        if m and cur is not None:
            cur["mib"] = num(m[1])
        m = re.search(r"mismatches (\d+) of (\d+)", line)
        if m and cur is not None:
            cur["mismatch"] = int(m[1])
    l7 = re.search(r"L7 Hyperscan: (.*)", text or "")
    return [r for r in rows if "ztgate" in r and "rte_acl" in r], (l7.group(1) if l7 else None)


def parse_compile_publish(text):
    out = {}
    for line in (text or "").splitlines():
        m = re.match(r"^\s+(.+?)\s+median\s+([\d.]+) (ms|us|/s|Mpps)\s+\(min ([\d.]+), max ([\d.]+)\)", line)
        if m:
            out[m[1].strip()] = (num(m[2]), m[3], num(m[4]), num(m[5]))
    return out


def parse_propagation(text):
    rows = []
    for line in (text or "").splitlines():
        m = re.match(r"^\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", line)
        if m:
            rows.append({"n": int(m[1]), "samples": int(m[2]), "p50": num(m[3]), "p99": num(m[4]),
                         "max": num(m[5]), "all50": num(m[6]), "all99": num(m[7])})
    return rows


def parse_gbit(text, label):
    m = re.search(re.escape(label) + r"\s+median\s+([\d.]+) Gbit/s\s+min ([\d.]+)\s+max ([\d.]+)", text or "")
    return (num(m[1]), num(m[2]), num(m[3])) if m else None


def parse_agent_bench(text):
    rows = []
    for line in (text or "").splitlines():
        m = re.match(r"^(AES-\d+)\s+(HDR|FULL)\s+(\d+)\s+\|\s+(\d+)\s+\[.*?\]\s+(\d+) ns\s+\|\s+(\d+)\s+\[.*?\]\s+\d+ ns\s+\|\s+(\d+)\s+\[", line)
        if m:
            rows.append({"alg": m[1], "cov": m[2], "bytes": int(m[3]), "cyc": int(m[4]), "ns": int(m[5]),
                         "keyed": int(m[6]), "prekeyed": int(m[7])})
    return rows


# ---------------------------------------------------------------- plots (gnuplot, pngcairo)

class Plots:
    def __init__(self, out: Path):
        self.dir = out / "plots"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp = out / "raw" / "plotdata"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.ok = shutil.which("gnuplot") is not None
        self.made = []

    def plot(self, name, data_rows, script):
        """data_rows: list of tuples written as a whitespace table (strings quoted)."""
        if not self.ok:
            return None
        dat = self.tmp / f"{name}.dat"
        with dat.open("w") as f:
            for r in data_rows:
                f.write(" ".join(f'"{v}"' if isinstance(v, str) else f"{v:g}" for v in r) + "\n")
        png = self.dir / f"{name}.png"
        gp = (f"set terminal pngcairo size 900,480 font 'DejaVu Sans,10'\nset output '{png}'\n"
              f"set grid ytics\nset key top left\n" + script.replace("DAT", f"'{dat}'"))
        r = subprocess.run(["gnuplot"], input=gp, text=True, capture_output=True)
        if r.returncode != 0 or not png.exists():
            print(f"gnuplot {name}: {r.stderr}", file=sys.stderr)
            return None
        self.made.append(png)
        return f"plots/{name}.png"


# ---------------------------------------------------------------- the machine

def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001 - informational only
            return ""
    lscpu = sh("lscpu")
    field = lambda k: next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith(k + ":")), "?")
    flags = field("Flags").split()
    interesting = [f for f in ("aes", "vaes", "avx2", "avx512f", "vpclmulqdq", "sha_ni") if f in flags]
    tsc = sh("dmesg 2>/dev/null | grep -m1 -o 'tsc: Refined TSC clocksource calibration: [0-9.]* MHz'") or \
        sh("grep -m1 'cpu MHz' /proc/cpuinfo")
    return {
        "cpu": field("Model name"), "cpus": field("CPU(s)"), "threads": field("Thread(s) per core"),
        "hyp": field("Hypervisor vendor"), "l2": field("L2 cache"), "l3": field("L3 cache"),
        "flags": " ".join(interesting), "tsc": tsc, "kernel": sh("uname -r"),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"), "mem": sh("free -g | awk '/Mem/{print $2\" GiB\"}'"),
        "dpdk": sh("pkg-config --modversion libdpdk"), "git": sh(f"git -C {REPO} rev-parse --short HEAD")
                + (" (work tree modified)" if sh(f"git -C {REPO} status --porcelain --untracked-files=no") else ""),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ---------------------------------------------------------------- the report

def latency_section(w, plots, lat, tsc_ghz, summary):
    """The "Latency through the pipeline" table and plots from pipeline_full_bench --latency."""
    us = lambda cyc: cyc / (tsc_ghz * 1e3)
    base = {r["until"]: r for r in lat if r["name"].startswith("baseline: parse_burst") and r["burst"] == 32}
    w("### Latency through the pipeline\n")
    w("`pipeline_full_bench --latency` (same process and port as the table above, as many runs again with timestamps): "
      "for every packet, the TSC cycles from its burst being handed to the pipeline (after `rte_eth_rx_burst` returned) "
      "to `Pipeline::run` returning its verdict (**until verdict**) and, for forwarded packets, to `transmit_burst` "
      "returning (**until tx**: the TX queue took it). Run to completion decides and sends a burst's packets together, "
      "so each packet gets its burst's time. Recorded in a preallocated log-linear histogram (buckets 0.8 % wide) per "
      "run; each cell is the median over the runs, µs at the TSC rate; p99 also shows the runs' min–max. Not "
      "included: the wait in the RX ring or NIC before the burst is taken (it depends on the offered load), the RX "
      "call, the wire. Baselines in the same process and harness: *pass-through* (no pipeline: the measurement's own "
      "floor, three serialised TSC reads and the `net_ring` TX) and *parse_burst* (the parser-and-forwarding floor of "
      "`pipeline_bench`, no policy); the ratio column is p50 and p99 over parse_burst's.\n")
    w("| scenario | until | burst | p50 µs | p90 µs | p99 µs (runs min–max) | p99.9 µs | max µs | p50 / p99 cycles | × parse_burst p50 / p99 | stalled bursts / run |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in lat:
        p = r["pct"]
        b = base.get(r["until"])
        ratio = (f"{p['p50'][0] / b['pct']['p50'][0]:.1f} / {p['p99'][0] / b['pct']['p99'][0]:.1f}"
                 if b and r["burst"] == 32 and not r["name"].startswith("baseline") else "—")
        name = f"*{r['name']}*" if r["name"].startswith("baseline") else r["name"]
        w(f"| {name} | {r['until']} | {r['burst']} | {us(p['p50'][0]):.2f} | {us(p['p90'][0]):.2f} | "
          f"{us(p['p99'][0]):.2f} ({us(p['p99'][1]):.2f}–{us(p['p99'][2]):.2f}) | {us(p['p99.9'][0]):,.2f} | "
          f"{us(p['max'][0]):,.2f} | {p['p50'][0]:,.0f} / {p['p99'][0]:,.0f} | {ratio} | {r['stalled']} |")
    n = max(r["samples"] for r in lat)
    w(f"\n{n:,} packets per run ({n // 32:,} bursts of 32): p99.9 rests on the slowest {max(1, n // 32 // 1000)} "
      "burst(s) of a run, and the maximum on one. *Stalled* counts the bursts of a run (median of the runs) that took "
      "over 100 µs until the verdict, far above any burst's work: the kernel ran another task on the benchmark's CPU "
      "(a scheduler tick: 4 ms at CONFIG_HZ=250). When a run has more stalled bursts than its p99.9 share, p99.9 and max measure the "
      "machine's other jobs, not the pipeline; on a dedicated, isolated lcore (`isolcpus`, no other task) there "
      "would be none. The ratio column is for bursts of 32 (the baselines ran at 32).\n")
    main = [r for r in lat if r["until"] == "verdict" and r["burst"] == 32]
    if main:
        cols = [(i, k) + tuple(us(r["pct"][k][0]) for r in main) for i, k in enumerate(PCT_NAMES)]
        parts = []
        for c, r in enumerate(main):
            src, xt = ("DAT", ":xtic(2)") if c == 0 else ("''", "")
            dt = " dt 2" if r["name"].startswith("baseline") else ""
            title = r["name"].replace("_", "\\_")
            parts.append(f"{src} using 1:{c + 3}{xt} with linespoints lw 2{dt} title '{title}'")
        lines = ", ".join(parts)
        png = plots.plot("latency_percentiles", cols,
                         "set logscale y\nset ylabel 'µs from burst handed over to verdict'\nset xlabel 'percentile of packets'\n"
                         "set key below maxrows 4\nplot " + lines)
        if png:
            w(f"![latency percentiles through the pipeline]({png})\n")
    sw = sorted((r for r in lat if r["until"] == "verdict" and "HDR, 64 B" in r["name"]), key=lambda r: r["burst"])
    if len(sw) > 1:
        w("**Burst size** (established tagged HDR 64 B, until verdict): a smaller burst leaves sooner but costs more "
          "cycles per packet (the timestamps add three TSC reads per burst, so small bursts' cycles/packet are a little "
          "inflated).\n")
        w("| burst | cycles/pkt (latency runs) | p50 µs | p99 µs | p99.9 µs |\n|---|---|---|---|---|")
        for r in sw:
            w(f"| {r['burst']} | {r['cpp']:.1f} | {us(r['pct']['p50'][0]):.2f} | {us(r['pct']['p99'][0]):.2f} | {us(r['pct']['p99.9'][0]):.2f} |")
        w("\nBursts of 64 need `kBurst` (dataplane/burst.hpp) raised: `Pipeline::run` decides at most 32 packets per call.\n")
        png = plots.plot("latency_vs_burst", [(r["burst"], us(r["pct"]["p50"][0]), us(r["pct"]["p99"][0]), r["cpp"]) for r in sw],
                         "set xlabel 'packets per burst (rx\\_burst)'\nset ylabel 'µs, until verdict'\nset y2label 'cycles / packet'\n"
                         "set y2tics\nset ytics nomirror\nset yrange [0:*]\nset y2range [0:*]\nset xtics (8, 16, 32)\n"
                         "plot DAT using 1:2 with linespoints lw 2 title 'p50', '' using 1:3 with linespoints lw 2 title 'p99', "
                         "'' using 1:4 axes x1y2 with linespoints lw 2 dt 2 title 'cycles/packet (right)'")
        if png:
            w(f"![latency and cost vs burst size]({png})\n")
    hdr = next((r for r in lat if r["until"] == "verdict" and r["burst"] == 32 and "HDR, 64 B" in r["name"]), None)
    if hdr:
        summary.append(f"latency through the pipeline, established HDR 64 B, bursts of 32: p50 {us(hdr['pct']['p50'][0]):.2f} µs, "
                       f"p99 {us(hdr['pct']['p99'][0]):.2f} µs, p99.9 {us(hdr['pct']['p99.9'][0]):.2f} µs (burst handed over → verdict)")


def fmt(x, d=1):
    return "—" if x is None else f"{x:,.{d}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=str(REPO / "build"), help="meson build directory to take the benchmarks from (default: build/)")
    ap.add_argument("--quick", action="store_true", help="CI smoke: in-process benchmarks in --quick mode, <= 60 s")
    ap.add_argument("--out", help="output directory (default: perf/ for a full run, BUILD/perf-report for --quick or --only)")
    ap.add_argument("--only", default="", help="comma list of: pipeline_full,sweep,pipeline,flow,crypto,rules,compile_publish,propagation,lab,agent,agent_bench,volumetric")
    args = ap.parse_args()
    build = Path(args.build).resolve()
    only = {s for s in args.only.split(",") if s}
    partial = args.quick or bool(only)
    out = Path(args.out).resolve() if args.out else (build / "perf-report" if partial else REPO / "perf")
    want = lambda n: n in only if only else (not args.quick or n in QUICK)
    if not (build / "perf").is_dir():
        sys.exit(f"report: {build}/perf has no benchmarks; build first: meson setup build && ninja -C build")
    run, plots = Run(out, build), Plots(out)
    if not partial and (out / "raw").exists():
        for f in (out / "raw").glob("*.txt"):
            f.unlink()
    started = datetime.datetime.now(datetime.timezone.utc)
    m = machine()
    md, summary = [], []
    q = ["--quick"] if args.quick else []
    perf = build / "perf"

    # --- full pipeline + testpmd baseline
    pf = pf_tp = None
    lat = []
    if want("pipeline_full"):
        t = run("pipeline_full_bench", ["perf/pipeline_full_bench.sh", "--build", str(build), "--latency"] + q, 1200)
        pf, verified = parse_pipeline_full(t)
        pf_tp = parse_testpmd(t)
        lat = parse_latency(t)
        if t is not None and not lat:
            run.bad_parse("pipeline_full_bench", "latency table (--latency)")
        if t is not None and not pf:
            run.bad_parse("pipeline_full_bench", "scenario table")
        if t is not None and not verified:
            run.failures.append("pipeline_full_bench: not every scenario was verified by counters")
    # --- flow-table size sweep through the whole pipeline (HDR 64 B)
    sweep = []
    if want("sweep"):
        sizes = [1 << 14] if args.quick else [1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 21]
        for n in sizes:
            extra = ["--flows", str(n), "--only", "HDR", "--runs", "3" if not args.quick else "1"]
            if args.quick:
                extra += ["--pass", "2048", "--passes", "2"]
            t = run(f"pipeline_full_flows_{n}", [str(perf / "pipeline_full_bench")] + extra, 600)
            rows, _ = parse_pipeline_full(t)
            hdr = next((r for r in rows if "HDR" in r["name"]), None)
            if t is not None and hdr is None:
                run.bad_parse(f"pipeline_full_flows_{n}", "HDR row")
            if hdr:
                sweep.append((n, hdr))
    pb = pb_tp = None
    if want("pipeline"):
        t = run("pipeline_bench", ["perf/pipeline_bench.sh", "--build", str(build)] + q, 600)
        pb, pb_tp = parse_pipeline_bench(t), parse_testpmd(t)
        if t is not None and not pb:
            run.bad_parse("pipeline_bench", "frames table")
    ft = None
    if want("flow"):
        t = run("flow_table_bench", [str(perf / "flow_table_bench")] + (q or ["--runs", "5", "--big"]), 900)
        ft = parse_flow_table(t)
        if t is not None and not ft:
            run.bad_parse("flow_table_bench", "size table")
    cr = None
    if want("crypto"):
        t = run("crypto_bench", [str(perf / "crypto_bench")] + q, 900)
        cr = parse_crypto(t)
        if t is not None and not cr[0]:
            run.bad_parse("crypto_bench", "tag table")
    rb = None
    if want("rules"):
        t = run("rules_bench", [str(perf / "rules_bench")] + (q or ["--sizes", "1000,3000,10000,30000,100000"]), 1500)
        rb = parse_rules(t)
        if t is not None and not rb[0]:
            run.bad_parse("rules_bench", "classifier rows")
    cp = None
    if want("compile_publish"):
        t = run("compile_publish_bench", [str(perf / "compile_publish_bench")] + (q or ["--runs", "5"]), 900)
        cp = parse_compile_publish(t)
        if t is not None and not cp:
            run.bad_parse("compile_publish_bench", "summary")
    pr = None
    if want("propagation"):
        t = run("propagation", ["/usr/bin/python3", "perf/propagation.py", "--build", str(build)] + (q or ["--changes", "20"]), 1200)
        pr = parse_propagation(t)
        if t is not None and not pr:
            run.bad_parse("propagation", "p50/p99 rows")
    lab = None
    if want("lab"):
        t = run("lab_throughput", ["perf/lab_throughput.sh", "--ztgate", str(build / "appliance" / "ztgate")]
                + (["--runs", "1", "--seconds", "1"] if args.quick else ["--runs", "5", "--seconds", "4"]), 600)
        lab = (parse_gbit(t, "dpdk-testpmd io"), parse_gbit(t, "ztgate"))
        if t is not None and None in lab:
            run.bad_parse("lab_throughput", "Gbit/s medians")
    ag = None
    if want("agent"):
        t = run("agent_throughput", ["perf/agent_throughput.sh", "--ztgate", str(build / "appliance" / "ztgate"),
                                     "--ztmanager", str(build / "controlplane" / "ztmanager"),
                                     "--ztagent", str(build / "tools" / "ztagent" / "ztagent")]
                + (["--runs", "1", "--seconds", "1"] if args.quick else ["--runs", "5", "--seconds", "5"]), 600)
        ag = (parse_gbit(t, "untagged 10.10.0.6 (rule 140)"), parse_gbit(t, "tagged: frontend via ztagent (rule 110)"))
        if t is not None and None in ag:
            run.bad_parse("agent_throughput", "Gbit/s medians")
    ab = None
    if want("agent_bench"):
        t = run("agent_bench", [str(perf / "agent_bench")] + q, 600)
        ab = parse_agent_bench(t)
        if t is not None and not ab:
            run.bad_parse("agent_bench", "tagging rows")
    vol = None
    if want("volumetric"):
        exe = perf / "volumetric_bench"
        if exe.exists():
            vol = run("volumetric_bench", [str(exe)] + q, 600)

    # ------------------------------------------------------------ write REPORT.md
    tsc_ghz = 2.6
    mt = re.search(r"TSC ([\d.]+) (GHz|MHz)", (out / "raw" / "pipeline_full_bench.txt").read_text()
                   if (out / "raw" / "pipeline_full_bench.txt").exists() else "")
    if mt:
        tsc_ghz = num(mt[1]) / (1000 if mt[2] == "MHz" else 1)
        m["tsc"] = f"{tsc_ghz:.3f} GHz (as the benchmarks read it)"
    w = md.append
    w("# ztgate performance report\n")
    w(f"Generated by `perf/report.sh{' --quick' if args.quick else ''}{' --only ' + args.only if only else ''}` "
      f"on {started:%Y-%m-%d %H:%M} UTC in {(datetime.datetime.now(datetime.timezone.utc) - started).seconds // 60} min, "
      f"benchmarks from `{os.path.relpath(build, REPO)}/` (commit {m['git']}).")
    if args.quick:
        w("\n**--quick (CI smoke): a few passes per figure, not meaningful as measurements.**")
    w("\nEvery figure stands beside a baseline measured in the same run (absolute times drift on shared "
      "machines): `dpdk-testpmd` io forwarding, DPDK `rte_hash`, DPDK `rte_acl`, OpenSSL, the control "
      "thread asleep, the lab with testpmd as the forwarder, the untagged path. Raw outputs: `raw/`.\n")
    # Load from other jobs: the load average before and after each single-lcore benchmark (the
    # propagation, lab and agent benchmarks start many processes of their own and raise it themselves).
    own = ("propagation", "lab_throughput", "agent_throughput")
    peak = max([m_ for r in run.log if r[0] not in own for m_ in (r[3], r[4])] or [0.0])
    cpus = os.cpu_count() or 1
    if peak > cpus:
        w(f"**Warning: this run shared the machine.** The 1-minute load average reached {peak:.1f} on {cpus} CPUs "
          "(other jobs were running), so every benchmark lcore was time-sliced with other work: absolute cycles are "
          "inflated (upper bounds) and run-to-run spread is wide. Compare the ratios to the same-run baselines, and "
          "re-run `perf/report.sh` on an idle machine for absolute figures.\n")
    w("## Machine\n")
    w("| | |\n|---|---|")
    for k, label in (("cpu", "CPU"), ("cpus", "CPUs (threads/core)"), ("hyp", "hypervisor"), ("l2", "L2"), ("l3", "L3"),
                     ("flags", "crypto/SIMD flags"), ("tsc", "TSC"), ("mem", "memory"), ("kernel", "kernel"),
                     ("os", "OS"), ("dpdk", "DPDK")):
        v = m[k] + (f" ({m['threads']})" if k == "cpus" else "")
        w(f"| {label} | {v} |")
    w(f"| load average at start (1/5/15 min) | {m['load']} |")
    w("| DPDK EAL | `--no-huge --no-pci`: mbufs in 4 KiB pages; no NIC (net_ring / net_null / AF_PACKET veths) |\n")
    if run.log:
        w("Load average (1 min) before → after each benchmark, and its wall time:\n")
        w("| benchmark | command | wall s | load before → after | exit |\n|---|---|---|---|---|")
        for name, cmd, secs, l0, l1, rc in run.log:
            w(f"| {name} | `{cmd.replace(str(REPO) + '/', '')}` | {secs:.0f} | {l0:.2f} → {l1:.2f} | {rc} |")
        w("")
    if run.failures:
        w("## Failures\n")
        for f in run.failures:
            w(f"- {f}")
        w("")

    if pf:
        w("## Full pipeline: cycles/packet and Mpps per lcore by scenario and packet size\n")
        w("`perf/pipeline_full_bench.sh`: `rx_burst` → `Pipeline::run` → `transmit_burst` on one lcore over a `net_ring` "
          "port, 1M flows in the table (fewer with --quick), bursts of 32, AES-256-CMAC tags, Geneve strip; every "
          "scenario checked against the counters. Baseline: `dpdk-testpmd` io between two `net_null` ports, same script.\n")
        w("| scenario | cycles/pkt (median) | min–max | Mpps / lcore | × testpmd io |\n|---|---|---|---|---|")
        for r in pf:
            ratio = f"{r['cyc'] / pf_tp:.1f}×" if pf_tp and "io loop" not in r["name"] else "—"
            w(f"| {r['name']} | {fmt(r['cyc'])} | {fmt(r['lo'])}–{fmt(r['hi'])} | {fmt(r['mpps'], 2)} | {ratio} |")
        w(f"| *baseline: dpdk-testpmd io (net_null)* | {fmt(pf_tp, 2)} | | {fmt(tsc_ghz * 1e3 / pf_tp if pf_tp else None, 1)} | 1.0× |\n")
        bars = [(i, r["name"].replace("established tagged, ", "est. ").replace(" (1 MAC each)", "").replace(" (no MAC)", "")
                 .replace(" (admitted)", ""), r["cyc"], r["lo"], r["hi"]) for i, r in enumerate(pf) if "io loop" not in r["name"]]
        png = plots.plot("pipeline_cycles_by_scenario", bars,
                         "set style fill solid 0.6\nset boxwidth 0.7\nset ylabel 'cycles / packet'\nset xtics rotate by -30 left\n"
                         "set bmargin 9\nset rmargin 14\nset yrange [0:*]\n"
                         + (f"set arrow from graph 0, first {pf_tp} to graph 1, first {pf_tp} nohead dt 2 lw 2 lc rgb 'red'\n"
                            f"set label 'testpmd io {pf_tp:.0f}' at graph 0.85, first {pf_tp} offset 0,0.7 tc rgb 'red'\n" if pf_tp else "")
                         + "plot DAT using 1:3:xtic(2) with boxes title 'ztgate (median of runs)', '' using 1:3:4:5 with yerrorbars lc rgb 'black' pt 0 title 'min–max'")
        if png:
            w(f"![cycles per packet by scenario]({png})\n")
        sizes = [(b, r) for b, key in ((64, "FULL, 64 B"), (512, "FULL, 512 B"), (1500, "FULL, 1500 B"))
                 for r in pf if key in r["name"]]
        if sizes:
            png = plots.plot("pipeline_by_size", [(b, r["mpps"], r["mpps"] * b * 8 / 1e3, r["cyc"]) for b, r in sizes],
                             "set xlabel 'inner frame bytes'\nset ylabel 'Mpps per lcore'\nset y2label 'Gbit/s per lcore (inner frames)'\n"
                             "set y2tics\nset ytics nomirror\nset logscale x\nset xtics (64, 128, 256, 512, 1024, 1500)\n"
                             "plot DAT using 1:2 with linespoints lw 2 title 'Mpps / lcore (FULL tags)', '' using 1:3 axes x1y2 with linespoints lw 2 title 'Gbit/s / lcore'")
            if png:
                w(f"![Mpps and Gbit/s per lcore by packet size]({png})\n")

        nf = next((r for r in pf if r["name"].startswith("new tagged flows")), None)
        if nf:
            w(f"**New flows:** {nf['mpps']:.2f} M flows/s per lcore admitted (tagged FULL 64 B, every packet a new 5-tuple, "
              f"MAC verified, policy classified, flow inserted into the {'20k' if args.quick else '1M'}-flow table); target ≥ 1 M/s.\n")
            summary.append(f"new flows: {nf['mpps']:.2f} M/s per lcore")
        for key, label in (("HDR, 64 B", "established tagged HDR 64 B"), ("untagged flood", "untagged flood"),
                           ("forged-tag flood, allowed", "forged-tag flood (allowed dst)")):
            r = next((r for r in pf if key in r["name"]), None)
            if r:
                summary.append(f"{label}: {r['cyc']:.0f} cycles/packet = {r['mpps']:.2f} Mpps per lcore"
                               + (f" ({r['cyc'] / pf_tp:.1f}× testpmd io's {pf_tp:.0f})" if pf_tp else ""))
        w("### 100 Gbit/s arithmetic\n")
        w(f"Line rate at 100 Gbit/s (+20 B preamble and gap per frame): 64 B {LINE_RATE_64 / 1e6:.2f} Mpps, simple IMIX "
          f"7:4:1 (mean {IMIX_MEAN:.1f} B) {LINE_RATE_IMIX / 1e6:.2f} Mpps, 1518 B {LINE_RATE_1518 / 1e6:.2f} Mpps. These "
          "are rates of inner frames: a tagged frame carries 72 B more on the wire, so the real packet rate is lower and "
          f"these lcore counts are upper bounds. lcores = rate × cycles/packet / {tsc_ghz:.2f} GHz.\n")
        w("| load | rate (Mpps) | scenario used | cycles/pkt | lcores | with testpmd io's cost |\n|---|---|---|---|---|---|")

        def find(key):
            return next((r for r in pf if key in r["name"]), None)
        for load, rate, key in (("64 B, HDR tags", LINE_RATE_64, "HDR, 64 B"), ("64 B, FULL tags", LINE_RATE_64, "FULL, 64 B"),
                                ("IMIX 7:4:1, FULL tags (measured as a mix)", LINE_RATE_IMIX, "IMIX"),
                                ("1518 B, FULL tags (1500 B scenario)", LINE_RATE_1518, "FULL, 1500 B"),
                                ("64 B untagged flood, denied", LINE_RATE_64, "untagged flood")):
            r = find(key)
            if r:
                lc = rate * r["cyc"] / (tsc_ghz * 1e9)
                base = f"{rate * pf_tp / (tsc_ghz * 1e9):.1f}" if pf_tp else "—"
                w(f"| {load} | {rate / 1e6:.2f} | {r['name']} | {fmt(r['cyc'])} | {lc:.1f} → **{math.ceil(lc)}** | {base} |")
                summary.append(f"100 Gbit/s {load}: {math.ceil(lc)} lcores at {tsc_ghz:.2f} GHz")
        w("")
        est = find("HDR, 64 B")
        if lat:
            latency_section(w, plots, lat, tsc_ghz, summary)
        elif est:
            per_burst_us = 32 * est["cyc"] / (tsc_ghz * 1e3)
            w("### Latency through the pipeline\n")
            w("No per-packet latency table (the benchmark printed none): derived instead, a packet's time inside the "
              "pipeline is at most one burst's service time, 32 × cycles/packet. From the HDR 64 B runs above (median / "
              f"fastest / slowest run): **{per_burst_us:.1f} µs** / {32 * est['lo'] / (tsc_ghz * 1e3):.1f} µs / "
              f"{32 * est['hi'] / (tsc_ghz * 1e3):.1f} µs per burst.\n")
    if sweep:
        w("## Throughput vs flow-table size (whole pipeline, established HDR 64 B)\n")
        w("`pipeline_full_bench --flows N --only HDR` (table capacity 1.25 N; each pass touches random flows of the whole table).\n")
        w("| flows in table | cycles/pkt | min–max | Mpps / lcore |\n|---|---|---|---|")
        for n, r in sweep:
            w(f"| {n:,} | {fmt(r['cyc'])} | {fmt(r['lo'])}–{fmt(r['hi'])} | {fmt(r['mpps'], 2)} |")
        w("")
        png = plots.plot("pipeline_vs_flows", [(n, r["mpps"], r["cyc"]) for n, r in sweep],
                         "set logscale x 2\nset xlabel 'flows in the table'\nset ylabel 'Mpps per lcore'\nset yrange [0:*]\n"
                         "set format x '2^{%L}'\nplot DAT using 1:2 with linespoints lw 2 title 'established HDR 64 B'")
        if png:
            w(f"![pipeline throughput vs flow-table size]({png})\n")
    if ft:
        w("## Flow table vs rte_hash (bulk lookup of 32, random present keys)\n")
        w("`flow_table_bench`; baseline DPDK `rte_hash` (CRC, same 40-byte keys, `rte_hash_lookup_bulk_data`) in the same process.\n")
        w("| flows | FlowTable lookup cyc | rte_hash lookup cyc | ratio | FlowTable insert | rte_hash insert | FlowTable MiB |\n|---|---|---|---|---|---|---|")
        for r in ft:
            w(f"| {r['size']} | {fmt(r['ft']['lookup'])} ({fmt(r['ft']['lo'])}–{fmt(r['ft']['hi'])}) | {fmt(r['rh']['lookup'])} | "
              f"{r['ft']['lookup'] / r['rh']['lookup']:.2f} | {fmt(r['ft']['insert'])} | {fmt(r['rh']['insert'])} | {fmt(r.get('mib'))} |")
        w("")
        png = plots.plot("flow_table_vs_size", [(r["flows"], tsc_ghz * 1e3 / r["ft"]["lookup"], tsc_ghz * 1e3 / r["rh"]["lookup"]) for r in ft],
                         "set logscale x 2\nset format x '2^{%L}'\nset xlabel 'flows in the table'\nset ylabel 'M lookups/s per lcore'\nset yrange [0:*]\n"
                         "plot DAT using 1:2 with linespoints lw 2 title 'FlowTable', '' using 1:3 with linespoints lw 2 dt 2 title 'rte_hash (baseline)'")
        if png:
            w(f"![flow-table lookups vs size]({png})\n")
    if rb and rb[0]:
        rows, l7 = rb
        w("## Policy classification vs rule count (against rte_acl)\n")
        w("`rules_bench`: bursts of 32 keys through `PolicySnapshot::classify_burst`, baseline DPDK `rte_acl` built from the "
          "same rules, classifying the same keys, answers cross-checked.\n")
        w("| rules | identities | segments | ztgate cyc/lookup | rte_acl cyc/lookup | ratio | M lookups/s ztgate | parse+validate s | compile s | rte_acl build s | tables MiB | mismatches |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            w(f"| {r['rules']:,} | {r['ids']:,} | {r['segs']:,} | {fmt(r['ztgate'])} | {fmt(r['rte_acl'])} | {r['ztgate'] / r['rte_acl']:.2f} | "
              f"{tsc_ghz * 1e3 / r['ztgate']:.1f} | {fmt(r.get('parse_s'), 3)} | {fmt(r.get('compile_s'), 3)} | {fmt(r.get('acl_build_s'), 3)} | "
              f"{fmt(r.get('mib'))} | {r.get('mismatch', '—')} |")
        if l7:
            w(f"\nL7 (Hyperscan): {l7}")
        w("")
        png = plots.plot("rules_vs_count", [(r["rules"], tsc_ghz * 1e3 / r["ztgate"], tsc_ghz * 1e3 / r["rte_acl"]) for r in rows],
                         "set logscale x\nset xlabel 'rules'\nset ylabel 'M lookups/s per lcore'\nset yrange [0:*]\n"
                         "plot DAT using 1:2 with linespoints lw 2 title 'ztgate classify\\_burst', '' using 1:3 with linespoints lw 2 dt 2 title 'rte\\_acl (baseline)'")
        if png:
            w(f"![classification throughput vs rule count]({png})\n")
    if pb:
        w("## Parser + forwarding only (`pipeline_bench`)\n")
        w("| frames | loop | cycles/pkt | min–max | Mpps |\n|---|---|---|---|---|")
        for r in pb:
            w(f"| {r['frames']} | {r['loop']} | {fmt(r['cyc'])} | {fmt(r['lo'])}–{fmt(r['hi'])} | {fmt(r['mpps'], 2)} |")
        w(f"\nBaseline `dpdk-testpmd` io (net_null), same script: {fmt(pb_tp, 2)} cycles/packet.\n")
    if cr and cr[0]:
        rows, extra = cr
        w("## Tag verification (crypto_bench) against OpenSSL\n")
        w("| alg | coverage | bytes | verifier burst ns/tag (own VAES/AES-NI kernel ≤ 256 B, IPsec-MB above) | cycles | OpenSSL 1-by-1 ns | cycles | speed-up |\n|---|---|---|---|---|---|---|---|")
        for r in rows:
            w(f"| {r['alg']} | {r['cov']} | {r['bytes']} | {r['ns']:.1f} | {r['cyc']} | {r['ossl_ns']:.1f} | {r['ossl_cyc']} | {r['ratio']:.2f}× |")
        if "replay" in extra:
            w(f"\nReplay filter insert + check, 32 prefetched: {extra['replay']:.1f} cycles.")
        w("")
    if ab:
        w("## ztagent tagging cost (agent_bench) against OpenSSL CMAC\n")
        w("| alg | coverage | bytes | agent cyc/pkt | ns | OpenSSL keyed cyc | OpenSSL pre-keyed cyc | agent / pre-keyed |\n|---|---|---|---|---|---|---|---|")
        for r in ab:
            w(f"| {r['alg']} | {r['cov']} | {r['bytes']} | {r['cyc']} | {r['ns']} | {r['keyed']} | {r['prekeyed']} | {r['cyc'] / r['prekeyed']:.2f} |")
        w("")
    if lab and None not in lab:
        (tp, tlo, thi), (zg, zlo, zhi) = lab
        w("## Lab throughput: ztgate vs dpdk-testpmd (iperf3 over AF_PACKET veths, 1 worker lcore)\n")
        w("| forwarder | median Gbit/s | min–max |\n|---|---|---|")
        w(f"| dpdk-testpmd io (baseline) | {tp:.3f} | {tlo:.3f}–{thi:.3f} |")
        w(f"| ztgate enforcing appliance/policy | {zg:.3f} | {zlo:.3f}–{zhi:.3f} |")
        w(f"\nRatio ztgate / testpmd: **{zg / tp:.3f}** (target ≥ 0.9). AF_PACKET system calls bound both.\n")
        summary.append(f"lab iperf3 through ztgate {zg:.2f} Gbit/s = {zg / tp:.3f} of testpmd")
    if ag and None not in ag:
        (u, ulo, uhi), (t, tlo, thi) = ag
        w("## Zero trust end to end: tagged (ztagent) vs untagged through ztgate\n")
        w("| path | median Gbit/s | min–max |\n|---|---|---|")
        w(f"| untagged host (baseline) | {u:.3f} | {ulo:.3f}–{uhi:.3f} |")
        w(f"| tagged via ztagent (TUN + AES-256-CMAC FULL + Geneve) | {t:.3f} | {tlo:.3f}–{thi:.3f} |")
        w(f"\nRatio tagged / untagged: **{t / u:.3f}**.\n")
    if lab and None not in lab or ag and None not in ag:
        bars = []
        if lab and None not in lab:
            bars += [(0, "testpmd io", lab[0][0], lab[0][1], lab[0][2]), (1, "ztgate", lab[1][0], lab[1][1], lab[1][2])]
        if ag and None not in ag:
            bars += [(2, "ztgate untagged (agent lab)", ag[0][0], ag[0][1], ag[0][2]), (3, "ztgate tagged via ztagent", ag[1][0], ag[1][1], ag[1][2])]
        png = plots.plot("lab_throughput", bars,
                         "set style fill solid 0.6\nset boxwidth 0.6\nset ylabel 'Gbit/s (iperf3)'\nset yrange [0:*]\n"
                         "plot DAT using 1:3:xtic(2) with boxes title 'median', '' using 1:3:4:5 with yerrorbars lc rgb 'black' pt 0 title 'min–max'")
        if png:
            w(f"![lab throughput]({png})\n")
    if cp:
        w("## Compile + publish a 10k-rule policy while forwarding (compile_publish_bench)\n")
        w("| measure | median | min – max |\n|---|---|---|")
        for k, (v, unit, lo, hi) in cp.items():
            w(f"| {k} | {v:,.2f} {unit} | {lo:,.2f} – {hi:,.2f} |")
        g, b = cp.get("longest worker gap during the run"), cp.get("longest worker gap, idle control")
        if g and b:
            w(f"\nLongest worker gap with the control lcore compiling and publishing vs the same window with it asleep "
              f"(baseline): {g[0]:,.0f} µs vs {b[0]:,.0f} µs (ratio {g[0] / b[0]:.2f}).\n")
    if pr:
        w("## Policy propagation: edit → enforced on every ztgate (propagation.py)\n")
        w("| ztgates | samples | p50 ms | p99 ms | max ms | all enforced p50 / p99 ms |\n|---|---|---|---|---|---|")
        for r in pr:
            w(f"| {r['n']} | {r['samples']} | {r['p50']:.0f} | {r['p99']:.0f} | {r['max']:.0f} | {r['all50']:.0f} / {r['all99']:.0f} |")
        w("\nBaseline: none in the same run; the manager's poll (300 ms) + settle (100 ms) intervals are the floor (100–400 ms). Target p99 < 1 s.\n")
        png = plots.plot("propagation", [(r["n"], r["p50"], r["p99"]) for r in pr],
                         "set logscale x 2\nset xlabel 'ztgates on one ztmanager'\nset ylabel 'ms from policy edit to enforcement'\nset yrange [0:*]\n"
                         "set xtics (1, 2, 4, 8, 16)\nplot DAT using 1:2 with linespoints lw 2 title 'p50', '' using 1:3 with linespoints lw 2 title 'p99', 1000 dt 2 lc rgb 'red' title 'target p99'")
        if png:
            w(f"![propagation percentiles]({png})\n")
    if vol:
        w("## Volumetric filtering (volumetric_bench)\n\n```\n" + vol.strip()[-3000:] + "\n```\n")
    if summary:
        w("## Headline\n")
        for s in summary:
            w(f"- {s}")
        w("")
    w("## Not measured here\n")
    w("- Latency under a given offered load: the percentiles above start when the burst is taken from the RX queue, so "
      "they leave out the wait in the NIC/ring, which grows with the load; no hardware timestamps (no NIC here). "
      + ("" if lat else "This run has no per-packet latency table (`pipeline_full_bench --latency` printed none)."))
    w("- Real NICs, hugepages, several worker lcores: this machine has none of them (DPDK runs `--no-huge --no-pci` on "
      "virtual devices); the lcore counts for 100 Gbit/s assume linear scaling over RSS queues, which was not measured.")
    if not (build / "perf" / "volumetric_bench").exists():
        w("- Volumetric filtering under flood: there is no `perf/volumetric_bench` in this build.")
    w("")
    out.mkdir(parents=True, exist_ok=True)
    (out / "REPORT.md").write_text("\n".join(md))
    print(f"report: wrote {out / 'REPORT.md'} and {len(plots.made)} plots in {plots.dir}")
    if not plots.ok:
        run.failures.append("gnuplot not found: no plots (apt-get install gnuplot-nox)")
    if run.failures:
        print("report: failures:\n  " + "\n  ".join(run.failures), file=sys.stderr)
        return 1
    return 0


# What --quick runs: the in-process benchmarks (the lab, agent and propagation benchmarks have smoke
# tests of their own in the perf-smoke suite and need network namespaces or many processes).
QUICK = {"pipeline_full", "sweep", "flow", "crypto", "rules"}

if __name__ == "__main__":
    sys.exit(main())
