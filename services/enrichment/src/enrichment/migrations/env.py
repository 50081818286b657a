from leadpipe_common.migrations import run_env

from enrichment.store import metadata

run_env(metadata)
