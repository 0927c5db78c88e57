"""What a command does: setup, prepare, train, evaluate, predict, export, and the report, figures and dashboards."""
