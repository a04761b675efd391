"""`forescale demo` and `forescale backtest`: the local run on moto and its report (`forescale.demo.report`)."""
