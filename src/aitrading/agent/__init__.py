"""The PC agent beside the trader's MT5 terminal.

`service.Agent` wires `terminal.TickSource` → `streamer.TickStreamer` → `buffer.DurableBuffer` →
`client.BridgeClient`; `credentials.CredentialStore` keeps the MT5 login and device key; `status` serves
the local status API. Import from those modules; this package imports nothing so it stays cheap to load.
"""
