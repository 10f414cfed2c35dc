"""The review loop (DESIGN §8): usage demos run through the daemon, checked review artifacts,
prompt metrics derived from recorded executions, and the reviewer/implementer loop driver.

The format rules are pure (text in, `problems.Problem`s out), one module a rule set:
`names` (artifact file names), `feedback` (the review feedback), `fixes` (the fixes JSON),
`pair` (their agreement), `prompts` (the prompt template), `chain` (a prompt's record),
`metrics` (the fields derived from it), `verify` (its verification commands); `markdown` and
`jsontext` read just enough of the two text formats. `demos`, `record`, `loop` and `artifacts`
do the I/O, `runs` runs a command through the daemon; `commands` is `ccx review` and
`ccx prompts`. See docs/review.md.
"""
