"""The one exception root of ctrltower, and the two kinds a loop must tell apart."""


class CtrlTowerError(Exception):
    """Base of every error ctrltower raises on purpose. Anything else escaping is a bug."""


class RetryLater(CtrlTowerError):
    """A transient failure (network, busy server, lock held): the same call may succeed later."""


class Permanent(CtrlTowerError):
    """A failure that retrying will not fix (bad input, auth refused, missing ref)."""
