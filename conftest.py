"""Root pytest hooks. nbval collects executed notebooks below the repository root (build/executed/):
compare their outputs but never stderr (warnings and progress bars differ between runs)."""


def pytest_collectstart(collector):
    path = getattr(collector, "path", None)
    if path is not None and path.suffix == ".ipynb":
        collector.skip_compare += ("stderr",)
