"""The names the plugin system is built on: the pluggy project, the hooks and the registry kinds.

Kept free of imports so that ``fabric plugins`` and the registries can name the kinds without
building a ``PluginManager``.
"""

from __future__ import annotations

#: the pluggy project name, which is also the entry-point group
PROJECT = "fabric"

#: the distribution whose built-ins every other plugin adds to
CORE_DISTRIBUTION = "fabric-core"

#: hook name -> the registry kind it fills
HOOKS: dict[str, str] = {
    "fabric_register_accelerators": "accelerators",
    "fabric_register_strategies": "strategies",
    "fabric_register_precisions": "precisions",
    "fabric_register_cluster_environments": "cluster_environments",
    "fabric_register_loggers": "loggers",
    "fabric_register_cli_commands": "commands",
    "fabric_register_checkpoint_consolidators": "consolidators",
}

#: the registry kinds, in hook order
KINDS: tuple[str, ...] = tuple(dict.fromkeys(HOOKS.values()))
