"""What follows a count: reaction kinetics from N(t), and simulated-image matching.

Uses the counting (``nn``), preparation (``image``) and simulation packages; only ``cli``
imports it.
"""
