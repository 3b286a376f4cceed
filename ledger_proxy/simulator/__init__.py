"""A fake Canvas LMS (enrollments, SIS imports, faults) for tests, demos and benchmarks."""

from ledger_proxy.simulator.app import create_simulator_app, run_simulator
from ledger_proxy.simulator.state import SimulatorState

__all__ = ["SimulatorState", "create_simulator_app", "run_simulator"]
