"""The built-in methods, one module per method or family. Importing this package imports
every module in it, and each registers its classes (``@register_method``): a new method is
one new file here. See :mod:`hashbench.method` for the API."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
