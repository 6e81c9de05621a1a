"""`suggest`: the outbound rules observed egress needs before the one-way switch to
`allow_only_approved_outbound`.

- `observe.py`: a pipeline component that keeps what the judge saw of every egress flow and
  every finding (typed, deduplicated).
- `rules.py`: which destinations may share a wildcard, which need a private endpoint, which
  service tag is the most specific; typed policy rules for each.
- `plan.py`: turns the observations into a `Suggestion` and re-judges it in memory with the
  same service tags, dropping any rule that would let suspicious traffic through.
- `document.py`: the suggestion as CLI v2 workspace YAML (via `policy.render`) and a summary.
"""
