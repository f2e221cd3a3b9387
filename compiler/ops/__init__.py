"""Built-in op kinds. Importing this package registers every one of them in :mod:`compiler.opdef`."""

from compiler.ops import (  # noqa: F401
    activation,
    conv,
    core,
    elementwise,
    matmul,
    patch,
    pool,
    quantize,
    shape,
    softmax,
)
