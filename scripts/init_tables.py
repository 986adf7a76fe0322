"""What the two initialisation-table generators (generate_init_tables.py for the rational family,
generate_era_init_tables.py for ERA) share: the fit grid and functions, the file formats of the
JSON table and of the C++ include compiled into the library, and the command line.

Each table is a list of entries (dicts): some key fields naming the fit (function, degrees, ...),
some parameter lists, and max_error. The JSON table is the source of truth; the .inc is generated
from it."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent

RANGE = (-3.0, 3.0)
NUM_POINTS = 4001

# "silu" is an alias of "swish" resolved in C++; "leaky_relu" has slope 0.01.
FUNCTIONS = ("relu", "leaky_relu", "leaky_relu_0.2", "leaky_relu_0.3", "swish", "gelu", "tanh", "sigmoid",
             "elu", "identity")


def c_double(v: float) -> str:
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"non-finite coefficient {v!r}")
    return repr(v)  # shortest round-trip form, a valid C++ double literal (e.g. 1.5, -2e-05)


def c_string(s: str) -> str:
    if any(c in s for c in '"\\\n') or not s.isascii():
        raise ValueError(f"unexpected character in {s!r}")
    return f'"{s}"'


def write_json(entries: list, path: Path, description: str, key_fields: Sequence[str],
               list_fields: Sequence[str]) -> None:
    """One entry per block: the key fields on the first line, then each parameter list and max_error
    on a line of its own. json writes floats with repr(): the shortest representation that
    round-trips, i.e. full float64 precision."""
    dump = json.dumps
    blocks = []
    for e in entries:
        key = ", ".join(f"{dump(k)}: {dump(e[k])}" for k in key_fields)
        values = "".join(f",\n     {dump(k)}: {dump(e[k])}" for k in (*list_fields, "max_error"))
        blocks.append(f"    {{{key}{values}}}")
    text = ("{\n"
            f'  "description": {dump(description)},\n'
            f'  "range": {dump(list(RANGE))},\n'
            f'  "num_points": {NUM_POINTS},\n'
            '  "entries": [\n' + ",\n".join(blocks) + "\n  ]\n}\n")
    doc = {"description": description, "range": list(RANGE), "num_points": NUM_POINTS, "entries": entries}
    if json.loads(text) != doc:
        raise RuntimeError("internal error: the formatted JSON does not parse back to the table")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path} ({len(entries)} entries)")


def write_inc(entries: list, path: Path, header: str, initialiser: Callable[[dict], str]) -> None:
    """The header line, then one C++ aggregate initialiser per entry (initialiser(entry), which
    also checks the entry's sizes)."""
    lines = [header] + [initialiser(e) for e in entries]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path} ({len(entries)} entries)")


# How to run a generator against a library that is not installed (the end of every generator's --help).
LIBRARY_NOTE = """To use a library that is not installed, point TORCH_RATIONAL_LIBRARY at it, e.g.
  TORCH_RATIONAL_LIBRARY=build/cmake/libtorch_rational.so PYTHONPATH=python \\
      python3 scripts/%(prog)s
After regenerating, rebuild the library so the new tables are compiled in."""


def argument_parser(doc: str, default_json: Path, default_inc: Path) -> argparse.ArgumentParser:
    """The generators' common options; doc: the script's docstring (first paragraph: description,
    the rest ahead of LIBRARY_NOTE in the epilog)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join([*doc.split("\n\n")[1:], LIBRARY_NOTE]))
    parser.add_argument("--from-json", action="store_true",
                        help="do not fit: regenerate the .inc file from the existing JSON file")
    parser.add_argument("--json", type=Path, default=default_json, help="JSON table (default: %(default)s)")
    parser.add_argument("--inc", type=Path, default=default_inc, help="C++ include file (default: %(default)s)")
    return parser


def fit_or_read(args: argparse.Namespace, fit: Callable[[], list], write_table: Callable[[list, Path], None]) -> list:
    """The entries: read from args.json with --from-json, else fitted and written to args.json."""
    if args.from_json:
        entries = json.loads(args.json.read_text())["entries"]
        print(f"read {args.json} ({len(entries)} entries)")
    else:
        entries = fit()
        write_table(entries, args.json)
    return entries
