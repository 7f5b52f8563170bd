"""Training loops: contrastive fine-tuning of bi-encoders, and learned product quantization."""

from retriever.training.contrastive import ContrastiveTrainer, TrainConfig, TrainState
from retriever.training.examples import TrainingExample, examples_from_mined, examples_from_qrels, split_held_out

__all__ = ["ContrastiveTrainer", "TrainConfig", "TrainState", "TrainingExample", "examples_from_mined",
           "examples_from_qrels", "split_held_out"]
