"""Experiment configs: one YAML file per experiment, typed dataclasses inside the program.

`registry` holds the extensible section types, `sections` the dataclasses, `loader` the YAML edge.
Everything a caller needs is re-exported here (`from vlmt import config as C; C.load_config(...)`).
"""

from vlmt.config.loader import (
                                  apply_overrides,
                                  bundled_config,
                                  config_path,
                                  configs_dir,
                                  diff,
                                  dump_yaml,
                                  from_dict,
                                  load_config,
                                  read_yaml,
                                  save_config,
                                  shipped_configs,
                                  to_dict,
)
from vlmt.config.registry import DATA, MODELS, TASKS, Registry, register_data, register_model, register_task
from vlmt.config.sections import (
                                  DataConfig,
                                  ExperimentConfig,
                                  ModelConfig,
                                  NoData,
                                  OptimConfig,
                                  ScheduleConfig,
                                  TaskConfig,
                                  TrainConfig,
                                  data_fields,
                                  family_of,
                                  from_data,
                                  keyed,
)

__all__ = ["DATA", "MODELS", "TASKS", "Registry", "register_data", "register_model", "register_task",
           "DataConfig", "ExperimentConfig", "ModelConfig", "NoData", "OptimConfig", "ScheduleConfig", "TaskConfig",
           "TrainConfig", "data_fields", "family_of", "from_data", "keyed", "apply_overrides", "bundled_config",
           "config_path", "configs_dir", "diff", "dump_yaml", "from_dict", "load_config", "read_yaml", "save_config",
           "shipped_configs", "to_dict"]
