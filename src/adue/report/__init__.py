"""Reports regenerated from cell JSONs only: the paper's tables (Markdown, LaTeX, CSV) and plots.

>>> from adue.report import build_report, write_plots
>>> print(build_report("results", fmt="md", paper=True))      # doctest: +SKIP
>>> write_plots("results", "results/plots")                    # doctest: +SKIP
"""

from adue.report.cells import CorruptResultWarning, ResultSet, load_results
from adue.report.document import FORMATS, REPORT_METRICS, build_report, check_metrics, report_tables
from adue.report.plots import write_plots
from adue.report.stats import Stat, mean_ranks, summarize

__all__ = [
    "FORMATS",
    "REPORT_METRICS",
    "CorruptResultWarning",
    "ResultSet",
    "Stat",
    "build_report",
    "check_metrics",
    "load_results",
    "mean_ranks",
    "report_tables",
    "summarize",
    "write_plots",
]
