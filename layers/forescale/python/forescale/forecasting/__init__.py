"""Forecasting adapters. Kept import-light: the heavy stack (pandas, statsforecast) loads on first use.

Import the adapter from its module, `forescale.forecasting.statsforecast_adapter`.
"""
