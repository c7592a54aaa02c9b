"""Operator configuration: typed settings, the product catalog, money helpers.

This package imports nothing from `providers` or `gateway`; they import from it.
"""
