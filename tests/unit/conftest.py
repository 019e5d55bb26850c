"""Unit-test setup: a non-interactive matplotlib backend (only here: notebook kernels keep inline figures)."""

import matplotlib

matplotlib.use("Agg")
