"""Deployment: the `deploy_model` job (canary rollout) and the sensor that starts it."""
