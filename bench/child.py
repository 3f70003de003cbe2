"""Child-process entry: ``python -m bench.child module:function '{"kwarg": ...}'``.

Imports the function, calls it with the JSON keyword arguments and prints its result as the last
line of stdout, as JSON. Used by :func:`bench.harness.run_child`.
"""

from __future__ import annotations

import importlib
import json
import sys


def main(argv: list[str]) -> int:
    target, raw = argv
    module_name, _, function_name = target.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    result = function(**json.loads(raw))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
