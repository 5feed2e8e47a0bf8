"""Multi-task backbones, the supervised trainer and the RMTL agent."""
