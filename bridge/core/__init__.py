"""The neutral core: shapes, geometry, media, the model interface, the manifest, the job. Knows no platform and no HTTP."""
