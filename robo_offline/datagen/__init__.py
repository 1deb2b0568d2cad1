"""Recording logs the project needs itself: built-in demos and D4RL-style data tiers (no download)."""
