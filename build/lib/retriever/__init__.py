"""densepipe's models and learning: data contracts, readers, encoders, evaluation. No Ray, no CLI."""
