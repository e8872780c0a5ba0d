"""The reconcile loop: from stored state to executor calls and back (DESIGN §2, §7)."""
