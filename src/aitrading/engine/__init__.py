"""Trading engine (port 8007): orders, positions, accounts, risk, execution, reconciliation, audit."""
