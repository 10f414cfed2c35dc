"""The side-by-side benchmark of issue 3: the daemon against the raw pipe, in one run.

`python -m bench` (or `./dev bench`) starts a daemon, measures each workload W1-W6 against the
raw pipe (W6: against a raw client) on the same machine, and writes docs/benchmarks.md.  Every
loop is bounded; the client runs in its own process so its CPU time is measured apart from the
daemon's.
"""
