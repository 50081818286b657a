from leadpipe_common.migrations import run_env

from reporting.store import metadata

run_env(metadata)
