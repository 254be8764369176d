#!/usr/bin/env python3
"""Write topologies/schema.json: the JSON Schema of a topology file, from the pydantic model.

    .venv/bin/python topologies/gen_schema.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from controller.topology.schema import TopologyDocument  # noqa: E402

OUT = REPO / "topologies" / "schema.json"


def main() -> int:
    schema = TopologyDocument.model_json_schema()
    OUT.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
