"""The presets: the paper's networks with their recipes, above the engine.

Everything that is particular to the presets lives here, and the generic
runner (engine, config, search, run directories) never imports it:

- `recipes.py`: the `PRESETS` table of the paper's hyperparameters;
- `config.py`: `PresetConfig`, the generic settings plus the recipe;
- `models.py`: the architectures (LeNet-300-100, Conv-2/4/6, VGG-19,
  ResNet-20);
- `data.py`: MNIST, Fashion-MNIST and CIFAR-10 as arrays, found offline;
- `pipeline.py`: their tf.data pipelines (normalization, augmentation);
- `loop_trainer.py`: the custom tf.distribute training loop (TensorFlow);
- `run.py`: `find_ticket`, the engine on a preset.
"""

from keras_lottery.runner.presets.config import DATASETS, OPTIMIZERS, PresetConfig
from keras_lottery.runner.presets.recipes import PRESETS, Preset
from keras_lottery.runner.presets.run import (
    find_ticket,
    preset_engine,
    preset_instability,
)
