"""Fine-tuning in the pool (torch): the ``train`` job kind's work, and the artifact it writes.

- :mod:`training.model`    -- an encoder + mean pooling + a linear head; the edge student
  (the first/last layers of the fine-tuned encoder, distilled); save and load.
- :mod:`training.loop`     -- the training and evaluation loops, with a progress callback.
- :mod:`training.artifact` -- a model version: transformers files, ONNX graphs (cloud fp32,
  edge int8) with parity references, metrics, lineage, and a manifest of file hashes.
- :mod:`training.run`      -- one training job end to end (what the worker runs).

Imported only by training workers and tests: serving workers, the client and the edge
client never import torch.
"""
