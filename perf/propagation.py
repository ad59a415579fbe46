#!/usr/bin/python3
"""Propagation time from a policy-file change to enforcement on 1, 4 and 16 ztgates (issue 7).

One ztmanager on 127.0.0.1 serves N ztgate processes (net_null ports with no-rx, small --flows
and --mbufs so 16 fit in memory; each has its own worker lcore and its sync thread). For each of
--changes changes, the script rewrites one file of the manager's policy directory the way an
editor does (a deny rule whose port changes every time, so every change is a new revision), at a
random phase of the manager's poll, then waits until every ztgate has printed
"applied revision R from the manager" -- the line ztgate prints after Runtime::publish returned,
i.e. once the dataplane enforces R. Each ztgate's stderr is read by its own thread that stamps
every line on arrival (time.monotonic), so the figure is not limited by a polling interval.

Reported per N: p50, p99 and max of (edit -> ztgate enforcing) over every (change, appliance)
pair, and p50/p99 of the time until the last appliance of a change enforced it. The manager
acts on a change after the content stayed the same for one poll interval (controlplane/README.md
"Policy publication"), so the floor is 1-2 x --poll-ms; the manager's default is 300 ms.

Every ztgate's worker lcore busy-polls. On a real deployment each appliance has its own cores; on
one small machine N spinning workers share the CPUs with every sync thread, so for large N the
figure measures the scheduler too. --worker-sched idle moves each ztgate's worker thread
(rte-worker-*) to SCHED_IDLE once it forwards; that is worse, not better, on a loaded machine:
Runtime::publish returns only after every worker passed a quiescent state (RCU), and an idle-class
worker may not run for seconds. The default is normal.

Usage: perf/propagation.py --build BUILD_DIR [--sizes 1,4,16] [--changes 20] [--poll-ms 300]
                           [--settle-ms 100] [--worker-sched idle|normal]
                           [--quick]            (--quick: sizes 1,4, 5 changes)
Exit 1 if an appliance did not enforce a change within 10 s, or failed to start.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Proc:
    """A child process whose stderr lines are stamped on arrival."""

    def __init__(self, argv, name):
        self.name = name
        self.lines = []  # (monotonic, text)
        self.cv = threading.Condition()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, bufsize=1)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stderr:
            now = time.monotonic()
            with self.cv:
                self.lines.append((now, line.rstrip("\n")))
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def wait_for(self, text, after=0.0, timeout=10.0):
        """Arrival time of the first line containing `text` stamped at or after `after`."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for t, line in self.lines:
                    if t >= after and text in line:
                        return t
                left = deadline - time.monotonic()
                if left <= 0 or self.p.poll() is not None and not self.t.is_alive():
                    return None
                self.cv.wait(min(left, 0.05))

    def log(self):
        with self.cv:
            return "\n".join(l for _, l in self.lines[-15:])

    def stop(self, sig=signal.SIGINT):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def idle_workers(pid):
    """SCHED_IDLE for the process's DPDK worker threads (see the module docstring)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().startswith("rte-worker"):
                    os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q / 100.0 * len(v) + 0.5)) - 1))]


RULE = """
  - id: 900
    name: propagation-probe   # rewritten by perf/propagation.py, change {k}
    from: any
    to: {{segments: [zone-b]}}
    proto: tcp
    ports: [{port}]
    action: deny
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="meson build directory (holds appliance/ztgate, controlplane/ztmanager)")
    ap.add_argument("--sizes", default="1,4,16")
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--poll-ms", type=int, default=300)
    ap.add_argument("--settle-ms", type=int, default=100)
    ap.add_argument("--worker-sched", choices=["idle", "normal"], default="normal")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.sizes, a.changes = "1,4", 5
    sizes = [int(s) for s in a.sizes.split(",")]
    ztgate = os.path.join(a.build, "appliance", "ztgate")
    ztmanager = os.path.join(a.build, "controlplane", "ztmanager")
    for b in (ztgate, ztmanager):
        if not os.access(b, os.X_OK):
            sys.exit(f"propagation: no executable {b} (build first)")

    work = tempfile.mkdtemp(prefix="ztgate-propagation.")
    procs = []
    try:
        policy = os.path.join(work, "policy")
        shutil.copytree(os.path.join(REPO, "appliance", "policy"), policy)
        base_rules = open(os.path.join(policy, "rules.yaml")).read()
        state = os.path.join(work, "state")
        psk = os.path.join(work, "psk")
        subprocess.run([ztmanager, "psk", "generate", "--psk-file", psk], check=True)
        mgr = Proc([ztmanager, "serve", "--policy-dir", policy, "--state-dir", state, "--psk-file", psk,
                    "--listen", "127.0.0.1:0", "--enrol-listen", "127.0.0.1:0", "--poll-ms", str(a.poll_ms),
                    "--settle-ms", str(a.settle_ms)],
                   "ztmanager")
        procs.append(mgr)
        if mgr.wait_for("serving domain") is None:
            sys.exit("propagation: ztmanager did not start:\n" + mgr.log())
        ports = dict(l.split() for l in open(os.path.join(state, "endpoints")).read().split("\n") if l)
        rng = random.Random(1)
        change = [0]

        def edit():
            change[0] += 1
            k = change[0]
            t0 = time.monotonic()
            with open(os.path.join(policy, "rules.yaml"), "w") as f:
                f.write(base_rules + RULE.format(k=k, port=20000 + k))
            return t0

        print(f"propagation: policy edit -> 'applied revision R' logged by every ztgate (after Runtime::publish); "
              f"manager --poll-ms {a.poll_ms} --settle-ms {a.settle_ms}, {a.changes} changes per size, "
              f"{os.cpu_count()} CPUs, worker threads {a.worker_sched}, load average {os.getloadavg()[0]:.1f}")
        print(f"{'ztgates':>8} {'samples':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'all-enforced p50':>17} {'p99 ms':>8}")
        failed = False
        results = {}
        for n in sizes:
            gates = []
            for i in range(n):
                name = f"gw{n}-{i}"
                tok = subprocess.run([ztmanager, "token", "create", "--state-dir", state, "--name", name],
                                     check=True, capture_output=True, text=True).stdout.strip()
                g = Proc([ztgate, "--manager", f"127.0.0.1:{ports['sync']}", "--enrol-port", ports["enrol"],
                          "--state-dir", os.path.join(work, name), "--psk-file", psk,
                          "--manager-ca", os.path.join(state, "ca.pem"), "--enrol-token", tok,
                          "--port-a", f"net_null{2 * i},no-rx=1", "--port-b", f"net_null{2 * i + 1},no-rx=1",
                          "--hugepages", "off", "--memory", "64", "--flows", "1024", "--mbufs", "2047",
                          "--rx-desc", "64", "--tx-desc", "64", "--eal-log-level", "error", "-q"], name)
                gates.append(g)
                procs.append(g)
            for g in gates:
                if g.wait_for("applied revision", timeout=20) is None:
                    sys.exit(f"propagation: {g.name} did not apply a revision:\n{g.log()}")
                if a.worker_sched == "idle" and g.wait_for("forwarding", timeout=20) is not None:
                    idle_workers(g.p.pid)
            samples, alls = [], []
            for _ in range(a.changes):
                time.sleep(rng.uniform(0.05, 0.05 + a.poll_ms / 1000.0))  # a random poll phase
                t0 = edit()
                # The revision number is what the manager publishes next; wait for its line.
                t_pub = mgr.wait_for("published revision", after=t0, timeout=10)
                if t_pub is None:
                    print(f"propagation: the manager did not publish change {change[0]}:\n{mgr.log()}", file=sys.stderr)
                    failed = True
                    break
                rev = [l for t, l in mgr.lines if t >= t0 and "published revision" in l][0].split("published revision ")[1].split()[0]
                worst = 0.0
                for g in gates:
                    t = g.wait_for(f"applied revision {rev} from the manager", after=t0, timeout=10)
                    if t is None:
                        print(f"propagation: {g.name} did not enforce revision {rev} within 10 s:\n{g.log()}", file=sys.stderr)
                        failed = True
                        continue
                    samples.append((t - t0) * 1000)
                    worst = max(worst, (t - t0) * 1000)
                alls.append(worst)
            for g in gates:
                g.stop()
                procs.remove(g)
            if not samples:
                break
            results[n] = (samples, alls)
            print(f"{n:>8} {len(samples):>8} {pct(samples, 50):>8.0f} {pct(samples, 99):>8.0f} {max(samples):>8.0f} "
                  f"{pct(alls, 50):>17.0f} {pct(alls, 99):>8.0f}")
            sys.stdout.flush()
        worst99 = max((pct(s, 99) for s, _ in results.values()), default=float("inf"))
        print(f"target: p99 < 1000 ms on loopback: {'met' if worst99 < 1000 else 'NOT met'} (worst p99 {worst99:.0f} ms)")
        return 1 if failed or len(results) != len(sizes) else 0
    finally:
        for p in reversed(procs):
            p.stop(signal.SIGINT if p.name != "ztmanager" else signal.SIGTERM)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
