"""Built-in environments, one package each; every package exposes `ENVIRONMENT`."""
