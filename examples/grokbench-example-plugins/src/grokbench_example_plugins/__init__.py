"""An example third-party grokbench plugin package (installed with pip, found through entry points).

* ``tasks``: ``modsub-cls`` ((a − b) mod p) and ``modmul-cls`` (a·b mod p over the non-zero residues);
* ``mlp``: the model ``mlp`` (learned embeddings, one ReLU hidden layer);
* ``grokfast``: the optimizer ``grokfast`` (Lee et al. 2024: AdamW on gradients
  amplified by their slow EMA component).
"""

__version__ = "0.1.0"
