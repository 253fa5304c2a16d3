"""Job history, rate limits, bans, results and checkpoints, behind one repository."""
