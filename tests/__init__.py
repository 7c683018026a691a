"""unit/ mirrors core/; integration/ the adapters (real servers); e2e/ real processes; faults/.

fixtures/ holds frames captured from a real HA; conftest.py starts the servers on free ports.
"""
