"""TinyNAS on mcc's own cost model: the search space (:mod:`nas.space`), converters to the IR, PyTorch and ONNX
(:mod:`nas.build`, :mod:`nas.torch_model`), the cost model (:mod:`nas.cost`) and search-space optimisation
(:mod:`nas.space_opt`). See ``docs/nas.md``."""
