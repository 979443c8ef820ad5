"""dlrun's Hydra sweeper on scikit-optimize (``override hydra/sweeper: skopt``; ``tuner=gp``)."""
