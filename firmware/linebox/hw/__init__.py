"""Hardware behind small interfaces, with a simulated backend beside each real one."""
