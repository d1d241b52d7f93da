"""CVAT, through its native functions: a `cvat_sdk.auto_annotation` function that `cvat-cli function
create-native` registers and `cvat-cli function run-agent` serves (the agent polls CVAT; nothing listens).

`convert` holds the pure conversions between the neutral interface and cvat-sdk's function interface. The
adapter itself (its manifest section and serving) is to come with the adapter protocol. cvat-sdk is not a
dependency of the core: it is imported where it is used, never when this package is.
"""
