"""Progressive rollouts on the server: who is served what (`selection`), the analysis of a step's
metrics (`analysis`) and the controller that moves rollouts along (`controller`). docs/rollouts.md."""
