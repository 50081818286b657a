from leadpipe_common.auth import metadata
from leadpipe_common.migrations import run_env

run_env(metadata)
