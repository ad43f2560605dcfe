"""Method registry: each module here registers one method family (see base.py for what a method owns).

Adding a method = a module here that calls `register(Method(...))`, its import below, a preset in
recipes/methods/<name>.yaml, and a row in tests/test_methods.py's formula. The loop and CLI do not change.
"""

from . import adalora, adapter, bitfit, full, ia3, lora, lora_variants, prefix, probe  # noqa: F401 (they register)
from .base import METHODS, Context, Method, get_method, method_configs, register, sizable

__all__ = ["METHODS", "Context", "Method", "get_method", "method_configs", "register", "sizable"]
