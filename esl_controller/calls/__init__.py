"""Calls: the pure call state machine (state.py), endedReason mapping (ended_reason.py), live control
parsing (control.py); the I/O session that runs a live call and the registry of live calls sit beside
them. Import the submodules directly; this package imports nothing so that pure code stays light."""
