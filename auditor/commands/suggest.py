"""`egress-auditor suggest`: the suggested workspace YAML on stdout (or --output), the
summary on stderr. The captures go through the ordinary pipeline, judged as if
approved-only, with an `Observations` component collecting what `suggest.plan` needs."""
from __future__ import annotations

import sys

from auditor import assemble
from auditor.commands.inputs import open_captures, settings_from_args
from auditor.errors import EXIT_OK, OutputError, UsageError
from auditor.policy.loader import read_document
from auditor.suggest.document import render, summary
from auditor.suggest.observe import Observations
from auditor.suggest.plan import APPROVED, Suggestion, plan
from auditor.lifecycle import feed_file


def main(args) -> int:
    if args.policy is None:
        raise UsageError("suggest needs --policy: the workspace's current managed-network policy")
    sug = suggest(args.pcaps, settings_from_args(args))
    text = render(sug)
    if args.output:
        try:
            args.output.write_text(text)
        except OSError as exc:
            raise OutputError(f"{args.output}: cannot write: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stderr.write(summary(sug))
    return EXIT_OK


def suggest(pcaps, settings) -> Suggestion:
    """Audit `pcaps` as if approved-only with `settings.policy` and plan the suggestion."""
    if settings.policy is None:
        raise UsageError("suggest needs --policy: the workspace's current managed-network policy")
    settings = settings.model_copy(update={"as_mode": APPROVED.value, "dns_events": False,
                                           "events": None})
    files = open_captures(pcaps)
    obs = Observations()
    audit = assemble.build(settings, extra=[obs], process_metrics=False)
    for notice in audit.notices:
        print(notice, file=sys.stderr)
    for capture in files:
        for warning in feed_file(audit.pipeline, capture):
            print(f"egress-auditor: warning: {warning}", file=sys.stderr)
    audit.pipeline.close()
    assert audit.verdicts is not None and audit.tags is not None   # a policy was given
    raw, _, _ = read_document(settings.policy)
    return plan(obs, audit.verdicts.judge.policy, raw, audit.tags, [str(p) for p in pcaps],
                settings)
