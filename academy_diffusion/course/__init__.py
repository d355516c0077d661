"""The machinery that runs the course (a student reads the modules one level up instead).

* :mod:`.lessons`: what every lesson calls first (:func:`setup_lesson`), the course's models
  (:func:`course_model`, :func:`course_autoencoder`, :func:`course_students`) and the
  samples lessons share (:func:`cached_sample`);
* :mod:`.runner`: ``python -m academy_diffusion.course`` (``make course``) runs the lessons headless;
* :mod:`.profiles`: the ``full``, ``quick`` and ``smoke`` run profiles (``ACADEMY_PROFILE``);
* :mod:`.reporting`: how a lesson reports numbers and figures, and checks its claims;
* :mod:`.checks` and :mod:`.exercises`: the exercises' checks, and the notebook generator;
* :mod:`.lab`: ``make lab``; :mod:`.pretrain`: the shipped checkpoints; :mod:`.bench`: the benchmark;
  :mod:`.bundle`: ``make colab``, the package as one file to upload to Colab.
"""

from .lessons import (
    COURSE_MODELS,
    cached_sample,
    check_latent_pair,
    course_autoencoder,
    course_model,
    course_students,
    enable_colab_widgets,
    pretrained_model,
    setup_lesson,
)

__all__ = ["COURSE_MODELS", "cached_sample", "check_latent_pair", "course_autoencoder", "course_model",
           "course_students", "enable_colab_widgets", "pretrained_model", "setup_lesson"]
