"""Backtester: replayed bars or ticks through the live strategies, decision engine, trading engine and
simulated broker (see docs/adr/0016-strategies-and-backtester.md).

Import from the modules (`backtest.engine`, `backtest.results`, …): this package stays empty so that the
command line, which imports `backtest.cli`, starts without loading the trading engine.
"""
