from . import emergency, main
