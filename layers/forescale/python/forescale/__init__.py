"""forescale: predictive capacity for AWS Lambda concurrency and SageMaker endpoints.

`forescale.domain` is pure (standard library only) and shared by the Lambdas, `replay` and the demo.
`forescale.forecasting` keeps statsforecast behind one lazily imported adapter.
"""

__version__ = "0.1.0"
