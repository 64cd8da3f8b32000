"""Screenshots of reports for the README: python tools/report_screenshots.py OUT REPORT.html …
(the top of each page, as the browser test sees it; OUT/<folder>-report.png)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from insectml.report.browser import check_pages  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    for check in check_pages([Path(p) for p in sys.argv[2:]], screenshots=Path(sys.argv[1])):
        print(check.path, "ok" if not check.problems else check.problems)
