"""Per-op C emitters; importing this package registers all of them."""

from backends.c.emitters import compute, conv, data, float_tail, softmax, unary  # noqa: F401
