"""The review loop (DESIGN §8): usage demos run through the daemon, checked review artifacts,
prompt metrics derived from recorded executions, and the reviewer/implementer loop driver.

The format rules are pure (`markdown`, `formats`, `prompts` — text in, problems out); `demos`,
`record`, `loop` and `artifacts` do the I/O; `commands` is `ccx review` and `ccx prompts`.
See docs/review.md.
"""
