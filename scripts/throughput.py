#!/usr/bin/env python3
"""Search throughput of a run, from its journal alone (docs/scale-out.md).

    scripts/throughput.py RUN_DIR [RUN_DIR ...]

Per run: candidates trained (evaluations not reused), search wall-clock (the iterations'
`seconds`), candidates per hour, the mean training time of a candidate as its worker or the
loop measured it (`evaluation.total_seconds`), and for runs with an executor the mean per-job
overhead: from `job_submitted` to the loop's `evaluated` line, minus the worker's own wall
time (`seconds` of its result file: data loading, training, measuring).
"""
import json
import os
import sys


def entries(run):
    with open(os.path.join(run, "journal.jsonl")) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    return  # a torn last line


def summary(run):
    trained, seconds, train_s, overheads = 0, 0.0, [], []
    submitted = {}
    kind = "in_process"
    for e in entries(run):
        ev, ms = e["event"], e["unix_ms"]
        t = ev["type"]
        if t == "executor_started":
            kind = ev["executor"]
        elif t == "iteration_finished":
            seconds += ev["seconds"]
        elif t == "job_submitted":
            submitted[(ev["iteration"], ev.get("candidate", 0))] = ms
        elif t == "evaluated" and ev.get("reused_from") is None:
            trained += 1
            train_s.append(ev["evaluation"]["total_seconds"])
            key = (ev["iteration"], ev.get("candidate", 0))
            result = os.path.join(run, "jobs", "i%03d-c%d.result.json" % key)
            if key in submitted and os.path.exists(result):
                with open(result) as f:
                    worker = json.load(f)["seconds"]
                overheads.append((ms - submitted[key]) / 1000.0 - worker)
    per_hour = trained / seconds * 3600 if seconds else 0.0
    line = "%s: %s, %d candidates trained in %.1f s of search: %.0f candidates/hour; " \
           "training %.2f s per candidate" % (run, kind, trained, seconds, per_hour,
                                              sum(train_s) / max(len(train_s), 1))
    if overheads:
        line += "; per-job overhead %.2f s mean (min %.2f, max %.2f, %d jobs)" % (
            sum(overheads) / len(overheads), min(overheads), max(overheads), len(overheads))
    print(line)


for run in sys.argv[1:]:
    summary(run)
