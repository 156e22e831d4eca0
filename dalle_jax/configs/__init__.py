"""Shipped configs: each module has get_config(arg) -> locked ConfigDict."""
