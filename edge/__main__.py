from edge.cli import run

run()
