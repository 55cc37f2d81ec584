"""Preloaded by the fork server that starts the decoding workers (never imported by the
main process): every worker forked from it ignores Ctrl-C from birth, so an interrupt
reaches only the parent, which stops handing out clips while the workers finish the one
in hand. Setting this in a pool initializer instead leaves a window after the fork in
which a Ctrl-C kills a worker and breaks the pool."""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)

import rsexp.data.cache  # noqa: E402,F401  (the workers' code, imported once in the server)
