"""Real time across processes: streams with gap-free offsets, cursors, the broker interface.

This package is being built up (issue "Real-time core, redesigned for many processes"): what is
here is sans-I/O and unit-tested; docs/REALTIME_STREAMS.md has the design it is cut for.
"""
