"""The SayAnything model: plain PyTorch (no Lightning, no Hydra), importable by inference alone."""
