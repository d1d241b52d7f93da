"""Sample inputs shipped with the package, for the playground, `bridge check URL` and a first request
(`bridge samples NAME` prints the path): each runs offline.

- `astronaut.jpg`: Eileen Collins, NASA (public domain), 384x384, from scikit-image's `data.astronaut()`.
- `coins.png`: Greek coins from Pompeii, Brooklyn Museum (no known copyright restrictions), from
  scikit-image's `data.coins()`.
- `contact.txt`: a sentence with an e-mail address, a phone number, a date and an amount.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

IMAGES = ("astronaut.jpg", "coins.png")
TEXTS = ("contact.txt",)
ABOUT = {
    "astronaut.jpg": "a face, for the default face detector (manifests/default.yaml)",
    "coins.png": "coins on a dark ground, for manifests/coins.yaml",
    "contact.txt": "a text with an e-mail, a phone number, a date and an amount, for manifests/text_entities.yaml",
}
"""What each sample is good for, as `bridge samples` lists them."""


def path(name: str) -> Path:
    """The file of a sample named in `IMAGES` or `TEXTS` (the package is installed as files, not zipped)."""
    if name not in IMAGES + TEXTS:
        raise KeyError(f"no sample named {name!r}; samples: {', '.join(IMAGES + TEXTS)}")
    return Path(str(files(__package__).joinpath(name)))


def read(name: str) -> bytes:
    """The bytes of a sample named in `IMAGES` or `TEXTS`."""
    return path(name).read_bytes()
