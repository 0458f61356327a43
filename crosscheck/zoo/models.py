"""Importing this module registers every zoo model.

The families are imported in this order, which is the order ``zoo.names()`` lists them in.
"""

from importlib import import_module

FAMILIES = ("classic", "keras", "resnet", "inception", "densenet", "mobile", "shufflenet", "transformer", "swin", "dense_prediction", "audio")

for _family in FAMILIES:
    import_module(f"{__package__}.{_family}")
