"""Sample inputs shipped with the package, for the playground and `bridge check URL`: each runs offline.

- `astronaut.jpg`: Eileen Collins, NASA (public domain), 384x384, from scikit-image's `data.astronaut()`.
- `coins.png`: Greek coins from Pompeii, Brooklyn Museum (no known copyright restrictions), from
  scikit-image's `data.coins()`.
- `contact.txt`: a sentence with an e-mail address, a phone number, a date and an amount.
"""

from __future__ import annotations

from importlib.resources import files

IMAGES = ("astronaut.jpg", "coins.png")
TEXTS = ("contact.txt",)


def read(name: str) -> bytes:
    """The bytes of a sample named in `IMAGES` or `TEXTS`."""
    if name not in IMAGES + TEXTS:
        raise KeyError(f"no sample named {name!r}; samples: {', '.join(IMAGES + TEXTS)}")
    return files(__package__).joinpath(name).read_bytes()
