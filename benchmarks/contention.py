"""Does training slow down in proportion to the load? The ML-100K demo alone and beside a busy job.

    REELREC_DATA_HOME=../shared/data python benchmarks/contention.py [--repeats 2]

Times ``reelrec demo`` (MF on ML-100K with the defaults, the README's first command) three ways,
in one invocation:

* ``alone``: nothing else running (the script waits for the one-minute load average to drop
  under 0.5 first, up to two minutes, and prints it);
* ``beside a job``: while a second ``reelrec train`` (MF on ML-100K, 200 epochs, no early stopping)
  runs in the background, started 5 s earlier so its threads are busy;
* ``beside a job, 2 threads forced``: the same with ``--threads 2``, the count torch picks by
  itself on this machine, to show what the automatic thread count (``reelrec.threads``) avoids.

Reports each median wall time and the ratio to ``alone``. The bar of issue 12: beside one busy
training process the demo takes at most 3 x its time alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def demo(out: Path, threads: int | None) -> float:
    cmd = [sys.executable, "-m", "reelrec", "demo", "--out", str(out)]
    if threads:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def busy_job(out: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "reelrec",
        "train",
        "--dataset",
        "ml-100k",
        "--model",
        "mf",
        "--epochs",
        "200",
    ]
    cmd += ["--patience", "0", "--no-refit", "--no-progress", "--out", str(out), "--overwrite"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        deadline = time.time() + 120
        while os.getloadavg()[0] > 0.5 and time.time() < deadline:
            time.sleep(5)
        print(f"load average before 'alone': {os.getloadavg()[0]:.2f}", flush=True)
        times: dict[str, list[float]] = {"alone": [], "beside a job": [], "beside a job, --threads 2": []}
        for _ in range(args.repeats):
            times["alone"].append(demo(work / "demo", None))
        for label, threads in (("beside a job", None), ("beside a job, --threads 2", 2)):
            for _ in range(args.repeats):
                job = busy_job(work / "busy")
                try:
                    time.sleep(5)
                    times[label].append(demo(work / "demo", threads))
                finally:
                    job.kill()
                    job.wait()
        base = statistics.median(times["alone"])
        print(f"\nmachine: {os.cpu_count()} cores; median of {args.repeats} runs each\n")
        print("| reelrec demo | wall s | × alone |")
        print("|---|---:|---:|")
        for label, values in times.items():
            med = statistics.median(values)
            print(f"| {label} | {med:.1f} | {med / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
