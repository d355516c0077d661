"""academy-diffusion: the helper package behind the course's six lessons."""
__version__ = "0.1.0"
