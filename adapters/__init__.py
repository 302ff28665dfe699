"""Framework adapters: each translates one framework's sparse encoding into the IR.

Installed as ``sparse_import.adapters``. Each adapter imports its framework lazily.
"""
