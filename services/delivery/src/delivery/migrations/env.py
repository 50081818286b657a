from leadpipe_common.migrations import run_env

from delivery.store import metadata

run_env(metadata)
