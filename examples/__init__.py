"""Example models that run offline, each served by a manifest in `manifests/`.

Installed with the package as `bridge.examples` (and the manifests as `bridge/manifests/`), so that a wheel
install serves the default manifest, and a manifest may name an example as `bridge.examples.faces:FaceDetector`.
"""
