"""lm-eval task configurations shipped with Flexi (`flexi_*`), with their data in `data/` (see ATTRIBUTION.md).

lm-eval reads this directory as an include path (`TaskManager(include_path=TASK_DIR)`); the YAML files load
their items through `utils.py`, so no Hugging Face download is needed.
"""

from __future__ import annotations

from pathlib import Path

TASK_DIR = Path(__file__).resolve().parent

# The offline default set, in report order; the German tasks are parallel to English ones where possible.
SHIPPED: dict[str, str] = {
    "flexi_truthfulqa_mc": "en",
    "flexi_gsm8k": "en",
    "flexi_mgsm_de": "de",
}
