"""One prepared GPU check, from the checkout alone (nothing installed, nothing downloaded): see
benchmarks/gpu_check/__init__.py and docs/gpu-server.md.

    python benchmarks/gpu_check.py --out benchmarks/results/ [--budget-s 480] [--device N]

Plans its steps from what the machine has (doctor's probes), runs the cheap and informative ones first,
writes its JSON after every step (a kill leaves the plan and every finished step), skips what is missing
with the reason, starts no step the budget cannot hold, and prints the figures at the end. Exit 0 when
every step it could run passed, 1 when one failed, 2 (one line, and a JSON saying why) without a GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Import clca_deploy and this check's package from the checkout, ahead of anything installed.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.gpu_check.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
