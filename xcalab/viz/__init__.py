"""Pure plotting functions: each takes data (and ``ax=None`` where one axes suffices) and returns a Figure.

Nothing here calls ``plt.show()`` or reads global state, so tests call the same functions the notebooks do.
``save_figure`` writes a figure reproducibly (no timestamp, no software tag in the PNG).
"""

from xcalab.viz.save import save_figure

__all__ = ["save_figure"]
