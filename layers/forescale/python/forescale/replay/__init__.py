"""Replay: walk a canonical trace step by step through the same planner the Lambdas use."""
