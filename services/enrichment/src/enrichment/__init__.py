# First, before any module of this package imports structlog or httpx: see leadpipe_common.
import leadpipe_common  # noqa: F401
