"""warm-mini: a minimal, from-scratch implementation of WARM (Weight Averaged Reward Models)."""

__version__ = "0.1.0"
