"""The AWS runtime: typed configuration, state and event models, and the services the Lambdas call."""
