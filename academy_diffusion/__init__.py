"""academy-diffusion: the helper package behind the course's lessons (see README.md, "Reading the package")."""
__version__ = "0.2.0"
