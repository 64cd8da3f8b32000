#!/usr/bin/env python3
"""Count how many hand-written places declare each pipeline parameter's value.

A declaration is a place a person edits to change a default, a type or the set of
sweepable params: the parameter spec (``param("name", …)``), a hand-written
``nextflow_schema.json`` or ``params.config`` entry, a CLI option with a literal
``default=``, a library config field with a literal default, a name in a sweep list.
Generated files (their header says GENERATED) and values derived from the spec
(``P.default("…")``, ``add_param(…)``) do not count. The CLI flag and library field of
a param are guessed from its name (``wingbeat_batch_size`` → ``--batch-size``, field
``batch_size``) within its family's package, and the shared loop's fields count for
every family whose param they mirror; so the numbers are an estimate, the same
estimate for any checkout.

    python tools/declarations.py [CHECKOUT]      # prints max, mean and the top ten
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

FAMILIES = ("wingbeat", "detector", "fewshot")
LOOP_FIELDS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "patience", "seed")
# a value written out (None is "not given", not a value, and is not counted)
LITERAL = r"""(?:-?[0-9][0-9.e+-]*|"[^"]*"|'[^']*'|True|False)"""


def _read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def count(root: Path) -> dict[str, int]:
    schema_path = root / "nextflow_schema.json"
    schema = json.loads(schema_path.read_text())
    names = [n for g in schema.get("$defs", {}).values() for n in g.get("properties", {})]
    schema_generated = "def generated" in _read(root / "lib/insectml/schema.py")
    configs = [p for p in root.glob("conf/**/params.config") if "GENERATED" not in p.read_text()]
    config_text = "\n".join(p.read_text() for p in configs) + _read(root / "nextflow.config")
    spec_text = "\n".join(p.read_text() for p in (root / "lib/insectml").rglob("*.py"))
    sweep_text = _read(root / "lib/insectml/sweep.py")
    loop_text = _read(root / "lib/insectml/training/loop.py")
    counts = {}
    for name in names:
        family = next((f for f in FAMILIES if name.startswith(f + "_")), None)
        short = name[len(family) + 1 :] if family else name
        n = 0 if schema_generated else 1
        n += len(re.findall(rf"^\s*{name}\s*=", config_text, re.M))
        n += len(re.findall(rf"param\(\s*\"{name}\"", spec_text))
        n += len(re.findall(rf"\"{name}\",?\s*$", sweep_text, re.M))
        if family:
            package = "\n".join(p.read_text() for p in (root / "lib/insectml" / family).glob("*.py"))
            flag = "--" + short.replace("_", "-")
            calls = re.findall(r"add_argument\((.*?)\)\n", package, re.S)
            n += sum(1 for c in calls if f'"{flag}"' in c and re.search(rf"default={LITERAL}", c))
            n += len(re.findall(rf"^    {short}: [^=\n]+= {LITERAL}\s*(?:#.*)?$", package, re.M))
            if short in LOOP_FIELDS:
                n += len(re.findall(rf"^    {short}: [^=\n]+= {LITERAL}\s*(?:#.*)?$", loop_text, re.M))
        counts[name] = n
    return counts


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    counts = count(root)
    values = list(counts.values())
    print(f"{len(values)} params: declarations per param max {max(values)}, mean {statistics.mean(values):.2f}")
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {n}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
