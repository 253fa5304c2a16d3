"""Reproductions of two published methods on data generated in code; never imported by the product."""
