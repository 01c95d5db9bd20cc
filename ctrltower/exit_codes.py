"""Exit codes of every `ctrltower` command, documented in docs/cli.md. Distinct and stable."""

OK = 0
FINDINGS = 1  # validation found errors (validate, plan on an invalid head, reconcile of an invalid commit)
USAGE = 2  # bad options or arguments (click's own usage errors also exit 2)
CHANGES = 3  # plan --exit-code: the change alters at least one group's rendered config
GIT_ERROR = 4  # Git unreachable, ref missing, auth failure
SERVER_ERROR = 5  # the control plane refused or could not be reached
CONFLICT = 6  # another reconciler won the compare-and-set, or holds the lock
INTERNAL = 70  # a bug: please report it
