"""Scripts that regenerate the figures in ``docs/figures``."""
