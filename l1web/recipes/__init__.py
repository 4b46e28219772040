"""Recipes (the seed's "configs"): YAML documents that define reusable DAG pipelines.

`parse` turns untrusted YAML into a validated `Recipe` and binds run inputs; `yaml_guard` is
the hardened YAML loader it uses; `errors` holds `RecipeError`.
"""
