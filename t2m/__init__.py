"""t2m: translate between natural-language descriptions and molecules (SMILES), both directions.

Heavy submodules (torch, transformers, rdkit) are imported lazily so that ``import t2m`` and the
command line start fast.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
