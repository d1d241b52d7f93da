"""Label Studio as a platform: the ML backend protocol (to come) over pure conversions.

`config` parses a project's label config, `regions` turns neutral predictions into Label Studio result
regions and back, `brush` is Label Studio's own run-length encoding of brush masks.
"""
