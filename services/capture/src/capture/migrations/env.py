from leadpipe_common.migrations import run_env

from capture.store import metadata

run_env(metadata)
