"""A DeepSparse engine server for ``bench_models``, driven over stdin/stdout, one JSON per line.

DeepSparse 1.8 runs on Python 3.10 with NumPy < 2, so it lives in its own virtualenv and this
script runs there; it imports nothing from the project. Set up once:

    python3.10 -m venv /work/dsenv
    /work/dsenv/bin/pip install deepsparse==1.8.0 "numpy<2" "onnx<1.17"
 Commands (each answered by one line,
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``):

- ``{"cmd": "load", "name": N, "model": PATH, "inputs": NPZ, "outputs": NPZ, "cores": C}``
  compiles ``PATH`` (an ONNX model with dense initializers) for batch ``B`` (optional
  ``"batch"``, default 1) on ``C`` cores, runs it
  once on the arrays of ``inputs`` (``arr_0``, ``arr_1``, ... in graph-input order, as
  ``numpy.savez`` names them) and saves its outputs to ``outputs`` the same way.
- ``{"cmd": "time", "name": N, "min_ms": T}``: runs engine ``N`` as many times as fill ``T``
  milliseconds (at least once); answers ``{"seconds": mean seconds per run, "runs": count}``.
- ``{"cmd": "quit"}``.

DeepSparse writes logs to stdout; the protocol keeps the process's original stdout for itself and
sends everything else written to file descriptor 1 to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
    import numpy as np
    from deepsparse import compile_model

    engines: dict[str, tuple[object, list]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "quit":
                protocol.write(json.dumps({"ok": True}) + "\n")
                return 0
            if request["cmd"] == "load":
                engine = compile_model(
                    request["model"],
                    batch_size=request.get("batch", 1),
                    num_cores=request["cores"],
                )
                with np.load(request["inputs"]) as data:
                    keys = sorted(data.files, key=lambda key: int(key.rsplit("_", 1)[1]))
                    inputs = [np.ascontiguousarray(data[key]) for key in keys]
                outputs = engine.run(inputs)
                np.savez(request["outputs"], *outputs)
                engines[request["name"]] = (engine, inputs)
                answer = {"ok": True}
            elif request["cmd"] == "time":
                engine, inputs = engines[request["name"]]
                runs, start = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - start) < request[
                    "min_ms"
                ] / 1e3 or not runs:
                    engine.run(inputs)
                    runs += 1
                answer = {"ok": True, "seconds": elapsed / runs, "runs": runs}
            else:
                answer = {"ok": False, "error": f"unknown command {request['cmd']!r}"}
        except Exception as error:  # report any engine failure to the driver, keep serving
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        protocol.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
