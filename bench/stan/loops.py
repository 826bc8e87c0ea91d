#!/usr/bin/env python3
"""Time per step of Stan programs written with loops, vectorised, and as .qvr
(docs/stan.md's table): the difference between a 5000-step and a 1000-step run of
vguide-host, median of three; the Stan programs written with loops both compiled
(the default) and interpreted (--stan-evaluator interpreted). Usage:
bench/stan/loops.py [path/to/vguide-host]"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
host = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build", "host", "vguide-host")
cases = [
    ("AR(5), 200 steps", "ar5.json", ["ar5_loop.stan", "ar5_vec.stan", os.path.join(root, "tests/accuracy/models/ar5.qvr")]),
    ("linear regression, N = 200", "lin.json", ["lin_loop.stan", "lin_vec.stan", "lin.qvr"]),
    ("linear regression, N = 200, mu[n] written one by one", "lin.json", ["lin_writes.stan", "lin_vec.stan", "lin.qvr"]),
]


def per_step_ms(model, data, out, extra=()):
    def run(steps):
        start = time.time()
        subprocess.run([host, "--plugin", "normal", "--model", os.path.join(here, model), "--data",
                        os.path.join(here, data), "--steps", str(steps), "--convergence", "none", "--no-average",
                        "--init", "default", "--quiet", "--output", out, "--overwrite", *extra], check=True,
                       capture_output=True)
        return time.time() - start
    return statistics.median((run(5000) - run(1000)) / 4.0 for _ in range(3))


with tempfile.TemporaryDirectory() as out:
    print("| model | `.qvr` | `.stan`, vectorised | `.stan`, with loops | loops / `.qvr` | loops, interpreted |")
    print("|---|---|---|---|---|---|")
    for name, data, models in cases:
        loop, vec, qvr = (per_step_ms(m, data, out) for m in models)
        interpreted = per_step_ms(models[0], data, out, ("--stan-evaluator", "interpreted"))
        print(f"| {name} | {qvr:.3f} ms | {vec:.3f} ms | {loop:.3f} ms | {loop / qvr:.1f}x | {interpreted:.3f} ms |")
