"""Call flows and prompts: what happens on a line from the first ring to on-hook."""
