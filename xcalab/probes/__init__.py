"""Probes: computations that take a model or its maps apart for looking at -- no figures.

``xcalab.viz`` draws what these return (its functions take arrays and return Figures):

- ``short_term``  band <-> dense attention matrices, dense attention, one block's q / k / v, cost, parameter counts
- ``long_term``   a hand-set ConvLSTM cell and its gate trace, the attention of each mode, region means
- ``contrast``    2-D PCA and cosine summaries of embeddings, PCon's patch
"""
