"""The delivery edge: the dispatcher and the HTTP sender it sends through."""
