"""Run one replay case in this process: ``python -m tests.adversarial.run MODULE:CASE TMPDIR``.

Before the case runs, its address space is capped (``RLIMIT_AS``) and a CPU-time limit is set,
so a memory bomb ends in ``MemoryError`` and a hang in ``SIGXCPU`` instead of taking the
machine. Exit status: 0 the contract held, 3 the case's check failed (message on stderr);
anything else (a signal, a traceback) is a crash that :mod:`tests.test_adversarial_replay`
reports.
"""

from __future__ import annotations

import importlib
import os
import resource
import sys
import traceback
from pathlib import Path

MEMORY_CAP = 3 * 2**30  # bytes of address space; TVM and LiteRT load in well under this
CPU_SECONDS = 60

CHECK_FAILED = 3


def main(argv: list[str]) -> int:
    target, tmp = argv
    module_name, case_name = target.split(":")
    os.environ.setdefault("TOPHUB_LOCATION", "NONE")
    module = importlib.import_module(f"tests.adversarial.{module_name}")
    case = getattr(module, case_name)
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS + 5))
    try:
        case(Path(tmp))
    except AssertionError as failure:
        print(f"{target}: {failure}", file=sys.stderr)
        return CHECK_FAILED
    except MemoryError:
        print(f"{target}: MemoryError past the {MEMORY_CAP >> 20} MiB cap", file=sys.stderr)
        return CHECK_FAILED
    except BaseException:
        traceback.print_exc()
        print(f"{target}: escaped with an undocumented exception", file=sys.stderr)
        return CHECK_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
