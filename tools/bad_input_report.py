"""Every bad input the test suite hands the command line, and the line each printed.

    python tools/bad_input_report.py [PYTEST ARGS...] [--json refusals.json]

Runs the tests (default: ``tests/test_bad_input.py tests/test_cli.py tests/test_latency.py``) with
``PREDICTNAS_REFUSALS`` set, so each refused command is noted with its exit status and the last line it
printed on stderr (``tests/commandline.py``), then prints them as a Markdown table: the list of bad inputs
tried and what each printed. The tests themselves check that each is one line, exit status 2, without a
traceback and without a file left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = ["tests/test_bad_input.py", "tests/test_cli.py", "tests/test_latency.py"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", dest="json_path", type=Path)
    args, pytest_args = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "refusals.jsonl"
        log.touch()
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 *(pytest_args or DEFAULT)], cwd=REPO, env={**os.environ, "PREDICTNAS_REFUSALS": str(log)})
        refusals = [json.loads(line) for line in log.read_text().splitlines()]
    print(f"\n{len(refusals)} refused commands (tests {'passed' if result.returncode == 0 else 'FAILED'})\n")
    print("| test | command | exit | printed |\n|---|---|---|---|")
    for r in refusals:
        cell = lambda text: text.replace("|", "\\|")  # noqa: E731
        print(f"| {r['test'].split('::')[-1]} | `{cell(r['command'])}` | {r['exit']} | {cell(r['printed'])} |")
    if args.json_path:
        args.json_path.write_text(json.dumps(refusals, indent=2) + "\n")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
