"""An example third-party grokbench plugin package (installed with pip, found through entry points).

* ``tasks``: ``modsub-cls`` ((a − b) mod p) and ``modmul-cls`` (a·b mod p over the non-zero residues);
* ``mlp``: the model ``mlp`` (learned embeddings, one ReLU hidden layer);
* ``signsgd``: the optimizer ``sign-sgd`` (signSGD) and the benchmark method ``signsgd``,
  a preset that gives it a row in ``grokbench bench report`` (docs/benchmark.md).
"""

__version__ = "0.1.0"
