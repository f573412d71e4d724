from spatialx.cli.main import run

run()
