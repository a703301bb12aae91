"""Which version this tree is: the isolation tests check that each version calls its own."""

TAG = "v3"


def tag() -> str:
    return TAG
