"""Config: the schema, discovery and validation."""

from memsched.config.load import Config, JobConfig, find_config, load_config, parse_config, resolve_scope

__all__ = ["Config", "JobConfig", "find_config", "load_config", "parse_config", "resolve_scope"]
