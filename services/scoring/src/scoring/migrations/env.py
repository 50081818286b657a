from leadpipe_common.migrations import run_env

from scoring.store import metadata

run_env(metadata)
