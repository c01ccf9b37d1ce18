"""The public op API. Each op is also registered as ``torch.ops.lidsplit.<name>``."""
