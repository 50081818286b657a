from leadpipe_common.migrations import run_env

from routing.store import metadata

run_env(metadata)
