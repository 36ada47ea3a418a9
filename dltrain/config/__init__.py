"""Configs: load YAML, apply `KEY=VALUE` overrides, fill defaults, validate; errors carry file:line.

`load_config` is the one entry point. Everything wrong in a config is collected and raised
together as one `ConfigError`.
"""

from dltrain.config.load import LoadedConfig, load_config, parse_overrides, read_config, with_values

__all__ = ["LoadedConfig", "load_config", "parse_overrides", "read_config", "with_values"]
