from flexi.cli.main import app

app(prog_name="flexi")
