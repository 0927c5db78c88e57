"""What a command does: setup, train, evaluate, embed, predict, export, and the report, figures and dashboards."""
