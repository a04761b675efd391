"""The pure core: targets, capacity sizing, guardrails, policies and decisions.

Nothing here imports boto3, pandas, numpy or logging, so the light Lambdas can use it cheaply and
every rule can be tested with plain tables.
"""
