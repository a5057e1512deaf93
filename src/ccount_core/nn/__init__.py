"""The counting network: model and card, training, evaluation, counting, ensembles.

Everything here runs on a CPU; a GPU is used when one is present.
"""
