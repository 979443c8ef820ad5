"""dlrun's Hydra launchers (Hydra finds launcher plugins only under ``hydra_plugins``)."""


def register_over(name: str, conf_module: str, conf_class: str, target: str, *, group: str = "hydra/launcher") -> None:
    """Make ``GROUP=NAME`` (a launcher by default) select ``target``, a class taking the same settings.

    Call before Hydra composes the config; nothing happens without the plugin that defines
    ``conf_module.conf_class``.
    """
    import importlib
    from dataclasses import field, make_dataclass

    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # Hydra's plugin scan runs each plugin's module (and its store) once, now
    try:
        base = getattr(importlib.import_module(conf_module), conf_class)
    except ImportError:
        return
    conf = make_dataclass(f"Dlrun{conf_class}", [("_target_", str, field(default=target))], bases=(base,))
    ConfigStore.instance().store(group=group, name=name, node=conf, provider="dlrun")
